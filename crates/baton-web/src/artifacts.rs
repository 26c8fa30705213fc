//! Artifacts: the regular files a job left in its `out/` folder, opened so that no symlink is
//! ever followed and nothing outside `out/` is ever reached.
//!
//! A job owns its `out/` folder and may change it while the server reads it (swap a directory
//! for a symlink between a check and an open). So no path is checked and then opened: `out/` is
//! opened itself without following a symlink, and every path under it is resolved by the kernel
//! in one `openat2` call relative to that descriptor with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` (no component may be a symlink, none may leave `out/`;
//! `baton_exec::keep::open_beneath`). Only what that descriptor is (`fstat`) decides: a regular
//! file is served from that very descriptor, and listings walk directories opened the same way
//! (`baton_exec::keep::walk_tree`, the walk that gathers `artifacts:` globs).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use baton_exec::keep;
use futures::Stream;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

/// The most files a listing shows, and the most directory entries it looks at.
const LIST_FILES: usize = 500;
const LIST_ENTRIES: usize = 20_000;
const CHUNK: u64 = 64 * 1024;

/// An artifact opened for reading.
pub(crate) struct Artifact {
    pub file: File,
    pub size: u64,
}

/// Whether `rel` is a plain relative path: no empty, `.` or `..` segment, no backslash or NUL.
fn plain_path(rel: &str) -> bool {
    rel.split('/')
        .all(|seg| !(seg.is_empty() || seg == "." || seg == ".." || seg.contains(['\\', '\0'])))
}

/// The job's `out/` folder itself, refused if it is anything but a directory (a symlink too).
fn open_out(out: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    keep::open_dir(out, flags)
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Opens `rel` under `out` if it is a regular file reached without any symlink; `None` for
/// anything else (missing, a symlink at any component, a directory, a FIFO, a device, a path
/// that would leave `out/`).
pub(crate) fn open(out: &Path, rel: &str) -> Option<Artifact> {
    if !plain_path(rel) {
        return None;
    }
    let root = open_out(out, OFlag::O_PATH).ok()?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    let fd = keep::open_beneath(
        &root,
        rel,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let st = fstat(&fd).ok()?;
    if !is(&st, SFlag::S_IFREG) {
        return None;
    }
    Some(Artifact {
        file: File::from(fd),
        size: u64::try_from(st.st_size).unwrap_or(0),
    })
}

/// Streams `len` bytes from `start` of an opened file (positional reads on the descriptor that
/// was checked, never a path).
pub(crate) fn stream(
    file: File,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let file = Arc::new(file);
    futures::stream::unfold((start, len), move |(pos, left)| {
        let file = file.clone();
        async move {
            if left == 0 {
                return None;
            }
            let want = left.min(CHUNK) as usize;
            let res = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                let n = file.read_at(&mut buf, pos)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match res {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    Some((Ok(bytes), (pos + n, left - n)))
                }
                Err(e) => Some((Err(e), (pos, 0))),
            }
        }
    })
}

/// The media type an artifact is served and listed with, by its name's extension; text types
/// are previewed in the page, and `text/html` opens as a sandboxed page.
pub(crate) fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some(
            "txt" | "log" | "md" | "csv" | "out" | "diff" | "patch" | "rs" | "c" | "h" | "py"
            | "sh" | "toml" | "yaml" | "yml" | "ini",
        ) => "text/plain; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("pdf") => "application/pdf",
        Some("gz" | "tgz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Whether an artifact of this type can be shown as text in the page.
pub(crate) fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(content_type, "application/json" | "application/xml")
}

/// Regular files under `out/` as (relative path, size in bytes), sorted, at most [`LIST_FILES`].
/// Directories are opened like artifacts (no symlink, never outside `out/`); symlinks and
/// other special files are left out.
pub(crate) fn list(out: &Path) -> Vec<(String, u64)> {
    list_all(out, LIST_FILES)
}

/// Like [`list`], with at most `max_files` files (the walk is `baton_exec::keep::walk_tree`,
/// the one that gathers `artifacts:` globs).
pub(crate) fn list_all(out: &Path, max_files: usize) -> Vec<(String, u64)> {
    let max_entries = LIST_ENTRIES.max(max_files.saturating_mul(2));
    let mut found = Vec::new();
    let Ok(root) = open_out(out, OFlag::O_RDONLY) else {
        return found;
    };
    if max_files > 0 {
        keep::walk_tree(
            root,
            max_entries,
            |_| true,
            |f| {
                found.push((f.rel.to_owned(), u64::try_from(f.stat.st_size).unwrap_or(0)));
                found.len() < max_files
            },
        );
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_without_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(out.join("sub/a.txt"), "inside").unwrap();
        std::fs::write(outside.join("s.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", out.join("alias")).unwrap();
        std::os::unix::fs::symlink("sub", out.join("subl")).unwrap();
        nix::unistd::mkfifo(&out.join("fifo"), Mode::S_IRWXU).unwrap();

        let a = open(&out, "sub/a.txt").expect("regular file");
        assert_eq!(a.size, 6);
        let mut buf = [0; 6];
        a.file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"inside");
        for bad in [
            "link/s.txt",
            "alias",
            "subl/a.txt",
            "sub",
            "fifo",
            "../outside/s.txt",
            "sub/../sub/a.txt",
            "/etc/passwd",
            "",
            "sub//a.txt",
            "missing",
        ] {
            assert!(open(&out, bad).is_none(), "{bad:?} must not open");
        }
        assert_eq!(list(&out), vec![("sub/a.txt".to_owned(), 6)]);

        // `out/` itself must be a directory, not a symlink to one.
        let fake = t.path().join("fake-out");
        std::os::unix::fs::symlink(&out, &fake).unwrap();
        assert!(open(&fake, "sub/a.txt").is_none());
        assert!(list(&fake).is_empty());
    }
}
