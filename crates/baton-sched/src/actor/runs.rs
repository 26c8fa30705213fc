//! The actor's open runs, kept so that a batch costs what it changes, not what is queued:
//!
//! - [`Runs`]: the open runs by id, indexed by target and by job, with an undo log of the runs
//!   a batch changed (their state before the batch, copied on their first change) that puts
//!   them back when the store refuses the batch, and the targets whose runs changed since the
//!   gates last looked;
//! - [`Gates`]: per target, what its gate and DAG let through to dispatch (the candidates) and
//!   why its other runs wait; recomputed only for targets whose runs changed, whose start delay
//!   ran out, or when the paused queues changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use baton_core::decide::{self, Gate, GateRun, Paused, QueuedJob};
use baton_core::run::{Status, TargetKind};
use chrono::{DateTime, Utc};

use crate::jobs::{LiveRun, ON_ERROR_JOB, TargetDef};

/// A task or pipeline, as runs are grouped for their gate.
pub(crate) type TargetKey = (TargetKind, String);

fn key_of(run: &LiveRun) -> TargetKey {
    (run.row.kind, run.row.target.clone())
}

/// The open runs, with their indexes and the batch's undo log.
#[derive(Default)]
pub(crate) struct Runs {
    map: BTreeMap<i64, LiveRun>,
    by_target: BTreeMap<TargetKey, BTreeSet<i64>>,
    /// Which run holds a job (a hint: checked on use, jobs added to a run later are found by a
    /// walk and added).
    job_run: HashMap<i64, i64>,
    /// During a batch: each run it changed, as it was before (`None`: it was not open).
    undo: Option<BTreeMap<i64, Option<LiveRun>>>,
    /// Targets whose runs changed since [`Runs::take_dirty`].
    dirty: BTreeSet<TargetKey>,
    /// The runs that changed (or were added, removed, put back) since [`Runs::take_dirty`].
    changed: BTreeSet<i64>,
}

impl std::ops::Deref for Runs {
    type Target = BTreeMap<i64, LiveRun>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Runs {
    /// Starts a batch: from here on every change keeps the run's prior state.
    pub fn begin(&mut self) {
        self.undo = Some(BTreeMap::new());
    }

    /// The batch is recorded: its prior states are dropped.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// The batch was refused: every run it changed is put back as it was before it.
    pub fn roll_back(&mut self) {
        let Some(undo) = self.undo.take() else {
            return;
        };
        for (id, before) in undo {
            let _ = self.unindex(id);
            if let Some(run) = before {
                self.index(&run);
                self.map.insert(id, run);
            }
        }
    }

    fn remember(&mut self, id: i64) {
        if let Some(undo) = &mut self.undo {
            undo.entry(id).or_insert_with(|| self.map.get(&id).cloned());
        }
    }

    fn index(&mut self, run: &LiveRun) {
        self.dirty.insert(key_of(run));
        self.changed.insert(run.row.id);
        self.by_target
            .entry(key_of(run))
            .or_default()
            .insert(run.row.id);
        for j in &run.row.jobs {
            self.job_run.insert(j.id, run.row.id);
        }
    }

    fn unindex(&mut self, id: i64) -> Option<LiveRun> {
        let run = self.map.remove(&id)?;
        let key = key_of(&run);
        if let Some(ids) = self.by_target.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_target.remove(&key);
            }
        }
        for j in &run.row.jobs {
            if self.job_run.get(&j.id) == Some(&id) {
                self.job_run.remove(&j.id);
            }
        }
        self.dirty.insert(key);
        self.changed.insert(id);
        Some(run)
    }

    pub fn insert(&mut self, id: i64, run: LiveRun) {
        self.remember(id);
        let _ = self.unindex(id);
        self.index(&run);
        self.map.insert(id, run);
    }

    pub fn remove(&mut self, id: &i64) -> Option<LiveRun> {
        let id = *id;
        if !self.map.contains_key(&id) {
            return None;
        }
        self.remember(id);
        self.unindex(id)
    }

    /// The run to change: its prior state is kept for the batch, and its target's gate is
    /// looked at again.
    pub fn get_mut(&mut self, id: &i64) -> Option<&mut LiveRun> {
        let key = key_of(self.map.get(id)?);
        self.remember(*id);
        self.dirty.insert(key);
        self.changed.insert(*id);
        self.map.get_mut(id)
    }

    /// The run to change only in what its gate does not read (its status and reason as
    /// shown): kept for the batch, its target's gate not looked at again.
    pub fn get_mut_shown(&mut self, id: &i64) -> Option<&mut LiveRun> {
        self.map.get(id)?;
        self.remember(*id);
        self.map.get_mut(id)
    }

    /// The open run that holds job `job_id`.
    pub fn run_of_job(&mut self, job_id: i64) -> Option<i64> {
        if let Some(id) = self.job_run.get(&job_id)
            && self.map.get(id).is_some_and(|r| r.job(job_id).is_some())
        {
            return Some(*id);
        }
        let id = self.map.values().find(|r| r.job(job_id).is_some())?.row.id;
        self.job_run.insert(job_id, id);
        Some(id)
    }

    /// The ids of the open runs of a target, oldest first.
    pub fn of_target(&self, key: &TargetKey) -> impl Iterator<Item = i64> + '_ {
        self.by_target.get(key).into_iter().flatten().copied()
    }

    /// The targets with open runs.
    pub fn targets(&self) -> impl Iterator<Item = &TargetKey> {
        self.by_target.keys()
    }

    /// The targets whose runs changed since the last call, and those runs.
    pub fn take_dirty(&mut self) -> (BTreeSet<TargetKey>, BTreeSet<i64>) {
        (
            std::mem::take(&mut self.dirty),
            std::mem::take(&mut self.changed),
        )
    }

    /// Marks every target as changed (paused queues or the config changed).
    pub fn all_dirty(&mut self) {
        let all: Vec<TargetKey> = self.by_target.keys().cloned().collect();
        self.dirty.extend(all);
    }
}

/// What one target's gate and DAG let through, and why the rest of its runs wait.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TargetGate {
    /// Its queued jobs that may start, for dispatch.
    pub candidates: Vec<QueuedJob>,
    /// Why its other runs wait (start delay, concurrency, the DAG, paused queues), by run.
    pub held: BTreeMap<i64, String>,
    /// The runs its gate holds (start delay, concurrency).
    pub gated: BTreeSet<i64>,
    /// When this answer goes stale (the first start delay still running out).
    pub until: Option<DateTime<Utc>>,
}

/// Gates the open runs of one target (oldest first).
pub(crate) fn gate_target(
    target: &str,
    runs: &[&LiveRun],
    paused: &Paused,
    now: DateTime<Utc>,
) -> TargetGate {
    let mut out = TargetGate::default();
    let Some(first) = runs.first() else {
        return out;
    };
    let gated: Vec<GateRun> = runs
        .iter()
        .map(|r| GateRun {
            id: r.row.id,
            active: r.is_active(),
            waiting: r.row.jobs.iter().any(|j| j.status == Status::Queued),
            not_before: r.row.not_before,
        })
        .collect();
    out.until = gated
        .iter()
        .filter(|r| r.waiting)
        .filter_map(|r| r.not_before)
        .filter(|t| *t > now)
        .min();
    let concurrency = first.def.admission().concurrency;
    let by_id: BTreeMap<i64, &LiveRun> = runs.iter().map(|r| (r.row.id, *r)).collect();
    for (run_id, gate) in decide::gate(target, concurrency, &gated, now) {
        if let Gate::Held(why) = gate {
            out.held.insert(run_id, why);
            out.gated.insert(run_id);
            continue;
        }
        let run = by_id[&run_id];
        let queued = run.row.jobs.iter().filter(|j| j.status == Status::Queued);
        let ready: Option<BTreeSet<String>> = match &run.def {
            TargetDef::Pipeline(p) => {
                Some(decide::dag_step(&run.dag(), p.continue_running_tasks_after_failure).ready)
            }
            TargetDef::Task(_) => None,
        };
        let dag = run.dag();
        for j in queued {
            let is_ready =
                j.name == ON_ERROR_JOB || ready.as_ref().is_none_or(|r| r.contains(&j.name));
            if is_ready {
                let queues = match paused.open_queues(&run.def.queues()) {
                    Ok(open) => open,
                    Err(why) => {
                        out.held.entry(run.row.id).or_insert(why);
                        continue;
                    }
                };
                out.candidates.push(QueuedJob {
                    job_id: j.id,
                    run_id: run.row.id,
                    queues,
                    priority: run.row.priority,
                    enqueued_at: run.row.enqueued_at,
                    container: run.def.container(&j.name).is_some(),
                });
            } else if let Some(d) = dag.iter().find(|d| d.name == j.name)
                && let Some(why) = decide::dag_wait_reason(d, &dag)
            {
                out.held.entry(run.row.id).or_insert(why);
            }
        }
    }
    out
}

/// Every target's gate, as last computed.
#[derive(Default)]
pub(crate) struct Gates {
    by_target: BTreeMap<TargetKey, TargetGate>,
}

impl Gates {
    /// Computes again the gates of the targets whose runs changed (and of those whose start
    /// delay ran out); returns the runs whose status or reason may have changed: those that
    /// changed, and those whose gate answer (why they wait) changed.
    pub fn refresh(&mut self, runs: &mut Runs, paused: &Paused, now: DateTime<Utc>) -> Vec<i64> {
        let (mut again, changed) = runs.take_dirty();
        for (key, g) in &self.by_target {
            if g.until.is_some_and(|t| t <= now) {
                again.insert(key.clone());
            }
        }
        let mut looked = changed;
        for key in again {
            let of: Vec<&LiveRun> = runs.of_target(&key).map(|id| &runs[&id]).collect();
            if of.is_empty() {
                self.by_target.remove(&key);
            } else {
                let g = gate_target(&key.1, &of, paused, now);
                let old = self.by_target.get(&key);
                for r in &of {
                    let id = r.row.id;
                    if old.and_then(|o| o.held.get(&id)) != g.held.get(&id) {
                        looked.insert(id);
                    }
                }
                self.by_target.insert(key, g);
            }
        }
        looked.into_iter().collect()
    }

    /// Every candidate for dispatch, target by target.
    pub fn candidates(&self) -> impl Iterator<Item = &QueuedJob> {
        self.by_target.values().flat_map(|g| g.candidates.iter())
    }

    /// Why run `run` of `key` waits before dispatch (its gate, the DAG, paused queues).
    pub fn held(&self, key: &TargetKey, run: i64) -> Option<&String> {
        self.by_target.get(key)?.held.get(&run)
    }

    /// Whether run `run` of `key` is held by its gate (start delay, concurrency).
    pub fn gated(&self, key: &TargetKey, run: i64) -> bool {
        self.by_target
            .get(key)
            .is_some_and(|g| g.gated.contains(&run))
    }

    #[cfg(test)]
    pub fn all(&self) -> &BTreeMap<TargetKey, TargetGate> {
        &self.by_target
    }
}

/// Every target's gate computed from scratch (what [`Gates::refresh`] keeps up to date).
#[cfg(test)]
pub(crate) fn gate_all(
    runs: &Runs,
    paused: &Paused,
    now: DateTime<Utc>,
) -> BTreeMap<TargetKey, TargetGate> {
    runs.targets()
        .map(|key| {
            let of: Vec<&LiveRun> = runs.of_target(key).map(|id| &runs[&id]).collect();
            (key.clone(), gate_target(&key.1, &of, paused, now))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::run::TriggerKind;
    use baton_store::{NewJob, NewRun};
    use chrono::TimeZone;
    use proptest::prelude::*;

    const CONFIG: &str = r#"
server: {agent_queues: [q]}
tasks:
  a:
    command: "true"
    concurrency: 1
  b:
    command: "true"
    concurrency: 2
    queues: [q]
"#;

    fn defs() -> Vec<(String, TargetDef)> {
        let config = baton_core::config::load_str(std::path::Path::new("baton.yaml"), CONFIG)
            .unwrap_or_else(|e| panic!("test config is invalid: {:?}", e.diagnostics));
        config
            .tasks
            .iter()
            .map(|(name, t)| (name.clone(), TargetDef::Task(Box::new(t.clone()))))
            .collect()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A new run of target (index), with a start delay in seconds.
        Add(usize, Option<u8>),
        /// The first queued job of the run (index among the open ones) starts.
        Start(usize),
        /// The run ends (leaves the open runs).
        End(usize),
        /// A started job goes back to the queue (a retry).
        Requeue(usize),
        /// A job is added to the run (a pipeline's `on_error`).
        AddJob(usize),
        /// Only the shown status and reason of the run change.
        Show(usize),
        TogglePause,
        Advance(u8),
        /// A batch starts; ends recorded or refused.
        Begin,
        Commit,
        RollBack,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize, proptest::option::of(0..30u8)).prop_map(|(t, d)| Op::Add(t, d)),
            3 => (0..8usize).prop_map(Op::Start),
            2 => (0..8usize).prop_map(Op::End),
            1 => (0..8usize).prop_map(Op::Requeue),
            1 => (0..8usize).prop_map(Op::AddJob),
            1 => (0..8usize).prop_map(Op::Show),
            1 => Just(Op::TogglePause),
            2 => (0..20u8).prop_map(Op::Advance),
            1 => Just(Op::Begin),
            1 => Just(Op::Commit),
            1 => Just(Op::RollBack),
        ]
    }

    struct World {
        defs: Vec<(String, TargetDef)>,
        runs: Runs,
        gates: Gates,
        paused: Paused,
        now: DateTime<Utc>,
        next_id: i64,
        /// The open runs as they were when the batch began, to compare after a roll back.
        before: Option<String>,
    }

    impl World {
        fn new() -> Self {
            World {
                defs: defs(),
                runs: Runs::default(),
                gates: Gates::default(),
                paused: Paused::default(),
                now: t0(),
                next_id: 1,
                before: None,
            }
        }

        fn nth(&self, i: usize) -> Option<i64> {
            let n = self.runs.len();
            (n > 0).then(|| *self.runs.keys().nth(i % n).expect("in range"))
        }

        fn shown(&self) -> String {
            format!("{:?}", self.runs.values().collect::<Vec<_>>())
        }

        fn apply(&mut self, op: Op) {
            match op {
                Op::Add(t, delay) => {
                    let (name, def) = self.defs[t % self.defs.len()].clone();
                    let new = NewRun {
                        kind: TargetKind::Task,
                        target: name.clone(),
                        trigger: TriggerKind::Api,
                        args: BTreeMap::new(),
                        tags: Vec::new(),
                        definition: serde_json::Value::Null,
                        status: Status::Queued,
                        reason: None,
                        priority: 0,
                        partition: None,
                        enqueued_at: self.now,
                        not_before: delay.map(|d| self.now + chrono::Duration::seconds(d.into())),
                        jobs: vec![NewJob { name }],
                        ancestors: Vec::new(),
                        repo: None,
                    };
                    let row = new.into_row(self.next_id, self.next_id * 10);
                    self.next_id += 1;
                    self.runs.insert(row.id, LiveRun::new(row, def));
                }
                Op::Start(i) => {
                    let Some(id) = self.nth(i) else { return };
                    let now = self.now;
                    let run = self.runs.get_mut(&id).expect("open");
                    run.row.started_at.get_or_insert(now);
                    if let Some(j) = run.row.jobs.iter_mut().find(|j| j.status == Status::Queued) {
                        j.status = Status::Started;
                    }
                }
                Op::End(i) => {
                    let Some(id) = self.nth(i) else { return };
                    assert!(self.runs.remove(&id).is_some());
                }
                Op::Requeue(i) => {
                    let Some(id) = self.nth(i) else { return };
                    let run = self.runs.get_mut(&id).expect("open");
                    for j in run.row.jobs.iter_mut().filter(|j| j.status.is_active()) {
                        j.status = Status::Queued;
                    }
                }
                Op::AddJob(i) => {
                    let Some(id) = self.nth(i) else { return };
                    let run = self.runs.get_mut(&id).expect("open");
                    let job_id = id * 10 + run.row.jobs.len() as i64;
                    let job =
                        baton_store::JobRow::queued(job_id, id, "extra", self.now, BTreeMap::new());
                    run.row.jobs.push(job);
                }
                Op::Show(i) => {
                    let Some(id) = self.nth(i) else { return };
                    let run = self.runs.get_mut_shown(&id).expect("open");
                    run.row.reason = Some(format!("shown {id}"));
                    run.stored_reason = run.row.reason.clone();
                }
                Op::TogglePause => {
                    let now = !self.paused.queues.contains("q");
                    self.paused.set(Some("q"), now);
                    self.runs.all_dirty();
                }
                Op::Advance(s) => self.now += chrono::Duration::seconds(s.into()),
                Op::Begin => {
                    if self.before.is_none() {
                        self.before = Some(self.shown());
                        self.runs.begin();
                    }
                }
                Op::Commit => {
                    self.before = None;
                    self.runs.commit();
                }
                Op::RollBack => {
                    if let Some(before) = self.before.take() {
                        self.runs.roll_back();
                        assert_eq!(
                            self.shown(),
                            before,
                            "a roll back restores the batch's start"
                        );
                    }
                }
            }
        }

        /// The indexes and the kept gates equal a computation from scratch.
        fn check(&mut self) {
            let mut by_target: BTreeMap<TargetKey, BTreeSet<i64>> = BTreeMap::new();
            for r in self.runs.values() {
                by_target.entry(key_of(r)).or_default().insert(r.row.id);
            }
            let indexed: BTreeMap<TargetKey, BTreeSet<i64>> = self
                .runs
                .targets()
                .map(|k| (k.clone(), self.runs.of_target(k).collect()))
                .collect();
            assert_eq!(indexed, by_target);
            let jobs: Vec<(i64, i64)> = self
                .runs
                .values()
                .flat_map(|r| r.row.jobs.iter().map(|j| (j.id, r.row.id)))
                .collect();
            for (job, run) in jobs {
                assert_eq!(self.runs.run_of_job(job), Some(run));
            }
            self.gates.refresh(&mut self.runs, &self.paused, self.now);
            assert_eq!(
                self.gates.all(),
                &gate_all(&self.runs, &self.paused, self.now)
            );
        }
    }

    proptest! {
        #[test]
        fn kept_gates_and_indexes_equal_a_full_recomputation(
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut w = World::new();
            for op in ops {
                w.apply(op);
                w.check();
            }
        }
    }

    #[test]
    fn a_refused_batch_puts_back_the_runs_it_changed_added_and_removed() {
        let mut w = World::new();
        for _ in 0..3 {
            w.apply(Op::Add(0, None));
        }
        w.check();
        let before = w.shown();
        w.runs.begin();
        w.apply(Op::Start(0));
        w.apply(Op::End(1));
        w.apply(Op::Add(1, Some(5)));
        w.apply(Op::AddJob(0));
        w.apply(Op::Show(2));
        w.check();
        assert_ne!(w.shown(), before);
        w.runs.roll_back();
        assert_eq!(w.shown(), before);
        w.check();
        // The gate lets the oldest run through again, as before the batch.
        let key = (TargetKind::Task, "a".to_string());
        assert_eq!(w.gates.all()[&key].candidates.len(), 1);
        assert_eq!(w.gates.all()[&key].held.len(), 2);
    }

    #[test]
    fn only_changed_targets_are_gated_again() {
        let mut w = World::new();
        for _ in 0..50 {
            w.apply(Op::Add(0, None));
        }
        w.apply(Op::Add(1, None));
        w.check();
        // Nothing changed: nothing is looked at.
        assert!(w.gates.refresh(&mut w.runs, &w.paused, w.now).is_empty());
        // A change to `b` looks at `b`'s run only.
        let b = w
            .runs
            .of_target(&(TargetKind::Task, "b".into()))
            .next()
            .unwrap();
        w.runs.get_mut(&b).unwrap().row.priority = 1;
        assert_eq!(w.gates.refresh(&mut w.runs, &w.paused, w.now), vec![b]);
        // A shown reason changes no gate.
        let a = w.runs.keys().next().copied().unwrap();
        w.runs.get_mut_shown(&a).unwrap().row.reason = Some("x".into());
        assert!(w.gates.refresh(&mut w.runs, &w.paused, w.now).is_empty());
    }
}
