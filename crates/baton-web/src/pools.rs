//! Autoscaled agent pools (`pools:`): a background loop that, once a second, gathers each
//! pool's facts (jobs waiting for a worker on its queues, its agents and their idle slots,
//! agents started that have not joined yet), asks `baton_core::decide::pool` how many agents
//! to start, and starts them with the pool's provider.
//!
//! Each agent started gets its own one-time join token, scoped to its pool and its name
//! (`pool-join:POOL:AGENT`, stored hashed, used up by the join). The provider gets the tokens
//! in its environment only (never argv, never a log). An agent that does not join within
//! [`JOIN_DEADLINE`] is given up: its token is revoked and it no longer counts as starting.
//! Scaling in is the agents' own: an agent of a pool leaves after its idle timeout (the leave
//! route revokes its credential) and the server then runs the provider's `down` with its name.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use baton_core::config::{Config, PoolDef, PoolProvider};
use baton_core::decide::PoolFacts;
use baton_core::decide::pool::pool as decide_pool;
use baton_exec::Health;
use baton_exec::agent::AgentHub;
use baton_exec::background::{CancellationToken, Loop};

use crate::auth::CurrentUser;
use crate::{ApiError, AppState};

/// How often the scaler looks at the pools.
const TICK: Duration = Duration::from_secs(1);
/// How long a started agent has to join before it is given up (its token revoked).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// After a provider's `up` fails, the pool waits this long before it tries again.
const UP_BACKOFF: Duration = Duration::from_secs(10);
/// How long `up` and `down` may run.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(300);

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
    token_id: i64,
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
    seq: u64,
}

/// The pools' state, shared by the scaler loop and the routes.
#[derive(Default)]
pub struct Pools {
    state: Mutex<State_>,
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
    Loop::new("pool scaler", TICK, stop).spawn((), move |_| {
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
    let expired: Vec<(String, i64)> = {
        let mut s = st.pools.lock();
        s.starting.retain(|name, _| !known.contains(name));
        let gone: Vec<(String, i64)> = s
            .starting
            .iter()
            .filter(|(_, a)| a.deadline <= now || !config.pools.contains_key(&a.pool))
            .map(|(n, a)| (n.clone(), a.token_id))
            .collect();
        for (n, _) in &gone {
            s.starting.remove(n);
        }
        gone
    };
    for (name, token) in expired {
        tracing::warn!(
            agent = %name,
            "a pool's agent did not join within {}s; its join token is revoked",
            JOIN_DEADLINE.as_secs()
        );
        if let Err(e) = st.store.revoke_token(token).await {
            tracing::warn!(agent = %name, "cannot revoke its join token: {e}");
        }
    }
    let mut views = BTreeMap::new();
    for pool in config.pools.values() {
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

/// Mints `count` names and one-time join tokens and runs the pool's `up` (in the background:
/// the agents count as starting until they join or their deadline passes).
async fn scale_up(
    st: &AppState,
    config: &Config,
    pool: &PoolDef,
    count: u32,
) -> Result<(), String> {
    let mut names = Vec::new();
    let mut tokens = Vec::new();
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
                token_id: id,
                deadline: Instant::now() + JOIN_DEADLINE,
            },
        );
        names.push(name);
        tokens.push((id, token));
    }
    let PoolProvider::Command { up, .. } = &pool.provider;
    let mut env = vec![
        ("BATON_POOL".to_string(), pool.name.clone()),
        ("BATON_COUNT".to_string(), count.to_string()),
        ("BATON_SERVER".to_string(), server_url(st, config)),
        ("BATON_AGENT_NAMES".to_string(), names.join(" ")),
        (
            "BATON_JOIN_TOKENS".to_string(),
            tokens
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("BATON_QUEUES".to_string(), pool.queues.join(",")),
        ("BATON_SLOTS".to_string(), pool.slots.to_string()),
        (
            "BATON_IDLE_TIMEOUT".to_string(),
            format!("{}s", pool.idle_timeout.as_secs().max(1)),
        ),
    ];
    if let ([name], [(_, token)]) = (names.as_slice(), tokens.as_slice()) {
        env.push(("BATON_AGENT_NAME".into(), name.clone()));
        env.push(("BATON_JOIN_TOKEN".into(), token.clone()));
    }
    let (st, pool_name, up, ids) = (
        st.clone(),
        pool.name.clone(),
        up.clone(),
        tokens.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
    );
    tokio::spawn(async move {
        match run_provider(&up, &[], &env).await {
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
                for n in &names {
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

/// Runs a provider's program with `args` and `env` (added to a cleared environment with only
/// `PATH` and `HOME`), its output drained; the error says how it ended and its last output
/// (which never holds a token unless the program prints one).
async fn run_provider(
    program: &str,
    args: &[&str],
    env: &[(String, String)],
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_string(), p)))
        .envs(std::env::var("HOME").map(|p| ("HOME".to_string(), p)))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stderr = child.stderr.take();
    // The output is read beside the wait; agents the program starts in the background may keep
    // the pipe open, so after the program ends only what is there within a second is kept.
    let mut reader = tokio::spawn(async move {
        let mut err = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || err.len() > 64 * 1024 {
                    break;
                }
                err.extend_from_slice(&buf[..n]);
            }
        }
        err
    });
    let status = tokio::time::timeout(PROVIDER_TIMEOUT, child.wait())
        .await
        .map_err(|_| {
            format!(
                "{program} did not finish within {}s",
                PROVIDER_TIMEOUT.as_secs()
            )
        })?;
    let err = match tokio::time::timeout(Duration::from_secs(1), &mut reader).await {
        Ok(Ok(e)) => e,
        _ => {
            reader.abort();
            Vec::new()
        }
    };
    let status = status.map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let tail = String::from_utf8_lossy(&err);
    let tail = tail.trim();
    let tail: String = tail
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("{program} exited with {status}: {tail}"))
}

/// An agent of `pool` left: run the pool's `down` with its name (best effort, logged).
pub(crate) fn agent_left(st: &AppState, pool: String, agent: String) {
    let st = st.clone();
    tokio::spawn(async move {
        let Ok(config) = st.sched.config().await else {
            return;
        };
        let Some(def) = config.pools.get(&pool) else {
            return;
        };
        let PoolProvider::Command { down, .. } = &def.provider;
        let Some(down) = down else { return };
        let env = [
            ("BATON_POOL".to_string(), pool.clone()),
            ("BATON_AGENT_NAME".to_string(), agent.clone()),
        ];
        match run_provider(down, &[agent.as_str()], &env).await {
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
