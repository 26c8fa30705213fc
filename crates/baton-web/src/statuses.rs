//! Commit statuses back to the forges: the sender of the store's outbox (`status_reports`).
//!
//! The scheduler records a report in the same transaction as the run change it reports; this
//! task, outside the actor, sends them over HTTP in order per (repo, commit, context), retries
//! a failed send with exponential backoff (1 s doubling, at most 5 min apart, 12 tries, then it
//! gives up and records why), and never touches the run. Unsent reports are in the store, so a
//! restart resumes them. A repository without `token:` (or with `forge: git`) gets no statuses:
//! its reports are recorded `skipped`, and the server log says so once per repository. A GitHub
//! repository with `github_app:` gets check runs instead, through the same outbox: the first
//! report of a run's context creates the check run (its id is recorded), the next ones update
//! it, authenticated by an installation token of the app. The intent to create is recorded
//! before the create is sent: a try that finds an intent without an id (the server died before
//! recording GitHub's answer) looks the check run up by its external id (the run's id) first,
//! so a crash never makes a second one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::creds::AppTokens;
use crate::forge_http::send;
use crate::http_client::SharedClient;
use crate::outbox::{Try, drive, record};
use baton_core::config::Config;
use baton_core::config::{GithubAppDef, RepoDef};
use baton_core::report::{CommitState, MAX_DESCRIPTION, clip, describe};
use baton_core::run::Status;
use baton_forge::{
    CheckRun, CheckState, CommitStatus, StatusState, api_base, check_run_id, create_check_run,
    find_check_run, list_check_runs, repo_path, status_request, update_check_run,
};
use baton_sched::SchedHandle;
use baton_store::{CheckRunRecord, NewReport, Outbox, ReportOutcome, ReportRow, Store, StoreError};

/// Tries of one report before the sender gives up on it.
const MAX_ATTEMPTS: u32 = 12;
/// Reports looked at per round (each is the first unsent one of its commit and context).
const BATCH: u32 = 64;
/// The longest sleep between two looks at the outbox when nothing wakes the sender.
const IDLE: Duration = Duration::from_secs(5);
/// Pages of a commit's check runs of one name read to find one created before a crash.
const MAX_CHECK_PAGES: u32 = 10;

/// Where check runs of a repository are sent, and the installation token that may.
struct CheckTarget<'a> {
    api: &'a str,
    path: &'a str,
    token: &'a str,
}

/// The commit-status outbox as the rest of the server uses it. Cheap to clone.
#[derive(Clone)]
pub struct Statuses {
    store: Store,
    wake: Arc<Notify>,
}

impl Statuses {
    pub fn new(store: Store) -> Statuses {
        Statuses {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Sets a commit status for a commit that has no run (a pull request that does not merge:
    /// `CommitState::Error`, "does not merge cleanly with main"). `repo` is the repository's
    /// name in `repos:`, `context` the status's name (`baton/TASK`). Recorded durably, then
    /// sent like a run's status (in order, retried, resumed after a restart); returns the
    /// report's id.
    pub async fn report_commit(
        &self,
        repo: &str,
        commit: &str,
        context: &str,
        state: CommitState,
        description: &str,
    ) -> Result<i64, StoreError> {
        let new = NewReport {
            repo: repo.to_owned(),
            commit: commit.to_owned(),
            context: context.to_owned(),
            state,
            description: clip(description, MAX_DESCRIPTION),
        };
        let id = self.store.add_report(&new, Utc::now()).await?;
        self.wake.notify_one();
        Ok(id)
    }
}

/// Starts the sender; it stops when `shutdown` is cancelled.
pub fn spawn_sender(statuses: Statuses, sched: SchedHandle, shutdown: CancellationToken) {
    let http = SharedClient;
    let sender = Sender {
        statuses,
        sched,
        http,
        apps: AppTokens::default(),
        told_no_token: Default::default(),
    };
    tokio::spawn(sender.run(shutdown));
}

struct Sender {
    statuses: Statuses,
    sched: SchedHandle,
    http: SharedClient,
    /// The installation tokens of repositories with a GitHub App (check runs).
    apps: AppTokens,
    /// Repositories whose missing token the log already named.
    told_no_token: std::sync::Mutex<BTreeSet<String>>,
}

impl Sender {
    async fn run(self, shutdown: CancellationToken) {
        let wake = Some(&*self.statuses.wake);
        drive(
            "commit statuses",
            &self.sched,
            wake,
            shutdown,
            IDLE,
            async || self.round().await,
        )
        .await;
    }

    /// Sends every due report (one per commit and context, at the same time); `None` if any
    /// was finished, else when the next one is due.
    async fn round(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let reports = self.statuses.store.next_reports(BATCH).await?;
        let now = Utc::now();
        let mut next = now + IDLE;
        let mut due = Vec::new();
        for r in reports {
            if r.next_at <= now {
                due.push(r);
            } else {
                next = next.min(r.next_at);
            }
        }
        if due.is_empty() {
            return Ok(Some(next));
        }
        let config = self.sched.config().await.ok();
        let tries = due.iter().map(|r| self.attempt(r, config.as_deref()));
        let results = futures::future::join_all(tries).await;
        let mut finished = false;
        for (r, t) in due.iter().zip(results) {
            let attempts = r.attempts + 1;
            let gave_up = |error: &str| {
                tracing::warn!(
                    repo = r.repo,
                    context = r.context,
                    "commit status {} for {} not sent after {attempts} tries; giving up: {error}",
                    r.state,
                    r.commit
                );
            };
            let again = record(
                &self.statuses.store,
                Outbox::Reports,
                r.id,
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

    /// One try of report `r` with the config in force.
    async fn attempt(&self, r: &ReportRow, config: Option<&Config>) -> Try {
        let skip = |why: String| Try::Done(ReportOutcome::Skipped, Some(why));
        let Some(def) = config.and_then(|c| c.repos.get(&r.repo)) else {
            return skip(format!(
                "repository {:?} is no longer in the configuration",
                r.repo
            ));
        };
        let Some(forge) = baton_forge::Forge::from_name(def.forge.as_str()) else {
            return skip(format!(
                "repos.{} is forge: {}, which has no commit statuses",
                r.repo,
                def.forge.as_str()
            ));
        };
        if forge == baton_forge::Forge::GitHub
            && let Some(app) = &def.github_app
        {
            return self.check_run(r, def, app, config).await;
        }
        let Some(token) = def.token.as_ref().map(|t| t.value.expose().to_owned()) else {
            if self.told_no_token.lock().unwrap().insert(r.repo.clone()) {
                tracing::warn!(
                    "repos.{} has no token: Baton sends it no commit statuses (hint: token: env:VAR with a token allowed to set statuses)",
                    r.repo
                );
            }
            return skip(format!("repos.{} has no token", r.repo));
        };
        let target = match api_target(forge, def) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let (description, target_url, _) = match self.describe(r, config).await {
            Ok(d) => d,
            Err(e) => return e,
        };
        let status = CommitStatus {
            sha: &r.commit,
            state: StatusState::from_word(r.state.as_str()).unwrap_or(StatusState::Error),
            context: &r.context,
            description: &description,
            target_url: target_url.as_deref(),
        };
        let req = status_request(forge, &target.0, &target.1, &token, &status);
        self.post(req).await
    }

    /// The description, run URL and run status of report `r`.
    async fn describe(
        &self,
        r: &ReportRow,
        config: Option<&Config>,
    ) -> Result<(String, Option<String>, Option<Status>), Try> {
        let Some(run_id) = r.run_id else {
            return Ok((r.description.clone().unwrap_or_default(), None, None));
        };
        let run = match self.statuses.store.get_run(run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Err(Try::Done(
                    ReportOutcome::Failed,
                    Some(format!(
                        "run {run_id} was deleted before its status was sent"
                    )),
                ));
            }
            Err(e) => return Err(Try::Again(format!("cannot read run {run_id}: {e}"))),
        };
        let text = match r.state {
            CommitState::Pending => describe(Status::Queued, None, None),
            CommitState::Running => describe(Status::Running, None, None),
            _ => {
                let took = run
                    .started_at
                    .zip(run.ended_at)
                    .and_then(|(s, e)| (e - s).to_std().ok());
                describe(run.status, run.reason.as_deref(), took)
            }
        };
        let url = config
            .and_then(|c| c.server.public_url.as_deref())
            .map(|base| format!("{}/runs/{run_id}", base.trim_end_matches('/')));
        Ok((text, url, Some(run.status)))
    }

    /// One try of report `r` as a GitHub check run of `app`'s installation: created by the
    /// first report of a run's context, updated by the next ones.
    async fn check_run(
        &self,
        r: &ReportRow,
        def: &RepoDef,
        app: &GithubAppDef,
        config: Option<&Config>,
    ) -> Try {
        let (api, path) = match api_target(baton_forge::Forge::GitHub, def) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let token = match self.apps.get(&self.http, def, app).await {
            Ok(t) => t,
            Err(e) => return Try::Again(e),
        };
        let (description, details_url, run_status) = match self.describe(r, config).await {
            Ok(d) => d,
            Err(e) => return e,
        };
        let external_id = r
            .run_id
            .map_or_else(|| format!("report-{}", r.id), |id| id.to_string());
        let state = StatusState::from_word(r.state.as_str()).unwrap_or(StatusState::Error);
        let check = CheckRun {
            name: &r.context,
            head_sha: &r.commit,
            state: CheckState::of(state, run_status.map(|s| s.as_str())),
            external_id: &external_id,
            description: &description,
            details_url: details_url.as_deref(),
        };
        let target = CheckTarget {
            api: &api,
            path: &path,
            token: &token,
        };
        let existing = match self.existing_check_run(r, &target, &check).await {
            Ok(id) => id,
            Err(e) => return e,
        };
        let req = match existing {
            Some(id) => update_check_run(&api, &path, &token, id, &check),
            None => create_check_run(&api, &path, &token, &check),
        };
        let answer = match send(&self.http, &req).await {
            Ok(a) if a.status.is_success() => a,
            Ok(a) => return Try::Again(a.describe(&req)),
            Err(e) => return Try::Again(e),
        };
        if let (None, Some(run)) = (existing, r.run_id) {
            let id = match check_run_id(&answer.body) {
                Ok(id) => id,
                Err(e) => return Try::Done(ReportOutcome::Failed, Some(e.to_string())),
            };
            if let Err(e) = self.statuses.store.set_check_run(run, &r.context, id).await {
                return Try::Again(format!("check run {id} created, not recorded: {e}"));
            }
        }
        Try::Done(ReportOutcome::Sent, None)
    }

    /// The id of the check run that reports `r`'s run and context, when one exists: recorded,
    /// or (when a create may have been sent but its answer never recorded: a crash) found at
    /// GitHub by its external id, then recorded. `Ok(None)`: create it; for a run, the intent
    /// to is recorded first, so a crash before the answer is recorded is noticed on the next
    /// try. A report without a run is always looked up first.
    async fn existing_check_run(
        &self,
        r: &ReportRow,
        target: &CheckTarget<'_>,
        check: &CheckRun<'_>,
    ) -> Result<Option<i64>, Try> {
        let store = &self.statuses.store;
        let recorded = match r.run_id {
            None => Some(CheckRunRecord::Intended),
            Some(run) => store
                .check_run(run, &r.context)
                .await
                .map_err(|e| Try::Again(format!("cannot read the check run: {e}")))?,
        };
        match (recorded, r.run_id) {
            (Some(CheckRunRecord::Created(id)), _) => Ok(Some(id)),
            (None, Some(run)) => {
                store
                    .intend_check_run(run, &r.context)
                    .await
                    .map_err(|e| Try::Again(format!("cannot record the check run: {e}")))?;
                Ok(None)
            }
            (_, run) => {
                let found = self.find_check_run(target, check).await?;
                if let (Some(id), Some(run)) = (found, run) {
                    store
                        .set_check_run(run, &r.context, id)
                        .await
                        .map_err(|e| {
                            Try::Again(format!("check run {id} found, not recorded: {e}"))
                        })?;
                }
                Ok(found)
            }
        }
    }

    /// The check run named as `check` at its commit whose external id is `check`'s, looked up
    /// page by page (at most [`MAX_CHECK_PAGES`]).
    async fn find_check_run(
        &self,
        t: &CheckTarget<'_>,
        check: &CheckRun<'_>,
    ) -> Result<Option<i64>, Try> {
        for page in 1..=MAX_CHECK_PAGES {
            let req = list_check_runs(t.api, t.path, t.token, check.head_sha, check.name, page);
            let answer = match send(&self.http, &req).await {
                Ok(a) if a.status.is_success() => a,
                Ok(a) => return Err(Try::Again(a.describe(&req))),
                Err(e) => return Err(Try::Again(e)),
            };
            match find_check_run(&answer.body, check.external_id) {
                Ok((Some(id), _)) => return Ok(Some(id)),
                Ok((None, true)) => continue,
                Ok((None, false)) => return Ok(None),
                Err(e) => return Err(Try::Again(format!("{}: {e}", req.url))),
            }
        }
        Ok(None)
    }

    async fn post(&self, req: baton_forge::StatusRequest) -> Try {
        let mut builder = self.http.post(&req.url).json(&req.body);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        match builder.send().await {
            Ok(resp) if resp.status().is_success() => Try::Done(ReportOutcome::Sent, None),
            Ok(resp) => {
                let code = resp.status();
                let body = resp.text().await.unwrap_or_default();
                Try::Again(format!(
                    "HTTP {code} from POST {}: {}",
                    req.url,
                    clip(body.trim(), 200)
                ))
            }
            Err(e) => Try::Again(format!(
                "POST {} failed: {}",
                req.url,
                crate::error::error_chain(&e)
            )),
        }
    }
}

/// The API base and `owner/name` of `def` on `forge`; a repository whose URL tells neither
/// fails its reports for good.
fn api_target(forge: baton_forge::Forge, def: &RepoDef) -> Result<(String, String), Try> {
    match (
        api_base(forge, &def.url, def.api.as_deref()),
        repo_path(&def.url),
    ) {
        (Ok(api), Ok(path)) => Ok((api, path)),
        (Err(e), _) | (_, Err(e)) => Err(Try::Done(ReportOutcome::Failed, Some(e.to_string()))),
    }
}
