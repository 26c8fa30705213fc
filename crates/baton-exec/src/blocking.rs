//! State that lives on one blocking thread and is reached through a channel: a job's log file
//! and its bookkeeping, so that the async tasks that follow a job never wait on the disk
//! (`write`, `fsync`, the atomic rename of an offset file) and the order of the writes is the
//! order they were posted in.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Op<T> = Box<dyn FnOnce(&mut T) + Send>;

/// How many operations may wait for the thread before [`OnThread::post`] waits too (so a fast
/// stream cannot pile up memory behind a slow disk).
const QUEUE: usize = 16;

/// `T`, owned by a thread of tokio's blocking pool until [`OnThread::into_inner`].
pub(crate) struct OnThread<T> {
    tx: mpsc::Sender<Op<T>>,
    task: JoinHandle<T>,
}

impl<T: Send + 'static> OnThread<T> {
    /// Moves `state` onto a blocking thread (call inside a tokio runtime).
    pub(crate) fn new(state: T) -> Self {
        let (tx, mut rx) = mpsc::channel::<Op<T>>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut state = state;
            while let Some(op) = rx.blocking_recv() {
                op(&mut state);
            }
            state
        });
        OnThread { tx, task }
    }

    /// Queues `op`; it runs after everything posted before it.
    pub(crate) async fn post(&self, op: impl FnOnce(&mut T) + Send + 'static) {
        // The thread only ends once `tx` is dropped, or if an earlier op panicked (then
        // `into_inner` reports it).
        let _ = self.tx.send(Box::new(op)).await;
    }

    /// Runs `op` after everything posted before it and returns its result.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        op: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = oneshot::channel();
        self.post(move |state| {
            let _ = tx.send(op(state));
        })
        .await;
        rx.await
            .expect("the blocking thread of a job's log ended (an earlier write panicked)")
    }

    /// Waits for everything posted, then takes the state back.
    pub(crate) async fn into_inner(self) -> T {
        drop(self.tx);
        self.task
            .await
            .expect("the blocking thread of a job's log panicked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn operations_run_in_the_order_they_were_posted() {
        let t = OnThread::new(Vec::new());
        for i in 0..100 {
            t.post(move |v: &mut Vec<i32>| v.push(i)).await;
        }
        assert_eq!(t.call(|v| v.len()).await, 100);
        t.post(|v| v.push(100)).await;
        assert_eq!(t.into_inner().await, (0..=100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_work_runs_off_the_async_threads() {
        // A current-thread runtime: every async task runs on this very thread.
        let t = OnThread::new(());
        let here = std::thread::current().id();
        let there = t.call(|_| std::thread::current().id()).await;
        assert_ne!(here, there);
    }
}
