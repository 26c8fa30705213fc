//! Autoscaled agent pools: how many agents a pool starts now, and why.
//!
//! The facts are counts the server gathers (jobs waiting for a worker on the pool's queues,
//! the pool's joined agents and their idle slots, agents launched that have not joined yet);
//! the answer is how many to start and one line that says why. Scaling in is the agents' own
//! business: an agent with no work for `idle_timeout` leaves by itself, so a lost server never
//! leaves machines running.

use serde::Serialize;

/// What the server knows about one pool right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolFacts {
    /// Queued jobs on the pool's queues that are ready and wait only for a worker.
    pub backlog: u32,
    /// Agents of the pool that joined and are still there.
    pub joined: u32,
    /// Free slots of those agents.
    pub idle_slots: u32,
    /// Agents launched whose join deadline has not passed and that have not joined.
    pub starting: u32,
    /// Slots each agent of the pool has.
    pub slots: u32,
    pub min: u32,
    pub max: u32,
}

/// What the pool should do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolDecision {
    /// Agents to launch now.
    pub start: u32,
    /// The size the pool is heading for (joined + starting + start).
    pub desired: u32,
    /// One line for the queue page and the API.
    pub why: String,
}

/// How many agents `f`'s pool starts now. Never more than `max` in all (joined and starting
/// count), at least enough to reach `min`, and otherwise enough slots for the backlog that the
/// idle slots and the slots of agents still starting do not cover.
#[must_use]
pub fn pool(f: PoolFacts) -> PoolDecision {
    let slots = f.slots.max(1);
    let size = f.joined.saturating_add(f.starting);
    let room = f.max.saturating_sub(size);
    let coming = f.starting.saturating_mul(slots);
    let covered = f.idle_slots.saturating_add(coming);
    let uncovered = f.backlog.saturating_sub(covered);
    let for_backlog = uncovered.div_ceil(slots);
    let for_min = f.min.saturating_sub(size);
    let wanted = for_backlog.max(for_min);
    let start = wanted.min(room);
    let desired = size.saturating_add(start);
    let why = if wanted > room && wanted > 0 {
        format!(
            "at max: backlog {} needs {} more agent(s) but the pool has {size} of max {}",
            f.backlog, wanted, f.max
        )
    } else if (for_min > 0 && for_min >= for_backlog)
        || (f.min > 0 && for_backlog == 0 && size <= f.min)
    {
        format!("min: the pool has {size} agent(s), min is {}", f.min)
    } else if for_backlog > 0 {
        format!(
            "backlog {} > idle slots {} (+{coming} starting): start {start}",
            f.backlog, f.idle_slots
        )
    } else if f.backlog > 0 {
        format!(
            "backlog {} covered by idle slots {} (+{coming} starting)",
            f.backlog, f.idle_slots
        )
    } else {
        format!("no backlog; {size} agent(s) (idle ones leave by themselves)")
    };
    PoolDecision {
        start,
        desired,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(backlog: u32, joined: u32, idle_slots: u32, starting: u32) -> PoolFacts {
        PoolFacts {
            backlog,
            joined,
            idle_slots,
            starting,
            slots: 1,
            min: 0,
            max: 3,
        }
    }

    #[test]
    fn backlog_beyond_idle_slots_starts_agents() {
        let d = pool(facts(2, 0, 0, 0));
        assert_eq!((d.start, d.desired), (2, 2));
        assert_eq!(d.why, "backlog 2 > idle slots 0 (+0 starting): start 2");
    }

    #[test]
    fn starting_agents_count_against_the_backlog() {
        let d = pool(facts(2, 0, 0, 2));
        assert_eq!((d.start, d.desired), (0, 2));
        assert!(d.why.starts_with("backlog 2 covered"), "{}", d.why);
    }

    #[test]
    fn never_past_max() {
        let d = pool(facts(10, 1, 0, 1));
        assert_eq!((d.start, d.desired), (1, 3));
        assert_eq!(
            d.why,
            "at max: backlog 10 needs 9 more agent(s) but the pool has 2 of max 3"
        );
        let d = pool(facts(10, 3, 0, 0));
        assert_eq!(d.start, 0);
        assert!(d.why.starts_with("at max"), "{}", d.why);
    }

    #[test]
    fn min_is_kept_without_backlog() {
        let d = pool(PoolFacts {
            min: 2,
            ..facts(0, 1, 1, 0)
        });
        assert_eq!((d.start, d.desired), (1, 2));
        assert_eq!(d.why, "min: the pool has 1 agent(s), min is 2");
        // Once it is starting, min is still why the pool has that size.
        let d = pool(PoolFacts {
            min: 2,
            ..facts(0, 1, 1, 1)
        });
        assert_eq!((d.start, d.desired), (0, 2));
        assert_eq!(d.why, "min: the pool has 2 agent(s), min is 2");
    }

    #[test]
    fn slots_divide_the_backlog() {
        let d = pool(PoolFacts {
            slots: 4,
            max: 10,
            ..facts(9, 0, 0, 0)
        });
        assert_eq!(d.start, 3);
    }

    #[test]
    fn nothing_to_do() {
        let d = pool(facts(0, 2, 2, 0));
        assert_eq!((d.start, d.desired), (0, 2));
        assert!(d.why.starts_with("no backlog"), "{}", d.why);
    }

    proptest! {
        #[test]
        fn the_decision_keeps_its_bounds(
            backlog in 0u32..100, joined in 0u32..20, idle in 0u32..40, starting in 0u32..20,
            slots in 1u32..8, min in 0u32..10, extra in 0u32..20,
        ) {
            let max = min + extra;
            let f = PoolFacts { backlog, joined, idle_slots: idle, starting, slots, min, max };
            let d = pool(f);
            let size = joined + starting;
            // Never past max, never shrinking: scale-in is the agents' own.
            prop_assert!(d.start == 0 || size + d.start <= max);
            prop_assert_eq!(d.desired, size + d.start);
            // Min is reached whenever max allows.
            prop_assert!(d.desired >= min.min(max.max(size)));
            // Enough slots for the backlog, unless at max.
            if d.desired < max {
                prop_assert!(idle + (starting + d.start) * slots >= backlog || d.desired >= max);
            }
            // No agent started for nothing: without backlog, only min.
            if backlog <= idle + starting * slots {
                prop_assert_eq!(d.start, min.saturating_sub(size).min(max.saturating_sub(size)));
            }
            prop_assert!(!d.why.is_empty());
        }
    }
}
