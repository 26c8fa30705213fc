//! A job's artifacts (`out/` on the worker) into the server's job `out/`: unpacked from the tar
//! stream the finishing session sent, or fetched with `scp -r` from a worker without `tar`.
//! The file work runs on the blocking pool.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::Inner;
use crate::error::ExecError;
use crate::layout::OUT_DIR;

/// Where artifacts land before they move into `out/`.
fn fetch_dir(dir: &Path) -> PathBuf {
    dir.join("out.fetch")
}

/// Unpacks the first `len` bytes of the tar file `tar_path` into the job's `out/`.
pub(super) async fn unpack_into_out(dir: &Path, tar_path: &Path, len: u64) -> Result<(), String> {
    let (dir, tar_path) = (dir.to_path_buf(), tar_path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let fetch = fetch_dir(&dir);
        unpack(&tar_path, len, &fetch)?;
        move_into_out(&dir, &fetch).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("unpacking failed: {e}")))
}

/// Unpacks the first `len` bytes of the tar file at `path` into `fetch` (made afresh): regular
/// files and directories, as agents upload them; links and special files are left out.
pub(super) fn unpack(path: &Path, len: u64, fetch: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(fetch);
    fs::create_dir_all(fetch).map_err(|e| format!("cannot create {}: {e}", fetch.display()))?;
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(std::io::Read::take(file, len));
    archive.set_preserve_permissions(false);
    archive.set_overwrite(true);
    let bad = |e: std::io::Error| format!("the artifacts' tar stream is unreadable: {e}");
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            entry
                .unpack_in(fetch)
                .map_err(|e| format!("cannot unpack an artifact: {e}"))?;
        }
    }
    Ok(())
}

/// Moves what came back into `fetch` into the job's `out/`.
fn move_into_out(dir: &Path, fetch: &Path) -> Result<(), ExecError> {
    let out = dir.join(OUT_DIR);
    fs::create_dir_all(&out).map_err(|e| ExecError::io("create directory", &out, e))?;
    let entries = fs::read_dir(fetch).map_err(|e| ExecError::io("read", fetch, e))?;
    for e in entries {
        let e = e.map_err(|e| ExecError::io("read", fetch, e))?;
        let to = out.join(e.file_name());
        fs::rename(e.path(), &to).map_err(|err| ExecError::io("move artifact to", &to, err))?;
    }
    let _ = fs::remove_dir_all(fetch);
    Ok(())
}

/// `scp -r` of the worker's `out/` into the server's job `out/` (for workers without `tar`),
/// retried until the heartbeat timeout.
pub(super) async fn fetch_with_scp(
    inner: &Inner,
    remote_dir: &str,
    dir: &Path,
) -> Result<(), ExecError> {
    let fetch = fetch_dir(dir);
    let deadline = Instant::now() + inner.s.heartbeat_timeout;
    loop {
        let _ = tokio::fs::remove_dir_all(&fetch).await;
        let mut c = Command::new("scp");
        c.args(inner.opts())
            .arg("-r")
            .arg("-q")
            .arg("--")
            .arg(format!("{}:{remote_dir}/{OUT_DIR}", inner.dest))
            .arg(&fetch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let r = match tokio::time::timeout(Duration::from_secs(300), c.output()).await {
            Err(_) => Err(inner.err("fetch the artifacts", "scp took over 300s")),
            Ok(Err(e)) => Err(inner.err("fetch the artifacts", format!("cannot run scp: {e}"))),
            Ok(Ok(o)) if o.status.success() => Ok(()),
            Ok(Ok(o)) => Err(inner.err(
                "fetch the artifacts",
                String::from_utf8_lossy(&o.stderr).trim(),
            )),
        };
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || move_into_out(&dir, &fetch))
        .await
        .map_err(|e| inner.err("fetch the artifacts", format!("moving them failed: {e}")))?
}
