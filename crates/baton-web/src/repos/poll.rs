//! `poll:` on repositories (SCM polling, for repositories whose forge sends no webhooks): every
//! interval the mirror is fetched (retried with backoff; the result is shown on the
//! repositories page), and a new commit on a watched branch (`branches:`; every branch when
//! empty) triggers as a push would: event `push`, trigger `poll`, `before` the commit seen last
//! (so `paths:` filters work).
//!
//! The heads seen are stored (`repo_heads`), so a restart does not trigger again. The first
//! poll of a repository records its heads and triggers nothing: a repository added to the
//! config is not built for every branch it already has. A run started by the poller carries the
//! pseudo delivery id `poll:REF:COMMIT`, so a crash between starting the runs and recording
//! the heads starts nothing twice (the same check a webhook delivery resumed after a restart
//! makes). Each poll also imports the result refs pushed since the last one (`hooks::import`).

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use baton_core::config::RepoDef;
use baton_core::on::{Patterns, PushTarget};
use baton_core::run::TriggerKind;
use baton_exec::background::{CancellationToken, Loop};
use baton_git::Oid;
use tokio::task::JoinHandle;

use crate::AppState;
use crate::code::Code;
use crate::hooks::push::{fetched_mirror, push_event};

/// How often the poller looks for repositories whose interval is up.
const TICK: Duration = Duration::from_secs(1);

/// Starts the poller of every repository with `poll:` in the config in force (reloads are
/// followed); it stops when `stop` is cancelled.
pub fn start(st: &AppState, stop: CancellationToken) -> JoinHandle<Option<Polls>> {
    let st = st.clone();
    Loop::new("repository poller", TICK, stop).spawn(Polls::default(), move |polls| {
        let st = st.clone();
        Box::pin(async move {
            polls.tick(&st).await;
            ControlFlow::Continue(())
        })
    })
}

/// Each polled repository's next due time and its poll in progress.
#[derive(Default)]
pub struct Polls {
    repos: HashMap<String, (Instant, Option<JoinHandle<()>>)>,
}

impl Polls {
    async fn tick(&mut self, st: &AppState) {
        let Ok(config) = st.sched.config().await else {
            return;
        };
        let now = Instant::now();
        self.repos
            .retain(|name, _| config.repos.get(name).is_some_and(|r| r.poll.is_some()));
        for repo in config.repos.values() {
            let Some(every) = repo.poll else { continue };
            let entry = self.repos.entry(repo.name.clone()).or_insert((now, None));
            let busy = entry.1.as_ref().is_some_and(|h| !h.is_finished());
            if busy || now < entry.0 {
                continue;
            }
            entry.0 = now + every;
            let (st, repo) = (st.clone(), repo.clone());
            entry.1 = Some(tokio::spawn(async move { poll_once(&st, &repo).await }));
        }
    }
}

/// One poll of `repo`: fetch, compare the branches with those seen last, trigger new commits.
async fn poll_once(st: &AppState, repo: &RepoDef) {
    let name = &repo.name;
    let Ok(config) = st.sched.config().await else {
        return;
    };
    let Ok(mirror) = fetched_mirror(st, &config, repo).await else {
        return; // recorded for the repositories page
    };
    let imported = crate::hooks::import::import_pushed_runs(st, &config, repo, &mirror).await;
    if !imported.runs.is_empty() || !imported.notes.is_empty() {
        tracing::info!(repo = %name, "poll: {}", imported.describe());
    }
    let heads = match mirror.refs("refs/heads/").await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(repo = %name, "poll: could not list the branches: {e}");
            return;
        }
    };
    let heads: BTreeMap<String, Oid> = heads.into_iter().collect();
    let now_seen: BTreeMap<String, String> = heads
        .iter()
        .map(|(r, o)| (r.clone(), o.to_string()))
        .collect();
    let first = match st.store.repo_polled(name).await {
        Ok(polled) => !polled,
        Err(e) => {
            tracing::warn!(repo = %name, "poll: could not read the heads seen: {e}");
            return;
        }
    };
    if !first {
        let seen = match st.store.repo_heads(name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(repo = %name, "poll: could not read the heads seen: {e}");
                return;
            }
        };
        trigger_new(st, repo, &mirror, &heads, &seen).await;
    }
    if let Err(e) = st
        .store
        .set_repo_heads(name, &now_seen, chrono::Utc::now())
        .await
    {
        tracing::warn!(repo = %name, "poll: could not record the heads seen: {e}");
    }
}

/// Triggers, as pushes, the watched branches of `heads` whose commit differs from `seen`.
async fn trigger_new(
    st: &AppState,
    repo: &RepoDef,
    mirror: &baton_git::Mirror,
    heads: &BTreeMap<String, Oid>,
    seen: &BTreeMap<String, String>,
) {
    let Ok(config) = st.sched.config().await else {
        return;
    };
    let watched = Patterns::new(&repo.branches).ok();
    for (full, commit) in heads {
        let Some(branch) = full.strip_prefix("refs/heads/") else {
            continue;
        };
        if seen.get(full).map(String::as_str) == Some(commit.as_str()) {
            continue;
        }
        if !repo.branches.is_empty() && !watched.as_ref().is_some_and(|p| p.is_match(branch)) {
            continue;
        }
        if let Ok(info) = mirror.commit_info(commit).await
            && let Some(marker) = baton_forge::skip_ci(&info.message)
        {
            tracing::info!(repo = %repo.name, branch, "poll: {commit} says {marker}: starts nothing");
            continue;
        }
        let code = Code {
            git_ref: Some(full.clone()),
            target: Some(PushTarget::Branch(branch.to_owned())),
            before: seen.get(full).and_then(|b| Oid::parse(b).ok()),
            trigger: TriggerKind::Poll,
            delivery: Some(format!("poll:{full}:{commit}")),
            only: None,
            no_cache: false,
        };
        let v = push_event(st, &config, repo, mirror, commit, code).await;
        tracing::info!(repo = %repo.name, branch, status = %v.status, "poll: {}", v.text);
    }
}
