//! The worker's health: a background loop ([`crate::background`]) runs `true` on the worker every
//! `heartbeat_timeout / 3` (at most 5 s) until the executor is dropped or its shutdown token is
//! cancelled, and keeps [`Health`] and the time of the last answer.

use std::ops::ControlFlow;
use std::sync::Weak;

use super::Inner;
use crate::background::Loop;
use crate::error::ExecError;
use crate::executor::Health;

impl Inner {
    async fn check(&self) -> Health {
        match self
            .run("check the worker", "true", None, self.cmd_limit())
            .await
        {
            Ok(_) => Health::Up,
            Err(ExecError::Ssh { detail, .. }) => Health::Down(format!("ssh: {detail}")),
            Err(e) => Health::Down(e.to_string()),
        }
    }

    fn set_health(&self, h: Health) {
        let mut cur = self.health.lock().expect("health poisoned");
        if *cur != h {
            match &h {
                Health::Up => tracing::info!(worker = self.s.worker, "SSH worker up"),
                Health::Down(why) | Health::Disabled(why) => {
                    tracing::warn!(worker = self.s.worker, "SSH worker down: {why}")
                }
            }
        }
        if h == Health::Up {
            *self.last_ok.lock().expect("last_ok poisoned") = Some(chrono::Utc::now());
        }
        *cur = h;
    }
}

/// Starts the health loop of the worker behind `weak` (it holds no strong reference between
/// checks, so it also ends once the executor and its jobs are gone).
pub(super) fn spawn(weak: Weak<Inner>) -> tokio::task::JoinHandle<Option<Weak<Inner>>> {
    let inner = weak.upgrade().expect("spawned by a live executor");
    let name = format!("ssh health check of worker {}", inner.s.worker);
    let (every, stop) = (inner.poll_every(), inner.stop.clone());
    drop(inner);
    Loop::new(name, every, stop).spawn(weak, |weak| {
        Box::pin(async move {
            let Some(inner) = weak.upgrade() else {
                return ControlFlow::Break(());
            };
            let h = inner.check().await;
            inner.set_health(h);
            ControlFlow::Continue(())
        })
    })
}
