//! Paused dispatch: `baton pause [QUEUE]` stops new jobs from starting on one queue (or on all,
//! as `baton drain` does before the server exits); running jobs go on. A queued job waits
//! while every queue it may run on is paused, and says so.

use std::collections::BTreeSet;

use serde::Serialize;

/// Which queues get no new jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Paused {
    /// Every queue (dispatch as a whole is paused).
    pub all: bool,
    /// These queues, by name.
    pub queues: BTreeSet<String>,
}

impl Paused {
    /// Pauses (`paused`) or resumes `queue`, or every queue when `None`; resuming every queue
    /// also resumes those paused by name.
    pub fn set(&mut self, queue: Option<&str>, paused: bool) {
        match (queue, paused) {
            (None, true) => self.all = true,
            (None, false) => *self = Paused::default(),
            (Some(q), true) => {
                self.queues.insert(q.to_owned());
            }
            (Some(q), false) => {
                self.queues.remove(q);
            }
        }
    }

    /// The queues among `queues` (a job's) that still get jobs, or why the job waits.
    pub fn open_queues(&self, queues: &[String]) -> Result<Vec<String>, String> {
        if self.all {
            return Err("queue paused: dispatch is paused for every queue (baton resume)".into());
        }
        let open: Vec<String> = queues
            .iter()
            .filter(|q| !self.queues.contains(*q))
            .cloned()
            .collect();
        if open.is_empty() {
            let names = queues.join(", ");
            return Err(format!("queue paused: {names} (baton resume QUEUE)"));
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn qs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_job_waits_only_when_every_queue_it_may_use_is_paused() {
        let mut p = Paused::default();
        assert_eq!(p.open_queues(&qs(&["a", "b"])), Ok(qs(&["a", "b"])));
        p.set(Some("a"), true);
        assert_eq!(p.open_queues(&qs(&["a", "b"])), Ok(qs(&["b"])));
        p.set(Some("b"), true);
        let why = p.open_queues(&qs(&["a", "b"])).unwrap_err();
        assert_eq!(why, "queue paused: a, b (baton resume QUEUE)");
        p.set(Some("a"), false);
        assert_eq!(p.open_queues(&qs(&["a", "b"])), Ok(qs(&["a"])));
    }

    #[test]
    fn pausing_everything_holds_every_job_until_resumed() {
        let mut p = Paused::default();
        p.set(Some("gpu"), true);
        p.set(None, true);
        assert!(
            p.open_queues(&qs(&["default"]))
                .unwrap_err()
                .contains("every queue")
        );
        p.set(None, false);
        assert_eq!(
            p,
            Paused::default(),
            "resuming all resumes named queues too"
        );
        assert_eq!(p.open_queues(&qs(&["gpu"])), Ok(qs(&["gpu"])));
    }

    proptest! {
        #[test]
        fn open_queues_are_the_jobs_unpaused_ones(
            job in proptest::collection::vec("[a-d]", 1..4),
            paused in proptest::collection::btree_set("[a-d]", 0..4),
        ) {
            let p = Paused { all: false, queues: paused.clone() };
            match p.open_queues(&job) {
                Ok(open) => {
                    prop_assert!(!open.is_empty());
                    prop_assert!(open.iter().all(|q| job.contains(q) && !paused.contains(q)));
                }
                Err(_) => prop_assert!(job.iter().all(|q| paused.contains(q))),
            }
        }
    }
}
