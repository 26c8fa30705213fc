//! Real repositories for the tests: `git init` in temporary directories, commits made with the
//! `git` CLI.

#![allow(dead_code)]

pub mod tree;

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_git::Oid;

/// A repository on disk that plays the forge's side.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    tick: std::sync::atomic::AtomicU64,
}

impl Upstream {
    pub fn new() -> Upstream {
        let up = Upstream {
            dir: tempfile::tempdir().unwrap(),
            tick: std::sync::atomic::AtomicU64::new(0),
        };
        up.git(&["init", "--quiet", "--initial-branch=main"]);
        up
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        self.path().to_str().unwrap().to_owned()
    }

    /// Runs git in the repository and returns its stdout; panics with stderr on failure.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(
            self.path(),
            args,
            self.tick.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    pub fn write(&self, path: &str, contents: &[u8]) {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
    }

    /// Stages everything and commits; returns the new commit's id.
    pub fn commit(&self, message: &str) -> Oid {
        self.tick.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> Oid {
        Oid::parse(self.git(&["rev-parse", "HEAD"]).trim()).unwrap()
    }
}

/// Runs git in `dir` with a fixed identity and date, and no user config.
pub fn git_in(dir: &Path, args: &[&str], tick: u64) -> String {
    let date = format!("{} +0000", 1_700_000_000 + tick * 60);
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh directory for a mirror, inside a temporary directory that lives as long as the value.
pub fn mirror_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("mirrors").join("repo.git");
    (t, p)
}
