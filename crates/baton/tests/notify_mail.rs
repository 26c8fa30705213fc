//! Run-end notifications by mail end to end: the real binary and a real SMTP server on
//! loopback (Python's `aiosmtpd`, installed by this test into a venv under `target/` from
//! PyPI, storing what it receives in a maildir). One mail per matching run end, to every
//! address, none for a non-matching status. The test fails loudly if the sink cannot start.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, WAIT, id_of};

const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// The venv with `aiosmtpd`, made once under the workspace's `target/`.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/notify-smtp/venv");
    let python = dir.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let out = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&dir)
            .output()
            .expect("python3 is needed for the SMTP sink of this test");
        assert!(
            out.status.success(),
            "python3 -m venv {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", AIOSMTPD])
            .output()
            .expect("cannot run pip of the venv");
        assert!(
            out.status.success(),
            "pip install {AIOSMTPD} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

/// `aiosmtpd` on a free loopback port, writing each message into `maildir/new/`.
struct Sink {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Sink {
    fn start(root: &Path) -> Sink {
        let python = venv();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = root.join("maildir");
        let mut child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start aiosmtpd");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                panic!("the SMTP sink (aiosmtpd) exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP sink (aiosmtpd) did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sink {
            child,
            port,
            maildir,
        }
    }

    fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_mailed_once_to_every_address_and_a_success_is_not() {
    let root = tempfile::tempdir().unwrap();
    let sink = Sink::start(root.path());
    let config = format!(
        "tasks:\n  ok:\n    command: \"true\"\n  bad:\n    command: exit 3\nnotify:\n  - email: [dev@example.com, ops@example.com]\n    smtp: {{host: 127.0.0.1, port: {}, from: ci@example.com}}\n    tasks: [ok, bad]\n    on: [failed]\n",
        sink.port
    );
    let s = Server::start(&config);
    let ok = id_of(&s.trigger("ok", &[]).await);
    assert_eq!(s.wait_run(ok).await["status"], "success");
    let bad = id_of(&s.trigger("bad", &[]).await);
    assert_eq!(s.wait_run(bad).await["status"], "failed");
    let deadline = Instant::now() + WAIT;
    let mails = loop {
        let mails = sink.mails();
        if !mails.is_empty() {
            break mails;
        }
        assert!(Instant::now() < deadline, "no mail arrived\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // `ok` ended before `bad`, so its end was fanned out already: one mail in all.
    assert_eq!(
        s.sql("SELECT COUNT(*) FROM notifications WHERE webhook IS NOT NULL"),
        "1"
    );
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert!(mail.contains("From: ci@example.com"), "{mail}");
    assert!(
        mail.contains("dev@example.com") && mail.contains("ops@example.com"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("Subject: [baton] bad #{bad} failed")),
        "{mail}"
    );
    assert!(mail.contains(&format!("\"run_id\":{bad}")), "{mail}");
    assert_eq!(s.run(bad).await["status"], "failed");
}
