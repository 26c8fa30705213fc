//! A private Podman engine for container tests that need a second engine beside the host's
//! Docker: `podman system service` on its own socket and storage under a temporary folder
//! (Debian's `podman`, rootful). The setup talks to it with the docker CLI (`docker -H`); the
//! product only through the Engine API.

use std::process::Command;
use std::time::{Duration, Instant};

use super::WAIT;

/// `podman system service` on a private socket and storage, stopped (by pid) on drop.
pub struct Podman {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn start() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("baton-podman-")
            .tempdir()
            .unwrap();
        // Rootful Podman raises every container's open-file and process limits to 1048576
        // and 4194304; in a sandbox whose hard limits are lower (this one's), runc then fails.
        // Ask for what we have.
        let hard = |what| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit fills the struct we own.
            assert_eq!(unsafe { libc::getrlimit(what, &mut lim) }, 0);
            lim.rlim_max
        };
        // (nproc at the full hard limit is refused too here; 4096 is plenty for these jobs.)
        let (nofile, nproc) = (
            hard(libc::RLIMIT_NOFILE),
            hard(libc::RLIMIT_NPROC).min(4096),
        );
        let conf = dir.path().join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
            ),
        )
        .unwrap();
        let mut p = Podman { child: None, dir };
        p.start_service();
        p
    }

    /// Starts (again) the API service on the same socket and storage; waits until it answers.
    pub fn start_service(&mut self) {
        let dir = &self.dir;
        let sock = dir.path().join("podman.sock");
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("service.log"))
            .unwrap();
        let child = Command::new("podman")
            .env("CONTAINERS_CONF", dir.path().join("containers.conf"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--runroot")
            .arg(dir.path().join("run"))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start podman (install Debian's podman): {e}"));
        self.child = Some(child);
        let p = &*self;
        let deadline = Instant::now() + WAIT;
        loop {
            let out = p.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "podman's API service did not answer on {}: {}\n{}",
                p.host(),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(p.dir.path().join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the API service (its containers run on under conmon).
    pub fn stop_service(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("podman.sock").display())
    }

    /// The docker CLI against this service (test setup only).
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .output()
            .expect("run docker")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.stop_service();
        // Podman bind-mounts its overlay directory onto itself; undo that so the temporary
        // directory can go.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path().join("root/overlay"))
            .status();
    }
}

impl Podman {
    /// `docker import`s into this engine a busybox image whose `/marker` holds `marker` as
    /// `tag` (another image under the tag each time); its id as this engine gives it.
    pub fn import_as(&self, tag: &str, marker: &str) -> String {
        let root = tempfile::tempdir().unwrap();
        let tar = super::busybox::rootfs_tar(root.path(), marker);
        let out = self.docker(&["import", tar.to_str().unwrap(), tag]);
        assert!(
            out.status.success(),
            "importing {tag} into podman failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}
