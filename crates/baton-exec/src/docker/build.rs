//! Images built from a job's `build:` Dockerfile (its directory is the context), tagged by the
//! hash of the context so that an unchanged one is built once.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::DockerExecutor;
use super::follow::LogFile;
use crate::blocking::OnThread;
use crate::error::ExecError;

/// Writes a line of build output into the job's log.
async fn note(log: &OnThread<LogFile>, text: String) {
    log.post(move |f| f.note(text.as_bytes())).await;
}

impl DockerExecutor {
    /// Builds the image of `dockerfile` (its directory is the context) unless an image with the
    /// same content hash is there already; returns its tag. Build output goes to the job log.
    pub(super) async fn ensure_built(
        &self,
        docker: &Docker,
        dockerfile: &Path,
        log: &OnThread<LogFile>,
    ) -> Result<String, ExecError> {
        let failed = |detail: String| ExecError::Build {
            dockerfile: dockerfile.into(),
            detail,
        };
        let df = dockerfile.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || context_hash(&df))
            .await
            .map_err(|e| failed(format!("hashing task failed: {e}")))??;
        let tag = format!("baton-build:{hashed}");
        let from = dockerfile.display();
        if docker.inspect_image(&tag).await.is_ok() {
            note(
                log,
                format!("baton: using cached image {tag} (from {from})\n"),
            )
            .await;
            return Ok(tag);
        }
        note(log, format!("baton: building image {tag} from {from}\n")).await;
        let df = dockerfile.to_path_buf();
        let tarball = tokio::task::spawn_blocking(move || context_tar(&df))
            .await
            .map_err(|e| failed(format!("packing task failed: {e}")))??;
        let name = dockerfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(&name)
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            docker.build_image(options, None, Some(bollard::body_full(tarball.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| failed(e.to_string()))?;
            if let Some(s) = info.stream {
                note(log, s).await;
            }
            if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                note(log, format!("{msg}\n")).await;
                return Err(failed(msg));
            }
        }
        if docker.inspect_image(&tag).await.is_err() {
            return Err(failed(format!(
                "the build ended but {tag} is not in the engine"
            )));
        }
        Ok(tag)
    }
}

/// The files of a build context (the Dockerfile's directory), sorted, relative paths.
fn context_files(dockerfile: &Path) -> Result<(PathBuf, Vec<PathBuf>), ExecError> {
    let ctx = dockerfile
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dockerfile.is_file() {
        return Err(ExecError::Build {
            dockerfile: dockerfile.into(),
            detail: "no such file (hint: `build:` is relative to the config file's directory)"
                .into(),
        });
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = ctx.join(&rel);
        let entries = fs::read_dir(&abs).map_err(|e| ExecError::io("read directory", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExecError::io("read directory", &abs, e))?;
            let rel = rel.join(entry.file_name());
            let ft = entry
                .file_type()
                .map_err(|e| ExecError::io("stat", entry.path(), e))?;
            if ft.is_dir() {
                stack.push(rel);
            } else if ft.is_file() {
                files.push(rel);
            }
        }
    }
    files.sort();
    Ok((ctx, files))
}

/// sha256 over the Dockerfile and the context listing (path, mode, content of every file).
fn context_hash(dockerfile: &Path) -> Result<String, ExecError> {
    use std::os::unix::fs::PermissionsExt;
    let (ctx, files) = context_files(dockerfile)?;
    let mut h = Sha256::new();
    let df = fs::read(dockerfile).map_err(|e| ExecError::io("read", dockerfile, e))?;
    h.update(b"dockerfile\0");
    h.update(
        dockerfile
            .file_name()
            .map_or(&b""[..], |n| n.as_encoded_bytes()),
    );
    h.update(b"\0");
    h.update(&df);
    for rel in files {
        let abs = ctx.join(&rel);
        let meta = fs::metadata(&abs).map_err(|e| ExecError::io("stat", &abs, e))?;
        h.update(b"\0file\0");
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0{}\0", meta.permissions().mode(), meta.len()).as_bytes());
        let mut f = File::open(&abs).map_err(|e| ExecError::io("read", &abs, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| ExecError::io("read", &abs, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The build context as a tar archive.
fn context_tar(dockerfile: &Path) -> Result<Vec<u8>, ExecError> {
    let (ctx, files) = context_files(dockerfile)?;
    let mut b = tar::Builder::new(Vec::new());
    for rel in files {
        let abs = ctx.join(&rel);
        b.append_path_with_name(&abs, &rel)
            .map_err(|e| ExecError::io("pack into the build context", &abs, e))?;
    }
    b.into_inner()
        .map_err(|e| ExecError::io("pack the build context of", dockerfile, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_hash_follows_content_not_time() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        fs::write(&df, "FROM x\n").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), "1").unwrap();
        let h1 = context_hash(&df).unwrap();
        assert_eq!(h1.len(), 64);
        fs::write(dir.path().join("sub/a"), "1").unwrap();
        assert_eq!(context_hash(&df).unwrap(), h1, "rewriting the same bytes");
        fs::write(dir.path().join("sub/a"), "2").unwrap();
        let h2 = context_hash(&df).unwrap();
        assert_ne!(h2, h1, "a context file changed");
        fs::write(&df, "FROM y\n").unwrap();
        assert_ne!(context_hash(&df).unwrap(), h2, "the Dockerfile changed");
        let tar = context_tar(&df).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["Dockerfile", "sub/a"]);
        assert!(matches!(
            context_hash(&dir.path().join("missing")),
            Err(ExecError::Build { .. })
        ));
    }
}
