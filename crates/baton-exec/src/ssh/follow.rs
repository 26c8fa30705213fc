//! The log follower of a running job: a task that streams the remote log (`follow.sh`) into the
//! job's [`LogSink`] until the runner ends or the job's waiter stops it, reopening the stream
//! from the sink's offset whenever one breaks.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Inner;
use super::shell::follow_script;
use super::sink::LogSink;
use super::transport::Stream;

/// The follower task and the switch that stops it.
pub(super) struct Follower {
    pub(super) task: JoinHandle<LogSink>,
    stop: watch::Sender<bool>,
}

impl Follower {
    /// Follows `remote_dir`'s log into `sink`; `first` is a stream already open (the start
    /// session).
    pub(super) fn spawn(
        inner: &Arc<Inner>,
        remote_dir: &str,
        sink: LogSink,
        first: Option<Stream>,
    ) -> Self {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(stream_log(
            inner.clone(),
            remote_dir.to_string(),
            sink,
            rx,
            first,
        ));
        Follower { task, stop }
    }

    /// Stops following; the sink back (`None` if the task panicked).
    pub(super) async fn stop(self) -> Option<LogSink> {
        let _ = self.stop.send(true);
        self.task.await.ok()
    }
}

/// Opens a follow session from the sink's offset (`None` if ssh cannot even start).
async fn open_stream(inner: &Inner, remote_dir: &str, from: u64) -> Option<Stream> {
    tracing::debug!("ssh: following the log of {remote_dir} from byte {from}");
    let mut c = inner.ssh("bash -s");
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().ok()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let out = child.stdout.take().expect("stdout is piped");
    let script = follow_script(remote_dir, from);
    // About a kilobyte: the pipe takes it at once.
    let _ = stdin.write_all(script.as_bytes()).await;
    Some(Stream {
        child,
        stdin,
        out,
        pending: Vec::new(),
    })
}

/// How one stream ended.
enum Ended {
    /// The runner is gone (`tail --pid` exited 0).
    Runner,
    /// The stream broke: open another.
    Broken,
    /// The waiter said stop.
    Stopped,
}

/// Streams the remote log into `sink` until the runner ends (`tail --pid` exits 0) or `stop`.
/// `first` is a stream already open (the start session); later ones are opened here, from the
/// sink's offset, after a short pause whenever one breaks.
async fn stream_log(
    inner: Arc<Inner>,
    remote_dir: String,
    mut sink: LogSink,
    mut stop: watch::Receiver<bool>,
    mut first: Option<Stream>,
) -> LogSink {
    loop {
        if *stop.borrow() {
            return sink;
        }
        let stream = match first.take() {
            Some(s) => Some(s),
            None => open_stream(&inner, &remote_dir, sink.remote).await,
        };
        if let Some(stream) = stream {
            match pump(stream, &mut sink, &mut stop).await {
                Ended::Runner | Ended::Stopped => return sink,
                Ended::Broken => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return sink },
        }
    }
}

/// Copies one stream into the sink until it ends or `stop`.
async fn pump(stream: Stream, sink: &mut LogSink, stop: &mut watch::Receiver<bool>) -> Ended {
    let Stream {
        mut child,
        stdin,
        mut out,
        pending,
    } = stream;
    if !pending.is_empty() {
        sink.push(&pending).await;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = out.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.push(&buf[..n]).await,
            },
            r = stop.changed() => if r.is_err() || *stop.borrow() {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Ended::Stopped;
            },
        }
    }
    drop(stdin);
    match child.wait().await {
        Ok(st) if st.success() => Ended::Runner,
        _ => Ended::Broken,
    }
}
