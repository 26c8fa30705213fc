//! Deleting a working tree, whatever its job did to it (read-only folders included).

use std::path::Path;

use crate::cmd::GitError;

/// Deletes `path` recursively; where that fails (a job made directories read-only), makes
/// everything writable and tries again.
pub(crate) async fn remove_tree(path: &Path) -> Result<(), GitError> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || make_writable(&owned))
        .await
        .map_err(|e| GitError::io(path, std::io::Error::other(e)))?;
    tokio::fs::remove_dir_all(path)
        .await
        .map_err(|e| GitError::io(path, e))
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o700);
        let _ = std::fs::set_permissions(path, perms);
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}
