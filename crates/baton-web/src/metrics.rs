//! `GET /metrics`: the server's state in Prometheus' text format, for administrators (a
//! bearer token of an administrator, as every API call).
//!
//! Gauges are read at each scrape from the scheduler's snapshot (queue depth and oldest wait per
//! queue, workers by state) and the store (runs by status, webhook deliveries by answer, and
//! how long those store reads took) and the pool scaler (each pool's size, desired size and
//! agents starting); the counter of job log bytes from what the executors counted
//! (`baton_exec::meter`). Histograms of run durations and dispatch latency are fed
//! as runs end, from the scheduler's change feed, so they count what this process saw since it
//! started, as Prometheus counters do.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{ApiError, AppState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    queue_depth: Family<QueueLabel, Gauge>,
    queue_oldest: Family<QueueLabel, FloatGauge>,
    runs: Family<StatusLabel, Gauge>,
    workers: Family<WorkerLabel, Gauge>,
    deliveries: Family<CodeLabel, Gauge>,
    pool_size: Family<PoolLabel, Gauge>,
    pool_desired: Family<PoolLabel, Gauge>,
    pool_starting: Family<PoolLabel, Gauge>,
    store_seconds: Histogram,
    /// Job log bytes taken in (`baton_exec::meter`), brought up to date at each scrape.
    log_bytes: Counter,
    run_seconds: Histogram,
    dispatch_seconds: Histogram,
    /// Runs already counted in the histograms (the newest few thousand).
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Seen {
    const KEEP: usize = 4096;

    /// True the first time `id` is offered.
    fn first(&mut self, id: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("baton"),
            queue_depth: Family::default(),
            queue_oldest: Family::default(),
            runs: Family::default(),
            workers: Family::default(),
            deliveries: Family::default(),
            pool_size: Family::default(),
            pool_desired: Family::default(),
            pool_starting: Family::default(),
            store_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 8)),
            log_bytes: Counter::default(),
            run_seconds: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            dispatch_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            seen: Mutex::default(),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "queue_depth",
            "Jobs waiting, by a queue that may take them",
            self.queue_depth.clone(),
        );
        r.register(
            "queue_oldest_wait_seconds",
            "How long the oldest job waiting for a queue has waited",
            self.queue_oldest.clone(),
        );
        r.register("runs", "Runs in the store, by status", self.runs.clone());
        r.register(
            "workers",
            "Worker slots, by kind and state (idle, busy, down, disabled)",
            self.workers.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook deliveries recorded, by the HTTP status they were answered with",
            self.deliveries.clone(),
        );
        r.register(
            "pool_size",
            "Agents of an autoscaled pool that joined and are up",
            self.pool_size.clone(),
        );
        r.register(
            "pool_desired_size",
            "The size an autoscaled pool is heading for (joined, starting and about to start)",
            self.pool_desired.clone(),
        );
        r.register(
            "pool_starting",
            "Agents of an autoscaled pool started that have not joined yet",
            self.pool_starting.clone(),
        );
        r.register(
            "store_read_seconds",
            "How long the store's reads for a scrape took",
            self.store_seconds.clone(),
        );
        r.register(
            "log_bytes",
            "Job log bytes this server took in since it started: agents' and SSH workers' log \
             chunks and Docker jobs' output as they are written, local jobs' logs as their \
             supervisors' exit records give their size",
            self.log_bytes.clone(),
        );
        r.register(
            "run_duration_seconds",
            "From a run's first job starting to its end, for runs ended since the server started",
            self.run_seconds.clone(),
        );
        r.register(
            "dispatch_latency_seconds",
            "From a run being queued (or its not-before time) to its first job starting",
            self.dispatch_seconds.clone(),
        );
    }

    /// Counts a run that ended (once): its duration and its dispatch latency.
    fn observe_end(&self, run: &baton_store::RunRow) {
        if !run.status.is_terminal() || !self.seen.lock().expect("metrics lock").first(run.id) {
            return;
        }
        let secs = |from: DateTime<Utc>, to: DateTime<Utc>| {
            (to - from).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6
        };
        if let Some(started) = run.started_at {
            let queued = run
                .not_before
                .map_or(run.enqueued_at, |n| n.max(run.enqueued_at));
            self.dispatch_seconds.observe(secs(queued, started));
            if let Some(ended) = run.ended_at {
                self.run_seconds.observe(secs(started, ended));
            }
        }
    }

    /// Sets the gauges from the scheduler's snapshot and the store.
    async fn refresh(&self, st: &AppState) -> Result<(), ApiError> {
        // Only ever up, however scrapes interleave.
        self.log_bytes
            .inner()
            .fetch_max(baton_exec::meter::log_bytes(), Ordering::Relaxed);
        let internal = |e: String| ApiError::internal(e);
        let snap = st
            .sched
            .snapshot()
            .await
            .map_err(|e| internal(e.to_string()))?;
        let now = Utc::now();
        self.queue_depth.clear();
        self.queue_oldest.clear();
        for entry in &snap.queue {
            let wait = (now - entry.enqueued_at).num_milliseconds().max(0) as f64 / 1e3;
            for queue in &entry.queues {
                let label = QueueLabel {
                    queue: queue.clone(),
                };
                self.queue_depth.get_or_create(&label).inc();
                let oldest = self.queue_oldest.get_or_create(&label);
                if wait > oldest.get() {
                    oldest.set(wait);
                }
            }
        }
        self.workers.clear();
        for w in &snap.workers {
            let label = WorkerLabel {
                kind: w.kind.to_owned(),
                state: w.state.to_owned(),
            };
            self.workers.get_or_create(&label).inc();
        }
        self.pool_size.clear();
        self.pool_desired.clear();
        self.pool_starting.clear();
        for p in st.pools.views() {
            let label = PoolLabel { pool: p.name };
            self.pool_size.get_or_create(&label).set(i64::from(p.size));
            self.pool_desired
                .get_or_create(&label)
                .set(i64::from(p.desired));
            self.pool_starting
                .get_or_create(&label)
                .set(i64::from(p.starting));
        }
        let started = Instant::now();
        let runs = st.store.runs_by_status().await;
        let deliveries = st.store.deliveries_by_code().await;
        self.store_seconds.observe(started.elapsed().as_secs_f64());
        set_counts(
            &self.runs,
            runs.map_err(|e| internal(e.to_string()))?,
            |status| StatusLabel { status },
        );
        set_counts(
            &self.deliveries,
            deliveries.map_err(|e| internal(e.to_string()))?,
            |code| CodeLabel { code },
        );
        Ok(())
    }

    fn encode(&self) -> Result<String, ApiError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(out)
    }
}

fn set_counts<L>(
    family: &Family<L, Gauge>,
    counts: std::collections::BTreeMap<String, i64>,
    label: impl Fn(String) -> L,
) where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    family.clear();
    for (k, n) in counts {
        family.get_or_create(&label(k)).set(n);
    }
}

/// Feeds the histograms from the scheduler's change feed until the scheduler stops.
pub fn watch(st: AppState) {
    let mut rx = st.sched.subscribe();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let changed = match rx.recv().await {
                Ok(c) => c,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            for row in changed.runs.iter().filter_map(|r| r.ended.as_deref()) {
                st.metrics.observe_end(row);
            }
        }
    });
}

/// `GET /metrics`.
async fn metrics(
    State(st): State<AppState>,
    user: crate::auth::CurrentUser,
) -> Result<Response, ApiError> {
    crate::auth::Access::of(&st, &user).await?.require_admin()?;
    st.metrics.refresh(&st).await?;
    let body = st.metrics.encode()?;
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/metrics", axum::routing::get(metrics))
}
