//! How the server talks to a worker: the system OpenSSH client with one reused `ControlMaster`
//! connection per worker, short bounded commands, and sessions that stay open (`bash -s` reading
//! a script on stdin).

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::Inner;
use crate::callback;
use crate::error::ExecError;

/// `user@host:port` → (`user@host`, port). Several colons (IPv6) are left alone.
pub(super) fn split_host(h: &str) -> (String, Option<u16>) {
    let (user, rest) = match h.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, h),
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (rest, None),
    };
    let dest = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    };
    (dest, port)
}

fn hint(detail: &str) -> String {
    let d = detail.trim();
    let h = if d.contains("Host key verification failed") || d.contains("host key") {
        " (hint: add the worker's host key to server.known_hosts, e.g. with ssh-keyscan)"
    } else if d.contains("Permission denied") {
        " (hint: put the public half of server.ssh_key into the worker's ~/.ssh/authorized_keys)"
    } else if d.contains("git: command not found") {
        " (hint: the worker needs git to check out a repository's commit; a task with checkout: false does not)"
    } else if d.contains("dtach: command not found") || d.contains("curl: command not found") {
        " (hint: the worker needs dtach and curl installed)"
    } else {
        ""
    };
    format!("{d}{h}")
}

/// Whether an ssh failure happened before any command could run on the worker (or the
/// worker refused to start the job), so the job cannot have started.
pub(super) fn never_connected(e: &ExecError) -> bool {
    let ExecError::Ssh { detail, .. } = e else {
        return true;
    };
    [
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Could not resolve",
        "Permission denied",
        "Host key verification failed",
        "cannot run ssh",
        "already started",
        "command not found",
    ]
    .iter()
    .any(|m| detail.contains(m))
}

/// An open ssh session whose stdout is the remote log from the sink's offset on.
pub(super) struct Stream {
    pub(super) child: Child,
    /// Open while following (closing it ends the follower on the worker).
    pub(super) stdin: ChildStdin,
    pub(super) out: ChildStdout,
    /// Log bytes already read from `out` (behind the start session's `started` line).
    pub(super) pending: Vec<u8>,
}

impl Inner {
    pub(super) fn err(&self, action: &'static str, detail: impl AsRef<str>) -> ExecError {
        ExecError::Ssh {
            worker: self.s.worker.clone(),
            host: self.s.host.clone(),
            action,
            detail: hint(detail.as_ref()),
        }
    }

    /// Options shared by ssh and scp.
    pub(super) fn opts(&self) -> Vec<OsString> {
        let connect = self.s.heartbeat_timeout.as_secs().clamp(1, 10);
        let mut o: Vec<OsString> = Vec::new();
        let mut opt = |s: String| {
            o.push("-o".into());
            o.push(s.into());
        };
        opt("BatchMode=yes".into());
        opt("ControlMaster=auto".into());
        // One master connection per worker (not per host): several workers on one host would
        // otherwise share one connection and could exceed sshd's MaxSessions (default 10).
        let tag = &hex::encode(callback::token_hash(&self.s.worker))[..8];
        opt(format!(
            "ControlPath={}/{tag}-%C",
            self.s.control_dir.display()
        ));
        opt("ControlPersist=60".into());
        opt("StrictHostKeyChecking=yes".into());
        opt(format!("ConnectTimeout={connect}"));
        opt("ServerAliveInterval=2".into());
        opt("ServerAliveCountMax=3".into());
        opt("LogLevel=ERROR".into());
        if let Some(k) = &self.s.known_hosts {
            opt(format!("UserKnownHostsFile={}", k.display()));
        }
        if let Some(k) = &self.s.key {
            opt(format!("IdentityFile={}", k.display()));
            opt("IdentitiesOnly=yes".into());
        }
        if let Some(p) = self.port {
            opt(format!("Port={p}"));
        }
        o
    }

    pub(super) fn ssh(&self, remote_cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.opts())
            .arg("--")
            .arg(&self.dest)
            .arg(remote_cmd)
            .kill_on_drop(true);
        c
    }

    /// Time limit of one short command.
    pub(super) fn cmd_limit(&self) -> Duration {
        self.s
            .heartbeat_timeout
            .clamp(Duration::from_secs(2), Duration::from_secs(20))
    }

    /// How often a running job is polled.
    pub(super) fn poll_every(&self) -> Duration {
        (self.s.heartbeat_timeout / 3).clamp(Duration::from_millis(300), Duration::from_secs(5))
    }

    /// Runs `remote_cmd` on the worker (stdin from `input`), bounded by `limit`; its stdout.
    pub(super) async fn run(
        &self,
        action: &'static str,
        remote_cmd: &str,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Vec<u8>, ExecError> {
        let mut cmd = self.ssh(remote_cmd);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| self.err(action, format!("cannot run ssh: {e}")))?;
        let run = async {
            if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(data).await?;
                stdin.shutdown().await?;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(limit, run).await {
            Err(_) => Err(self.err(action, format!("no answer within {}s", limit.as_secs_f64()))),
            Ok(Err(e)) => Err(self.err(action, format!("ssh failed: {e}"))),
            Ok(Ok(out)) if out.status.success() => Ok(out.stdout),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let detail = if stderr.trim().is_empty() {
                    format!("ssh exited with {}", out.status)
                } else {
                    stderr.trim().to_string()
                };
                Err(self.err(action, detail))
            }
        }
    }

    /// The job folder on the worker of the server's job folder `dir` (`…/<job>/<attempt>`).
    pub(super) fn remote_dir(&self, dir: &Path) -> String {
        let attempt = dir.file_name().and_then(|n| n.to_str()).unwrap_or("1");
        let job = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("0");
        format!(
            "{}/jobs/{job}/{attempt}",
            self.s.work_dir.trim_end_matches('/')
        )
    }

    /// Runs the start script (`bash -s`), which ends by following the log: the open stream
    /// once the worker said `started`.
    pub(super) async fn start_session(&self, setup: &str) -> Result<Stream, ExecError> {
        let action = "start the job";
        let mut cmd = self.ssh("bash -s");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| self.err(action, format!("cannot run ssh: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut out = child.stdout.take().expect("stdout is piped");
        let stderr = tokio::spawn(drain(child.stderr.take().expect("stderr is piped")));
        const STARTED: &[u8] = b"started\n";
        let limit = self.cmd_limit() * 3;
        let answer = tokio::time::timeout(limit, async {
            // stdin stays open: the log follower ends when it closes.
            stdin.write_all(setup.as_bytes()).await?;
            stdin.flush().await?;
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            while got.len() < STARTED.len() {
                let n = out.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            std::io::Result::Ok(got)
        })
        .await;
        match answer {
            Ok(Ok(mut got)) if got.starts_with(STARTED) => {
                let pending = got.split_off(STARTED.len());
                Ok(Stream {
                    child,
                    stdin,
                    out,
                    pending,
                })
            }
            Ok(Ok(got)) if !got.is_empty() => {
                let _ = child.start_kill();
                let detail = format!(
                    "unexpected answer {:?} from the worker",
                    String::from_utf8_lossy(&got)
                );
                Err(self.err(action, detail))
            }
            Ok(_) => Err(self.err(action, failure(child, stderr).await)),
            Err(_) => {
                let _ = child.start_kill();
                let detail = format!("no answer within {}s", limit.as_secs_f64());
                Err(self.err(action, detail))
            }
        }
    }
}

/// Reads a child's stderr to its end, keeping the first 64 KiB.
pub(super) async fn drain(mut r: ChildStderr) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) if kept.len() < 64 * 1024 => kept.extend_from_slice(&buf[..n]),
            Ok(_) => {}
        }
    }
}

/// Why an ssh session ended without the answer we expected: its stderr, or its exit status.
pub(super) async fn failure(mut child: Child, stderr: JoinHandle<Vec<u8>>) -> String {
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(st)) => Some(st),
        _ => {
            let _ = child.start_kill();
            None
        }
    };
    let text = match tokio::time::timeout(Duration::from_secs(1), stderr).await {
        Ok(Ok(v)) => String::from_utf8_lossy(&v).trim().to_string(),
        _ => String::new(),
    };
    match status {
        _ if !text.is_empty() => text,
        Some(st) => format!("ssh exited with {st}"),
        None => "ssh did not exit".into(),
    }
}

/// One line of a session's answer, without its newline (`None` at the end).
pub(super) async fn read_line(out: &mut BufReader<ChildStdout>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    (&mut *out).take(4096).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the answer was cut short",
        ));
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_destination_and_port() {
        assert_eq!(split_host("u@h:2222"), ("u@h".into(), Some(2222)));
        assert_eq!(split_host("u@h"), ("u@h".into(), None));
        assert_eq!(split_host("h:22"), ("h".into(), Some(22)));
        assert_eq!(split_host("u@fe80::1"), ("u@fe80::1".into(), None));
    }
}
