//! The gate in front of dispatch: which waiting runs of one task or pipeline may start now
//! (concurrency and `start_delay`), and why the others wait.

use chrono::{DateTime, Utc};

/// An open run of one task or pipeline, as the gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRun {
    pub id: i64,
    /// Started: it holds a concurrency slot.
    pub active: bool,
    /// It has queued jobs (only those are gated).
    pub waiting: bool,
    /// It may not start before this (`start_delay`).
    pub not_before: Option<DateTime<Utc>>,
}

/// Whether a run's queued jobs may go to dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// They may (an active run, or one that takes a free slot now).
    Open,
    /// The run waits, with this reason.
    Held(String),
}

/// Gates the open runs of `target` (oldest first): an active run's jobs pass; a run that has
/// not started passes when its `start_delay` is over and a slot is free (oldest first), and
/// takes that slot. A run held for a slot is told which run holds one: an active run, or one
/// this call let through. Returns one answer per waiting run, in order.
pub fn gate(
    target: &str,
    concurrency: u32,
    runs: &[GateRun],
    now: DateTime<Utc>,
) -> Vec<(i64, Gate)> {
    let concurrency = concurrency.max(1) as usize;
    let mut holders: Vec<i64> = runs.iter().filter(|r| r.active).map(|r| r.id).collect();
    let mut slots = concurrency.saturating_sub(holders.len());
    let mut out = Vec::new();
    for run in runs.iter().filter(|r| r.waiting) {
        if run.active {
            out.push((run.id, Gate::Open));
            continue;
        }
        if let Some(until) = run.not_before.filter(|t| *t > now) {
            let why = format!("queued: start_delay until {}", until.format("%H:%M:%S"));
            out.push((run.id, Gate::Held(why)));
            continue;
        }
        if slots == 0 {
            // Every slot is held, so there is a holder: concurrency is at least 1.
            let holder = holders.first().copied().unwrap_or_default();
            let why = format!(
                "queued: waiting for run {holder} of `{target}` to finish (concurrency {concurrency})"
            );
            out.push((run.id, Gate::Held(why)));
            continue;
        }
        slots -= 1;
        holders.push(run.id);
        out.push((run.id, Gate::Open));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn run(id: i64, active: bool) -> GateRun {
        GateRun {
            id,
            active,
            waiting: true,
            not_before: None,
        }
    }

    #[test]
    fn a_run_held_for_a_slot_names_the_run_admitted_before_it() {
        // Neither run has started: the first takes the only slot in this pass, so the second
        // waits for it (not for "run 0").
        let out = gate("t", 1, &[run(4, false), run(5, false)], now());
        assert_eq!(out[0], (4, Gate::Open));
        assert_eq!(
            out[1],
            (
                5,
                Gate::Held("queued: waiting for run 4 of `t` to finish (concurrency 1)".into())
            )
        );
    }

    #[test]
    fn active_runs_hold_slots_and_delays_hold_runs() {
        let mut busy = run(1, true);
        busy.waiting = false;
        let out = gate("t", 1, &[busy, run(2, false)], now());
        assert_eq!(
            out,
            vec![(
                2,
                Gate::Held("queued: waiting for run 1 of `t` to finish (concurrency 1)".into())
            )]
        );
        let mut later = run(3, false);
        later.not_before = Some(now() + chrono::Duration::seconds(90));
        let out = gate("t", 2, &[later, run(4, false)], now());
        assert_eq!(
            out,
            vec![
                (3, Gate::Held("queued: start_delay until 12:01:30".into())),
                (4, Gate::Open)
            ]
        );
    }

    fn runs() -> impl Strategy<Value = Vec<GateRun>> {
        proptest::collection::vec(
            (any::<bool>(), any::<bool>(), proptest::option::of(-5i64..5)),
            0..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (active, waiting, delay))| GateRun {
                    id: i as i64 + 1,
                    active,
                    waiting,
                    not_before: delay.map(|d| now() + chrono::Duration::seconds(d)),
                })
                .collect()
        })
    }

    proptest! {
        /// The gate never lets more runs hold slots than concurrency allows (active runs
        /// already hold theirs), never lets a delayed run through, and a run held for a slot
        /// names a run that holds one.
        #[test]
        fn the_gate_never_admits_above_concurrency(runs in runs(), concurrency in 0u32..4) {
            let out = gate("t", concurrency, &runs, now());
            let by_id = |id: i64| runs.iter().find(|r| r.id == id).unwrap();
            let active = runs.iter().filter(|r| r.active).count();
            let admitted: Vec<i64> = out
                .iter()
                .filter(|(id, g)| *g == Gate::Open && !by_id(*id).active)
                .map(|(id, _)| *id)
                .collect();
            prop_assert!(active + admitted.len() <= (concurrency.max(1) as usize).max(active));
            for (id, g) in &out {
                let r = by_id(*id);
                prop_assert!(r.waiting);
                match g {
                    Gate::Open if !r.active => {
                        prop_assert!(r.not_before.is_none_or(|t| t <= now()));
                    }
                    Gate::Open => {}
                    Gate::Held(why) => {
                        prop_assert!(!r.active);
                        if let Some(holder) = why
                            .strip_prefix("queued: waiting for run ")
                            .and_then(|s| s.split(' ').next())
                        {
                            let holder: i64 = holder.parse().unwrap();
                            prop_assert!(
                                by_id(holder).active || admitted.contains(&holder),
                                "{} names run {} that holds no slot", why, holder
                            );
                        } else {
                            prop_assert!(why.starts_with("queued: start_delay until "));
                        }
                    }
                }
            }
        }
    }
}
