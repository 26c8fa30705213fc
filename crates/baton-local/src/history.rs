//! Reading stored runs back: Baton's (`refs/baton-runs/`) and git-jci's (`refs/jci-runs/`).

use std::collections::BTreeMap;

use baton_git::{LocalRepo, Oid};

use crate::LocalError;
use crate::progress::seconds;
use crate::record::{BATON_PREFIX, JCI_PREFIX, JobRecord, Machine, RunRecord};

/// A stored run's ref, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    pub refname: String,
    /// The commit (or, for a dirty run, the tree) it ran on.
    pub key: String,
    pub id: String,
    /// Stored by git-jci's layout.
    pub jci: bool,
    pub oid: Oid,
}

impl RunRef {
    /// `refs/baton-runs/<key>/<id>` or `refs/jci-runs/<key>/<id>`.
    pub fn parse(refname: &str, oid: Oid) -> Option<RunRef> {
        let (rest, jci) = match refname.strip_prefix(BATON_PREFIX) {
            Some(rest) => (rest, false),
            None => (refname.strip_prefix(JCI_PREFIX)?, true),
        };
        let (key, id) = rest.split_once('/')?;
        Some(RunRef {
            refname: refname.to_owned(),
            key: key.to_owned(),
            id: id.to_owned(),
            jci,
            oid,
        })
    }
}

/// Every stored run, oldest first (run ids sort by time).
pub async fn list(repo: &LocalRepo) -> Result<Vec<RunRef>, LocalError> {
    let mut runs = Vec::new();
    for prefix in [BATON_PREFIX, JCI_PREFIX] {
        for (name, oid) in repo.refs(prefix).await? {
            runs.extend(RunRef::parse(&name, oid));
        }
    }
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(runs)
}

/// The run `wanted` names: its id, a unique start of it, or its full ref.
pub async fn find(repo: &LocalRepo, wanted: &str) -> Result<RunRef, LocalError> {
    let runs = list(repo).await?;
    if let Some(r) = runs.iter().find(|r| r.id == wanted || r.refname == wanted) {
        return Ok(r.clone());
    }
    let matching: Vec<&RunRef> = runs.iter().filter(|r| r.id.starts_with(wanted)).collect();
    match matching[..] {
        [one] => Ok(one.clone()),
        [] => Err(LocalError::NoRun(wanted.to_owned())),
        _ => Err(LocalError::AmbiguousRun(
            wanted.to_owned(),
            matching
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The run's record: its `run.json`, or for a run git-jci wrote, what its `status.txt` says.
pub async fn read(repo: &LocalRepo, run: &RunRef) -> Result<RunRecord, LocalError> {
    let bad = |why: String| LocalError::BadRecord {
        run: run.id.clone(),
        why,
    };
    if let Some(json) = repo.read_file(&run.refname, "run.json").await? {
        return serde_json::from_slice(&json).map_err(|e| bad(format!("run.json: {e}")));
    }
    if !run.jci {
        return Err(bad("it has no run.json".into()));
    }
    let status = repo.read_file(&run.refname, "status.txt").await?;
    let status = match String::from_utf8_lossy(&status.unwrap_or_default()).trim() {
        "ok" => "success",
        "err" => "failed",
        "running" => "running",
        _ => "unknown",
    };
    Ok(jci_record(run, status))
}

/// A record for a run git-jci stored (it keeps no times, machine or jobs of its own): one job,
/// `run.sh` of target `.jci/run.sh`, whose log is `run.output.txt`.
pub fn jci_record(run: &RunRef, status: &str) -> RunRecord {
    let when = crate::record::run_id_time(&run.id).unwrap_or_default();
    RunRecord {
        format: crate::record::FORMAT,
        id: run.id.clone(),
        status: status.into(),
        targets: vec![".jci/run.sh".into()],
        commit: run.key.clone(),
        head: run.key.clone(),
        tree: None,
        dirty: false,
        branch: None,
        trigger: "git-jci".into(),
        started_at: when,
        ended_at: when,
        duration_ms: 0,
        machine: Machine {
            hostname: String::new(),
            user: String::new(),
            os: String::new(),
            arch: String::new(),
        },
        baton_version: String::new(),
        jobs: vec![JobRecord {
            name: "run.sh".into(),
            target: ".jci/run.sh".into(),
            status: status.into(),
            reason: None,
            exit_code: None,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            log: "run.output.txt".into(),
            artifacts: Vec::new(),
            allow_failure: false,
            cache: None,
            tests: None,
        }],
        notes: Vec::new(),
    }
}

/// A commit and its stored runs, newest first.
#[derive(Debug, Clone)]
pub struct CommitRuns {
    pub id: Oid,
    pub subject: String,
    pub runs: Vec<(RunRef, Option<RunRecord>)>,
}

/// The first-parent history from `rev` (at most `n` commits), each with its runs; a dirty run
/// counts for the commit its working tree was on. Every record is read in one git process.
pub async fn commits_with_runs(
    repo: &LocalRepo,
    rev: &str,
    n: usize,
) -> Result<Vec<CommitRuns>, LocalError> {
    let commits = repo.log(rev, n).await?;
    let runs = list(repo).await?;
    let specs: Vec<String> = runs
        .iter()
        .map(|r| format!("{}:run.json", r.refname))
        .collect();
    let records = repo.read_files(&specs).await?;
    let mut by_commit: BTreeMap<String, Vec<(RunRef, Option<RunRecord>)>> = BTreeMap::new();
    for (run, json) in runs.into_iter().zip(records) {
        let mut rec: Option<RunRecord> = json.and_then(|j| serde_json::from_slice(&j).ok());
        if rec.is_none() && run.jci {
            rec = read(repo, &run).await.ok();
        }
        let commit = rec.as_ref().map_or(run.key.clone(), |r| r.head.clone());
        by_commit.entry(commit).or_default().push((run, rec));
    }
    Ok(commits
        .into_iter()
        .map(|(id, subject)| {
            let mut runs = by_commit.remove(id.as_str()).unwrap_or_default();
            runs.reverse();
            CommitRuns { id, subject, runs }
        })
        .collect())
}

/// `baton log`: commits like `git log --oneline`, each followed by its runs (newest first)
/// with their statuses.
pub async fn log_text(repo: &LocalRepo, rev: &str, n: usize) -> Result<String, LocalError> {
    let mut out = String::new();
    for c in commits_with_runs(repo, rev, n).await? {
        out.push_str(&format!("{} {}\n", &c.id.as_str()[..10], c.subject));
        for (run, rec) in &c.runs {
            let line = match rec {
                Some(rec) => run_line(rec, run.jci),
                None => format!("{} unreadable: it has no run.json", run.id),
            };
            out.push_str(&format!("    {line}\n"));
        }
    }
    Ok(out)
}

/// One line for a run: status, id, duration, targets, machine.
pub fn run_line(rec: &RunRecord, jci: bool) -> String {
    let mut line = format!(
        "{:<8} {}  {}",
        rec.status,
        rec.id,
        seconds(rec.duration_ms as i64)
    );
    if !rec.targets.is_empty() {
        line.push_str(&format!("  {}", rec.targets.join(", ")));
    }
    if !rec.machine.hostname.is_empty() {
        line.push_str(&format!("  on {}", rec.machine.hostname));
    }
    if rec.dirty {
        line.push_str("  (dirty)");
    }
    if jci {
        line.push_str("  (git-jci)");
    }
    line
}

/// `baton show`: the run and its jobs.
pub fn show_text(rec: &RunRecord, refname: &str) -> String {
    let mut out = format!(
        "run {}  {}\nref      {refname}\ncommit   {}{}\nbranch   {}\ntrigger  {}\nstarted  {}\nduration {}\nmachine  {} ({} {}/{})\nbaton    {}\n\njobs:\n",
        rec.id,
        rec.status,
        rec.commit,
        if rec.dirty {
            format!(" (dirty working tree on {})", rec.head)
        } else {
            String::new()
        },
        rec.branch.as_deref().unwrap_or("(detached)"),
        rec.trigger,
        rec.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds(rec.duration_ms as i64),
        rec.machine.hostname,
        rec.machine.user,
        rec.machine.os,
        rec.machine.arch,
        rec.baton_version,
    );
    for j in &rec.jobs {
        let took = j.duration_ms.map(|d| seconds(d as i64)).unwrap_or_default();
        out.push_str(&format!("  {:<8} {:<24} {took:>7}", j.status, j.name));
        if let Some(why) = &j.reason {
            out.push_str(&format!("  {why}"));
        }
        out.push('\n');
        if let Some(t) = &j.tests {
            out.push_str(&format!("           tests    {}\n", t.describe()));
            for f in &t.failing {
                out.push_str(&format!("             ✗ {f}\n"));
            }
        }
        for a in &j.artifacts {
            out.push_str(&format!("           artifact {a}\n"));
        }
    }
    for n in &rec.notes {
        out.push_str(&format!("not run: {n}\n"));
    }
    out
}

/// `baton logs`: the log of `job` (the only job's when `None` and there is one; else every
/// job's, one after the other, each under a header).
pub async fn job_log(
    repo: &LocalRepo,
    run: &RunRef,
    rec: &RunRecord,
    job: Option<&str>,
) -> Result<Vec<u8>, LocalError> {
    let chosen: Vec<&JobRecord> = match job {
        Some(name) => {
            let j = rec
                .jobs
                .iter()
                .find(|j| j.name == name || j.name.ends_with(&format!("/{name}")));
            vec![j.ok_or_else(|| {
                LocalError::NoJob {
                    run: rec.id.clone(),
                    job: name.to_owned(),
                    known: rec
                        .jobs
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?]
        }
        None => rec.jobs.iter().collect(),
    };
    let mut out = Vec::new();
    let headers = chosen.len() > 1;
    for j in chosen {
        if headers {
            out.extend_from_slice(format!("=== {} ({}) ===\n", j.name, j.status).as_bytes());
        }
        out.extend(
            repo.read_file(&run.refname, &j.log)
                .await?
                .unwrap_or_default(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_refs_are_taken_apart() {
        let oid = Oid::parse(&"b".repeat(40)).unwrap();
        let r = RunRef::parse(
            "refs/baton-runs/abc/20261207T010203000Z-aaaaaa",
            oid.clone(),
        )
        .unwrap();
        assert_eq!((r.key.as_str(), r.jci), ("abc", false));
        assert!(
            RunRef::parse("refs/jci-runs/abc/x", oid.clone())
                .unwrap()
                .jci
        );
        assert!(RunRef::parse("refs/heads/main", oid).is_none());
    }
}
