//! `on: schedule:` of a repository's own tasks and pipelines. After every fetch of a
//! repository's mirror (webhook, poll, hand trigger, pull request), and at start-up from the
//! mirrors already on disk, `.baton/` is read at the head of each watched branch and the
//! scheduled targets found there are handed to the scheduler, which keeps them as timers
//! `REPO/TASK@BRANCH` (the rule of `baton_core::schedule`: a missed slot fires once). A due slot
//! triggers a run of `REPO/TASK` at that head, with the same checkout and statuses as a push.
//!
//! Watched branches: those of the repository's `branches:` patterns; without `branches:`, its
//! default branch (`main`, else `master`, as for a hand trigger without a ref). A schedule
//! removed from `.baton/` (or a branch that no longer exists) stops at the next fetch. A
//! `.baton/` with errors schedules nothing on that branch (its push run shows the errors).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use baton_core::config::{Config, RepoDef};
use baton_core::on::{EventFact, Patterns, PushTarget};
use baton_core::run::TriggerKind;
use baton_git::{GitError, Mirror, Oid};
use baton_sched::{RepoSchedule, TargetDef};

use crate::AppState;
use crate::code::{Code, run_repo, yaml_sources};

/// Reads the scheduled targets of `repo` from its (fetched) mirror and hands them to the
/// scheduler. On a git error the schedules in force stay as they were.
pub(crate) async fn refresh(st: &AppState, config: &Config, repo: &RepoDef, mirror: &Mirror) {
    let list = match gather(config, repo, mirror).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(repo = %repo.name, "could not read the scheduled tasks of .baton/: {e}");
            return;
        }
    };
    if let Err(e) = st.sched.set_repo_schedules(&repo.name, list).await {
        tracing::warn!(repo = %repo.name, "could not update the repository's schedules: {e}");
    }
}

/// [`refresh`] in a task of its own, with the config in force then; the refreshes of one
/// repository run one after the other, in the order asked (tokio's mutex is fair).
pub(crate) fn refresh_soon(st: &AppState, repo: &RepoDef, mirror: &Mirror) {
    type Gates = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static GATES: LazyLock<Gates> = LazyLock::new(Gates::default);
    let gate = GATES
        .lock()
        .expect("schedule refresh gates poisoned")
        .entry(repo.name.clone())
        .or_default()
        .clone();
    let (st, name, mirror) = (st.clone(), repo.name.clone(), mirror.clone());
    tokio::spawn(async move {
        let _turn = gate.lock().await;
        let Ok(config) = st.sched.config().await else {
            return;
        };
        if let Some(repo) = config.repos.get(&name) {
            refresh(&st, &config, repo, &mirror).await;
        }
    });
}

/// At start-up: the schedules of every repository whose mirror exists, from the mirror as it
/// is (no fetch; the next fetch brings them up to date).
pub async fn load_all(st: &AppState) {
    let Ok(config) = st.sched.config().await else {
        return;
    };
    for repo in config.repos.values() {
        let dir = st.folders.repo_mirror(&repo.name);
        if !dir.exists() {
            continue;
        }
        let mirror = match baton_sched::git_env(&config, repo) {
            Ok(env) => Mirror::ensure_with(&repo.url, &dir, env).await,
            Err(e) => Err(e),
        };
        match mirror {
            Ok(m) => refresh(st, &config, repo, &m).await,
            Err(e) => tracing::warn!(repo = %repo.name, "could not open the mirror: {e}"),
        }
    }
}

/// The scheduled targets of every watched branch's head.
async fn gather(
    config: &Config,
    repo: &RepoDef,
    mirror: &Mirror,
) -> Result<Vec<RepoSchedule>, GitError> {
    let mut out = Vec::new();
    for (branch, commit) in watched_heads(repo, mirror).await? {
        let files = mirror.read_tree(&commit, ".baton").await?;
        let sources = yaml_sources(&files);
        if sources.is_empty() {
            continue;
        }
        let own = match baton_core::config::load_repo_sources(&sources, config) {
            Ok(c) => c,
            Err(errors) => {
                tracing::warn!(repo = %repo.name, branch, "no schedules: .baton/ has errors:\n{errors}");
                continue;
            }
        };
        let scheduled = scheduled_targets(&repo.name, own);
        if scheduled.is_empty() {
            continue;
        }
        let info = mirror.commit_info(&commit).await?;
        let code = Code {
            git_ref: Some(format!("refs/heads/{branch}")),
            target: Some(PushTarget::Branch(branch.clone())),
            before: None,
            trigger: TriggerKind::Schedule,
            delivery: None,
            only: None,
            no_cache: false,
        };
        let event = EventFact::Schedule {
            cron: String::new(),
        };
        let code = run_repo(repo, &commit, &info, &code, &event);
        out.extend(
            scheduled
                .into_iter()
                .map(|(target, crons, def)| RepoSchedule {
                    target,
                    branch: branch.clone(),
                    crons,
                    def,
                    repo: code.clone(),
                }),
        );
    }
    Ok(out)
}

/// The watched branches of `repo` and their heads in the mirror.
async fn watched_heads(repo: &RepoDef, mirror: &Mirror) -> Result<Vec<(String, Oid)>, GitError> {
    let heads = mirror.refs("refs/heads/").await?;
    let branches = heads
        .into_iter()
        .filter_map(|(full, oid)| Some((full.strip_prefix("refs/heads/")?.to_owned(), oid)));
    if repo.branches.is_empty() {
        let all: Vec<(String, Oid)> = branches.collect();
        let default = ["main", "master"]
            .iter()
            .find_map(|d| all.iter().find(|(b, _)| b == d).cloned());
        return Ok(default.into_iter().collect());
    }
    let Ok(watched) = Patterns::new(&repo.branches) else {
        return Ok(Vec::new());
    };
    Ok(branches.filter(|(b, _)| watched.is_match(b)).collect())
}

/// The enabled tasks and pipelines of a repository's config with `on: schedule:`, named
/// `REPO/NAME`, with their cron expressions.
fn scheduled_targets(repo: &str, own: Config) -> Vec<(String, Vec<String>, TargetDef)> {
    let crons = |on: &Option<baton_core::on::On>| {
        on.as_ref().map(|o| o.schedule.clone()).unwrap_or_default()
    };
    let mut out = Vec::new();
    for (name, mut t) in own.tasks {
        let c = crons(&t.on);
        if t.enabled && !c.is_empty() {
            t.name = format!("{repo}/{name}");
            out.push((t.name.clone(), c, TargetDef::Task(Box::new(t))));
        }
    }
    for (name, mut p) in own.pipelines {
        let c = crons(&p.on);
        if p.enabled && !c.is_empty() {
            p.name = format!("{repo}/{name}");
            out.push((p.name.clone(), c, TargetDef::Pipeline(Box::new(p))));
        }
    }
    out
}
