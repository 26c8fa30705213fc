//! Admission of a trigger: skip or supersede, debounce, wait-list append/replace/refuse,
//! partitioned replace, start_delay.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{PipelineDef, QueueStrategy, TaskDef, WaitStrategy};

/// How a task or pipeline admits new runs while others are queued or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// How many runs may be active at once.
    pub concurrency: u32,
    pub queue: QueuePolicy,
    /// Triggers within this window after the last start are skipped.
    pub debounce: Option<Duration>,
    /// A queued run waits at least this long before it may start.
    pub start_delay: Option<Duration>,
}

/// What happens to a trigger when `concurrency` runs are already queued or active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// py4CI default: no wait list. A trigger supersedes a run that has not started yet (it
    /// ends `skipped`); while every slot runs, the trigger is skipped.
    Skip,
    /// Wait in line; `None` is unbounded. When full the trigger is refused.
    Append { limit: Option<u32> },
    /// Wait in line; when full the newest waiting run is replaced.
    Replace { limit: Option<u32> },
    /// One wait list per partition (a trigger argument), each of `limit` runs; when full the
    /// partition's newest waiting run is replaced.
    PartitionedReplace { limit: u32 },
}

impl Admission {
    pub fn for_task(t: &TaskDef) -> Self {
        let queue = match t.wait_list {
            None => QueuePolicy::Skip,
            Some(w) => match w.strategy {
                WaitStrategy::Append => QueuePolicy::Append {
                    limit: Some(w.size),
                },
                WaitStrategy::Replace => QueuePolicy::Replace {
                    limit: Some(w.size),
                },
            },
        };
        Admission {
            concurrency: t.concurrency.max(1),
            queue,
            debounce: t.debounce,
            start_delay: None,
        }
    }

    pub fn for_pipeline(p: &PipelineDef) -> Self {
        let queue = match p.queue_strategy {
            QueueStrategy::Append => QueuePolicy::Append {
                limit: p.queue_limit,
            },
            QueueStrategy::Replace => QueuePolicy::Replace {
                limit: p.queue_limit,
            },
            QueueStrategy::PartitionedReplace { partition_limit } => {
                QueuePolicy::PartitionedReplace {
                    limit: partition_limit,
                }
            }
        };
        Admission {
            concurrency: p.concurrency.max(1),
            queue,
            debounce: None,
            start_delay: p.start_delay,
        }
    }
}

/// A run of the same task or pipeline that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRun {
    pub id: i64,
    /// Started (holds or held a worker) rather than waiting.
    pub active: bool,
    pub partition: Option<String>,
    /// It may not start before this (`start_delay`).
    pub not_before: Option<DateTime<Utc>>,
}

/// A waiting run that a new one takes the place of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Displace {
    /// prunner's `replace`: the waiting run becomes `canceled` ("canceled: replaced by run N").
    Replace(i64),
    /// py4CI: a run still queued (not started) becomes `skipped` ("skipped: superseded by run
    /// N").
    Supersede(i64),
}

/// The answer to a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Queue the run; it may start from `not_before` on.
    Queue {
        not_before: Option<DateTime<Utc>>,
        /// A waiting run this one takes the place of.
        displaces: Option<Displace>,
    },
    /// Record the run as `skipped` with this reason.
    Skip { reason: String },
    /// Refuse the trigger: the wait list is full. The reason says so and gives the limit; the
    /// caller tells whoever triggered that it was refused (and may keep a `skipped` record).
    Refuse { reason: String },
}

/// A trigger within the debounce window after the last start is skipped.
fn debounced(
    name: &str,
    policy: &Admission,
    last_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Admit> {
    let (window, last) = policy.debounce.zip(last_start)?;
    let until = last + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    (now < until).then(|| Admit::Skip {
        reason: format!(
            "skipped: `{name}` started at {} and debounces triggers until {}",
            last.format("%H:%M:%S"),
            until.format("%H:%M:%S")
        ),
    })
}

/// Decides what a trigger of `name` becomes, given the runs of it that have not ended (oldest
/// first) and its last start.
///
/// The wait list (prunner's) is every run that waits out its `start_delay`, plus the waiting
/// runs beyond the free concurrency slots: a waiting run without a delay takes a free slot
/// (oldest first) and starts as soon as a worker is free, like a run prunner started at once.
/// A new run needs the wait list when no slot is free or when it has a `start_delay` itself.
pub fn admit(
    name: &str,
    policy: &Admission,
    open: &[OpenRun],
    last_start: Option<DateTime<Utc>>,
    partition: Option<&str>,
    now: DateTime<Utc>,
) -> Admit {
    if let Some(skip) = debounced(name, policy, last_start, now) {
        return skip;
    }
    let not_before = policy
        .start_delay
        .filter(|d| !d.is_zero())
        .map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    let queue = |displaces| Admit::Queue {
        not_before,
        displaces,
    };
    let capacity = policy.concurrency as usize;
    let busy_reason = || match open.iter().find(|r| r.active) {
        Some(r) => format!("a run of `{name}` is already running (run {})", r.id),
        None => format!(
            "a run of `{name}` is already queued (run {})",
            open.first().map_or(0, |r| r.id)
        ),
    };
    let active = open.iter().filter(|r| r.active).count();
    let mut free = capacity.saturating_sub(active);
    let mut wait_list: Vec<&OpenRun> = Vec::new();
    for r in open.iter().filter(|r| !r.active) {
        let delayed = r.not_before.is_some_and(|t| t > now);
        if !delayed && free > 0 {
            free -= 1;
        } else {
            wait_list.push(r);
        }
    }
    let needs_wait_list = free == 0 || not_before.is_some();
    let full = |limit: u32, waiting: usize| {
        let what = if limit == 0 {
            format!("`{name}` keeps no wait list (limit 0)")
        } else {
            format!("the wait list of `{name}` is full ({waiting} of {limit} waiting)")
        };
        Admit::Refuse {
            reason: format!("{what}; {}", busy_reason()),
        }
    };
    match policy.queue {
        // No wait list: every open run holds a slot. py4CI: a new trigger supersedes a run
        // that has not started yet; while every slot runs, it is skipped.
        QueuePolicy::Skip if open.len() < capacity => queue(None),
        QueuePolicy::Skip => match open.iter().rev().find(|r| !r.active) {
            Some(queued) => queue(Some(Displace::Supersede(queued.id))),
            None => Admit::Skip {
                reason: format!("skipped: {}", busy_reason()),
            },
        },
        _ if !needs_wait_list => queue(None),
        QueuePolicy::Append { limit } => match limit {
            Some(l) if wait_list.len() >= l as usize => full(l, wait_list.len()),
            _ => queue(None),
        },
        QueuePolicy::Replace { limit } => match limit {
            Some(0) => full(0, 0),
            Some(l) if wait_list.len() >= l as usize => match wait_list.last() {
                Some(newest) => queue(Some(Displace::Replace(newest.id))),
                None => full(l, 0),
            },
            _ => queue(None),
        },
        QueuePolicy::PartitionedReplace { limit } => {
            let in_partition: Vec<&&OpenRun> = wait_list
                .iter()
                .filter(|r| r.partition.as_deref() == partition)
                .collect();
            if in_partition.len() < limit as usize {
                queue(None)
            } else {
                match in_partition.last() {
                    Some(newest) => queue(Some(Displace::Replace(newest.id))),
                    None => full(limit, 0),
                }
            }
        }
    }
}

/// The trigger argument that names a run's partition (`partitioned_replace`):
/// `queuePartition`, or `queue_partition`.
pub fn partition_of(args: &BTreeMap<String, String>) -> Option<String> {
    args.get("queuePartition")
        .or_else(|| args.get("queue_partition"))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_is_named_by_either_spelling() {
        let args = |k: &str| BTreeMap::from([(k.to_string(), "eu".to_string())]);
        assert_eq!(partition_of(&args("queuePartition")).as_deref(), Some("eu"));
        assert_eq!(
            partition_of(&args("queue_partition")).as_deref(),
            Some("eu")
        );
        assert_eq!(partition_of(&args("partition")), None);
        let mut both = args("queue_partition");
        both.insert("queuePartition".into(), "us".into());
        assert_eq!(partition_of(&both).as_deref(), Some("us"));
    }
}
