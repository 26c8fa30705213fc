//! The servers of a cluster for the tests: `baton serve` processes on one PostgreSQL database
//! and one data directory (`root/data`, config in `root/config`). Included with `#[path]` next
//! to `common`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::common::BIN;

/// One `baton serve` of the cluster.
pub struct Node {
    pub name: &'static str,
    pub base: String,
    pub child: Option<Child>,
    pub stderr: PathBuf,
    /// Its first line: `baton ready on …` (active) or `baton standby on …`.
    pub first: String,
}

impl Node {
    pub fn start(name: &'static str, root: &Path, db: &str) -> Node {
        Node::start_ttl(name, root, db, "2s")
    }

    /// Starts server `name` with leases of `ttl`; waits for its first line.
    pub fn start_ttl(name: &'static str, root: &Path, db: &str, ttl: &str) -> Node {
        let stderr = root.join(format!("{name}.stderr"));
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--lease-ttl", ttl])
            .args(["--server-id", name, "--db", db])
            .arg("--config")
            .arg(root.join("config"))
            .arg("--data")
            .arg(root.join("data"))
            .env_remove("BATON_TOKEN")
            .env_remove("BATON_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn baton serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "server {name} printed no first line ({e})\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            });
        let addr = ["baton ready on http://", "baton standby on http://"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("server {name}: unexpected first line {line:?}"))
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(':')
            .to_owned();
        // Later lines (a standby's "took over …", then its ready line) are drained.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Node {
            name,
            base: format!("http://{addr}"),
            child: Some(child),
            stderr,
            first: line,
        }
    }

    pub fn stderr(&self) -> String {
        format!(
            "--- {} stderr ---\n{}",
            self.name,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn baton(args: &[&str], root: &Path, db: &str) -> String {
    let o = Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(root.join("data"))
        .args(["--db", db])
        .env_remove("BATON_DATA")
        .env_remove("BATON_DB")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "baton {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub const HELLO: &str = "tasks:\n  hello:\n    command: echo hello\n";

/// Starts a two-server cluster (a active, b standby) on a fresh database with `ttl` leases.
pub fn pair(root: &Path, db: &str, ttl: &str, config: &str) -> (Node, Node) {
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("config/baton.yaml"), config).unwrap();
    let a = Node::start_ttl("a", root, db, ttl);
    assert!(a.first.starts_with("baton ready on"), "{}", a.first);
    let b = Node::start_ttl("b", root, db, ttl);
    assert!(b.first.starts_with("baton standby on"), "{}", b.first);
    (a, b)
}

pub async fn health(http: &reqwest::Client, n: &Node) -> Option<Value> {
    let r = http.get(format!("{}/healthz", n.base)).send().await.ok()?;
    r.json().await.ok()
}
