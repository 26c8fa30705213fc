//! The finishing protocol: a second ssh session (`finish.sh`), opened beside the start session,
//! waits for the word. Once the callback (or the poll) says the job ended, the server says
//! `go DONE NONCE`; the session answers with the end (`exit`, the rest of the log from byte
//! DONE, `out/` as a tar stream, a trailer with the fresh nonce that proves the answer
//! complete), the server stores it all, says `ok`, and the same session removes the folder.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use super::Inner;
use super::artifacts;
use super::reap::Answer;
use super::shell::finish_script;
use super::sink::{End, LogSink};
use super::transport::{drain, failure, read_line};
use crate::error::ExecError;

/// What the finishing session found.
pub(super) enum Finished {
    /// The job still runs.
    Running,
    Vanished(String),
    /// The job ended and its log and artifacts came back (`artifacts` says why not all of
    /// them, if so); `session` waits for the word to remove the folder on the worker.
    Ended {
        end: End,
        artifacts: Result<(), String>,
        session: Box<Session>,
    },
}

pub(super) enum FinishError {
    /// No answer: nothing is known about the job.
    Unknown(ExecError),
    /// The job ended, but the end of its log or its artifacts did not all come back.
    Ended(End, ExecError),
}

/// A finishing session: an ssh `bash -s` that has read `finish.sh` and waits for the word
/// (`go DONE NONCE`). One is opened when a job starts, so that its end does not wait for ssh to
/// set up a session.
pub(super) struct Finisher {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Finisher {
    /// Opens a finishing session for the job folder `remote_dir` on the worker.
    pub(super) async fn open(inner: &Inner, remote_dir: &str) -> Result<Finisher, ExecError> {
        let mut cmd = inner.ssh("bash -s");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| inner.err("check the job", format!("cannot run ssh: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = tokio::spawn(drain(child.stderr.take().expect("stderr is piped")));
        // A few KiB: the pipe takes it at once.
        let script = finish_script(remote_dir);
        if let Err(e) = stdin.write_all(script.as_bytes()).await {
            let detail = format!("{e}; {}", failure(child, stderr).await);
            return Err(inner.err("check the job", detail));
        }
        Ok(Finisher {
            child,
            stdin,
            out,
            stderr,
        })
    }

    /// Says `go` and reads the first line of the answer.
    async fn ask(&mut self, done: u64, nonce: &str, limit: Duration) -> Result<String, String> {
        let word = format!("go {done} {nonce}\n");
        let r = tokio::time::timeout(limit, async {
            self.stdin.write_all(word.as_bytes()).await?;
            self.stdin.flush().await?;
            read_line(&mut self.out).await
        })
        .await;
        match r {
            Ok(Ok(Some(line))) => Ok(line),
            Err(_) => Err(format!("no answer within {}s", limit.as_secs_f64())),
            Ok(Ok(None)) => Err("the session ended without an answer".into()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }

    /// Why the session failed: its stderr or exit status.
    async fn failure(self) -> String {
        failure(self.child, self.stderr).await
    }
}

/// The finishing session after the job's end came back, waiting for the word to remove the job
/// folder.
pub(super) struct Session {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Session {
    /// Removes the job folder on the worker; whether that worked.
    pub(super) async fn remove(mut self: Box<Self>, limit: Duration) -> bool {
        let r = tokio::time::timeout(limit, async {
            self.stdin.write_all(b"ok\n").await?;
            self.stdin.flush().await?;
            read_line(&mut self.out).await
        })
        .await;
        let removed = matches!(r, Ok(Ok(Some(ref l))) if l == "removed");
        // The session ends by itself; reap it in the background.
        let mut child = self.child;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        });
        removed
    }
}

/// Says `go` through `opened` (a session opened earlier, if any and still alive, else a new
/// one): the session and the first line of its answer.
async fn ask(
    inner: &Inner,
    remote_dir: &str,
    done: u64,
    nonce: &str,
    opened: Option<Finisher>,
) -> Result<(Finisher, String), ExecError> {
    let limit = inner.cmd_limit();
    if let Some(mut f) = opened {
        // It may have died since (a dropped connection): then a new one.
        if let Ok(line) = f.ask(done, nonce, limit).await {
            return Ok((f, line));
        }
    }
    let mut f = Finisher::open(inner, remote_dir).await?;
    match f.ask(done, nonce, limit).await {
        Ok(line) => Ok((f, line)),
        Err(e) => {
            let detail = if e.starts_with("no answer") {
                e
            } else {
                f.failure().await
            };
            Err(inner.err("check the job", detail))
        }
    }
}

/// Looks at the job on the worker through `opened` (a session opened earlier, if any, else a
/// new one); once it ended, brings the rest of its log into `sink` and its artifacts into
/// `dir/out/` (see `finish.sh`).
pub(super) async fn finish(
    inner: &Inner,
    remote_dir: &str,
    dir: &Path,
    sink: &mut LogSink,
    opened: Option<Finisher>,
) -> Result<Finished, FinishError> {
    use FinishError::{Ended, Unknown};
    let nonce = hex::encode(rand::random::<[u8; 8]>());
    let (f, first) = ask(inner, remote_dir, sink.remote, &nonce, opened)
        .await
        .map_err(Unknown)?;
    tracing::debug!("ssh: the worker answers {first:?}");
    let code = match inner.answer(remote_dir, &first).map_err(Unknown)? {
        Answer::Running => return Ok(Finished::Running),
        Answer::Vanished(why) => return Ok(Finished::Vanished(why)),
        Answer::Exit(code) => code,
    };
    let Finisher {
        mut child,
        stdin,
        mut out,
        stderr,
    } = f;
    let mut end = End {
        code,
        canceled: false,
        timed_out: false,
        missing: Vec::new(),
    };

    // The job ended: the rest of the log, then the artifacts, within the time scp had.
    let tar_path = dir.join("out.fetch.tar");
    let mut log_done = false;
    let transfer = tokio::time::timeout(
        Duration::from_secs(300),
        receive(&mut out, sink, &mut end, &mut log_done, &tar_path, &nonce),
    )
    .await;
    let what = if log_done {
        "fetch the artifacts"
    } else {
        "fetch the end of the log"
    };
    let (kind, found) = match transfer {
        Ok(Ok(answer)) => answer,
        Err(_) => {
            let _ = tokio::fs::remove_file(&tar_path).await;
            return Err(Ended(end, inner.err(what, "took over 300s")));
        }
        Ok(Err(e)) => {
            let _ = tokio::fs::remove_file(&tar_path).await;
            let _ = child.start_kill();
            let detail = format!("{e}; {}", failure(child, stderr).await);
            return Err(Ended(end, inner.err(what, detail)));
        }
    };
    let Some((tar_len, rc, tar_err)) = found else {
        let _ = tokio::fs::remove_file(&tar_path).await;
        let detail = failure(child, stderr).await;
        let detail = format!("the transfer was cut short ({detail})");
        return Err(Ended(end, inner.err("fetch the artifacts", detail)));
    };
    let artifacts = match kind.as_str() {
        "tar" => artifacts::unpack_into_out(dir, &tar_path, tar_len)
            .await
            .and_then(|()| match rc {
                0 => Ok(()),
                _ => Err(format!("tar on the worker exited with {rc}: {tar_err}")),
            }),
        "empty" => Ok(()),
        _ => artifacts::fetch_with_scp(inner, remote_dir, dir)
            .await
            .map_err(|e| e.to_string()),
    };
    let _ = tokio::fs::remove_file(&tar_path).await;
    Ok(Finished::Ended {
        end,
        artifacts,
        session: Box::new(Session { child, stdin, out }),
    })
}

/// `(tar length, tar's exit code, tar's message)` once the trailer was seen.
type Trailer = (u64, i32, String);

/// Reads the answer after `exit CODE`: the flags, the log's end into `sink`, then what comes
/// of `out/` (`empty`, `tar` or `notar`) and everything up to the trailer into `tar_path`.
async fn receive(
    out: &mut BufReader<ChildStdout>,
    sink: &mut LogSink,
    end: &mut End,
    log_done: &mut bool,
    tar_path: &Path,
    nonce: &str,
) -> std::io::Result<(String, Option<Trailer>)> {
    let n: u64 = loop {
        let line = read_line(out).await?.unwrap_or_default();
        match line.as_str() {
            "canceled" => end.canceled = true,
            "timed_out" => end.timed_out = true,
            l if l.starts_with("missing ") => end.missing.push(l[8..].to_owned()),
            l if l.starts_with("log ") => break l[4..].trim().parse().unwrap_or(0),
            _ => return Err(std::io::Error::other(format!("unexpected answer {line:?}"))),
        }
    };
    let mut left = n;
    while left > 0 {
        let buf = out.fill_buf().await?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        sink.push(&buf[..k]).await;
        out.consume(k);
        left -= k as u64;
    }
    *log_done = true;
    let kind = read_line(out).await?.unwrap_or_default();
    // Up to the trailer, which ends the answer (the session stays open: the end of its output
    // shows only when it exits, as sshd gives it one socket for stdin and stdout).
    let mut f = tokio::fs::File::create(tar_path).await?;
    let mut total = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let found = loop {
        let buf = out.fill_buf().await?;
        if buf.is_empty() {
            break None;
        }
        let n = buf.len();
        f.write_all(buf).await?;
        tail.extend_from_slice(&buf[buf.len().saturating_sub(TRAILER_MAX)..]);
        tail.drain(..tail.len().saturating_sub(TRAILER_MAX));
        out.consume(n);
        total += n as u64;
        if let Some((at, rc, msg)) = trailer(&tail, nonce) {
            break Some((total - (tail.len() - at) as u64, rc, msg));
        }
    };
    f.flush().await?;
    Ok((kind, found))
}

/// The longest trailer (its message is at most 500 bytes).
const TRAILER_MAX: usize = 600;

/// `(where the trailer starts, tar's exit code, tar's message)` if `data` ends with the
/// finishing script's trailer `\nBATON-END-<nonce> <code> <message>\n`. The nonce is fresh for
/// every session, so nothing in the artifacts can pass for it.
pub(super) fn trailer(data: &[u8], nonce: &str) -> Option<(usize, i32, String)> {
    let mark = format!("\nBATON-END-{nonce} ");
    let body = data.strip_suffix(b"\n")?;
    let at = body
        .windows(mark.len())
        .rposition(|w| w == mark.as_bytes())?;
    let rest = &body[at + mark.len()..];
    if rest.contains(&b'\n') {
        return None;
    }
    let (code, msg) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let code = std::str::from_utf8(code).ok()?.parse().ok()?;
    Some((at, code, String::from_utf8_lossy(msg).trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_is_found_only_at_the_very_end_with_the_nonce() {
        let n = "0123456789abcdef";
        let data = b"tar bytes\nBATON-END-0123456789abcdef 0 \n";
        assert_eq!(trailer(data, n), Some((9, 0, String::new())));
        let data = b"xx\nBATON-END-0123456789abcdef 2 tar: a: Cannot open\n";
        assert_eq!(trailer(data, n), Some((2, 2, "tar: a: Cannot open".into())));
        assert_eq!(
            trailer(b"xx\nBATON-END-0123456789abcdef 0 \nmore\n", n),
            None
        );
        assert_eq!(trailer(b"xx\nBATON-END-0123456789abcdef 0 ", n), None);
        assert_eq!(trailer(b"xx\nBATON-END-ffffffffffffffff 0 \n", n), None);
    }
}
