//! Pull-mode agents: workers the server cannot reach. An agent connects out, long-polls for
//! work, runs each job under its own local supervisor, streams the log back by byte offset,
//! uploads artifacts, and reports the exit record.
//!
//! The server side is an [`AgentHub`] (shared by the scheduler and the HTTP routes) and one
//! [`AgentExecutor`] per agent worker slot, named `agent:<agent>:<slot>`. Everything the agent
//! sends lands in the same job folder as a local job's, so logs, SSE and recovery work alike.
//! An agent that stops polling for longer than the heartbeat timeout is lost: its jobs end
//! `broken`. An agent that comes back re-reports the jobs it still runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::executor::{BoxFuture, Executor, Health, Reattached, RunningJob};
use crate::layout::{
    LOG_FILE, OUT_DIR, SPEC_FILE, WORK_DIR, read_exit, read_exit_async, write_atomic,
};
use crate::{ExecError, ExitRecord, JobSecrets, JobSpec, Outcome};

mod executor;
mod images;

pub use executor::*;
pub use images::{ImageAnswer, ImageQuery};

/// Worker names of agent slots start with this.
pub const WORKER_PREFIX: &str = "agent:";

/// One job handed to an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub job_id: i64,
    pub attempt: u32,
    pub spec: JobSpec,
    /// The job's secrets (not part of a serialized [`JobSpec`]): they travel only over the
    /// agent's authenticated channel, and the agent hands them to its supervisor's stdin pipe
    /// or its engine, never to a file.
    #[serde(default)]
    pub secrets: JobSecrets,
}

/// A job an agent is told to cancel, or says it holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobRef {
    pub job_id: i64,
    pub attempt: u32,
}

/// The answer to a poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PollResponse {
    pub jobs: Vec<Assignment>,
    pub cancel: Vec<JobRef>,
    /// Container images whose id the server asks the agent's engine for (the CI cache of a
    /// job about to be handed to it); answered with `POST /agents/images/{id}`.
    #[serde(default)]
    pub images: Vec<ImageQuery>,
}

/// What an agent says about itself on every poll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentInfo {
    pub queues: Vec<String>,
    pub slots: u32,
}

/// The body of a poll: the agent's queues and slots, and the jobs it holds (every job folder
/// on its disk, running or still being reported). A job handed out in an earlier answer that
/// the agent does not hold never reached it, or the agent restarted before starting it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PollBody {
    #[serde(flatten)]
    pub info: AgentInfo,
    #[serde(default)]
    pub holds: Option<Vec<JobRef>>,
    /// The agent answers [`ImageQuery`]s (an older agent does not: its container jobs' cache
    /// digests then count the image by its name).
    #[serde(default)]
    pub image_ids: bool,
}

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentState {
    pub name: String,
    pub queues: Vec<String>,
    pub slots: u32,
    /// Seconds since the agent was last heard from.
    pub last_seen_secs: f64,
    pub connected: bool,
    pub disabled: bool,
    /// The autoscaled pool the agent belongs to, if any.
    pub pool: Option<String>,
}

struct Agent {
    info: AgentInfo,
    last_seen: Instant,
    /// Polls in progress: an agent waiting in a long poll is alive.
    polling: u32,
    disabled: bool,
    mailbox: VecDeque<Assignment>,
    cancels: VecDeque<JobRef>,
    /// Image questions not yet handed to the agent.
    images: VecDeque<ImageQuery>,
    /// Whether its polls said it answers image questions.
    image_ids: bool,
    wake: Arc<Notify>,
    /// Polls so far; each poll's number orders it against the answers handed out.
    polls: u64,
    /// Jobs handed out (or re-attached after a server restart, as poll 0) whose end has not
    /// been seen: each must be in the holds of every later poll.
    handed: BTreeMap<JobRef, u64>,
    /// Jobs a later poll did not hold: lost without ever starting on the agent.
    missing: BTreeSet<JobRef>,
    /// A pool's agent: its pool, and the queues and slots the pool gives it (what the agent
    /// says about itself is ignored).
    pool: Option<(String, AgentInfo)>,
}

impl Agent {
    /// Moves every job handed out before this poll that the agent does not hold to `missing`.
    fn check_holds(&mut self, holds: &[JobRef]) {
        let held: BTreeSet<&JobRef> = holds.iter().collect();
        let polls = self.polls;
        let gone: Vec<JobRef> = self
            .handed
            .iter()
            .filter(|(j, seq)| **seq < polls && !held.contains(j))
            .map(|(j, _)| *j)
            .collect();
        for j in gone {
            self.handed.remove(&j);
            self.missing.insert(j);
        }
    }
}

impl Assignment {
    pub fn job_ref(&self) -> JobRef {
        JobRef {
            job_id: self.job_id,
            attempt: self.attempt,
        }
    }
}

struct State {
    agents: BTreeMap<String, Agent>,
    /// Jobs re-attached for agents that have not polled since the server started.
    expected: BTreeMap<String, BTreeSet<JobRef>>,
    /// Image questions asked and not yet taken back by their asker: the agent asked, and
    /// its answer once it came.
    questions: BTreeMap<u64, images::Question>,
    /// The id of the next image question.
    next_question: u64,
}

/// The server's side of all agents.
pub struct AgentHub {
    state: Mutex<State>,
    /// Notified when agents come, go or poll: the scheduler re-reads [`AgentHub::workers`].
    changed: Arc<Notify>,
    /// Notified when any job's exit record arrives.
    exits: Arc<Notify>,
    /// Notified when an agent answers an image question.
    answers: Arc<Notify>,
    heartbeat_timeout: Duration,
    started: Instant,
}

impl AgentHub {
    pub fn new(heartbeat_timeout: Duration) -> Arc<AgentHub> {
        Arc::new(AgentHub {
            state: Mutex::new(State {
                agents: BTreeMap::new(),
                expected: BTreeMap::new(),
                questions: BTreeMap::new(),
                next_question: 1,
            }),
            changed: Arc::new(Notify::new()),
            exits: Arc::new(Notify::new()),
            answers: Arc::new(Notify::new()),
            heartbeat_timeout,
            started: Instant::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker name of one slot of an agent.
    pub fn worker_name(agent: &str, slot: u32) -> String {
        format!("{WORKER_PREFIX}{agent}:{slot}")
    }

    /// The agent a worker name belongs to.
    pub fn agent_of(worker: &str) -> Option<&str> {
        worker
            .strip_prefix(WORKER_PREFIX)
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(agent, _)| agent)
    }

    /// Notified whenever the set or state of agents changes.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Records that `name` is alive with these queues and slots.
    pub fn register(&self, name: &str, info: AgentInfo) {
        let mut st = self.lock();
        let a = st.agents.entry(name.to_string()).or_insert_with(|| Agent {
            info: info.clone(),
            last_seen: Instant::now(),
            polling: 0,
            disabled: false,
            mailbox: VecDeque::new(),
            cancels: VecDeque::new(),
            images: VecDeque::new(),
            image_ids: false,
            wake: Arc::new(Notify::new()),
            polls: 0,
            handed: BTreeMap::new(),
            missing: BTreeSet::new(),
            pool: None,
        });
        let info = match &a.pool {
            Some((_, pinned)) => pinned.clone(),
            None => info,
        };
        let changed = a.info != info;
        a.info = info;
        a.last_seen = Instant::now();
        if let Some(jobs) = st.expected.remove(name) {
            let a = st.agents.get_mut(name).expect("just inserted");
            for j in jobs {
                a.handed.entry(j).or_insert(0);
            }
        }
        drop(st);
        if changed {
            self.changed.notify_one();
        }
    }

    /// Records that `name` joined as an agent of `pool` with the pool's queues and slots;
    /// they stay the pool's whatever the agent's polls say.
    pub fn register_pool(&self, name: &str, pool: &str, info: AgentInfo) {
        self.register(name, info.clone());
        let mut st = self.lock();
        if let Some(a) = st.agents.get_mut(name) {
            a.info = info.clone();
            a.pool = Some((pool.to_string(), info));
        }
        drop(st);
        self.changed.notify_one();
    }

    /// An agent leaves (a pool's agent idle for its `idle_timeout`): it is forgotten, unless
    /// work was handed to it that it has not reported (then it must stay and do it). Returns
    /// the pool it belonged to.
    pub fn leave(&self, name: &str) -> Result<Option<String>, String> {
        let mut st = self.lock();
        let Some(a) = st.agents.get(name) else {
            return Ok(None);
        };
        if !a.mailbox.is_empty() || !a.handed.is_empty() {
            return Err(format!(
                "agent {name} has work it has not reported ({} waiting, {} handed out): it cannot leave now",
                a.mailbox.len(),
                a.handed.len()
            ));
        }
        let pool = st.agents.remove(name).and_then(|a| a.pool.map(|(p, _)| p));
        drop(st);
        self.changed.notify_one();
        Ok(pool)
    }

    fn alive(&self, a: &Agent) -> bool {
        !a.disabled && (a.polling > 0 || a.last_seen.elapsed() < self.heartbeat_timeout)
    }

    /// The slots of every known agent, as workers: (name, queues, health).
    pub fn workers(&self) -> Vec<(String, Vec<String>, Health)> {
        let st = self.lock();
        let mut out = Vec::new();
        for (name, a) in &st.agents {
            let health = if a.disabled {
                Health::Disabled(format!("agent {name} is disabled"))
            } else if self.alive(a) {
                Health::Up
            } else {
                Health::Down(format!(
                    "agent {name} lost: no heartbeat for {}s",
                    a.last_seen.elapsed().as_secs()
                ))
            };
            for slot in 1..=a.info.slots.max(1) {
                out.push((
                    Self::worker_name(name, slot),
                    a.info.queues.clone(),
                    health.clone(),
                ));
            }
        }
        out
    }

    pub fn agents(&self) -> Vec<AgentState> {
        let st = self.lock();
        st.agents
            .iter()
            .map(|(name, a)| AgentState {
                name: name.clone(),
                queues: a.info.queues.clone(),
                slots: a.info.slots,
                last_seen_secs: a.last_seen.elapsed().as_secs_f64(),
                connected: a.polling > 0,
                disabled: a.disabled,
                pool: a.pool.as_ref().map(|(p, _)| p.clone()),
            })
            .collect()
    }

    /// Waits up to `wait` for work for `name`; returns at once when there is some.
    pub async fn poll(
        self: &Arc<Self>,
        name: &str,
        body: PollBody,
        wait: Duration,
    ) -> PollResponse {
        self.register(name, body.info);
        let (wake, seq) = {
            let mut st = self.lock();
            let Some(a) = st.agents.get_mut(name) else {
                return PollResponse::default();
            };
            a.polling += 1;
            a.polls += 1;
            a.image_ids = body.image_ids;
            if let Some(holds) = body.holds {
                a.check_holds(&holds);
            }
            (a.wake.clone(), a.polls)
        };
        self.exits.notify_waiters();
        // Counts this poll as a live connection until it returns or the agent hangs up.
        struct Polling<'a>(&'a AgentHub, &'a str);
        impl Drop for Polling<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                if let Some(a) = st.agents.get_mut(self.1) {
                    a.polling = a.polling.saturating_sub(1);
                    a.last_seen = Instant::now();
                }
            }
        }
        let _guard = Polling(self, name);
        self.changed.notify_one();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = wake.notified();
            {
                let mut st = self.lock();
                let Some(a) = st.agents.get_mut(name) else {
                    return PollResponse::default();
                };
                if !a.mailbox.is_empty() || !a.cancels.is_empty() || !a.images.is_empty() {
                    let jobs: Vec<Assignment> = a.mailbox.drain(..).collect();
                    for j in &jobs {
                        a.handed.insert(j.job_ref(), seq);
                    }
                    return PollResponse {
                        jobs,
                        cancel: a.cancels.drain(..).collect(),
                        images: a.images.drain(..).collect(),
                    };
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return PollResponse::default();
            }
        }
    }

    /// Stops giving work to `name`; its running jobs end `broken` after the heartbeat timeout
    /// unless it is enabled again.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> bool {
        let mut st = self.lock();
        let found = match st.agents.get_mut(name) {
            Some(a) => {
                a.disabled = disabled;
                a.wake.notify_one();
                true
            }
            None => false,
        };
        drop(st);
        self.changed.notify_one();
        found
    }

    /// Records a job's end as the agent reported it (durably), and wakes its waiter.
    pub fn report_exit(&self, dir: &Path, rec: &ExitRecord) -> Result<(), ExecError> {
        if read_exit(dir).is_none() {
            let path = dir.join(crate::layout::EXIT_FILE);
            let json = serde_json::to_vec_pretty(rec).map_err(|source| ExecError::Json {
                path: path.clone(),
                source,
            })?;
            write_atomic(&path, &json, true).map_err(|e| ExecError::io("write", &path, e))?;
        }
        self.exits.notify_waiters();
        Ok(())
    }

    fn lost(&self, agent: &str) -> Option<String> {
        let st = self.lock();
        let (seen, polling) = match st.agents.get(agent) {
            Some(a) => (a.last_seen, a.polling),
            None => (self.started, 0),
        };
        (polling == 0 && seen.elapsed() >= self.heartbeat_timeout).then(|| {
            format!(
                "agent {agent} lost: no heartbeat for {}s (timeout {}s)",
                seen.elapsed().as_secs(),
                self.heartbeat_timeout.as_secs()
            )
        })
    }

    /// Why `job` is lost although its agent is alive: a poll after it was handed out did not
    /// hold it.
    fn missing(&self, agent: &str, job: JobRef) -> Option<String> {
        let st = self.lock();
        st.agents
            .get(agent)
            .is_some_and(|a| a.missing.contains(&job))
            .then(|| {
                format!(
                    "agent {agent} does not have job {} attempt {}: the assignment never reached it, or it restarted before starting the job",
                    job.job_id, job.attempt
                )
            })
    }

    /// A job's end is known (or it was given up): stop tracking it.
    fn forget(&self, agent: &str, job: JobRef) {
        let mut st = self.lock();
        if let Some(a) = st.agents.get_mut(agent) {
            a.handed.remove(&job);
            a.missing.remove(&job);
        }
    }

    /// After a server restart, a re-attached job must be held by the agent's next poll.
    fn expect(&self, agent: &str, job: JobRef) {
        let mut st = self.lock();
        match st.agents.get_mut(agent) {
            Some(a) => {
                a.handed.entry(job).or_insert(0);
            }
            // The agent has not polled since the restart: its first poll takes this over.
            None => {
                st.expected
                    .entry(agent.to_string())
                    .or_default()
                    .insert(job);
            }
        }
    }

    fn push(&self, agent: &str, f: impl FnOnce(&mut Agent)) -> bool {
        let mut st = self.lock();
        match st.agents.get_mut(agent) {
            Some(a) => {
                f(a);
                a.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_round_trip() {
        let w = AgentHub::worker_name("build-box:7", 2);
        assert_eq!(w, "agent:build-box:7:2");
        assert_eq!(AgentHub::agent_of(&w), Some("build-box:7"));
        assert_eq!(AgentHub::agent_of("local-1"), None);
    }

    #[test]
    fn append_is_idempotent_and_refuses_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(append_at(&p, 0, b"hello ", &[]).unwrap(), Ok(6));
        assert_eq!(append_at(&p, 3, b"lo world", &[]).unwrap(), Ok(11));
        assert_eq!(append_at(&p, 0, b"hello", &[]).unwrap(), Ok(11));
        assert_eq!(append_at(&p, 20, b"x", &[]).unwrap(), Err(11));
        assert_eq!(std::fs::read(&p).unwrap(), b"hello world");
        // Only new bytes get an arrival mark (at most one per millisecond).
        let marks = crate::logidx::read_marks(&p, 0, u64::MAX, 10).unwrap();
        assert_eq!(marks.first().map(|m| m.offset), Some(0));
        assert!(
            marks.iter().all(|m| m.offset == 0 || m.offset == 6),
            "{marks:?}"
        );
    }

    #[test]
    fn an_agents_marks_keep_streams_and_times_of_the_new_bytes() {
        use crate::logidx::{LogMark, Stream, read_marks};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, b"").unwrap();
        let mark = |offset, time_ms, stream| LogMark {
            offset,
            time_ms,
            stream,
        };
        // out\nerr\nout\n: stdout from 0, stderr from 4, stdout again from 8.
        let marks = [
            mark(0, 1_000, Stream::Stdout),
            mark(4, 2_000, Stream::Stderr),
            mark(8, 3_000, Stream::Stdout),
        ];
        assert_eq!(append_at(&p, 0, b"out\ner", &marks[..2]).unwrap(), Ok(6));
        // The resend overlaps what the server has: only bytes 6.. are new, under the stderr
        // mark from 4, then stdout from 8.
        assert_eq!(
            append_at(&p, 4, b"err\nout\n", &marks[1..]).unwrap(),
            Ok(12)
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"out\nerr\nout\n");
        let got = read_marks(&p, 0, u64::MAX, 10).unwrap();
        assert_eq!(
            got,
            [
                mark(0, 1_000, Stream::Stdout),
                mark(4, 2_000, Stream::Stderr),
                mark(6, 2_000, Stream::Stderr),
                mark(8, 3_000, Stream::Stdout),
            ]
        );
    }

    #[tokio::test]
    async fn poll_returns_work_at_once_and_times_out_empty() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let info = AgentInfo {
            queues: vec!["arm".into()],
            slots: 1,
        };
        hub.register("a1", info.clone());
        assert_eq!(hub.workers()[0].0, "agent:a1:1");
        let body = |holds: Option<Vec<JobRef>>| PollBody {
            info: info.clone(),
            holds,
            image_ids: false,
        };
        let empty = hub.poll("a1", body(None), Duration::from_millis(20)).await;
        assert_eq!(empty, PollResponse::default());
        let h2 = hub.clone();
        let b2 = body(None);
        let waiter = tokio::spawn(async move { h2.poll("a1", b2, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = JobRef {
            job_id: 5,
            attempt: 1,
        };
        assert!(hub.push("a1", |a| a.cancels.push_back(r)));
        let got = waiter.await.unwrap();
        assert_eq!(got.cancel, vec![r]);
    }

    fn assignment(job_id: i64) -> Assignment {
        Assignment {
            job_id,
            attempt: 1,
            spec: JobSpec {
                run_id: 1,
                job_id,
                task: "t".into(),
                script: "true".into(),
                env: vec![],
                timeout: None,
                kill_grace: Duration::from_secs(1),
                secrets: Default::default(),
                container: None,
                checkout: None,
                unset_env: Vec::new(),
                artifacts: Vec::new(),
                artifacts_required: false,
                ephemeral: false,
            },
            secrets: JobSecrets::default(),
        }
    }

    #[tokio::test]
    async fn a_job_handed_out_but_not_held_by_a_later_poll_is_missing() {
        let hub = AgentHub::new(Duration::from_secs(30));
        let info = AgentInfo {
            queues: vec!["arm".into()],
            slots: 2,
        };
        let body = |holds: Vec<JobRef>| PollBody {
            info: info.clone(),
            holds: Some(holds),
            image_ids: false,
        };
        let quick = Duration::from_millis(10);
        hub.register("a1", info.clone());
        let (j1, j2) = (assignment(1), assignment(2));
        let (r1, r2) = (j1.job_ref(), j2.job_ref());
        assert!(hub.push("a1", |a| a.mailbox.extend([j1, j2])));
        // The answer hands both out; nothing is missing before the next poll.
        let got = hub.poll("a1", body(vec![]), quick).await;
        assert_eq!(got.jobs.len(), 2);
        assert_eq!(hub.missing("a1", r1), None);
        // The next poll holds job 1 only: job 2 never reached the agent.
        hub.poll("a1", body(vec![r1]), quick).await;
        assert_eq!(hub.missing("a1", r1), None);
        let why = hub.missing("a1", r2).expect("job 2 is missing");
        assert!(why.contains("job 2 attempt 1"), "{why}");
        // A job re-attached after a server restart, for an agent not seen since, must be held
        // by the agent's first poll.
        let r3 = JobRef {
            job_id: 3,
            attempt: 1,
        };
        let restarted = AgentHub::new(Duration::from_secs(30));
        restarted.expect("a1", r1);
        restarted.expect("a1", r3);
        restarted.poll("a1", body(vec![r1]), quick).await;
        assert_eq!(restarted.missing("a1", r1), None);
        assert!(restarted.missing("a1", r3).is_some());
        restarted.forget("a1", r3);
        assert_eq!(restarted.missing("a1", r3), None);
    }
}
