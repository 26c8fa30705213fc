//! The busybox test image for container tests: there is no registry here, so it is made from
//! Debian's `busybox-static` (`/bin/busybox` plus one symlink per applet) and `docker import`ed
//! as `baton-test-busybox:latest`. The setup uses the docker CLI; the product never does.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use super::Server;

pub const IMAGE: &str = "baton-test-busybox:latest";

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `docker {}`: {e} (the tests need docker.io)",
                args.join(" ")
            )
        })
}

pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Imports the busybox test image once per test process.
pub fn image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(
            info.status.success(),
            "the Docker engine does not answer (these tests need it): {}",
            String::from_utf8_lossy(&info.stderr)
        );
        // Made by an earlier test process (same bytes each time): importing again would only
        // leave the old copy dangling.
        if docker(&["image", "inspect", IMAGE]).status.success() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let tar = rootfs(root.path(), None);
        docker_ok(&["import", tar.to_str().unwrap(), IMAGE]);
    });
    IMAGE
}

/// A busybox root file system as a tar under `root` (`bin/` with every applet, `tmp/`), with
/// `/marker` holding `marker` when given (so two imports differ).
fn rootfs(root: &Path, marker: Option<&str>) -> std::path::PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/test.sh does)"
    );
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    let mut parts = vec!["bin", "tmp"];
    if let Some(m) = marker {
        std::fs::write(root.join("marker"), m).unwrap();
        parts.push("marker");
    }
    let tar = root.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .args(&parts)
        .status()
        .unwrap();
    assert!(st.success(), "tar of the busybox rootfs failed");
    tar
}

/// A busybox root file system as a tar under `root`, with `/marker` holding `marker`.
pub fn rootfs_tar(root: &Path, marker: &str) -> std::path::PathBuf {
    rootfs(root, Some(marker))
}

/// `docker import`s a busybox image whose `/marker` holds `marker` as `tag` (a new image under
/// the tag each time the marker differs); its image id.
pub fn import_as(tag: &str, marker: &str) -> String {
    image();
    let root = tempfile::tempdir().unwrap();
    let tar = rootfs(root.path(), Some(marker));
    docker_ok(&["import", tar.to_str().unwrap(), tag])
        .trim()
        .to_owned()
}

/// Removes, on drop, every Baton container whose job folder is under `data`: a failing test
/// leaves nothing running in the engine.
pub struct Leftovers(std::path::PathBuf, Option<String>);

impl Leftovers {
    pub fn of(s: &Server) -> Leftovers {
        Leftovers(s.data.clone(), None)
    }

    /// The same for the engine at `host` (`docker -H`).
    pub fn on_host(s: &Server, host: String) -> Leftovers {
        Leftovers(s.data.clone(), Some(host))
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mut cmd = Command::new("docker");
        if let Some(h) = &self.1 {
            cmd.arg("-H").arg(h);
        }
        let Ok(out) = cmd
            .args(["ps", "-a", "--filter", "label=org.baton=1"])
            .args(["--format", "{{.ID}} {{.Label \"baton.dir\"}}"])
            .output()
        else {
            return;
        };
        let data = self.0.display().to_string();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, dir)) = line.split_once(' ')
                && dir.starts_with(&data)
            {
                let mut rm = Command::new("docker");
                if let Some(h) = &self.1 {
                    rm.arg("-H").arg(h);
                }
                let _ = rm.args(["rm", "-f", id]).output();
            }
        }
    }
}
