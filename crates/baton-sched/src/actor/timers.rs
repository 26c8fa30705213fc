//! Timers: the next slot of every scheduled task (the server's `period:`/`schedule:` tasks,
//! and repositories' tasks with `on: schedule:` as their `.baton/` defines them at a watched
//! branch's head, sent by the web side after each fetch), firing the due ones, and when the
//! actor wakes next.

use std::collections::BTreeMap;

use baton_core::run::{TargetKind, TriggerKind};
use baton_core::schedule::{self, Rule};
use baton_store::Change;
use chrono::{DateTime, Utc};

use super::Actor;
use crate::handle::{RepoSchedule, RepoTriggerRequest, TriggerRequest};

impl Actor {
    pub(super) fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        // Remote workers come and go (health checks): look at the queue every second then.
        let cap = if self.executors.remote.is_empty() {
            now + chrono::Duration::seconds(60)
        } else {
            now + chrono::Duration::seconds(1)
        };
        // Job events of a batch the store refused are tried again soon.
        let cap = if self.replay.is_empty() {
            cap
        } else {
            cap.min(now + super::RETRY_AFTER)
        };
        let delays = self
            .runs
            .values()
            .filter_map(|r| r.row.not_before)
            .filter(|t| *t > now);
        self.next_fire
            .values()
            .copied()
            .chain(delays)
            .fold(cap, |a, b| a.min(b))
    }

    fn rules(&self) -> Vec<(String, Rule)> {
        let repos = self
            .repo_timers
            .values()
            .flat_map(|timers| timers.iter())
            .filter_map(|(name, s)| Some((name.clone(), Rule::of_crons(&s.crons)?)));
        self.config
            .tasks
            .values()
            .filter(|t| t.enabled)
            .filter_map(|t| {
                let rule = match (&t.schedule, t.period) {
                    (Some(c), _) => Rule::Cron(c.clone()),
                    (None, Some(p)) => Rule::Every(p),
                    (None, None) => return None,
                };
                Some((t.name.clone(), rule))
            })
            .chain(repos)
            .collect()
    }

    /// Replaces repository `repo`'s scheduled tasks; the timers follow at once (a removed one
    /// stops, a new one starts counting now, a kept one keeps its mark).
    pub(super) fn set_repo_schedules(&mut self, repo: String, list: Vec<RepoSchedule>) {
        let timers: BTreeMap<String, RepoSchedule> =
            list.into_iter().map(|s| (s.timer(), s)).collect();
        if timers.is_empty() {
            self.repo_timers.remove(&repo);
        } else {
            self.repo_timers.insert(repo, timers);
        }
        self.reset_timers(Utc::now());
    }

    /// The repository schedule behind timer `name`, if it is one.
    fn repo_timer(&self, name: &str) -> Option<&RepoSchedule> {
        self.repo_timers.values().find_map(|t| t.get(name))
    }

    /// Starts the run a due timer stands for: a server task, or a repository's task at the
    /// commit its schedule was read at.
    async fn fire(&mut self, name: &str) {
        if let Some(s) = self.repo_timer(name) {
            let req = RepoTriggerRequest {
                target: s.target.clone(),
                def: Some(s.def.clone()),
                trigger: TriggerKind::Schedule,
                repo: s.repo.clone(),
                hold: None,
                no_cache: false,
            };
            if let Err(e) = self.trigger_repo(req, Vec::new()).await {
                tracing::error!(timer = name, "scheduled trigger failed: {e}");
            }
            return;
        }
        let req = TriggerRequest {
            target: name.to_owned(),
            kind: Some(TargetKind::Task),
            args: BTreeMap::new(),
            trigger: TriggerKind::Schedule,
            ancestors: vec![],
            no_cache: false,
        };
        if let Err(e) = self.trigger(req).await {
            tracing::error!(task = name, "scheduled trigger failed: {e}");
        }
    }

    pub(super) fn reset_timers(&mut self, now: DateTime<Utc>) {
        self.next_fire.clear();
        for (name, rule) in self.rules() {
            let mark = self.marks.get(&name).copied();
            let next = match mark {
                Some(m) => schedule::next_slot(&rule, m),
                None => schedule::next_slot(&rule, now),
            };
            match next {
                Ok(t) => {
                    self.next_fire.insert(name, t);
                }
                Err(e) => tracing::error!(task = name, "cannot schedule: {e}"),
            }
        }
        // A task seen for the first time starts counting now, and remembers that across
        // restarts (or a server restarting more often than the period would never fire it).
        for name in self.next_fire.keys() {
            if !self.marks.contains_key(name) {
                self.marks.insert(name.clone(), now);
                self.pending.push(Change::Mark {
                    target: name.clone(),
                    slot: now,
                });
            }
        }
    }

    pub(super) async fn fire_timers(&mut self, now: DateTime<Utc>) {
        let due_names: Vec<String> = self
            .next_fire
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if due_names.is_empty() {
            return;
        }
        let rules: BTreeMap<String, Rule> = self.rules().into_iter().collect();
        for name in due_names {
            let Some(rule) = rules.get(&name) else {
                self.next_fire.remove(&name);
                continue;
            };
            match schedule::due(rule, self.marks.get(&name).copied(), now) {
                Ok(d) => {
                    // Recorded with the batch, in the same transaction as the run it fires.
                    self.pending.push(Change::Mark {
                        target: name.clone(),
                        slot: d.mark,
                    });
                    self.marks.insert(name.clone(), d.mark);
                    self.next_fire.insert(name.clone(), d.next);
                    if d.fire {
                        self.fire(&name).await;
                    }
                }
                Err(e) => {
                    tracing::error!(task = name, "cannot schedule: {e}");
                    self.next_fire.remove(&name);
                }
            }
        }
    }
}
