//! One shape for background loops (health checks, reapers, sweepers): a spawned task that runs
//! its step now and then once per period until the step says it is done or its
//! [`CancellationToken`] is cancelled. Cancelling cuts a running step short as well as the
//! pause, so a loop ends promptly when its owner (an executor, the server) shuts down.
//!
//! Executors own a token and cancel it when dropped; a server passes a child of its shutdown
//! token, so that every loop stops with it.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

/// A named loop with its period and the token that stops it.
#[derive(Clone, Debug)]
pub struct Loop {
    name: String,
    period: Duration,
    stop: CancellationToken,
    /// Besides the period: a value whose change runs the step early (see [`Loop::woken_by`]).
    wake: Option<(watch::Receiver<u64>, Duration)>,
}

impl Loop {
    /// A loop called `name` (for the log) that runs its step every `period` until `stop`.
    pub fn new(name: impl Into<String>, period: Duration, stop: CancellationToken) -> Self {
        Loop {
            name: name.into(),
            period,
            stop,
            wake: None,
        }
    }

    /// Also runs the step as soon as `wake` changes, rather than at the end of the period, but
    /// never sooner than `gap` after the previous step began: a burst of changes costs one step.
    #[must_use]
    pub fn woken_by(mut self, wake: watch::Receiver<u64>, gap: Duration) -> Self {
        self.wake = Some((wake, gap));
        self
    }

    /// Spawns the loop with its own `state`: `step(&mut state)` runs at once and then a
    /// `period` after each run ends, until it returns [`ControlFlow::Break`] or the token is
    /// cancelled. The task's result is the state (`None` if it was stopped mid-step).
    pub fn spawn<S, F>(self, mut state: S, mut step: F) -> JoinHandle<Option<S>>
    where
        S: Send + 'static,
        F: for<'a> FnMut(&'a mut S) -> BoxFuture<'a, ControlFlow<()>> + Send + 'static,
    {
        tokio::spawn(async move {
            let Loop {
                name,
                period,
                stop,
                mut wake,
            } = self;
            loop {
                let began = tokio::time::Instant::now();
                if let Some((rx, _)) = wake.as_mut() {
                    // What the step is about to see counts as seen.
                    rx.borrow_and_update();
                }
                let flow = tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        tracing::debug!("{name}: stopped");
                        return None;
                    }
                    flow = step(&mut state) => flow,
                };
                if flow.is_break() {
                    tracing::debug!("{name}: done");
                    return Some(state);
                }
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        tracing::debug!("{name}: stopped");
                        return Some(state);
                    }
                    _ = tokio::time::sleep(period) => {}
                    () = woken(wake.as_mut(), began) => {}
                }
            }
        })
    }
}

/// Ends when `wake` has changed and its gap since `began` has passed; never, without a wake
/// (or once its sender is gone).
async fn woken(wake: Option<&mut (watch::Receiver<u64>, Duration)>, began: tokio::time::Instant) {
    let Some((rx, gap)) = wake else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep_until(began + *gap).await;
}

/// A loop without state: `step()` at once and every `period` after, until it breaks or `stop`
/// is cancelled (see [`Loop::spawn`]).
pub fn every<F, Fut>(
    name: impl Into<String>,
    period: Duration,
    stop: CancellationToken,
    mut step: F,
) -> JoinHandle<Option<()>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ControlFlow<()>> + Send + 'static,
{
    Loop::new(name, period, stop).spawn((), move |_| Box::pin(step()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Awaits `task`, failing the test if it has not ended within ten seconds.
    async fn ended<T>(task: JoinHandle<T>, what: &str) -> T {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{what} did not stop within 10 s"))
            .expect("the loop's task panicked")
    }

    #[tokio::test]
    async fn a_loop_runs_until_its_token_is_cancelled_then_runs_no_more() {
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let task = every(
            "test loop",
            Duration::from_millis(5),
            stop.clone(),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { ControlFlow::Continue(()) }
            },
        );
        // Wait for the condition: it has run several times.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the loop never ran three times"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.cancel();
        // The task is over, so nothing runs the step again.
        ended(task, "a cancelled loop").await;
    }

    #[tokio::test]
    async fn cancelling_cuts_a_running_step_short() {
        let stop = CancellationToken::new();
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let mut entered_tx = Some(entered_tx);
        let task =
            Loop::new("slow step", Duration::from_secs(3600), stop.clone()).spawn(0u32, move |n| {
                *n += 1;
                if let Some(tx) = entered_tx.take() {
                    let _ = tx.send(());
                }
                Box::pin(async {
                    // A step that would never end by itself.
                    std::future::pending::<()>().await;
                    ControlFlow::Continue(())
                })
            });
        entered_rx.await.expect("the step started");
        stop.cancel();
        assert_eq!(ended(task, "a loop in a hanging step").await, None);
    }

    #[tokio::test]
    async fn a_step_that_breaks_ends_the_loop_with_its_state() {
        let task = Loop::new(
            "countdown",
            Duration::from_millis(1),
            CancellationToken::new(),
        )
        .spawn(3u32, |n| {
            Box::pin(async move {
                *n -= 1;
                if *n == 0 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
        assert_eq!(ended(task, "a loop whose step broke").await, Some(0));
    }

    #[tokio::test]
    async fn a_cancelled_parent_stops_the_loops_of_its_children() {
        let server = CancellationToken::new();
        let a = every(
            "a",
            Duration::from_millis(5),
            server.child_token(),
            || async { ControlFlow::Continue(()) },
        );
        let b = every(
            "b",
            Duration::from_millis(5),
            server.child_token(),
            || async { ControlFlow::Continue(()) },
        );
        server.cancel();
        ended(a, "loop a").await;
        ended(b, "loop b").await;
    }

    async fn step(seen: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the step did not run within 10 s of its wake changing");
    }

    #[tokio::test]
    async fn a_change_of_its_wake_runs_the_step_before_the_period_ends() {
        let (tx, rx) = watch::channel(0u64);
        let stop = CancellationToken::new();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let task = Loop::new("woken", Duration::from_secs(3600), stop.clone())
            .woken_by(rx, Duration::from_millis(1))
            .spawn((), move |_| {
                let seen_tx = seen_tx.clone();
                Box::pin(async move {
                    seen_tx.send(()).unwrap();
                    ControlFlow::Continue(())
                })
            });
        step(&mut seen).await; // the first step runs at once
        tx.send_modify(|g| *g += 1);
        step(&mut seen).await;
        tx.send_modify(|g| *g += 1);
        step(&mut seen).await;
        assert!(seen.try_recv().is_err(), "a step ran without a change");
        stop.cancel();
        ended(task, "a woken loop").await;
    }
}
