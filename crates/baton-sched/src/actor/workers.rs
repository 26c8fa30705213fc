//! Workers: those the config names (or the local ones), SSH executors kept in step with
//! the config, agent slots, and whether each can take work.

use baton_core::config::Config;
use baton_core::decide::WorkerView;
use baton_exec::Health;

use super::{Actor, Worker};

impl Actor {
    /// SSH workers that `config` adds get an executor; one whose host, work_dir or the server's
    /// SSH settings changed gets a new one if it is idle (a busy one keeps its executor until a
    /// later reload finds it idle, so its running job is followed where it runs).
    pub(super) fn refresh_ssh_executors(&mut self, config: &Config) {
        let Some(factory) = self.executors.ssh.clone() else {
            return;
        };
        let old = &self.file_config;
        let ssh_settings = |c: &Config| {
            let s = &c.server;
            (
                s.ssh_key.clone(),
                s.known_hosts.clone(),
                s.callback_url.clone(),
                s.heartbeat_timeout,
            )
        };
        let server_changed = ssh_settings(old) != ssh_settings(config);
        for w in config.workers.values().filter(|w| w.host.is_some()) {
            let known = self.executors.remote.contains_key(&w.name);
            let changed = server_changed || old.workers.get(&w.name) != Some(w);
            if known && !changed {
                continue;
            }
            let busy = self
                .workers
                .iter()
                .any(|o| o.name == w.name && o.busy.is_some());
            if known && busy {
                tracing::warn!(
                    "worker {:?} changed while it runs a job: the change applies at a reload after the job ends",
                    w.name
                );
                continue;
            }
            match factory(w, &config.server) {
                Ok(exec) => {
                    self.executors.remote.insert(w.name.clone(), exec);
                }
                Err(e) => tracing::warn!("worker {:?} stays down: {e}", w.name),
            }
        }
    }

    /// Adds the slots of agents that joined (agents that were lost stay, shown down) and drops
    /// the idle slots of agents that left (a pool's agents leave when idle).
    pub(super) fn sync_agent_workers(&mut self) {
        let Some(hub) = &self.executors.agents else {
            return;
        };
        let known = hub.workers();
        self.workers.retain(|w| {
            !w.agent || w.busy.is_some() || known.iter().any(|(name, _, _)| *name == w.name)
        });
        for (name, queues, _) in known {
            match self.workers.iter_mut().find(|w| w.name == name) {
                Some(w) => w.queues = queues,
                None => self.workers.push(Worker {
                    name,
                    queues,
                    host: None,
                    agent: true,
                    busy: None,
                }),
            }
        }
    }

    /// Whether a worker can take work: local workers always; a remote worker or agent slot
    /// as its executor says (down without an executor in this build).
    pub(super) fn worker_health(&self, w: &Worker) -> Health {
        if w.agent {
            return self.executor_for(Some(&w.name)).health();
        }
        match (&w.host, self.executors.remote.get(&w.name)) {
            (None, _) => Health::Up,
            (Some(h), None) => Health::Down(format!("no executor for the worker at {h}")),
            (Some(_), Some(e)) => e.health(),
        }
    }

    fn worker_down(&self, w: &Worker) -> Option<String> {
        self.worker_health(w).problem().map(str::to_string)
    }

    pub(super) fn worker_views(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .filter(|w| self.worker_down(w).is_none())
            .map(|w| WorkerView {
                name: w.name.clone(),
                queues: w.queues.clone(),
                busy: w.busy.is_some(),
                // SSH workers run plain scripts; containers run on the server's engine (local
                // workers) or on an agent's own.
                containers: w.host.is_none(),
            })
            .collect()
    }
}

pub(super) fn build_workers(config: &Config) -> Vec<Worker> {
    let mut workers: Vec<Worker> = config
        .workers
        .values()
        .map(|w| Worker {
            name: w.name.clone(),
            queues: w.queues.clone(),
            host: w.host.clone(),
            agent: false,
            busy: None,
        })
        .collect();
    if workers.is_empty() {
        let n = config
            .server
            .local_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        workers = (1..=n.max(1))
            .map(|i| Worker {
                name: format!("local-{i}"),
                queues: vec!["default".into()],
                host: None,
                agent: false,
                busy: None,
            })
            .collect();
    }
    workers
}
