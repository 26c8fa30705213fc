//! An accepted push: fetch the mirror, read `.baton/` at the pushed commit, validate it, match
//! `on:` and trigger the repository's tasks (`REPO/TASK`) and the server's tasks that listen to
//! this repository.

use axum::http::StatusCode;

use baton_core::config::{Config, EnvValue, RepoDef, TaskDef};
use baton_core::on::{EventFact, EventFacts, On, PushTarget, matches};
use baton_core::run::TriggerKind;
use baton_forge::{Event, Push, RefTarget};
use baton_git::{Backoff, Mirror, Oid};
use baton_sched::{RepoTriggerRequest, TargetDef};
use baton_store::RunRepo;

use super::Verdict;
use crate::AppState;
use crate::code::{Code, run_repo, yaml_sources};

/// The task a `.baton/` with errors becomes: its log shows the `file:line:col` messages,
/// which reach it only as an environment variable.
const CONFIG_ERROR_TASK: &str =
    "tasks:\n  config:\n    command: printf '%s\\n' \"$BATON_CONFIG_ERRORS\"; exit 1\n";

pub(super) async fn build(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    event: &Event,
    p: &Push,
    since: Option<baton_git::FetchTicket>,
) -> Verdict {
    let commit = match Oid::parse(&p.after) {
        Ok(c) => c,
        Err(e) => return Verdict::new(StatusCode::BAD_REQUEST, format!("pushed commit: {e}")),
    };
    let mirror = match fetched_mirror_since(st, config, repo, since).await {
        Ok(m) => m,
        Err(v) => return v,
    };
    let target = match &p.target {
        RefTarget::Branch(b) => PushTarget::Branch(b.clone()),
        RefTarget::Tag(t) => PushTarget::Tag(t.clone()),
        RefTarget::Other(_) => unreachable!("other refs are refused before"),
    };
    let before = Oid::parse(&p.before).ok();
    let code = Code {
        git_ref: Some(p.git_ref.clone()),
        target: Some(target),
        before,
        trigger: TriggerKind::Webhook,
        delivery: event.delivery.clone(),
        only: None,
        no_cache: false,
    };
    let verdict = push_event(st, config, repo, &mirror, &commit, code).await;
    // A polled repository that also sends webhooks: the poller must not build this push again.
    if repo.poll.is_some()
        && let RefTarget::Branch(_) = &p.target
        && let Err(e) = (st.store)
            .note_repo_head(&repo.name, &p.git_ref, commit.as_str(), chrono::Utc::now())
            .await
    {
        tracing::warn!(repo = %repo.name, "could not record the pushed head for the poller: {e}");
    }
    verdict
}

/// The mirror of `repo`, fetched now (retried with backoff); how the fetch ended is recorded
/// for the repositories page, and the scheduled tasks of its watched branches follow the
/// fetched heads (in a task of their own: the event's runs do not wait for it).
pub(crate) async fn fetched_mirror(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
) -> Result<Mirror, Verdict> {
    fetched_mirror_since(st, config, repo, None).await
}

/// [`fetched_mirror`] for an event that arrived at `since` (a fetch started since then serves
/// it: see `hooks::prefetch`); `None`: a fetch from now.
pub(crate) async fn fetched_mirror_since(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    since: Option<baton_git::FetchTicket>,
) -> Result<Mirror, Verdict> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Verdict::new(StatusCode::BAD_GATEWAY, format!("{what}: {e}"))
    };
    let env = match baton_sched::git_env(config, repo) {
        Ok(env) => env,
        Err(e) => return Err(fail("could not set up the repository's credentials", &e)),
    };
    let mirror =
        match Mirror::ensure_with(&repo.url, &st.folders.repo_mirror(&repo.name), env).await {
            Ok(m) => m,
            Err(e) => {
                let text = format!("could not set up the mirror: {e}");
                record_fetch(st, &repo.name, Some(&text)).await;
                return Err(fail("could not set up the mirror", &e));
            }
        };
    let since = since.unwrap_or_else(|| mirror.ticket());
    match mirror
        .fetch_since_with_retry(since, &Backoff::default())
        .await
    {
        Ok(_) => {
            record_fetch(st, &repo.name, None).await;
            crate::repos::schedules::refresh_soon(st, repo, &mirror);
            Ok(mirror)
        }
        Err(e) => {
            record_fetch(st, &repo.name, Some(&e.to_string())).await;
            Err(fail("could not fetch the repository", &e))
        }
    }
}

async fn record_fetch(st: &AppState, repo: &str, error: Option<&str>) {
    if let Err(e) = st.store.record_fetch(repo, chrono::Utc::now(), error).await {
        tracing::warn!(repo, "could not record the fetch's result: {e}");
    }
}

/// A push of `commit` (webhook or poller): the runs it starts, as for any event.
pub(crate) async fn push_event(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    mirror: &Mirror,
    commit: &Oid,
    code: Code,
) -> Verdict {
    let changed = async {
        match &code.before {
            Some(before) if !before.is_zero() => mirror.changed_paths(before, commit).await.ok(),
            _ => None,
        }
    };
    // The commit and its `.baton/` are read meanwhile: the mirror keeps them for `repo_event`
    // (which reads them again, and reports any error).
    let (changed_paths, _, _) = tokio::join!(
        changed,
        mirror.commit_info(commit),
        mirror.read_tree(commit, ".baton")
    );
    let Some(target) = code.target.clone() else {
        return Verdict::new(StatusCode::BAD_REQUEST, "a push names a branch or tag");
    };
    let facts = EventFacts {
        repo: Some(repo.name.clone()),
        event: EventFact::Push {
            target,
            deleted: false,
            changed_paths,
        },
    };
    repo_event(st, config, repo, mirror, commit, code, facts).await
}

/// One repository event, however it arrived (webhook, poller, hand trigger): reads the commit
/// and `.baton/` at it from `mirror`, matches `on:` against `facts` and starts what matches
/// (only `code.only` when given: a hand trigger).
pub(crate) async fn repo_event(
    st: &AppState,
    config: &Config,
    repo: &RepoDef,
    mirror: &Mirror,
    commit: &Oid,
    code: Code,
    facts: EventFacts,
) -> Verdict {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Verdict::new(StatusCode::BAD_GATEWAY, format!("{what}: {e}"))
    };
    let info = match mirror.commit_info(commit).await {
        Ok(i) => i,
        Err(e) => return fail("could not read the commit", &e),
    };
    let run_repo = run_repo(repo, commit, &info, &code, &facts.event);
    let mut wanted: Vec<(String, Option<TargetDef>)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    match mirror.read_tree(commit, ".baton").await {
        Err(e) => return fail("could not read .baton/ at the commit", &e),
        Ok(files) => repo_targets(config, repo, &files, &facts, &mut wanted, &mut notes),
    }
    if let Some(only) = code.only.as_deref() {
        wanted.retain(|(t, _)| t == only);
        if wanted.is_empty() {
            // Defined but its `on:` refuses (`manual: false`): 409; not defined: 404.
            let prefix = format!("{only}: ");
            if let Some(why) = notes.iter().find(|n| n.starts_with(&prefix)) {
                return Verdict::new(StatusCode::CONFLICT, why.clone());
            }
            let also = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            let why = format!(
                "{only} is not defined in .baton/ of {} at {commit}{also}",
                repo.name
            );
            return Verdict::new(StatusCode::NOT_FOUND, why);
        }
    } else {
        server_targets(config, repo, &facts, &mut wanted, &mut notes);
    }
    let what = format!("{} of {commit}", run_repo.event);
    let wanted = wanted
        .into_iter()
        .map(|(target, def)| Wanted {
            target,
            def,
            repo: run_repo.clone(),
            hold: None,
        })
        .collect();
    start_runs(st, wanted, (code.trigger, code.no_cache), notes, &what).await
}

/// A run to start: its name, definition (`None`: the server config's), code, and the reason
/// it is held (`waiting`) until a user approves it, if it is.
pub(super) struct Wanted {
    pub(super) target: String,
    pub(super) def: Option<TargetDef>,
    pub(super) repo: RunRepo,
    pub(super) hold: Option<String>,
}

/// Triggers `wanted` (`what` names the event: "push of SHA"); the verdict lists what started
/// and why the rest did not.
pub(super) async fn start_runs(
    st: &AppState,
    wanted: Vec<Wanted>,
    (trigger, no_cache): (TriggerKind, bool),
    mut notes: Vec<String>,
    what: &str,
) -> Verdict {
    let Some(first) = wanted.first() else {
        return finish(Vec::new(), notes, what);
    };
    // Exactly once: a delivery processed again after a restart skips the targets it already
    // started (a run and its delivery id are recorded in one transaction).
    let started = match &first.repo.delivery {
        None => Ok(Vec::new()),
        Some(delivery) => st.store.delivery_runs(&first.repo.repo, delivery).await,
    };
    let started = match started {
        Ok(r) => r,
        Err(e) => {
            let text = format!("could not look up the runs this delivery started: {e}");
            return Verdict::new(StatusCode::SERVICE_UNAVAILABLE, text);
        }
    };
    let mut runs = Vec::new();
    for w in wanted {
        let target = w.target;
        if let Some((id, _)) = started.iter().find(|(_, t)| *t == target) {
            runs.push(*id);
            notes.push(format!("{target}: run {id} (started before a restart)"));
            continue;
        }
        let held = w.hold.is_some();
        let req = RepoTriggerRequest {
            target: target.clone(),
            def: w.def,
            trigger,
            repo: w.repo,
            hold: w.hold,
            no_cache,
        };
        match st.sched.trigger_repo(req).await {
            Ok(row) if held => {
                runs.push(row.id);
                notes.push(format!("{target}: run {} waits for approval", row.id));
            }
            Ok(row) => {
                runs.push(row.id);
                notes.push(format!("{target}: run {}", row.id));
            }
            Err(e) => notes.push(format!("{target}: not started: {e}")),
        }
    }
    finish(runs, notes, what)
}

fn finish(runs: Vec<i64>, notes: Vec<String>, what: &str) -> Verdict {
    let head = if runs.is_empty() {
        format!("{what} started nothing")
    } else {
        format!("{what} started {} run(s)", runs.len())
    };
    let text = if notes.is_empty() {
        format!("{head} (no task listens to this repository)")
    } else {
        format!("{head}; {}", notes.join("; "))
    };
    let status = if runs.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Verdict { status, text, runs }
}

/// The repository's own tasks and pipelines that `facts` start, from its `.baton/` files; a
/// `.baton/` with errors becomes one failing `REPO/.baton` run that shows them.
pub(super) fn repo_targets(
    config: &Config,
    repo: &RepoDef,
    files: &[(String, Vec<u8>)],
    facts: &EventFacts,
    wanted: &mut Vec<(String, Option<TargetDef>)>,
    notes: &mut Vec<String>,
) {
    let sources = yaml_sources(files);
    if sources.is_empty() {
        return;
    }
    let own = match baton_core::config::load_repo_sources(&sources, config) {
        Ok(c) => c,
        Err(errors) => {
            notes.push(format!(".baton/ has {} error(s)", errors.diagnostics.len()));
            if let Some(def) = config_error_task(&repo.name, &errors.to_string()) {
                wanted.push((format!("{}/.baton", repo.name), Some(def)));
            }
            return;
        }
    };
    let default = On::default();
    for (name, mut t) in own.tasks {
        let target = format!("{}/{name}", repo.name);
        match matches(t.on.as_ref().unwrap_or(&default), facts) {
            Ok(()) => {
                t.name.clone_from(&target);
                wanted.push((target, Some(TargetDef::Task(Box::new(t)))));
            }
            Err(why) => notes.push(format!("{target}: {why}")),
        }
    }
    for (name, mut p) in own.pipelines {
        let target = format!("{}/{name}", repo.name);
        match matches(p.on.as_ref().unwrap_or(&default), facts) {
            Ok(()) => {
                p.name.clone_from(&target);
                wanted.push((target, Some(TargetDef::Pipeline(Box::new(p)))));
            }
            Err(why) => notes.push(format!("{target}: {why}")),
        }
    }
}

/// A task that fails with `errors` in its log.
fn config_error_task(repo: &str, errors: &str) -> Option<TargetDef> {
    let c =
        baton_core::config::load_str(std::path::Path::new("builtin"), CONFIG_ERROR_TASK).ok()?;
    let mut t: TaskDef = c.tasks.get("config")?.clone();
    t.name = format!("{repo}/.baton");
    t.checkout = false;
    t.env.insert(
        "BATON_CONFIG_ERRORS".into(),
        EnvValue::Plain(format!(
            "the repository's .baton/ configuration has errors:\n{errors}"
        )),
    );
    Some(TargetDef::Task(Box::new(t)))
}

/// Server-defined tasks and pipelines whose `on:` names this repository (`on: {repo: [...]}`),
/// and py4CI tasks whose `triggered_by: - ssh_url:` is this repository and lists the branch.
pub(super) fn server_targets(
    config: &Config,
    repo: &RepoDef,
    facts: &EventFacts,
    wanted: &mut Vec<(String, Option<TargetDef>)>,
    notes: &mut Vec<String>,
) {
    fn listens<'a>(on: &'a Option<On>, repo: &str) -> Option<&'a On> {
        on.as_ref().filter(|o| o.repo.iter().any(|r| r == repo))
    }
    for (name, t) in &config.tasks {
        let decided = if let Some(on) = listens(&t.on, &repo.name) {
            Some(matches(on, facts))
        } else {
            py4ci_trigger(t, repo, facts)
        };
        match decided {
            Some(Ok(())) => wanted.push((name.clone(), None)),
            Some(Err(why)) => notes.push(format!("{name}: {why}")),
            None => {}
        }
    }
    for (name, p) in &config.pipelines {
        if let Some(on) = listens(&p.on, &repo.name) {
            match matches(on, facts) {
                Ok(()) => wanted.push((name.clone(), None)),
                Err(why) => notes.push(format!("{name}: {why}")),
            }
        }
    }
}

/// py4CI's `triggered_by: - ssh_url: URL, branches: [...]`: the same as `on: {repo: [NAME],
/// push: {branches: [...]}}` for the repository with that URL.
fn py4ci_trigger(
    t: &TaskDef,
    repo: &RepoDef,
    facts: &EventFacts,
) -> Option<Result<(), baton_core::on::NoMatch>> {
    let trigger = t
        .repo_triggers
        .iter()
        .find(|r| baton_forge::same_repo(&r.ssh_url, &repo.url))?;
    let branches = baton_core::on::Patterns::new(&trigger.branches).ok()?;
    let on = On {
        repo: vec![repo.name.clone()],
        push: Some(baton_core::on::PushFilter {
            branches: Some(branches),
            ..Default::default()
        }),
        pull_request: None,
        schedule: Vec::new(),
        manual: true,
    };
    Some(matches(&on, facts))
}
