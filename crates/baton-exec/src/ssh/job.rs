//! Waiting for a job on an SSH worker: a follower streams its log while the waiter listens for
//! the callback, the follower's end and (as a fallback) a poll of the worker; then the
//! finishing session brings the end back, or the job is given up on ([`Outcome::Lost`]) when
//! the worker stays unreachable past the heartbeat timeout.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::finish::{FinishError, Finished, Finisher, finish};
use super::follow::Follower;
use super::reap::{Probe, reap};
use super::sink::LogSink;
use super::transport::Stream;
use super::{Inner, SshJobInfo};
use crate::error::ExecError;
use crate::executor::{BoxFuture, RunningJob};
use crate::job::Outcome;

/// A job running on an SSH worker.
pub(super) struct SshJob {
    pub(super) inner: Arc<Inner>,
    pub(super) dir: PathBuf,
    pub(super) info: SshJobInfo,
    pub(super) job_id: i64,
    pub(super) notify: Arc<Notify>,
    pub(super) sink: LogSink,
    /// The secrets to mask (to reopen the sink if its task ever failed).
    pub(super) mask: Vec<String>,
    /// The start session, already following the log.
    pub(super) first: Option<Stream>,
    /// A finishing session opened with the start.
    pub(super) finisher: Option<Finisher>,
    /// Whether to look at the worker before anything else (re-attached, or unsure whether the
    /// start went through): the job may have ended already.
    pub(super) check_first: bool,
    /// Re-attached: the job's secret values are read back from the worker (its `secrets.sh`)
    /// and added to `mask` before any byte of its log is taken in.
    pub(super) reread_secrets: bool,
}

impl RunningJob for SshJob {
    fn wait(self: Box<Self>) -> BoxFuture<'static, Outcome> {
        Box::pin(Waiter::wait(*self))
    }
}

/// The state of a wait: either the follower owns the sink, or it is `idle` here.
struct Waiter {
    inner: Arc<Inner>,
    dir: PathBuf,
    info: SshJobInfo,
    job_id: i64,
    notify: Arc<Notify>,
    mask: Vec<String>,
    remote_dir: String,
    idle: Option<LogSink>,
    follower: Option<Follower>,
    finisher: Option<Finisher>,
    last_contact: Instant,
    failing_since: Option<Instant>,
    /// See [`SshJob::reread_secrets`]; cleared once they are read.
    reread_secrets: bool,
}

/// What to do next: look at the job's end now (`true`) or keep watching (`false`), or the
/// job's outcome.
type Next = ControlFlow<Outcome, bool>;

impl Waiter {
    async fn wait(job: SshJob) -> Outcome {
        let remote_dir = job.info.remote_dir.clone();
        let mut w = Waiter {
            inner: job.inner,
            dir: job.dir,
            info: job.info,
            job_id: job.job_id,
            notify: job.notify,
            mask: job.mask,
            remote_dir,
            idle: None,
            follower: None,
            finisher: job.finisher,
            last_contact: Instant::now(),
            failing_since: None,
            reread_secrets: job.reread_secrets,
        };
        if job.check_first || job.reread_secrets {
            w.idle = Some(job.sink);
        } else {
            w.follower = Some(Follower::spawn(
                &w.inner,
                &w.remote_dir,
                job.sink,
                job.first,
            ));
        }
        let mut check = job.check_first || job.reread_secrets;
        loop {
            let next = if check {
                w.check_end().await
            } else {
                w.watch().await
            };
            match next {
                ControlFlow::Break(outcome) => return outcome,
                ControlFlow::Continue(c) => check = c,
            }
        }
    }

    /// Gives up on the job: unregisters its callback and leaves the cleanup to a reaper.
    fn lost(&self, sink: Option<LogSink>, why: String) -> Next {
        self.inner.hub.unregister(self.job_id);
        reap(self.inner.clone(), self.remote_dir.clone(), sink);
        ControlFlow::Break(Outcome::Lost(why))
    }

    fn unreachable(&self, e: &ExecError) -> String {
        format!(
            "worker {} unreachable for more than {}s: {e}",
            self.inner.s.worker,
            self.inner.s.heartbeat_timeout.as_secs_f64()
        )
    }

    /// The sink back from the follower (or from `idle`), reopened from disk if the follower
    /// panicked (the offsets on disk are exact).
    async fn take_sink(&mut self) -> Result<LogSink, ExecError> {
        let sink = match self.follower.take() {
            Some(f) => f.stop().await,
            None => self.idle.take(),
        };
        match sink {
            Some(s) => Ok(s),
            None => LogSink::open(&self.dir, &self.mask).await,
        }
    }

    /// Reads the job's secret values back from the worker into the mask, and reopens the idle
    /// sink with them (it has taken in nothing yet). `Break` when the worker stayed unreachable
    /// past the heartbeat timeout; `Continue(true)` to try again.
    async fn reread_secrets(&mut self) -> ControlFlow<Next> {
        match self.inner.read_secrets(&self.remote_dir).await {
            Ok(values) => {
                self.last_contact = Instant::now();
                self.mask.extend(values);
                self.reread_secrets = false;
                // The sink reopens from disk with the whole mask (see `take_sink`).
                drop(self.idle.take());
                ControlFlow::Continue(())
            }
            Err(e) => {
                if self.last_contact.elapsed() >= self.inner.s.heartbeat_timeout {
                    // No sink to the reaper: the rest of the log is not copied without the
                    // values that mask it.
                    drop(self.idle.take());
                    return ControlFlow::Break(self.lost(None, self.unreachable(&e)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                ControlFlow::Break(ControlFlow::Continue(true))
            }
        }
    }

    /// Asks the worker whether the job ended, and if so brings its end back.
    async fn check_end(&mut self) -> Next {
        if self.reread_secrets
            && let ControlFlow::Break(next) = self.reread_secrets().await
        {
            return next;
        }
        tracing::debug!(job = self.job_id, "ssh: checking the end");
        let mut sink = match self.take_sink().await {
            Ok(s) => s,
            Err(e) => return self.lost(None, format!("cannot reopen the log: {e}")),
        };
        let (inner, hb) = (self.inner.clone(), self.inner.s.heartbeat_timeout);
        let found = finish(
            &inner,
            &self.remote_dir,
            &self.dir,
            &mut sink,
            self.finisher.take(),
        )
        .await;
        match found {
            Ok(Finished::Running) => {
                self.last_contact = Instant::now();
                let f = Follower::spawn(&inner, &self.remote_dir, sink, None);
                self.follower = Some(f);
                ControlFlow::Continue(false)
            }
            Ok(Finished::Vanished(why)) => self.lost(Some(sink), why),
            Ok(Finished::Ended {
                end,
                artifacts,
                session,
            }) => {
                let error = artifacts
                    .err()
                    .map(|e| format!("could not fetch the artifacts: {e}"));
                let rec = sink.record(&self.dir, &self.info, end, error).await;
                sink.close().await;
                inner.hub.unregister(self.job_id);
                tracing::debug!(job = self.job_id, "ssh: ended and fetched");
                if !session.remove(inner.cmd_limit()).await {
                    reap(inner.clone(), self.remote_dir.clone(), None);
                }
                tracing::debug!(job = self.job_id, "ssh: job folder removed");
                ControlFlow::Break(Outcome::Exited(rec))
            }
            Err(FinishError::Unknown(e)) => {
                if self.last_contact.elapsed() >= hb {
                    return self.lost(Some(sink), self.unreachable(&e));
                }
                self.idle = Some(sink);
                tokio::time::sleep(Duration::from_millis(500)).await;
                ControlFlow::Continue(true)
            }
            Err(FinishError::Ended(end, e)) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < hb {
                    self.idle = Some(sink);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return ControlFlow::Continue(true);
                }
                // Give up on the rest; the folder goes once the worker answers.
                let rec = sink
                    .record(&self.dir, &self.info, end, Some(e.to_string()))
                    .await;
                sink.close().await;
                inner.hub.unregister(self.job_id);
                reap(inner.clone(), self.remote_dir.clone(), None);
                ControlFlow::Break(Outcome::Exited(rec))
            }
        }
    }

    /// Waits, with the follower running, for a reason to look at the job's end.
    async fn watch(&mut self) -> Next {
        let poll = self.inner.poll_every();
        let f = self
            .follower
            .as_mut()
            .expect("a follower runs between checks");
        tokio::select! {
            // The runner's callback: the job ended.
            _ = self.notify.notified() => {
                tracing::debug!(job = self.job_id, "ssh: woken by the callback");
                ControlFlow::Continue(true)
            }
            // The follower ended by itself: the runner is gone.
            r = &mut f.task => {
                self.follower = None;
                self.idle = r.ok();
                ControlFlow::Continue(true)
            }
            // The fallback: look at the worker now and then.
            _ = tokio::time::sleep(poll) => self.poll().await,
        }
    }

    async fn poll(&mut self) -> Next {
        match self.inner.probe(&self.remote_dir).await {
            Ok(Probe::Running) => {
                self.last_contact = Instant::now();
                ControlFlow::Continue(false)
            }
            Ok(Probe::Exited { .. }) => ControlFlow::Continue(true),
            Ok(Probe::Vanished(why)) => {
                let sink = self.follower.take().expect("follower").stop().await;
                self.lost(sink, why)
            }
            Err(e) => {
                if self.last_contact.elapsed() >= self.inner.s.heartbeat_timeout {
                    let sink = self.follower.take().expect("follower").stop().await;
                    let why = self.unreachable(&e);
                    return self.lost(sink, why);
                }
                ControlFlow::Continue(false)
            }
        }
    }
}
