//! `artifacts:` globs: when a job's script has ended, the regular files of its `work/` that the
//! globs match are copied into its `out/` (keeping their paths), besides what the job wrote to
//! `$BATON_OUTPUT_DIR` itself. A glob that matches nothing is a warning line in the log, and,
//! when the task says `required: true`, a failure of the job (the core decides that from
//! [`crate::ExitRecord::missing_artifacts`]).
//!
//! The job owns both folders and may have left anything in them, so nothing is trusted: `work/`
//! is walked through directory descriptors, each entry opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (no symlink is followed, at any component, and nothing outside `work/`
//! is reached), only what `fstat` says is a regular file is copied, and every folder and file
//! made under `out/` is made the same way, so a symlink the job planted in `out/` leads nowhere.
//! A file the job already wrote to `out/` under the same path is kept as it is.
//!
//! The walk itself ([`walk_tree`], with [`open_dir`] and [`open_beneath`]) is the one
//! descriptor-based walk of a job's folders: the web's artifact listings of `out/` use it too.
//!
//! Local and agent jobs are gathered by their supervisor, container jobs by the server once the
//! container has exited (their `work/` is the job folder's, mounted), SSH jobs by the worker's
//! runner (`ssh/runner.sh`, with bash's globbing and the same rules).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};

use crate::layout::{OUT_DIR, WORK_DIR};

/// The most directory entries looked at in `work/` (a checkout with a huge `node_modules`
/// must not hold the job's end for long).
const MAX_ENTRIES: usize = 1_000_000;

/// What gathering found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Files copied into `out/`.
    pub copied: usize,
    /// The globs that matched no file, in the order written.
    pub unmatched: Vec<String>,
    /// Files that matched but could not be copied, with why.
    pub failed: Vec<String>,
}

impl Gathered {
    /// The lines the job's log gets: one per glob that matched nothing (a warning, or an error
    /// when `required`), one per file that could not be kept.
    pub fn log_lines(&self, required: bool) -> String {
        let mut s = String::new();
        for g in &self.unmatched {
            if required {
                s.push_str(&format!(
                    "baton: error: required artifacts glob {g:?} matched no file in the job's \
                     working directory; the job fails\n"
                ));
            } else {
                s.push_str(&format!(
                    "baton: warning: artifacts glob {g:?} matched no file in the job's \
                     working directory\n"
                ));
            }
        }
        for f in &self.failed {
            s.push_str(&format!("baton: warning: artifact not kept: {f}\n"));
        }
        s
    }
}

fn beneath() -> OpenHow {
    OpenHow::new().resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(dir, rel)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
/// (no component of `rel` may be a symlink, none may leave `dir`) and `O_NOFOLLOW`; retried
/// when the kernel asks to (a concurrent rename can make it answer `EAGAIN`). `mode` is used
/// only with `O_CREAT`.
pub fn open_beneath<Fd: AsFd>(
    dir: Fd,
    rel: &str,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let how = beneath()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY)
        .mode(mode);
    let mut tries = 0;
    loop {
        match openat2(dir.as_fd(), rel, how) {
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}

/// Opens the folder `path` itself (with `flags`, `O_RDONLY` or `O_PATH`), refused when it is
/// anything but a directory, a symlink to one too: the root of a [`walk_tree`] or of
/// [`open_beneath`].
pub fn open_dir(path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        flags | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A regular file [`walk_tree`] found.
#[derive(Debug)]
pub struct Found<'a> {
    /// The folder it is in, a descriptor opened beneath the walk's root.
    pub dir: BorrowedFd<'a>,
    /// Its name in that folder.
    pub name: &'a str,
    /// Its path from the root (`sub/name`).
    pub rel: &'a str,
    /// What `fstatat` says of it (no symlink followed): its size and mode.
    pub stat: &'a FileStat,
}

/// How a [`walk_tree`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// Every folder it was let into was looked at (or `file` stopped it).
    Whole,
    /// It looked at `max_entries` entries and stopped there.
    Capped,
}

/// The one walk of a folder a job owns (its `work/` for `artifacts:` globs, its `out/` for the
/// web's listings): each folder is opened beneath its parent's descriptor with
/// [`open_beneath`], so no symlink is followed and nothing outside `root` is reached, and only
/// what `fstatat` says is a regular file is handed to `file` (symlinks, FIFOs, devices are left
/// out; names that are not UTF-8 too). `descend` gets each folder's path (ending in `/`) and says
/// whether it is worth walking; `file` returns `false` to stop the walk. At most `max_entries`
/// directory entries are looked at.
pub fn walk_tree(
    root: OwnedFd,
    max_entries: usize,
    mut descend: impl FnMut(&str) -> bool,
    mut file: impl FnMut(Found<'_>) -> bool,
) -> Walked {
    let mut stack: Vec<(OwnedFd, String)> = vec![(root, String::new())];
    let mut seen = 0;
    while let Some((fd, prefix)) = stack.pop() {
        let Ok(mut d) = Dir::from_fd(fd) else {
            continue;
        };
        let names: Vec<String> = d
            .iter()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n != "." && n != "..")
            .collect();
        for name in names {
            seen += 1;
            if seen > max_entries {
                return Walked::Capped;
            }
            let Ok(st) = fstatat(d.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            if is(&st, SFlag::S_IFDIR) {
                let sub = format!("{rel}/");
                if descend(&sub)
                    && let Ok(fd) = open_beneath(
                        d.as_fd(),
                        &name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                        Mode::empty(),
                    )
                {
                    stack.push((fd, sub));
                }
                continue;
            }
            if !is(&st, SFlag::S_IFREG) {
                continue;
            }
            let found = Found {
                dir: d.as_fd(),
                name: &name,
                rel: &rel,
                stat: &st,
            };
            if !file(found) {
                return Walked::Whole;
            }
        }
    }
    Walked::Whole
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// The matcher for `globs` (`*` stays within one folder, `**` crosses folders, as for
/// `cache.inputs`), and each glob's literal leading folders (`target/` of `target/*.tar.gz`),
/// outside of which no folder needs to be walked.
fn matcher(globs: &[String]) -> (GlobSet, Vec<String>) {
    let mut b = GlobSetBuilder::new();
    let mut bases = Vec::new();
    for g in globs {
        // The config loader checked every glob; one that still fails matches nothing.
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .unwrap_or_else(|_| GlobBuilder::new("\0").build().expect("a literal glob"));
        b.add(glob);
        let mut base = String::new();
        let parts: Vec<&str> = g.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if part.contains(['*', '?', '[']) {
                break;
            }
            base.push_str(part);
            base.push('/');
        }
        bases.push(base);
    }
    let set = b.build().unwrap_or_else(|_| GlobSet::empty());
    (set, bases)
}

/// Whether the folder `rel` (ending in `/`) can hold a match of a glob whose literal folders
/// are `bases`.
fn worth_walking(rel: &str, bases: &[String]) -> bool {
    bases
        .iter()
        .any(|b| b.starts_with(rel) || rel.starts_with(b.as_str()))
}

/// Copies the files of `dir/work` that `globs` match into `dir/out` (see the module doc).
pub fn gather(dir: &Path, globs: &[String]) -> Gathered {
    let mut found = Gathered::default();
    if globs.is_empty() {
        return found;
    }
    let (set, bases) = matcher(globs);
    let mut hit = vec![false; globs.len()];
    if let Ok(work) = open_dir(&dir.join(WORK_DIR), OFlag::O_RDONLY) {
        let _ = std::fs::create_dir(dir.join(OUT_DIR));
        match open_dir(&dir.join(OUT_DIR), OFlag::O_RDONLY) {
            Ok(out) => walk(work, &out, &set, &bases, &mut hit, &mut found),
            Err(e) => found
                .failed
                .push(format!("the job's {OUT_DIR}/ cannot be opened: {e}")),
        }
    }
    found.unmatched = globs
        .iter()
        .zip(hit)
        .filter(|(_, h)| !h)
        .map(|(g, _)| g.clone())
        .collect();
    found
}

fn walk(
    work: OwnedFd,
    out: &OwnedFd,
    set: &GlobSet,
    bases: &[String],
    hit: &mut [bool],
    found: &mut Gathered,
) {
    let walked = walk_tree(
        work,
        MAX_ENTRIES,
        |sub| worth_walking(sub, bases),
        |f| {
            let matches = set.matches(f.rel);
            if matches.is_empty() {
                return true;
            }
            for i in matches {
                hit[i] = true;
            }
            match copy_one(f.dir, f.name, out, f.rel) {
                Ok(true) => found.copied += 1,
                Ok(false) => {}
                Err(e) => found.failed.push(format!("{}: {e}", f.rel)),
            }
            true
        },
    );
    if walked == Walked::Capped {
        found.failed.push(format!(
            "the working directory has more than {MAX_ENTRIES} entries; the rest was not \
             looked at"
        ));
    }
}

/// Copies the regular file `name` of the folder `from` to `rel` under `out`; `Ok(false)` when
/// `out` already has a file there (the job's own wins).
fn copy_one<Fd: AsFd>(from: Fd, name: &str, out: &OwnedFd, rel: &str) -> Result<bool, String> {
    let src = open_beneath(
        from,
        name,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open it: {e}"))?;
    let st = fstat(&src).map_err(|e| e.to_string())?;
    if !is(&st, SFlag::S_IFREG) {
        return Ok(false);
    }
    let (parent, file) = match rel.rsplit_once('/') {
        Some((p, f)) => (Some(p), f),
        None => (None, rel),
    };
    let mut at: Option<OwnedFd> = None;
    for part in parent.into_iter().flat_map(|p| p.split('/')) {
        let here = at.as_ref().map_or(out.as_fd(), AsFd::as_fd);
        match mkdirat(here, part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(format!("cannot make its folder in out/: {e}")),
        }
        let next = open_beneath(
            here,
            part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open its folder in out/ ({part}): {e}"))?;
        at = Some(next);
    }
    let here = at.as_ref().map_or(out.as_fd(), AsFd::as_fd);
    let mode = Mode::from_bits_truncate((st.st_mode & 0o755) | 0o600);
    let dst = match open_beneath(
        here,
        file,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        mode,
    ) {
        Ok(fd) => fd,
        Err(Errno::EEXIST) => return Ok(false),
        Err(e) => return Err(format!("cannot create it in out/: {e}")),
    };
    let (mut src, mut dst) = (File::from(src), File::from(dst));
    std::io::copy(&mut src, &mut dst).map_err(|e| format!("cannot copy it: {e}"))?;
    dst.flush().map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn job() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("work/target/deep")).unwrap();
        fs::create_dir_all(t.path().join("out")).unwrap();
        t
    }

    fn globs(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matching_files_are_copied_with_their_paths() {
        let t = job();
        let w = t.path().join("work");
        fs::write(w.join("target/app.tar.gz"), "tarball").unwrap();
        fs::write(w.join("target/deep/other.tar.gz"), "deeper").unwrap();
        fs::write(w.join("notes.txt"), "top").unwrap();
        fs::write(t.path().join("out/notes.txt"), "the job's own").unwrap();
        let g = gather(
            t.path(),
            &globs(&[
                "target/*.tar.gz",
                "notes.txt",
                "missing/**",
                "**/other.tar.gz",
            ]),
        );
        assert_eq!(g.copied, 2);
        assert_eq!(g.unmatched, vec!["missing/**".to_string()]);
        assert!(g.failed.is_empty(), "{:?}", g.failed);
        let out = t.path().join("out");
        assert_eq!(
            fs::read_to_string(out.join("target/app.tar.gz")).unwrap(),
            "tarball"
        );
        assert_eq!(
            fs::read_to_string(out.join("target/deep/other.tar.gz")).unwrap(),
            "deeper"
        );
        // `*` stays in its folder: target/deep/other.tar.gz came only through `**`.
        assert_eq!(
            fs::read_to_string(out.join("notes.txt")).unwrap(),
            "the job's own"
        );
        assert!(
            g.log_lines(false)
                .contains("warning: artifacts glob \"missing/**\" matched no file")
        );
        assert!(g.log_lines(true).contains("error: required artifacts glob"));
    }

    #[test]
    fn symlinks_never_lead_out_of_work_or_out() {
        let t = job();
        let w = t.path().join("work");
        let secret = t.path().join("secret");
        fs::create_dir_all(&secret).unwrap();
        fs::write(secret.join("key.tar.gz"), "secret").unwrap();
        // A symlinked file and a symlinked folder in work/: neither is followed.
        symlink(secret.join("key.tar.gz"), w.join("target/link.tar.gz")).unwrap();
        symlink(&secret, w.join("target/dir")).unwrap();
        // A symlink planted in out/ where a copied file's folder goes: nothing is written
        // through it.
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::create_dir_all(w.join("sub")).unwrap();
        fs::write(w.join("sub/a.txt"), "a").unwrap();
        symlink(&elsewhere, t.path().join("out/sub")).unwrap();
        let g = gather(t.path(), &globs(&["target/**", "sub/*.txt"]));
        assert_eq!(g.copied, 0);
        assert_eq!(g.unmatched, vec!["target/**".to_string()]);
        assert_eq!(g.failed.len(), 1, "{:?}", g.failed);
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(!t.path().join("out/target").exists());
        // work/ itself a symlink: nothing is gathered.
        let t2 = tempfile::tempdir().unwrap();
        symlink(&w, t2.path().join("work")).unwrap();
        let g = gather(t2.path(), &globs(&["sub/*.txt"]));
        assert_eq!((g.copied, g.unmatched.len()), (0, 1));
    }
}
