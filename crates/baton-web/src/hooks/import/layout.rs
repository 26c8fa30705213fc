//! A pushed result ref's tree turned into server runs (pure: no git, no store): one run per
//! target of a `baton run` (`run.json`), or one for a git-jci run (`status.txt`,
//! `run.output.txt`), each job with the files its folder gets. Anything unusable is a refusal
//! that says why.

use std::collections::BTreeMap;

use baton_core::run::{JobView, Status, TargetKind, TriggerKind, run_status};
use baton_local::history::{RunRef, jci_record};
use baton_local::record::{FORMAT, JobRecord, RunRecord};
use baton_store::{JobRow, RunRepo, RunRow};
use chrono::{DateTime, Utc};

/// The most jobs one stored run may have.
pub(crate) const MAX_JOBS: usize = 100;
/// The most nodes of a stored run's `results.json` taken (the server's own reader's bound);
/// beyond, the jobs' results are read from their artifacts instead.
const MAX_RESULT_NODES: usize = 100_000;
/// The longest target or job name taken.
const MAX_NAME: usize = 200;

/// A file of the run's tree, read.
pub(crate) struct Blob {
    pub path: String,
    pub executable: bool,
    pub bytes: Vec<u8>,
}

/// What one job's folder gets: its log and its artifacts (paths under `out/`, checked).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct JobFiles {
    pub log: Option<Vec<u8>>,
    pub out: Vec<(String, bool, Vec<u8>)>,
}

/// A run to record, with its jobs' files (in job order) and cache facts.
pub(crate) struct Planned {
    pub row: RunRow,
    pub files: Vec<JobFiles>,
    pub cache: Vec<Option<baton_local::record::CacheRecord>>,
    /// Each job's node of the stored run's `results.json`, if it has one.
    pub tests: Vec<Option<baton_results::Node>>,
    /// The target within the stored run (its import mark).
    pub target: String,
}

/// Why a ref is not imported: now (`Later`: it has not ended, try again at the next push or
/// poll) or ever (`Never`: recorded with the reason, not tried again).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Later(String),
    Never(String),
}

impl From<String> for Refusal {
    fn from(why: String) -> Refusal {
        Refusal::Never(why)
    }
}

impl From<&str> for Refusal {
    fn from(why: &str) -> Refusal {
        Refusal::Never(why.to_owned())
    }
}

/// Where the code came from, as the mirror knows it (`None`: the commit is not there).
pub(crate) struct Known {
    pub author: Option<String>,
    pub subject: Option<String>,
}

/// Whether a path from the tree can become a file under a job's folder: plain components
/// only.
pub(crate) fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

/// The runs `files` (the ref's whole tree) hold, or why they are refused.
pub(crate) fn plan(
    repo: &baton_core::config::RepoDef,
    run: &RunRef,
    files: Vec<Blob>,
    known: &Known,
    now: DateTime<Utc>,
) -> Result<Vec<Planned>, Refusal> {
    let mut tree: BTreeMap<String, Blob> = files.into_iter().map(|b| (b.path.clone(), b)).collect();
    let record = read_record(run, &mut tree, now)?;
    if let Some(j) = record
        .jobs
        .iter()
        .find(|j| j.status.parse::<Status>().is_ok_and(|s| !s.is_terminal()))
    {
        return Err(Refusal::Later(format!(
            "job {:?} is {}: a run is imported once it has ended",
            j.name, j.status
        )));
    }
    check_record(run, &record)?;
    // The run's test results as `baton run` read them (the server's reader): one node per job.
    let tests: Vec<baton_results::Node> = tree
        .remove(baton_local::results::RESULTS_FILE)
        .and_then(|b| serde_json::from_slice::<baton_results::Node>(&b.bytes).ok())
        .filter(|run| nodes_in(run) <= MAX_RESULT_NODES)
        .map(|run| run.children)
        .unwrap_or_default();
    let mut targets: Vec<String> = record.targets.clone();
    for j in &record.jobs {
        if !targets.contains(&j.target) {
            targets.push(j.target.clone());
        }
    }
    let stored = Stored {
        record: &record,
        ran_on: ran_on(&record, run.jci),
        jci: run.jci,
        tests: &tests,
    };
    let mut out = Vec::new();
    for target in targets {
        if let Some(p) = target_run(repo, known, &stored, target, &mut tree)? {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err("its run.json lists no job".into());
    }
    Ok(out)
}

/// The stored run's record: its `run.json`, or for a run git-jci stored, its `status.txt`.
fn read_record(
    run: &RunRef,
    tree: &mut BTreeMap<String, Blob>,
    now: DateTime<Utc>,
) -> Result<RunRecord, Refusal> {
    if let Some(json) = tree.remove("run.json") {
        let rec: RunRecord = serde_json::from_slice(&json.bytes)
            .map_err(|e| format!("its run.json is not a Baton run record: {e}"))?;
        if rec.format > FORMAT {
            return Err(format!(
                "its run.json has format {} (this server reads up to {FORMAT}): upgrade the server",
                rec.format
            )
            .into());
        }
        return Ok(rec);
    }
    if !run.jci {
        return Err("it has no run.json".into());
    }
    let status = tree
        .get("status.txt")
        .map(|b| String::from_utf8_lossy(&b.bytes).trim().to_owned())
        .ok_or("it has neither run.json nor git-jci's status.txt")?;
    let status = match status.as_str() {
        "ok" => "success",
        "err" => "failed",
        "running" => return Err(Refusal::Later("git-jci says it is still running".into())),
        other => return Err(format!("its status.txt says {other:?}, not ok or err").into()),
    };
    let mut rec = jci_record(run, status);
    if rec.started_at == DateTime::<Utc>::default() {
        (rec.started_at, rec.ended_at) = (now, now);
    }
    Ok(rec)
}

/// What every target of one stored run shares.
struct Stored<'a> {
    record: &'a RunRecord,
    ran_on: String,
    jci: bool,
    tests: &'a [baton_results::Node],
}

/// The server run of `target`'s jobs (`None`: it has none).
fn target_run(
    repo: &baton_core::config::RepoDef,
    known: &Known,
    s: &Stored<'_>,
    target: String,
    tree: &mut BTreeMap<String, Blob>,
) -> Result<Option<Planned>, Refusal> {
    let record = s.record;
    let jobs: Vec<&JobRecord> = record.jobs.iter().filter(|j| j.target == target).collect();
    if jobs.is_empty() {
        return Ok(None);
    }
    let pipeline = jobs
        .iter()
        .any(|j| j.name.starts_with(&format!("{target}/")));
    let mut rows = Vec::new();
    let mut files = Vec::new();
    let mut cache = Vec::new();
    let mut nodes = Vec::new();
    for j in &jobs {
        rows.push(job_row(j, &target, pipeline, record, &s.ran_on)?);
        files.push(job_files(j, s.jci, tree));
        cache.push(j.cache.clone());
        let node = s
            .tests
            .iter()
            .find(|n| n.kind == baton_results::Kind::Job && n.name == j.name);
        nodes.push(node.cloned());
    }
    let views: Vec<JobView> = rows
        .iter()
        .zip(&jobs)
        .enumerate()
        .map(|(i, (r, j))| JobView {
            status: r.status,
            allow_failure: j.allow_failure,
            ended_seq: i as u64,
        })
        .collect();
    let reason = rows
        .iter()
        .find(|r| matches!(r.status, Status::Failed | Status::Broken))
        .and_then(|r| r.reason.clone());
    let row = RunRow {
        id: 0,
        kind: if pipeline {
            TargetKind::Pipeline
        } else {
            TargetKind::Task
        },
        target: format!("{}/{target}", repo.name),
        trigger: TriggerKind::Local,
        args: BTreeMap::new(),
        tags: Vec::new(),
        definition: serde_json::Value::Null,
        status: run_status(&views),
        reason,
        priority: 0,
        partition: None,
        enqueued_at: record.started_at,
        not_before: None,
        started_at: Some(record.started_at),
        ended_at: Some(record.ended_at),
        jobs: rows,
        ancestors: Vec::new(),
        descendants: Vec::new(),
        repo: Some(RunRepo {
            repo: repo.name.clone(),
            url: repo.url.clone(),
            commit: record.commit.clone(),
            git_ref: record.branch.as_ref().map(|b| format!("refs/heads/{b}")),
            branch: record.branch.clone(),
            event: "local".into(),
            author: known.author.clone(),
            subject: known.subject.clone(),
            ran_on: Some(s.ran_on.clone()),
            ..RunRepo::default()
        }),
    };
    Ok(Some(Planned {
        row,
        files,
        cache,
        tests: nodes,
        target,
    }))
}

fn nodes_in(n: &baton_results::Node) -> usize {
    1 + n.children.iter().map(nodes_in).sum::<usize>()
}

/// What the ref's name and its record must agree on, and the limits a record must keep.
fn check_record(run: &RunRef, rec: &RunRecord) -> Result<(), String> {
    if rec.dirty || rec.tree.is_some() {
        return Err(
            "it is a --dirty run: it built uncommitted changes, not a commit of the repository"
                .into(),
        );
    }
    if baton_git::Oid::parse(&rec.commit).is_err() || rec.commit != run.key {
        return Err(format!(
            "its name says commit {:?} but its run.json says {:?}",
            run.key, rec.commit
        ));
    }
    if rec.jobs.len() > MAX_JOBS {
        return Err(format!(
            "it has {} jobs (at most {MAX_JOBS} are imported)",
            rec.jobs.len()
        ));
    }
    if let Some(bad) = rec
        .jobs
        .iter()
        .flat_map(|j| [&j.name, &j.target])
        .chain(&rec.targets)
        .find(|n| !plain_name(n))
    {
        return Err(format!(
            "it names a task {bad:?} (names are 1 to {MAX_NAME} characters without control characters)"
        ));
    }
    Ok(())
}

/// `user@host`, or the host alone; git-jci keeps no machine.
fn ran_on(rec: &RunRecord, jci: bool) -> String {
    let m = &rec.machine;
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect::<String>()
    };
    match (clean(&m.user), clean(&m.hostname)) {
        (_, h) if h.is_empty() && jci => "an unknown machine (git-jci)".into(),
        (_, h) if h.is_empty() => "an unknown machine".into(),
        (u, h) if u.is_empty() => h,
        (u, h) => format!("{u}@{h}"),
    }
}

fn job_row(
    j: &JobRecord,
    target: &str,
    pipeline: bool,
    rec: &RunRecord,
    ran_on: &str,
) -> Result<JobRow, String> {
    let status: Status = j
        .status
        .parse()
        .map_err(|e| format!("job {:?}: {e}", j.name))?;
    if !status.is_terminal() {
        return Err(format!(
            "job {:?} is {status}: a run is imported once it has ended",
            j.name
        ));
    }
    let name = if pipeline {
        j.name
            .strip_prefix(&format!("{target}/"))
            .unwrap_or(&j.name)
            .to_owned()
    } else {
        j.name.clone()
    };
    // Kept to the millisecond, as the store keeps them.
    let at = |t: Option<DateTime<Utc>>| {
        t.and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis()))
    };
    Ok(JobRow {
        id: 0,
        run_id: 0,
        name,
        status,
        reason: j.reason.as_ref().map(|r| r.chars().take(2000).collect()),
        attempt: 1,
        worker: Some(format!("local:{ran_on}")),
        exit_code: j.exit_code,
        queued_at: at(j.started_at).unwrap_or(rec.started_at),
        ready_at: None,
        started_at: at(j.started_at),
        ended_at: at(j.ended_at).or(Some(rec.ended_at)),
        ended_seq: None,
        args: BTreeMap::new(),
    })
}

/// The job's log and artifacts from the tree (git-jci's layout: `run.output.txt` and the
/// output folder's files at the top).
fn job_files(j: &JobRecord, jci: bool, tree: &mut BTreeMap<String, Blob>) -> JobFiles {
    let mut files = JobFiles::default();
    if jci {
        files.log = tree.remove("run.output.txt").map(|b| b.bytes);
        let skip = ["status.txt", "index.html", "run.json"];
        let keys: Vec<String> = tree
            .keys()
            .filter(|k| !skip.contains(&k.as_str()) && safe_path(k))
            .cloned()
            .collect();
        for k in keys {
            if let Some(b) = tree.remove(&k) {
                files.out.push((b.path, b.executable, b.bytes));
            }
        }
        return files;
    }
    let Some(folder) = j.log.strip_suffix("/log") else {
        return files;
    };
    files.log = tree.remove(&j.log).map(|b| b.bytes);
    let prefix = format!("{folder}/out/");
    let keys: Vec<String> = tree
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    for k in keys {
        let rel = &k[prefix.len()..];
        if safe_path(rel)
            && let Some(b) = tree.remove(&k)
        {
            files.out.push((rel.to_owned(), b.executable, b.bytes));
        }
    }
    files
}

#[cfg(test)]
mod tests;
