//! A commit's flattened tree, for workers that fetch their checkout over smart HTTP.
//!
//! A server checkout fetches a repository's submodules (from their own URLs, with the
//! repository's credentials) and its LFS files' content. An SSH worker or an agent fetches only
//! from the server, with no forge credentials, so the server also keeps, for a commit that has
//! a `.gitmodules` or LFS files (`filter=lfs` in its root `.gitattributes`), a commit whose tree
//! is that server checkout: the submodules' files in place and the LFS files' content as plain
//! blobs. It is written into the mirror (parent: the commit; author, committer and date fixed,
//! so the same checkout always gives the same commit) under [`flat_ref`], where
//! [`crate::fetch_checkout`] and the SSH runner fetch it after the commit itself and lay its
//! files over the checkout (HEAD stays the commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cmd::{At, Git, GitError};
use crate::{Mirror, Oid, parse_oid_line};

/// The ref under which a mirror keeps the flattened tree of `commit`.
pub fn flat_ref(commit: &Oid) -> String {
    format!("refs/baton/flat/{commit}")
}

/// Whether a checkout whose root holds these `.gitmodules` and `.gitattributes` (absent:
/// `None`) needs more than its commit: submodules, or LFS files.
pub fn wants_more(gitmodules: bool, gitattributes: Option<&[u8]>) -> bool {
    gitmodules || gitattributes.is_some_and(|a| a.windows(10).any(|w| w == b"filter=lfs"))
}

/// Tells concurrent flattenings in this process apart.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Mirror {
    /// The flattened commit of `commit` (made and kept under [`flat_ref`] on first use), or
    /// `None` when `commit` has no submodules and no LFS files: a fetch of it is complete.
    pub async fn flat_commit(&self, commit: &Oid) -> Result<Option<Oid>, GitError> {
        let modules = self.read_tree(commit, ".gitmodules").await?;
        let attributes = self.read_tree(commit, ".gitattributes").await?;
        let attributes = attributes
            .iter()
            .find(|(p, _)| p == ".gitattributes")
            .map(|(_, b)| b.as_slice());
        let modules = modules.iter().any(|(p, _)| p == ".gitmodules");
        if !wants_more(modules, attributes) {
            return Ok(None);
        }
        let name = flat_ref(commit);
        if let Some(done) = self.resolve(&name).await? {
            return Ok(Some(done));
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = PathBuf::from(format!(
            "{}.flat-{commit}-{}-{n}",
            self.dir().display(),
            std::process::id()
        ));
        let index = tmp.with_extension("index");
        let made = self.flatten(commit, &tmp, &index).await;
        let _ = crate::rmtree::remove_tree(&tmp).await;
        let _ = tokio::fs::remove_file(&index).await;
        let flat = made?;
        Git::new(&self.env, At::GitDir(self.dir()))
            .args(["update-ref", &name, flat.as_str()])
            .output()
            .await?;
        Ok(Some(flat))
    }

    /// Checks `commit` out (with submodules and LFS content) at `tmp` and commits that tree,
    /// with no `.git` of its submodules, into the mirror through the index file `index`.
    async fn flatten(&self, commit: &Oid, tmp: &Path, index: &Path) -> Result<Oid, GitError> {
        self.checkout(commit, tmp).await?;
        let owned = tmp.to_owned();
        tokio::task::spawn_blocking(move || drop_nested_git(&owned))
            .await
            .map_err(|e| GitError::io(tmp, std::io::Error::other(e)))?;
        let git = || {
            Git::new(&self.env, At::GitDir(self.dir()))
                .env("GIT_WORK_TREE", tmp.display().to_string())
                .env("GIT_INDEX_FILE", index.display().to_string())
        };
        git()
            .args(["add", "--all", "--force", "--", "."])
            .output()
            .await?;
        let (done, g) = git().arg("write-tree").run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        let tree = parse_oid_line(&g, &done.stdout)?;
        let message = format!("The checkout of {commit} with its submodules and LFS files");
        self.fixed_commit(&tree, &[commit], &message, commit).await
    }
}

/// Removes every `.git` (a submodule's gitfile or directory, and the checkout's own) below
/// `dir`, so that `git add` takes submodules' files as files.
fn drop_nested_git(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if entry.file_name() == ".git" {
            let _ = if kind.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        } else if kind.is_dir() {
            drop_nested_git(&path);
        }
    }
}
