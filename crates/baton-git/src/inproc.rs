//! A developer's repository read and written in process with `gix`, for `baton run`: finding
//! the repository and its `HEAD`, reading a directory at a commit, and writing a run's commit
//! and result ref. Each of these was a git process (`rev-parse`, `cat-file --batch-command`,
//! `fast-import`), a few ms each on a path that takes ~20 ms in all.
//!
//! Only the plain case is done here: a non-bare repository with SHA-1 objects and files refs,
//! owned by the user, whose `HEAD` is a commit. Anything else (a bare repository, an unborn
//! `HEAD`, another owner, a format `gix` cannot open) is left to the git CLI as before, so its
//! answers and errors stay git's. No user or system config is read (`isolated`), as the git
//! processes here get none; objects are written loose (not synced, as git leaves a commit's)
//! and the ref with git's lock-file protocol, refused when it exists already.

use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use crate::cmd::GitError;
use crate::{Oid, TreeFile};

/// A repository found in process.
pub(crate) struct Found {
    /// As `git rev-parse --absolute-git-dir` prints it.
    pub git_dir: PathBuf,
    /// As `git rev-parse --show-toplevel` prints it.
    pub top: PathBuf,
    /// `HEAD`'s commit and branch, when asked for.
    pub head: Option<(Oid, Option<String>)>,
}

/// The repository `dir` is in, and `HEAD`'s commit and branch when `head` is asked for; `None`
/// when it is not the plain case (the caller asks git).
pub(crate) fn discover(dir: &Path, head: bool) -> Option<Found> {
    let dir = std::path::absolute(dir).ok()?;
    let mut trusted = false;
    let repo = gix::ThreadSafeRepository::discover_opts(&dir, Default::default(), |_, trust| {
        trusted = trust == gix::sec::Trust::Full;
        gix::open::Options::isolated()
    })
    .ok()?;
    if !trusted {
        return None;
    }
    let local = repo.to_thread_local();
    if local.is_bare() || local.object_hash() != gix::hash::Kind::Sha1 {
        return None;
    }
    // Refs in a reftable are git's to read and write (gix reads only files refs).
    let storage = local.config_snapshot().string("extensions.refStorage");
    if storage.is_some_and(|s| !s.eq_ignore_ascii_case(b"files")) {
        return None;
    }
    // As `git rev-parse --absolute-git-dir --show-toplevel` print them.
    let git_dir = std::fs::canonicalize(local.git_dir()).ok()?;
    let top = std::fs::canonicalize(local.workdir()?).ok()?;
    let at_head = if head {
        let mut h = local.head().ok()?;
        let branch = h
            .referent_name()
            .and_then(|n| n.as_bstr().strip_prefix(b"refs/heads/"))
            .map(|b| b.to_str_lossy().into_owned());
        let commit = h.peel_to_commit().ok()?;
        Some((Oid::parse(&commit.id.to_string()).ok()?, branch))
    } else {
        None
    };
    Some(Found {
        git_dir,
        top,
        head: at_head,
    })
}

/// The repository at `git_dir`, found by [`discover`] before, opened again (a `gix` repository
/// is not `Send` without its `parallel` feature, so none is kept in a `LocalRepo`).
pub(crate) fn open(git_dir: &Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(git_dir, gix::open::Options::isolated())
        .map_err(|e| failed("open the repository", git_dir, e))
}

fn failed(what: &str, dir: &Path, e: impl std::error::Error) -> GitError {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !detail.contains(&more) {
            detail.push_str(": ");
            detail.push_str(&more);
        }
        source = s.source();
    }
    GitError::InProcess {
        what: what.to_owned(),
        dir: dir.to_owned(),
        detail,
    }
}

fn object_id(oid: &Oid) -> Result<gix::ObjectId, GitError> {
    gix::ObjectId::from_hex(oid.as_str().as_bytes()).map_err(|_| GitError::BadOid {
        given: oid.to_string(),
    })
}

/// One entry of a tree, owned.
struct Entry {
    name: Vec<u8>,
    kind: EntryKind,
    id: gix::ObjectId,
}

fn entries(repo: &gix::Repository, id: gix::ObjectId, at: &str) -> Result<Vec<Entry>, GitError> {
    let tree = repo
        .find_tree(id)
        .map_err(|e| failed(&format!("read tree {id} of {at:?}"), repo.git_dir(), e))?;
    let decoded = tree
        .decode()
        .map_err(|e| failed(&format!("decode tree {id} of {at:?}"), repo.git_dir(), e))?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| Entry {
            name: e.filename.to_vec(),
            kind: e.mode.kind(),
            id: e.oid.to_owned(),
        })
        .collect())
}

/// [`crate::Mirror::read_tree`] in process: every regular file under `dir` at `commit`, sorted
/// by path (symlinks and submodules skipped; nothing when `dir` is absent), all sizes checked
/// against [`crate::READ_TREE_LIMIT`] before any file is read.
pub(crate) fn read_tree(
    repo: &gix::Repository,
    commit: &Oid,
    dir: &str,
) -> Result<Vec<(String, Vec<u8>)>, GitError> {
    let id = object_id(commit)?;
    let root = match repo.try_find_object(id) {
        Ok(Some(object)) => object,
        Ok(None) => return Err(GitError::MissingCommit(commit.to_string())),
        Err(e) => return Err(failed(&format!("read {commit}"), repo.git_dir(), e)),
    };
    let root = root
        .peel_to_tree()
        .map_err(|e| failed(&format!("read the tree of {commit}"), repo.git_dir(), e))?;
    // Down the path: a missing component (or one that is not a directory) means nothing.
    let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let mut tree = root.id;
    let mut at = String::new();
    let mut found = None;
    for (i, part) in parts.iter().enumerate() {
        let Some(entry) = entries(repo, tree, &at)?
            .into_iter()
            .find(|e| e.name == part.as_bytes())
        else {
            return Ok(Vec::new());
        };
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        if i + 1 == parts.len() {
            found = Some(entry);
            break;
        }
        if entry.kind != EntryKind::Tree {
            return Ok(Vec::new());
        }
        tree = entry.id;
    }
    let Some(top) = found else {
        return Ok(Vec::new());
    };
    // Every regular file under it (or it, when it is one), depth first in tree order.
    let mut files: Vec<(String, gix::ObjectId)> = Vec::new();
    let mut stack = vec![(at, top)];
    while let Some((path, entry)) = stack.pop() {
        match entry.kind {
            EntryKind::Blob | EntryKind::BlobExecutable => files.push((path, entry.id)),
            EntryKind::Tree => {
                for e in entries(repo, entry.id, &path)?.into_iter().rev() {
                    let name = String::from_utf8_lossy(&e.name).into_owned();
                    stack.push((format!("{path}/{name}"), e));
                }
            }
            // Symlinks and submodules are not files of the directory.
            EntryKind::Link | EntryKind::Commit => {}
        }
    }
    let mut total = 0u64;
    for (path, id) in &files {
        let header = repo
            .find_header(*id)
            .map_err(|e| failed(&format!("read blob {id} of {path}"), repo.git_dir(), e))?;
        total += header.size();
    }
    crate::read::within_read_limit(dir, commit, total)?;
    let mut out = Vec::with_capacity(files.len());
    for (path, id) in files {
        let mut blob = repo
            .find_blob(id)
            .map_err(|e| failed(&format!("read blob {id} of {path}"), repo.git_dir(), e))?;
        out.push((path, blob.take_data()));
    }
    Ok(out)
}

/// [`crate::LocalRepo::write_run`] in process: `files` as the tree of a parentless commit by
/// `Baton <baton@localhost>` now, and `refname` (checked by the caller) created at it; refused
/// when `refname` exists.
pub(crate) fn write_run(
    repo: &gix::Repository,
    refname: &str,
    message: &str,
    files: &[TreeFile],
) -> Result<Oid, GitError> {
    let dir = repo.git_dir().to_owned();
    let mut tree = repo
        .edit_tree(gix::ObjectId::empty_tree(repo.object_hash()))
        .map_err(|e| failed("start the run's tree", &dir, e))?;
    for f in files {
        let blob = repo
            .write_blob(&f.bytes)
            .map_err(|e| failed(&format!("write {}", f.path), &dir, e))?;
        let kind = if f.executable {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        tree.upsert(f.path.as_str(), kind, blob.detach())
            .map_err(|e| failed(&format!("add {} to the run's tree", f.path), &dir, e))?;
    }
    let tree = tree
        .write()
        .map_err(|e| failed("write the run's tree", &dir, e))?
        .detach();
    let baton = gix::actor::Signature {
        name: "Baton".into(),
        email: "baton@localhost".into(),
        time: gix::date::Time::now_local_or_utc(),
    };
    let commit = gix::objs::Commit {
        tree,
        parents: Default::default(),
        author: baton.clone(),
        committer: baton,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    let id = repo
        .write_object(&commit)
        .map_err(|e| failed("write the run's commit", &dir, e))?
        .detach();
    let name: gix::refs::FullName = refname
        .try_into()
        .map_err(|e| failed(&format!("name the ref {refname}"), &dir, e))?;
    let edit = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "baton run".into(),
            },
            expected: PreviousValue::MustNotExist,
            new: gix::refs::Target::Object(id),
        },
        name,
        deref: false,
    };
    let committer = gix::actor::Signature {
        name: "Baton".into(),
        email: "baton@localhost".into(),
        time: gix::date::Time::now_local_or_utc(),
    };
    let mut time = gix::date::parse::TimeBuf::default();
    repo.edit_references_as(Some(edit), Some(committer.to_ref(&mut time)))
        .map_err(|e| {
            failed(
                &format!("create the ref {refname} (it must not exist yet)"),
                &dir,
                e,
            )
        })?;
    Oid::parse(&id.to_string())
}
