//! Autoscaled agent pools (`pools:`): a background loop that, once a second and whenever the
//! scheduler's runs change (at most every [`WAKE_GAP`]), gathers each
//! pool's facts (jobs waiting for a worker on its queues, its agents and their idle slots,
//! agents started that have not joined yet), asks `baton_core::decide::pool` how many agents
//! to start, and starts them with the pool's provider.
//!
//! Each agent started gets its own one-time join token, scoped to its pool and its name
//! (`pool-join:POOL:AGENT`, stored hashed, used up by the join). The provider hands the token
//! to the agent in its environment only (never argv, never a log). An agent that does not join
//! within [`JOIN_DEADLINE`] is given up: its token is revoked, the provider abandons it (the
//! docker provider removes its container) and it no longer counts as starting.
//! Scaling in is the agents' own: an agent of a pool leaves after its idle timeout (the leave
//! route revokes its credential) and the server then has the provider remove it (`down`).
//!
//! Providers ([`Provider`]): `command` (the operator's `up`/`down` programs) and `docker`
//! (a container per agent). A provider that can list what it runs (docker) is surveyed every
//! few seconds: agents running that this server did not start (it restarted) count as starting
//! or are taken back into their pool, and ended ones are removed.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::task::JoinHandle;

use baton_core::config::{Config, PoolDef, PoolProvider};
use baton_core::decide::PoolFacts;
use baton_core::decide::pool::pool as decide_pool;
use baton_exec::Health;
use baton_exec::agent::{AgentHub, AgentInfo};
use baton_exec::background::{CancellationToken, Loop};

use crate::auth::CurrentUser;
use crate::{ApiError, AppState};

mod command;
pub mod docker;

/// How often the scaler looks at the pools.
const TICK: Duration = Duration::from_secs(1);
/// A change of the scheduler's runs or jobs (a job now waiting for a worker) runs the scaler
/// at once rather than at the next tick, but at most once per this gap.
const WAKE_GAP: Duration = Duration::from_millis(100);
/// How long a started agent has to join before it is given up (its token revoked).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// After a provider's `up` fails, the pool waits this long before it tries again.
const UP_BACKOFF: Duration = Duration::from_secs(10);
/// How often a provider that can list its agents (docker) is surveyed.
const SURVEY_EVERY: Duration = Duration::from_secs(5);

/// What a provider is asked to start: agents' names with their one-time join tokens, and what
/// each agent needs to serve the pool.
pub(crate) struct Launch {
    pub pool: String,
    /// The URL agents reach this server at.
    pub server: String,
    /// (name, join token) of each agent.
    pub agents: Vec<(String, String)>,
    pub queues: Vec<String>,
    pub slots: u32,
    pub idle_timeout: Duration,
}

impl Launch {
    /// `--idle-timeout` / `BATON_IDLE_TIMEOUT` (whole seconds, at least one).
    fn idle_timeout_arg(&self) -> String {
        format!("{}s", self.idle_timeout.as_secs().max(1))
    }
}

/// An agent a provider runs, as a survey found it.
pub(crate) struct Found {
    pub agent: String,
    /// It runs (and may join, or did).
    pub running: bool,
    /// It ended: how (status and last output).
    pub ended: Option<String>,
}

/// How a pool's agents are started and removed: one implementation per kind of `provider:`.
pub(crate) trait Provider: Send + Sync {
    /// Starts the agents of `launch` (they join by themselves).
    fn up<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<(), String>>;
    /// Removes what is left of an agent that left.
    fn down<'a>(&'a self, pool: &'a str, agent: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// Gives up an agent that did not join in time (its token is already revoked).
    fn abandon<'a>(&'a self, _pool: &'a str, _agent: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    /// The pool's agents the provider runs, if it can tell (`None`: it cannot).
    fn survey<'a>(&'a self, _pool: &'a str) -> BoxFuture<'a, Result<Option<Vec<Found>>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// The provider of `pool`.
fn provider(st: &AppState, config: &Config, pool: &PoolDef) -> Box<dyn Provider> {
    match &pool.provider {
        PoolProvider::Command { up, down } => Box::new(command::CommandProvider {
            up: up.clone(),
            down: down.clone(),
        }),
        PoolProvider::Docker(spec) => Box::new(docker::DockerProvider {
            host: docker::engine_address(spec, config.server.docker_host.as_deref()),
            spec: spec.clone(),
            engines: st.pools.clone(),
        }),
    }
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(max);
    text.chars().skip(skip).collect()
}

/// One pool as the API and the queue page show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolView {
    pub name: String,
    pub queues: Vec<String>,
    pub min: u32,
    pub max: u32,
    /// Agents of the pool that joined and are up.
    pub size: u32,
    /// Agents started that have not joined yet.
    pub starting: u32,
    /// The size the pool is heading for.
    pub desired: u32,
    /// Jobs waiting for a worker on the pool's queues.
    pub backlog: u32,
    pub idle_slots: u32,
    /// Why the pool has the desired size (backlog, min, max), or what went wrong last.
    pub why: String,
    /// The last problem with the provider (`up`/`down` failing), if any.
    pub error: Option<String>,
    pub agents: Vec<String>,
}

struct Starting {
    pool: String,
    /// Its join token (`None`: found by a survey after a restart; revoked by name).
    token_id: Option<i64>,
    deadline: Instant,
}

#[derive(Default)]
struct State_ {
    views: BTreeMap<String, PoolView>,
    /// Agents launched that have not joined, by name.
    starting: BTreeMap<String, Starting>,
    /// A pool whose `up` failed waits until then.
    backoff: BTreeMap<String, Instant>,
    errors: BTreeMap<String, String>,
    /// When each pool's provider was last surveyed.
    surveyed: BTreeMap<String, Instant>,
    seq: u64,
}

/// The pools' state, shared by the scaler loop and the routes.
#[derive(Default)]
pub struct Pools {
    state: Mutex<State_>,
    /// Docker engine clients of the docker provider.
    engines: docker::Engines,
}

impl Pools {
    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every configured pool as last seen by the scaler.
    #[must_use]
    pub fn views(&self) -> Vec<PoolView> {
        self.lock().views.values().cloned().collect()
    }

    /// An agent joined: it no longer counts as starting.
    pub(crate) fn joined(&self, agent: &str) {
        self.lock().starting.remove(agent);
    }
}

/// Starts the scaler; it stops when `stop` is cancelled.
pub fn start(st: &AppState, stop: CancellationToken) -> JoinHandle<Option<()>> {
    let st = st.clone();
    Loop::new("pool scaler", TICK, stop)
        .woken_by(st.sched.changes(), WAKE_GAP)
        .spawn((), move |_| {
            let st = st.clone();
            Box::pin(async move {
                tick(&st).await;
                ControlFlow::Continue(())
            })
        })
}

/// The facts of each pool from the scheduler's snapshot and the agents.
fn facts(
    pool: &PoolDef,
    snap: &baton_sched::Snapshot,
    hub: &AgentHub,
    starting: u32,
) -> (PoolFacts, Vec<String>) {
    let backlog = snap
        .queue
        .iter()
        .filter(|q| q.waits_for == baton_sched::WaitsFor::Worker)
        .filter(|q| q.queues.iter().any(|x| pool.queues.contains(x)))
        .filter(|q| snap.paused.open_queues(&q.queues).is_ok())
        .count();
    let members: Vec<String> = hub
        .agents()
        .into_iter()
        .filter(|a| a.pool.as_deref() == Some(pool.name.as_str()))
        .map(|a| a.name)
        .collect();
    let up: Vec<String> = hub
        .workers()
        .into_iter()
        .filter(|(_, _, h)| matches!(h, Health::Up))
        .filter_map(|(w, _, _)| AgentHub::agent_of(&w).map(str::to_string))
        .filter(|a| members.contains(a))
        .collect();
    let mut joined: Vec<String> = up.clone();
    joined.dedup();
    let idle_slots = snap
        .workers
        .iter()
        .filter(|w| w.state == "idle")
        .filter(|w| AgentHub::agent_of(&w.name).is_some_and(|a| joined.iter().any(|j| j == a)))
        .count();
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    (
        PoolFacts {
            backlog: n(backlog),
            joined: n(joined.len()),
            idle_slots: n(idle_slots),
            starting,
            slots: pool.slots,
            min: pool.min,
            max: pool.max,
        },
        joined,
    )
}

async fn tick(st: &AppState) {
    let (Ok(config), Some(hub)) = (st.sched.config().await, st.agents.clone()) else {
        return;
    };
    if config.pools.is_empty() && st.pools.lock().views.is_empty() {
        return;
    }
    let Ok(snap) = st.sched.snapshot().await else {
        return;
    };
    let now = Instant::now();
    // Agents that joined, and agents that missed their deadline (their tokens revoked).
    let known: Vec<String> = hub.agents().into_iter().map(|a| a.name).collect();
    let expired: Vec<(String, String, Option<i64>)> = {
        let mut s = st.pools.lock();
        s.starting.retain(|name, _| !known.contains(name));
        let gone: Vec<(String, String, Option<i64>)> = s
            .starting
            .iter()
            .filter(|(_, a)| a.deadline <= now || !config.pools.contains_key(&a.pool))
            .map(|(n, a)| (n.clone(), a.pool.clone(), a.token_id))
            .collect();
        for (n, _, _) in &gone {
            s.starting.remove(n);
        }
        gone
    };
    for (name, pool, token) in expired {
        tracing::warn!(
            agent = %name,
            "a pool's agent did not join within {}s; its join token is revoked",
            JOIN_DEADLINE.as_secs()
        );
        revoke_join(st, &pool, &name, token).await;
        if let Some(def) = config.pools.get(&pool) {
            let p = provider(st, &config, def);
            tokio::spawn(async move {
                if let Err(e) = p.abandon(&pool, &name).await {
                    tracing::warn!(pool = %pool, agent = %name, "{e}");
                }
            });
        }
    }
    let mut views = BTreeMap::new();
    for pool in config.pools.values() {
        survey(st, &config, pool, &hub, now).await;
        let starting = {
            let s = st.pools.lock();
            s.starting.values().filter(|a| a.pool == pool.name).count()
        };
        let (f, agents) = facts(pool, &snap, &hub, u32::try_from(starting).unwrap_or(0));
        let d = decide_pool(f);
        let waiting = st
            .pools
            .lock()
            .backoff
            .get(&pool.name)
            .is_some_and(|t| *t > now);
        let mut view = PoolView {
            name: pool.name.clone(),
            queues: pool.queues.clone(),
            min: pool.min,
            max: pool.max,
            size: f.joined,
            starting: f.starting,
            desired: d.desired,
            backlog: f.backlog,
            idle_slots: f.idle_slots,
            why: d.why.clone(),
            error: st.pools.lock().errors.get(&pool.name).cloned(),
            agents,
        };
        if d.start > 0 && !waiting {
            tracing::info!(pool = %pool.name, start = d.start, "{}", d.why);
            if let Err(e) = scale_up(st, &config, pool, d.start).await {
                tracing::warn!(pool = %pool.name, "{e}");
                let mut s = st.pools.lock();
                s.backoff.insert(pool.name.clone(), now + UP_BACKOFF);
                s.errors.insert(pool.name.clone(), e.clone());
                view.error = Some(e);
            }
        } else if d.start > 0 {
            view.desired = f.joined + f.starting;
            view.why = format!("{} (waiting after the provider failed)", d.why);
        }
        views.insert(pool.name.clone(), view);
    }
    st.pools.lock().views = views;
}

/// Revokes an agent's join token: by id, or by its name when this server did not make it.
async fn revoke_join(st: &AppState, pool: &str, agent: &str, token: Option<i64>) {
    let done = match token {
        Some(id) => st.store.revoke_token(id).await.map(|_| ()),
        None => st
            .store
            .revoke_tokens_named(&format!("{}{pool}:{agent}", baton_store::POOL_JOIN_PREFIX))
            .await
            .map(|_| ()),
    };
    if let Err(e) = done {
        tracing::warn!(agent = %agent, "cannot revoke its join token: {e}");
    }
}

/// Every [`SURVEY_EVERY`], what the pool's provider runs (if it can tell): agents running that
/// this server does not know (started before a restart) count as starting until they join or
/// their deadline passes; a known agent is taken back into its pool; ended ones are removed
/// (one that never joined is given up, and the pool's error says how it ended).
async fn survey(st: &AppState, config: &Config, pool: &PoolDef, hub: &AgentHub, now: Instant) {
    {
        let mut s = st.pools.lock();
        if s.surveyed
            .get(&pool.name)
            .is_some_and(|t| now < *t + SURVEY_EVERY)
        {
            return;
        }
        s.surveyed.insert(pool.name.clone(), now);
    }
    let p = provider(st, config, pool);
    let found = match p.survey(&pool.name).await {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(pool = %pool.name, "{e}");
            st.pools.lock().errors.insert(pool.name.clone(), e);
            return;
        }
    };
    let agents = hub.agents();
    let mut remove = Vec::new();
    for f in found {
        let known = agents.iter().find(|a| a.name == f.agent);
        let starting = st.pools.lock().starting.contains_key(&f.agent);
        if f.running {
            match known {
                Some(a) if a.pool.is_none() => {
                    tracing::info!(pool = %pool.name, agent = %f.agent, "an agent of the pool is back in it");
                    hub.register_pool(
                        &f.agent,
                        &pool.name,
                        AgentInfo {
                            queues: pool.queues.clone(),
                            slots: pool.slots,
                        },
                    );
                }
                Some(_) => {}
                None if !starting => {
                    tracing::info!(pool = %pool.name, agent = %f.agent, "found an agent started before; it counts as starting until it joins");
                    st.pools.lock().starting.insert(
                        f.agent.clone(),
                        Starting {
                            pool: pool.name.clone(),
                            token_id: None,
                            deadline: now + JOIN_DEADLINE,
                        },
                    );
                }
                None => {}
            }
        } else if let Some(how) = f.ended {
            if starting || known.is_none() {
                // Never joined, or left (its `down` may be on its way too).
                let was = st.pools.lock().starting.remove(&f.agent);
                if let Some(was) = was {
                    revoke_join(st, &pool.name, &f.agent, was.token_id).await;
                    let e = format!(
                        "pool {}: agent {} ended before it joined: {how}",
                        pool.name, f.agent
                    );
                    tracing::warn!(pool = %pool.name, "{e}");
                    // An image whose agents cannot join would otherwise be restarted each tick.
                    let mut s = st.pools.lock();
                    s.backoff.insert(pool.name.clone(), now + UP_BACKOFF);
                    s.errors.insert(pool.name.clone(), e);
                }
            }
            remove.push(f.agent);
        } else if !starting && known.is_none() {
            // Created and never started by an `up` that did not finish.
            remove.push(f.agent);
        }
    }
    if remove.is_empty() {
        return;
    }
    let pool_name = pool.name.clone();
    tokio::spawn(async move {
        for agent in remove {
            match p.down(&pool_name, &agent).await {
                Ok(()) => {
                    tracing::info!(pool = %pool_name, agent = %agent, "removed an ended agent")
                }
                Err(e) => tracing::warn!(pool = %pool_name, agent = %agent, "{e}"),
            }
        }
    });
}

/// The URL agents reach this server at: `server.callback_url`, else `server.public_url`, else
/// the listen address.
fn server_url(st: &AppState, config: &Config) -> String {
    config
        .server
        .callback_url
        .clone()
        .or_else(|| config.server.public_url.clone())
        .unwrap_or_else(|| st.public_url.clone())
}

/// Mints `count` names and one-time join tokens and has the pool's provider start them (in
/// the background: the agents count as starting until they join or their deadline passes).
async fn scale_up(
    st: &AppState,
    config: &Config,
    pool: &PoolDef,
    count: u32,
) -> Result<(), String> {
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..count {
        let name = {
            let mut s = st.pools.lock();
            s.seq += 1;
            let salt: u32 = rand::random();
            format!("{}-{}-{:08x}", pool.name, s.seq, salt)
        };
        let (id, token) = st
            .store
            .create_pool_token(&pool.name, &name)
            .await
            .map_err(|e| format!("pool {}: cannot create a join token: {e}", pool.name))?;
        st.pools.lock().starting.insert(
            name.clone(),
            Starting {
                pool: pool.name.clone(),
                token_id: Some(id),
                deadline: Instant::now() + JOIN_DEADLINE,
            },
        );
        agents.push((name, token));
        ids.push(id);
    }
    let launch = Launch {
        pool: pool.name.clone(),
        server: server_url(st, config),
        agents,
        queues: pool.queues.clone(),
        slots: pool.slots,
        idle_timeout: pool.idle_timeout,
    };
    let p = provider(st, config, pool);
    let st = st.clone();
    tokio::spawn(async move {
        let pool_name = launch.pool.clone();
        match p.up(&launch).await {
            Ok(()) => {
                st.pools.lock().errors.remove(&pool_name);
            }
            Err(e) => {
                let e = format!("pool {pool_name}: up failed: {e}");
                tracing::warn!(pool = %pool_name, "{e}");
                // The agents will not come: give their tokens up now.
                for id in ids {
                    let _ = st.store.revoke_token(id).await;
                }
                let mut s = st.pools.lock();
                for (n, _) in &launch.agents {
                    s.starting.remove(n);
                }
                s.backoff
                    .insert(pool_name.clone(), Instant::now() + UP_BACKOFF);
                s.errors.insert(pool_name, e);
            }
        }
    });
    Ok(())
}

/// An agent of `pool` left: the provider removes it (`down`; best effort, logged).
pub(crate) fn agent_left(st: &AppState, pool: String, agent: String) {
    let st = st.clone();
    tokio::spawn(async move {
        let Ok(config) = st.sched.config().await else {
            return;
        };
        let Some(def) = config.pools.get(&pool) else {
            return;
        };
        let p = provider(&st, &config, def);
        match p.down(&pool, &agent).await {
            Ok(()) => tracing::info!(pool = %pool, agent = %agent, "agent removed (down)"),
            Err(e) => {
                let e = format!("pool {pool}: down {agent} failed: {e}");
                tracing::warn!(pool = %pool, agent = %agent, "{e}");
                st.pools.lock().errors.insert(pool, e);
            }
        }
    });
}

/// `GET /api/v1/pools`: each pool's size, desired size and why.
pub(crate) async fn list(
    State(s): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    if s.agents.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "agents_disabled",
            "this server does not accept agents",
        ));
    }
    Ok(Json(serde_json::json!({"pools": s.pools.views()})))
}
