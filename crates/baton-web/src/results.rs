//! Test results: after a job ends, a task of the server (never the scheduler actor, never an
//! executor) reads the job's reports from its `out/` with `baton_results` on a blocking thread
//! and records its result tree; the API and the Tests page read the run's tree back. A job
//! ended while nobody collected (a restart, a lagging subscriber) is collected when its run's
//! results are first asked for. With an artifact bucket the collector uploads each ended job's
//! `out/` (`crate::artifact_store`) and retries a failed upload in the background
//! ([`start_retries`]).

use baton_core::run::{TargetKind, TriggerKind};
use baton_results::{Node, Status};
use baton_sched::TargetDef;
use baton_store::{JobRow, NewJobResults, ResultCounts, RunRow, TestResult};

use crate::AppState;
use crate::artifact_store::ArtifactStore;
use crate::pending::{done_pending, hold_pending, pending};

/// Stores an ended run's `report.html` once its results are collected. The web UI renders the
/// report: the caller (`crate::start_results`) passes its function in, so that collecting never
/// imports the UI.
pub(crate) type StoreReport =
    for<'a> fn(&'a AppState, &'a RunRow) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Starts the collector: every batch of changes the scheduler reports is looked at for jobs
/// that ended without recorded results; a run that ended gets `store_report` once its results
/// are in. Stops when the scheduler's event stream closes.
pub(crate) fn start_collector(state: &AppState, store_report: StoreReport) {
    let s = state.clone();
    let mut events = s.sched.subscribe();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let ids: Vec<i64> = match events.recv().await {
                // Only a run a job of which ended has results to collect (a run ends in the
                // batch its last job does): a queued or started mark has none.
                Ok(changed) => changed
                    .runs
                    .iter()
                    .filter(|r| r.job_ended || r.ended.is_some())
                    .map(|r| r.id)
                    .collect(),
                // Missed batches: their runs are collected when their results are asked for.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            for id in ids {
                match s.store.get_run(id).await {
                    Ok(Some(run)) => {
                        collect_run(&s, &run).await;
                        if run.status.is_terminal() {
                            store_report(&s, &run).await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run = id, "cannot read the run to collect its results: {e}")
                    }
                }
            }
        }
    });
}

/// The globs of `reports.junit` of the job's definition (empty: every JUnit `*.xml`).
fn junit_globs(run: &RunRow, job: &JobRow) -> Vec<String> {
    match serde_json::from_value::<TargetDef>(run.definition.clone()) {
        Ok(TargetDef::Task(t)) => t.reports.junit,
        Ok(TargetDef::Pipeline(p)) => p
            .tasks
            .get(&job.name)
            .map(|t| t.reports.junit.clone())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// What a test's history is kept per: the task, or `PIPELINE/TASK`.
pub(crate) fn history_key(run: &RunRow, job: &JobRow) -> String {
    match run.kind {
        TargetKind::Task => run.target.clone(),
        TargetKind::Pipeline => format!("{}/{}", run.target, job.name),
    }
}

fn counts(n: &Node) -> ResultCounts {
    let s = n.summary;
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ResultCounts {
        passed: i(s.passed),
        failed: i(s.failed),
        errors: i(s.errors),
        skipped: i(s.skipped),
        flaky: i(s.flaky),
        warnings: i(s.warnings),
        duration_ms: (s.duration * 1000.0).round() as i64,
    }
}

/// How many reruns back [`run_code`] looks for the run a rerun repeats.
const MAX_RERUN_CHAIN: usize = 50;

/// The code a run built, what a test's flips are compared on: its commit, or for a run without
/// a repository the first run of its rerun chain (a rerun repeats its ancestor's code).
async fn run_code(s: &AppState, run: &RunRow) -> String {
    use baton_results::history::{code_of_commit, code_of_run};
    if let Some(code) = &run.repo {
        return code_of_commit(&code.commit);
    }
    let (mut id, mut trigger, mut ancestors) = (run.id, run.trigger, run.ancestors.clone());
    for _ in 0..MAX_RERUN_CHAIN {
        let Some(&up) = ancestors.first().filter(|_| trigger == TriggerKind::Rerun) else {
            break;
        };
        match s.store.get_run(up).await {
            Ok(Some(older)) => {
                (id, trigger, ancestors) = (older.id, older.trigger, older.ancestors);
            }
            // Pruned or unreadable: the chain starts here.
            _ => break,
        }
    }
    code_of_run(id)
}

/// What a job's node is made of: its reports, read from `out/` (its own, or for a cache hit
/// that of the job it hit), or `recorded` (the nodes the hit job got, when its `out/` went to
/// the artifact bucket), then `extra` (warnings).
struct Sources {
    out: std::path::PathBuf,
    globs: Vec<String>,
    recorded: Option<Vec<Node>>,
    extra: Vec<Node>,
}

/// A job's node, with its counts, its JSON and its test cases' rows.
fn build_job(
    src: Sources,
    name: &str,
    id: i64,
    status: &str,
) -> (ResultCounts, String, Vec<TestResult>) {
    let mut children = match src.recorded {
        Some(nodes) => nodes,
        None => baton_results::collect_job(&src.out, &src.globs),
    };
    children.extend(src.extra);
    let node = baton_results::job_node(name, id, status, children);
    rows_of(&node)
}

/// A job node's counts, its JSON and its test cases' rows.
fn rows_of(node: &Node) -> (ResultCounts, String, Vec<TestResult>) {
    let tests: Vec<TestResult> = node
        .leaves()
        .into_iter()
        .filter(|(_, n)| n.kind == baton_results::Kind::Case)
        .map(|(path, n)| TestResult {
            test_id: baton_results::test_id(&path, n),
            status: n.status.unwrap_or(Status::Passed).as_str().to_owned(),
            duration_ms: n.duration.map(|d| (d * 1000.0).round() as i64),
        })
        .collect();
    let tree = serde_json::to_string(node).unwrap_or_default();
    (counts(node), tree, tests)
}

/// Records the result tree a job of an imported run came with (its node in the pushed run's
/// `results.json`, made by `baton run` with the same reader), instead of reading its `out/`.
pub(crate) async fn save_imported(s: &AppState, run: &RunRow, job: &JobRow, mut node: Node) {
    node.name.clone_from(&job.name);
    node.job_id = Some(job.id);
    node.job_status = Some(job.status.to_string());
    node.summarize();
    let (counts, tree, tests) = rows_of(&node);
    let new = NewJobResults {
        job_id: job.id,
        run_id: run.id,
        attempt: job.attempt,
        task: history_key(run, job),
        code: Some(run_code(s, run).await),
        counts,
        tree,
        tests,
    };
    if let Err(e) = s.store.save_job_results(&new).await {
        tracing::warn!(
            job = job.id,
            "cannot record the imported job's results: {e}"
        );
    }
}

/// Collects and records the results of every ended job of `run` that has none yet.
pub(crate) async fn collect_run(s: &AppState, run: &RunRow) {
    let ended: Vec<&JobRow> = run.jobs.iter().filter(|j| j.status.is_terminal()).collect();
    if ended.is_empty() {
        return;
    }
    let have = match s.store.collected_jobs(run.id).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(run = run.id, "cannot read recorded results: {e}");
            return;
        }
    };
    let todo: Vec<&JobRow> = ended
        .into_iter()
        .filter(|j| !have.contains(&j.id))
        .collect();
    if todo.is_empty() {
        return;
    }
    let code = run_code(s, run).await;
    for job in todo {
        // The collector and a reader of the results may both get here: one collects a job,
        // the other waits for it and then finds it collected.
        let _collecting = loop {
            if let Some(c) = Collecting::claim(job.id) {
                break c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        if s.store
            .collected_jobs(run.id)
            .await
            .is_ok_and(|ids| ids.contains(&job.id))
        {
            continue;
        }
        let (owner, attempt) = crate::artifact_store::owner(s, job).await;
        let out = s.folders.job_dir(owner, attempt).join("out");
        let own = (owner, attempt) == (job.id, job.attempt);
        let mut src = Sources {
            recorded: None,
            globs: junit_globs(run, job),
            extra: Vec::new(),
            out: out.clone(),
        };
        if !own && !out.is_dir() {
            src.recorded = recorded_nodes(s, job, owner).await;
        }
        let upload = s.artifact_store.as_ref().filter(|_| own && out.is_dir());
        crate::pending::test_gate(job.id).await;
        // Recorded (held) before anything of the job is read or written, once the store is
        // known to still have it, under the prune lock: a prune leaves the run alone while
        // this is held, or deleted it before (then nothing of it is written). With an upload,
        // recorded durably first: a failure, or a crash in the middle, is retried
        // (`start_retries`), also after a restart.
        let hold =
            match crate::pending::hold_collection(s, run.id, job.id, job.attempt, upload.is_some())
                .await
            {
                Ok(crate::pending::Collection::Held(h)) => Some(h),
                Ok(crate::pending::Collection::Gone) => {
                    tracing::info!(job = job.id, "not collected: retention deleted its run");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = job.id, "{e}; collecting it anyway");
                    None
                }
            };
        let mut uploaded = false;
        let mut upload_failed = false;
        if let Some(store) = upload {
            match store.upload(job.id, job.attempt, out.clone()).await {
                Ok(n) => {
                    tracing::info!(job = job.id, "{n} artifacts uploaded to {}", store.label());
                    uploaded = true;
                }
                Err(e) => {
                    tracing::warn!(job = job.id, "{e}");
                    upload_failed = true;
                    src.extra.push(Node::warning(
                        UPLOAD_WARNING,
                        format!(
                            "{e}; they stay on this server's disk (listed and served from \
                             there) until a retry in the background uploads them"
                        ),
                    ));
                }
            }
        }
        let (name, id, status) = (job.name.clone(), job.id, job.status.to_string());
        let built = tokio::task::spawn_blocking(move || build_job(src, &name, id, &status)).await;
        let Ok((counts, tree, tests)) = built else {
            tracing::warn!(job = job.id, "collecting the job's results panicked");
            continue;
        };
        let new = NewJobResults {
            job_id: job.id,
            run_id: run.id,
            attempt: job.attempt,
            task: history_key(run, job),
            code: Some(code.clone()),
            counts,
            tree,
            tests,
        };
        if let Err(e) = s.store.save_job_results(&new).await {
            tracing::warn!(job = job.id, "cannot record the job's results: {e}");
        }
        if uploaded {
            // The bucket holds them now (its manifest is written): the disk's copy goes.
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&out)).await;
        }
        if !upload_failed {
            // A failed upload stays pending for the retries.
            crate::pending::done_pending(&s.folders, job.id, job.attempt, upload.is_some());
        }
        drop(hold);
    }
}

/// The name of the warning node a job gets when its artifacts could not be uploaded.
const UPLOAD_WARNING: &str = "artifacts";

/// A retry uploaded job `job`'s artifacts: its results no longer say the upload failed (the
/// warning the first try left goes, and its count), and run `run`'s `report.html`, if it was
/// stored with the warning, is made again (`store_report`). The caller holds the job's
/// collection claim.
async fn upload_arrived(s: &AppState, run: i64, job: i64, store_report: StoreReport) {
    let rows = match s.store.run_results(run).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(
                job,
                "cannot read the job's results to clear its upload warning: {e}"
            );
            return;
        }
    };
    let Some(mut node) = rows
        .iter()
        .find(|r| r.job_id == job)
        .and_then(|r| serde_json::from_str::<Node>(&r.tree).ok())
    else {
        return;
    };
    let before = node.children.len();
    node.children.retain(|c| {
        !(c.kind == baton_results::Kind::Warning
            && c.name == UPLOAD_WARNING
            && c.message
                .as_deref()
                .is_some_and(|m| m.starts_with(crate::artifact_store::NOT_UPLOADED)))
    });
    if node.children.len() == before {
        return;
    }
    node.summarize();
    let (counts, tree, _) = rows_of(&node);
    if let Err(e) = s.store.replace_job_tree(job, &counts, &tree).await {
        tracing::warn!(job, "cannot clear the job's upload warning: {e}");
        return;
    }
    if let Ok(Some(r)) = s.store.get_run(run).await
        && r.status.is_terminal()
    {
        let path = s.folders.report_path(run);
        if tokio::fs::remove_file(&path).await.is_ok() {
            store_report(s, &r).await;
        }
    }
}

/// Jobs being collected in this process.
static COLLECTING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<i64>>> =
    std::sync::LazyLock::new(Default::default);

/// A job claimed for collection until dropped.
pub(crate) struct Collecting(i64);

impl Collecting {
    pub(crate) fn claim(job: i64) -> Option<Collecting> {
        let mut set = COLLECTING.lock().unwrap_or_else(|e| e.into_inner());
        // Not `then_some`: a guard made and dropped here would lock the set again.
        if set.insert(job) {
            Some(Collecting(job))
        } else {
            None
        }
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        COLLECTING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Uploads a job attempt's `out/` to the bucket (a retry); once the manifest is written, the
/// warning of the failed try leaves the job's results, and the disk's copy and the pending
/// record go. The caller holds the job's collection claim.
async fn upload_out(
    s: &AppState,
    store: &ArtifactStore,
    run: i64,
    job: i64,
    attempt: u32,
    store_report: StoreReport,
) -> Result<usize, String> {
    let out = s.folders.job_dir(job, attempt).join("out");
    let n = store.upload(job, attempt, out.clone()).await?;
    // The results said the first try failed: no longer true.
    upload_arrived(s, run, job, store_report).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&out)).await;
    done_pending(&s.folders, job, attempt, true);
    Ok(n)
}

/// The first wait before a failed upload is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(2);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);
/// How often the pending uploads are looked at.
const RETRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the retries of pending uploads (with a bucket only): at start every pending upload
/// (one that failed, or one a crash cut short) is tried at once, then each failure waits twice
/// as long as the last (2 s up to 5 min). A job whose results are not collected yet is
/// collected (which uploads); its upload never races the collector (one claim per job).
pub(crate) fn start_retries(state: &AppState, store_report: StoreReport) {
    let Some(store) = state.artifact_store.clone() else {
        return;
    };
    let s = state.clone();
    tokio::spawn(async move {
        let mut backoff: std::collections::HashMap<
            (i64, u32),
            (std::time::Duration, tokio::time::Instant),
        > = std::collections::HashMap::new();
        loop {
            let folders = s.folders.clone();
            let todo = tokio::task::spawn_blocking(move || pending(&folders))
                .await
                .unwrap_or_default();
            let now = tokio::time::Instant::now();
            backoff.retain(|k, _| todo.iter().any(|(_, j, a)| (*j, *a) == *k));
            for (run, job, attempt) in todo {
                if backoff
                    .get(&(job, attempt))
                    .is_some_and(|(_, next)| *next > now)
                {
                    continue;
                }
                let result = retry_one(&s, &store, run, job, attempt, store_report).await;
                match result {
                    Retry::Done(n) => {
                        backoff.remove(&(job, attempt));
                        tracing::info!(
                            job,
                            "{n} artifacts uploaded to {} on a retry",
                            store.label()
                        );
                    }
                    Retry::Busy => {}
                    Retry::Failed(e) => {
                        let wait = backoff
                            .get(&(job, attempt))
                            .map_or(RETRY_FIRST, |(w, _)| (*w * 2).min(RETRY_MAX));
                        tracing::warn!(job, "{e}; trying again in {} s", wait.as_secs());
                        backoff.insert((job, attempt), (wait, tokio::time::Instant::now() + wait));
                    }
                }
            }
            tokio::time::sleep(RETRY_TICK).await;
        }
    });
}

enum Retry {
    Done(usize),
    /// The collector holds the job now; looked at again next round.
    Busy,
    Failed(String),
}

async fn retry_one(
    s: &AppState,
    store: &ArtifactStore,
    run: i64,
    job: i64,
    attempt: u32,
    store_report: StoreReport,
) -> Retry {
    let collected = match s.store.collected_jobs(run).await {
        Ok(ids) => ids.contains(&job),
        Err(e) => return Retry::Failed(format!("cannot read run {run}'s results: {e}")),
    };
    if !collected {
        // Not collected yet (a restart cut it short): collecting it uploads it.
        match s.store.get_run(run).await {
            Ok(Some(r)) => collect_run(s, &r).await,
            Ok(None) => done_pending(&s.folders, job, attempt, true),
            Err(e) => return Retry::Failed(format!("cannot read run {run}: {e}")),
        }
        return Retry::Busy;
    }
    let Some(_claim) = Collecting::claim(job) else {
        return Retry::Busy;
    };
    // Held by a prune that is deleting the run, or forgotten: looked at again next round.
    let Some(_hold) = hold_pending(&s.folders, job, attempt) else {
        return Retry::Busy;
    };
    let out = s.folders.job_dir(job, attempt).join("out");
    if !out.is_dir() {
        // Uploaded already (a crash after its manifest), or pruned: nothing left to send.
        done_pending(&s.folders, job, attempt, true);
        return Retry::Busy;
    }
    match upload_out(s, store, run, job, attempt, store_report).await {
        Ok(n) => Retry::Done(n),
        Err(e) => Retry::Failed(e),
    }
}

/// The nodes recorded for job `owner` (the job a cache hit of `job` points to).
async fn recorded_nodes(s: &AppState, job: &JobRow, owner: i64) -> Option<Vec<Node>> {
    let (hit, _) = baton_core::decide::hit_of(job.reason.as_deref())?;
    let rec = s.store.job_cache(hit).await.ok()??;
    let rows = s.store.run_results(rec.run_id).await.ok()?;
    let row = rows.into_iter().find(|r| r.job_id == owner)?;
    let node: Node = serde_json::from_str(&row.tree).ok()?;
    Some(node.children)
}

/// The run's result tree: one node per job (a job still running has no children yet),
/// summarized at every level. Collects ended jobs that have no results yet first.
pub(crate) async fn run_tree(s: &AppState, run: &RunRow) -> Result<Node, baton_store::StoreError> {
    collect_run(s, run).await;
    let rows = s.store.run_results(run.id).await?;
    let mut jobs = Vec::with_capacity(run.jobs.len());
    for job in &run.jobs {
        let node = rows
            .iter()
            .find(|r| r.job_id == job.id)
            .and_then(|r| serde_json::from_str::<Node>(&r.tree).ok());
        let mut node = node.unwrap_or_else(|| {
            baton_results::job_node(&job.name, job.id, job.status.as_str(), Vec::new())
        });
        node.job_status = Some(job.status.to_string());
        jobs.push(node);
    }
    Ok(baton_results::run_tree(
        format!("{} #{}", run.target, run.id),
        jobs,
    ))
}

/// `GET /api/v1/runs/{id}/results` filters.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// `failed`: only the branches that lead to a failed or errored test, or to a warning.
    status: Option<String>,
    /// Only the branches that lead to a node whose name or class contains this
    /// (case-insensitive).
    q: Option<String>,
}

/// The run's tree filtered as the query asks (the run's node stays, maybe without children).
pub(crate) fn filtered(tree: Node, failed_only: bool, q: Option<&str>) -> Node {
    fn keep(out: Node, n: Option<Node>) -> Node {
        n.unwrap_or_else(|| Node {
            children: Vec::new(),
            ..out
        })
    }
    let mut out = tree;
    if failed_only {
        let f = out.failing();
        out = keep(out, f);
    }
    if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
        let m = out.matching(q);
        out = keep(out, m);
    }
    out
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/results",
    params(("id" = i64, Path, description = "run id"), ResultsQuery),
    responses(
        (status = 200, description = "the run's result tree with a summary at every level", body = crate::api_types::RunResults),
        (status = 400, description = "bad id or filter", body = crate::api_types::ErrorBody),
        (status = 401, description = "no or bad credentials", body = crate::api_types::ErrorBody),
        (status = 404, description = "no such run, or hidden (`run_not_found`)", body = crate::api_types::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::api_types::ErrorBody)
    )
)]
pub(crate) async fn get_results(
    axum::extract::State(s): axum::extract::State<AppState>,
    user: crate::CurrentUser,
    id: Result<axum::extract::Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<axum::extract::Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<crate::api_types::RunResults>, crate::ApiError> {
    let axum::extract::Path(id) = id?;
    let axum::extract::Query(q) = q?;
    let failed_only = match q.status.as_deref() {
        None => false,
        Some("failed") => true,
        Some(other) => {
            return Err(crate::ApiError::bad_request(format!(
                "unknown status filter {other:?}: the only one is status=failed"
            )));
        }
    };
    let not_found = || {
        crate::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "run_not_found",
            format!("run {id} not found"),
        )
    };
    let run = s.store.get_run(id).await?.ok_or_else(not_found)?;
    // A hidden run answers exactly like a missing one.
    if !crate::auth::Access::of(&s, &user)
        .await?
        .can_see(run.kind, &run.target)
    {
        return Err(not_found());
    }
    let tree = run_tree(&s, &run).await?;
    let tree = filtered(tree, failed_only, q.q.as_deref());
    Ok(axum::Json(crate::api_types::RunResults {
        run_id: run.id,
        tree: (&tree).into(),
    }))
}
