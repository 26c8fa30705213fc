//! The log hub: one watcher per followed job, shared by all of that job's live viewers.
//!
//! A job's log is written by its supervisor, a separate process, so the server learns of new
//! output from the kernel: one inotify instance for the whole server holds one watch per
//! followed job, on the folder of the job's current attempt. A job's watcher task re-reads the
//! log's length on each event, re-reads the job from the store when the scheduler says its run
//! changed (a new attempt, the end), and publishes what it saw on a `watch` channel that every
//! viewer of the job waits on. The watcher is made for the first viewer and ended (its inotify
//! watch removed) with the last one, and drops its watch as soon as the job has ended.
//!
//! A slow re-check ([`FALLBACK`]) is only a safety net for a missed event (an inotify queue
//! overflow, a folder made after the watch was tried, no inotify at all).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, Semaphore, watch};

use crate::AppState;

/// How often a watcher looks again without being woken.
const FALLBACK: Duration = Duration::from_secs(1);

/// How soon a watcher asks the store again after it did not answer.
const RETRY: Duration = Duration::from_millis(200);

/// How many viewers read their log at once, server-wide. A read runs on a blocking thread with
/// a buffer of up to a chunk; without a bound, a thousand viewers woken by one write started
/// hundreds of blocking threads at once (each with its stack and, under glibc, a malloc arena
/// of its own), which was a third of the server's memory with 1,000 viewers (bench (i)). A read
/// of a log just written comes from the page cache, so two at a time keep up with the writer.
const READERS: usize = 2;

/// What a job's watcher last saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// Not looked yet.
    Pending,
    /// The run or the job is gone (pruned).
    Gone,
    Log(JobLog),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobLog {
    /// The log of the job's current attempt.
    pub path: PathBuf,
    /// Its length when last looked at.
    pub len: u64,
    /// The `end` event's data, once the job has ended; `len` is then final.
    pub end: Option<Value>,
}

/// The jobs being followed, and the server's inotify instance (made on first use).
#[derive(Clone, Default)]
pub(crate) struct LogHub {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<HashMap<i64, Weak<Watcher>>>,
    inotify: OnceLock<Option<Kernel>>,
    /// The turns to read a log ([`READERS`]).
    reads: Arc<Semaphore>,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            jobs: Mutex::default(),
            inotify: OnceLock::new(),
            reads: Arc::new(Semaphore::new(READERS)),
        }
    }
}

/// Who to wake per inotify watch. The kernel gives a folder watched twice (an old watcher not
/// yet gone, a new one already there) the same watch, so a watch has a list, and is removed
/// with the last entry.
type Wakers = Arc<Mutex<HashMap<i32, Vec<Arc<Notify>>>>>;

/// The inotify instance: a handle to add and remove watches, and who to wake per watch (an
/// event-reading task dispatches to them).
#[derive(Clone)]
struct Kernel {
    watches: Watches,
    wakers: Wakers,
}

/// A job's watcher task; aborted when the last viewer lets go.
struct Watcher {
    rx: watch::Receiver<Seen>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A viewer's hold on a job's watcher.
pub(crate) struct Follower {
    pub rx: watch::Receiver<Seen>,
    /// Taken for each read of the log file: a viewer waiting for its turn holds no buffer.
    pub reads: Arc<Semaphore>,
    _watcher: Arc<Watcher>,
}

impl LogHub {
    /// Follows job `job_id` of run `run_id`: joins the job's watcher, or starts one.
    pub(crate) fn follow(&self, s: &AppState, run_id: i64, job_id: i64) -> Follower {
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let watcher = match jobs.get(&job_id).and_then(Weak::upgrade) {
            Some(w) => w,
            None => {
                jobs.retain(|_, w| w.strong_count() > 0);
                let (tx, rx) = watch::channel(Seen::Pending);
                let kernel = self.kernel();
                let task = tokio::spawn(watch_job(s.clone(), kernel, run_id, job_id, tx));
                let w = Arc::new(Watcher {
                    rx,
                    task: task.abort_handle(),
                });
                jobs.insert(job_id, Arc::downgrade(&w));
                w
            }
        };
        Follower {
            rx: watcher.rx.clone(),
            reads: self.inner.reads.clone(),
            _watcher: watcher,
        }
    }

    /// The server's inotify instance; `None` (the fallback re-check only) when the kernel
    /// refuses one.
    fn kernel(&self) -> Option<Kernel> {
        self.inner
            .inotify
            .get_or_init(|| match Kernel::start() {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::warn!(
                        "live logs cannot watch files (inotify: {e}); they look for new output \
                         every {FALLBACK:?} instead (raise fs.inotify.max_user_instances)"
                    );
                    None
                }
            })
            .clone()
    }
}

impl Kernel {
    fn start() -> std::io::Result<Kernel> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
        let wakers: Wakers = Arc::default();
        let to_wake = wakers.clone();
        tokio::spawn(async move {
            let wake_all = || {
                for n in lock(&to_wake).values().flatten() {
                    n.notify_one();
                }
            };
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => match lock(&to_wake).get(&ev.wd.get_watch_descriptor_id()) {
                        Some(ns) => ns.iter().for_each(|n| n.notify_one()),
                        // A queue overflow names no watch: anyone may have missed something.
                        None if ev.mask.contains(inotify::EventMask::Q_OVERFLOW) => wake_all(),
                        None => {}
                    },
                    Err(e) => {
                        tracing::warn!(
                            "reading inotify events failed: {e}; live logs fall back to looking every {FALLBACK:?}"
                        );
                        break;
                    }
                }
            }
            wake_all();
        });
        Ok(Kernel { watches, wakers })
    }

    /// Watches folder `dir` for writes to the files in it.
    fn watch(&self, dir: &Path) -> std::io::Result<DirWatch> {
        let mask = WatchMask::MODIFY
            | WatchMask::CREATE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF;
        let wd = self.watches.clone().add(dir, mask)?;
        let notify = Arc::new(Notify::new());
        lock(&self.wakers)
            .entry(wd.get_watch_descriptor_id())
            .or_default()
            .push(notify.clone());
        Ok(DirWatch {
            kernel: self.clone(),
            dir: dir.to_owned(),
            wd,
            notify,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One inotify watch on a folder; removed on drop.
struct DirWatch {
    kernel: Kernel,
    dir: PathBuf,
    wd: WatchDescriptor,
    notify: Arc<Notify>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let mut wakers = lock(&self.kernel.wakers);
        let id = self.wd.get_watch_descriptor_id();
        let Some(ns) = wakers.get_mut(&id) else {
            return;
        };
        ns.retain(|n| !Arc::ptr_eq(n, &self.notify));
        if ns.is_empty() {
            wakers.remove(&id);
            // Fails when the folder is gone already (the kernel removed the watch then).
            let _ = self.kernel.watches.remove(self.wd.clone());
        }
    }
}

/// What the store says of the followed job.
enum Lookup {
    /// Its current log, and the `end` data once it has ended.
    Found(PathBuf, Option<Value>),
    /// The run or the job is not there (pruned).
    Gone,
    /// The store did not answer (busy, restarting): nothing is known, look again later.
    Failed,
}

/// The job as the store has it.
async fn look_up(s: &AppState, run_id: i64, job_id: i64) -> Lookup {
    let run = match s.store.get_run(run_id).await {
        Ok(Some(run)) => run,
        Ok(None) => return Lookup::Gone,
        Err(e) => {
            tracing::warn!("live log of run {run_id}: reading the run failed ({e}); trying again");
            return Lookup::Failed;
        }
    };
    let Some(job) = run.jobs.iter().find(|j| j.id == job_id) else {
        return Lookup::Gone;
    };
    let end = job
        .status
        .is_terminal()
        .then(|| json!({"status": job.status, "exit_code": job.exit_code, "reason": job.reason}));
    Lookup::Found(s.folders.log_path(job.id, job.attempt), end)
}

/// Publishes the log's length now (with `end` when the job has ended); wakes the viewers only
/// when something changed.
async fn publish(tx: &watch::Sender<Seen>, path: &Path, end: Option<Value>) {
    let len = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
    let seen = Seen::Log(JobLog {
        path: path.to_owned(),
        len,
        end,
    });
    tx.send_if_modified(|cur| {
        let changed = *cur != seen;
        *cur = seen;
        changed
    });
}

/// Waits for an event on `w`, or forever without a watch.
async fn written(w: &Option<DirWatch>) {
    match w {
        Some(w) => w.notify.notified().await,
        None => std::future::pending().await,
    }
}

/// A job's watcher: publishes what the viewers need until the job ends, then keeps the last
/// state (for viewers still catching up) until it is aborted with the last viewer.
async fn watch_job(
    s: AppState,
    kernel: Option<Kernel>,
    run_id: i64,
    job_id: i64,
    tx: watch::Sender<Seen>,
) {
    let mut changes = Some(s.sched.subscribe());
    let mut dir_watch: Option<DirWatch> = None;
    let mut fallback = tokio::time::interval(FALLBACK);
    fallback.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (path, end) = match look_up(&s, run_id, job_id).await {
            Lookup::Found(path, end) => (path, end),
            Lookup::Gone => {
                tx.send_replace(Seen::Gone);
                break;
            }
            // A store error is not the job's end: the viewers keep what they have (and any
            // file event still publishes) until the store answers again.
            Lookup::Failed => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if end.is_some() {
            drop(dir_watch.take());
            publish(&tx, &path, end).await;
            break;
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        if let Some(k) = &kernel
            && dir_watch.as_ref().is_none_or(|w| w.dir != dir)
        {
            // Before the first look at the file, so no write after that look goes unseen; a
            // folder not made yet (the job is queued) is tried again on the next change.
            drop(dir_watch.take()); // the old attempt's folder
            dir_watch = k.watch(dir).ok();
        }
        publish(&tx, &path, None).await;
        // File events only change the length; the run changing or the fallback tick looks at
        // the store again.
        loop {
            tokio::select! {
                () = written(&dir_watch) => publish(&tx, &path, None).await,
                changed = next_change(&mut changes, run_id) => if changed { break },
                _ = fallback.tick() => break,
            }
        }
    }
    drop(dir_watch);
    std::future::pending::<()>().await;
}

/// Waits for the next batch of scheduler changes; `true` when it may concern run `run_id`.
async fn next_change(
    changes: &mut Option<tokio::sync::broadcast::Receiver<Arc<baton_sched::Changed>>>,
    run_id: i64,
) -> bool {
    let Some(rx) = changes else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(batch) => batch.runs.iter().any(|r| r.id == run_id),
        Err(RecvError::Lagged(_)) => true,
        Err(RecvError::Closed) => {
            *changes = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inotify watches this process holds.
    fn watches_held() -> usize {
        std::fs::read_dir("/proc/self/fdinfo")
            .expect("/proc/self/fdinfo")
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .map(|info| {
                info.lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count()
            })
            .sum()
    }

    #[tokio::test]
    async fn a_folder_watched_twice_keeps_its_watch_until_both_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kernel::start().expect("an inotify instance");
        let before = watches_held();
        let old = k.watch(dir.path()).unwrap();
        let new = k.watch(dir.path()).unwrap();
        assert_eq!(
            old.wd.get_watch_descriptor_id(),
            new.wd.get_watch_descriptor_id(),
            "the kernel gives one folder one watch"
        );
        assert_eq!(watches_held(), before + 1);
        // The old watcher going must not take the new one's watch with it.
        drop(old);
        std::fs::write(dir.path().join("log"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(30), new.notify.notified())
            .await
            .expect("a write wakes the remaining watcher");
        assert_eq!(watches_held(), before + 1);
        drop(new);
        assert_eq!(watches_held(), before, "the last one removes the watch");
    }
}
