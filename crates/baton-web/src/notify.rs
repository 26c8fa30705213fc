//! Notifications of run ends: the sender of the store's `notifications` outbox.
//!
//! The scheduler records each run's end in the same transaction as the run change; this task,
//! outside the actor, fans it out once to the `notify:` entries it matches (by target glob and
//! status), then POSTs each a JSON body signed like GitHub's webhooks
//! (`X-Baton-Signature-256: sha256=HEX`, the HMAC-SHA256 of the exact body with the entry's
//! secret; `X-Baton-Event: run`; `X-Baton-Delivery`: the notification's id, the same on every
//! try). A failed send is retried with exponential backoff (1 s doubling, at most 5 min, 12
//! tries, then given up with why); unsent notifications are in the store, so a restart resumes
//! them. Nothing here touches the run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use baton_core::config::{Config, NotifyDef};
use baton_core::report::clip;
use baton_sched::SchedHandle;
use baton_store::{NoticeRow, Outbox, ReportOutcome, RunRow, Store, StoreError};

use crate::error::error_chain;
use crate::http_client::SharedClient;
use crate::outbox::{Try, drive, record};

mod mail;

/// Tries of one notification before the sender gives up on it.
const MAX_ATTEMPTS: u32 = 12;
/// Notifications looked at per round.
const BATCH: u32 = 64;
/// The longest sleep between two looks at the outbox when nothing wakes the sender.
const IDLE: Duration = Duration::from_secs(5);

/// Starts the notifier; it stops when `shutdown` is cancelled.
pub fn spawn_notifier(store: Store, sched: SchedHandle, shutdown: CancellationToken) {
    let http = SharedClient;
    let notifier = Notifier { store, sched, http };
    tokio::spawn(notifier.run(shutdown));
}

struct Notifier {
    store: Store,
    sched: SchedHandle,
    http: SharedClient,
}

impl Notifier {
    async fn run(self, shutdown: CancellationToken) {
        drive(
            "run notifications",
            &self.sched,
            None,
            shutdown,
            IDLE,
            async || self.round().await,
        )
        .await;
    }

    /// Fans out new run ends, then sends every due notification; `None` if any work was
    /// finished (look again at once), else when the next one is due.
    async fn round(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let config = self.sched.config().await.ok();
        // Without the config in force, run ends wait (fanning out to none would lose them).
        let ends = match &config {
            Some(_) => self.store.run_ends(BATCH).await?,
            None => Vec::new(),
        };
        let fanned = !ends.is_empty();
        for end in ends {
            let hooks: Vec<String> = config
                .as_deref()
                .map(|c| {
                    c.notify
                        .iter()
                        .filter(|n| n.matches(&end.target, end.status))
                        .map(NotifyDef::receiver)
                        .collect()
                })
                .unwrap_or_default();
            self.store.fan_out(&end, &hooks, Utc::now()).await?;
        }
        let now = Utc::now();
        let mut next = now + IDLE;
        let mut due = Vec::new();
        for n in self.store.next_notices(BATCH).await? {
            if n.next_at <= now {
                due.push(n);
            } else {
                next = next.min(n.next_at);
            }
        }
        if due.is_empty() {
            return Ok((!fanned).then_some(next));
        }
        let tries = due.iter().map(|n| self.attempt(n, config.as_deref()));
        let results = futures::future::join_all(tries).await;
        let mut finished = fanned;
        for (n, t) in due.iter().zip(results) {
            let attempts = n.attempts + 1;
            let gave_up = |error: &str| {
                tracing::warn!(
                    run = n.run_id,
                    "notification of run {} to {} not sent after {attempts} tries; giving up: {error}",
                    n.run_id,
                    n.webhook
                );
            };
            let again = record(
                &self.store,
                Outbox::Notices,
                n.id,
                attempts,
                MAX_ATTEMPTS,
                t,
                gave_up,
            );
            match again.await? {
                None => finished = true,
                Some(at) => next = next.min(at),
            }
        }
        Ok((!finished).then_some(next))
    }

    /// One try of notification `n` with the config in force.
    async fn attempt(&self, n: &NoticeRow, config: Option<&Config>) -> Try {
        let entry = config.and_then(|c| c.notify.iter().find(|e| e.receiver() == n.webhook));
        let Some(entry) = entry else {
            return Try::Done(
                ReportOutcome::Skipped,
                Some(format!("{} is no longer in notify:", n.webhook)),
            );
        };
        let run = match self.store.get_run(n.run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Try::Done(
                    ReportOutcome::Failed,
                    Some(format!("run {} was deleted before it was told", n.run_id)),
                );
            }
            Err(e) => return Try::Again(format!("cannot read run {}: {e}", n.run_id)),
        };
        let public = config.and_then(|c| c.server.public_url.as_deref());
        let body = body(&run, n, public);
        match (&entry.webhook, &entry.smtp) {
            (Some(url), _) => self.post(entry, url, n, body).await,
            (None, Some(smtp)) => mail::send(entry, smtp, &run, n, &body).await,
            (None, None) => Try::Done(
                ReportOutcome::Skipped,
                Some(format!("{} has no webhook nor smtp", n.webhook)),
            ),
        }
    }

    async fn post(&self, entry: &NotifyDef, url: &str, n: &NoticeRow, body: Vec<u8>) -> Try {
        let Some(secret) = &entry.secret else {
            return Try::Done(
                ReportOutcome::Skipped,
                Some(format!("{} has no secret", n.webhook)),
            );
        };
        let signature = baton_forge::sign(secret.value.expose().as_bytes(), &body);
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-baton-event", "run")
            .header("x-baton-delivery", n.id.to_string())
            .header("x-baton-signature-256", format!("sha256={signature}"))
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) if resp.status().is_success() => Try::Done(ReportOutcome::Sent, None),
            Ok(resp) => {
                let code = resp.status();
                let text = resp.text().await.unwrap_or_default();
                Try::Again(format!(
                    "HTTP {code} from POST {}: {}",
                    n.webhook,
                    clip(text.trim(), 200)
                ))
            }
            Err(e) => Try::Again(format!("POST {} failed: {}", n.webhook, error_chain(&e))),
        }
    }
}

/// The JSON body told about run `run`'s end: the exact bytes that are signed and sent.
fn body(run: &RunRow, n: &NoticeRow, public_url: Option<&str>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("event".into(), json!("run"));
    m.insert("run_id".into(), json!(run.id));
    m.insert("task".into(), json!(run.target));
    m.insert("kind".into(), json!(run.kind));
    m.insert("status".into(), json!(n.status.as_str()));
    m.insert("reason".into(), json!(run.reason));
    m.insert("started_at".into(), json!(run.started_at));
    m.insert("ended_at".into(), json!(run.ended_at));
    if let Some(base) = public_url {
        let url = format!("{}/runs/{}", base.trim_end_matches('/'), run.id);
        m.insert("url".into(), json!(url));
    }
    if let Some(code) = &run.repo {
        m.insert("repo".into(), json!(code.repo));
        m.insert("commit".into(), json!(code.commit));
        if let Some(b) = &code.branch {
            m.insert("branch".into(), json!(b));
        }
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}
