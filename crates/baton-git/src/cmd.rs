//! Running `git`: argv only (never a shell), a clean environment, errors carrying git's stderr.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Why a git operation failed. Messages carry git's own stderr, with passwords in URLs hidden.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    #[error("could not run git: {source} (hint: install git 2.38 or newer on the server's PATH)")]
    Spawn { source: Arc<io::Error> },
    #[error("`git {args}` in {} failed ({status}): {stderr}", dir.display())]
    Failed {
        args: String,
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("`git {args}` printed something unexpected: {detail}")]
    Output { args: String, detail: String },
    #[error("{given:?} is not a full object id (40 or 64 hex digits)")]
    BadOid { given: String },
    #[error("{what} {given:?} is not allowed: {reason}")]
    BadArgument {
        what: &'static str,
        given: String,
        reason: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error(
        "{} exists and is not a bare git repository (hint: move it away; Baton recreates the mirror)",
        path.display()
    )]
    NotAMirror { path: PathBuf },
    #[error(
        "commit {0} is not in the mirror (hint: fetch first; a force-push may have dropped it)"
    )]
    MissingCommit(String),
    #[error("could not {what} in {}: {detail}", dir.display())]
    InProcess {
        what: String,
        dir: PathBuf,
        detail: String,
    },
    #[error(
        "{dir}/ at {commit} holds {size} bytes, more than the limit of {limit} bytes (hint: keep CI files small)"
    )]
    TooLarge {
        dir: String,
        commit: String,
        size: u64,
        limit: u64,
    },
}

impl GitError {
    pub(crate) fn io(path: &Path, e: io::Error) -> GitError {
        GitError::Io {
            path: path.to_owned(),
            source: Arc::new(e),
        }
    }
}

/// The environment every git process gets, and nothing else from Baton's own environment.
///
/// Git runs with `GIT_CONFIG_NOSYSTEM=1` and `GIT_CONFIG_GLOBAL=/dev/null` (no user or system
/// config can add hooks, aliases, credential helpers or URL rewrites), `GIT_TERMINAL_PROMPT=0`
/// and ssh in batch mode (a missing credential fails instead of waiting for a prompt), `LC_ALL=C`,
/// `HOME` at `home` (default `/nonexistent`), and the inherited `PATH`. `vars` adds more
/// (for example `GIT_SSH_COMMAND` with a deploy key) and wins over the defaults; `config` is
/// git config given through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (never in
/// argv, so a credential there is not in the process list). `Debug` shows no value.
#[derive(Clone, Default)]
pub struct GitEnv {
    pub home: Option<PathBuf>,
    pub vars: Vec<(String, String)>,
    pub config: Vec<(String, String)>,
}

impl fmt::Debug for GitEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vars: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        let config: Vec<&str> = self.config.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("GitEnv")
            .field("home", &self.home)
            .field("vars", &vars)
            .field("config", &config)
            .finish()
    }
}

/// Config every command runs with, on top of the repository's own.
const SAFE_CONFIG: &[&str] = &[
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "advice.fetchShowForcedUpdates=false",
];

/// Where a command runs: against a (bare) git directory or inside a working tree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At<'a> {
    GitDir(&'a Path),
    WorkTree(&'a Path),
    Nowhere,
}

/// One git invocation.
pub(crate) struct Git<'a> {
    pub(crate) env: &'a GitEnv,
    pub(crate) at: At<'a>,
    pub(crate) args: Vec<OsString>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) extra_env: Vec<(&'static str, String)>,
}

/// What a finished git process left.
pub(crate) struct Finished {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl<'a> Git<'a> {
    pub(crate) fn new(env: &'a GitEnv, at: At<'a>) -> Git<'a> {
        Git {
            env,
            at,
            args: Vec::new(),
            stdin: None,
            extra_env: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, items: I) -> Self {
        self.args.extend(items.into_iter().map(Into::into));
        self
    }

    pub(crate) fn stdin(mut self, input: Vec<u8>) -> Self {
        self.stdin = Some(input);
        self
    }

    pub(crate) fn env(mut self, key: &'static str, value: String) -> Self {
        self.extra_env.push((key, value));
        self
    }

    fn dir(&self) -> PathBuf {
        match self.at {
            At::GitDir(p) | At::WorkTree(p) => p.to_owned(),
            At::Nowhere => PathBuf::from("."),
        }
    }

    /// The arguments as shown in errors, with URL passwords hidden.
    fn shown_args(&self) -> String {
        let words: Vec<String> = self
            .args
            .iter()
            .map(|a| redact(&a.to_string_lossy()))
            .collect();
        words.join(" ")
    }

    /// The process to spawn: the cleared environment, the safe config, the place, the args.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(git_program());
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let home = self
            .env
            .home
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent"));
        cmd.env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("LC_ALL", "C");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in &self.env.vars {
            cmd.env(k, v);
        }
        if !self.env.config.is_empty() {
            cmd.env("GIT_CONFIG_COUNT", self.env.config.len().to_string());
            for (i, (k, v)) in self.env.config.iter().enumerate() {
                cmd.env(format!("GIT_CONFIG_KEY_{i}"), k);
                cmd.env(format!("GIT_CONFIG_VALUE_{i}"), v);
            }
        }
        cmd.args(SAFE_CONFIG);
        match self.at {
            At::GitDir(p) => {
                cmd.arg("--git-dir").arg(p);
            }
            At::WorkTree(p) => {
                cmd.arg("-C").arg(p);
            }
            At::Nowhere => {}
        }
        cmd.args(&self.args).kill_on_drop(true);
        cmd
    }

    /// Runs git and returns what it left, whatever its exit status.
    pub(crate) async fn run(self) -> Result<(Finished, Self), GitError> {
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| GitError::Spawn {
            source: Arc::new(e),
        })?;
        if let (Some(input), Some(mut pipe)) = (self.stdin.as_ref(), child.stdin.take()) {
            // Written while git runs: reading stdout concurrently avoids a pipe deadlock.
            let input = input.clone();
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| GitError::Spawn {
                source: Arc::new(e),
            })?;
        let finished = Finished {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: shorten(&redact(String::from_utf8_lossy(&out.stderr).trim())),
        };
        Ok((finished, self))
    }

    /// Runs git and returns its stdout when it exits 0.
    pub(crate) async fn output(self) -> Result<Vec<u8>, GitError> {
        let (done, git) = self.run().await?;
        if done.code == Some(0) {
            Ok(done.stdout)
        } else {
            Err(git.failed(&done))
        }
    }

    pub(crate) fn failed(&self, done: &Finished) -> GitError {
        GitError::Failed {
            args: self.shown_args(),
            dir: self.dir(),
            status: match done.code {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_owned(),
            },
            stderr: if done.stderr.is_empty() {
                "(no message)".to_owned()
            } else {
                done.stderr.clone()
            },
        }
    }

    pub(crate) fn unexpected(&self, detail: impl fmt::Display) -> GitError {
        GitError::Output {
            args: self.shown_args(),
            detail: detail.to_string(),
        }
    }
}

/// `git` found on the inherited `PATH` (the one every git process gets), as an absolute path:
/// the standard library spawns a program named by path with `posix_spawn` (no copy of this
/// process's page tables, no `execve` tried in each `PATH` folder before git's), while a bare
/// name with `PATH` set for the child forks first. Found once; plain `git` while not found.
fn git_program() -> OsString {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = FOUND.get() {
        return p.clone().into_os_string();
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("git"))
            .find(|p| is_executable(p))
    });
    match found {
        Some(p) => FOUND.get_or_init(|| p).clone().into_os_string(),
        None => OsString::from("git"),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Hides the password of every `scheme://user:password@host` in `text`.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') => {
                let user = authority[..at].split(':').next().unwrap_or_default();
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            Some(_) => out.push_str(authority),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Keeps error messages readable: at most 4 KiB of git's stderr.
fn shorten(s: &str) -> String {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact("fatal: unable to access 'https://bob:s3cret@host/r.git/': 403"),
            "fatal: unable to access 'https://bob:***@host/r.git/': 403"
        );
        assert_eq!(
            redact("https://host/r and ssh://git@h/x"),
            "https://host/r and ssh://git@h/x"
        );
        assert_eq!(redact("no urls"), "no urls");
    }

    #[test]
    fn long_stderr_is_shortened_on_a_char_boundary() {
        let s = "é".repeat(3000);
        let short = shorten(&s);
        assert!(short.len() < 4200);
        assert!(short.ends_with("more bytes)"));
    }
}
