//! `baton run`: from the repository to a stored run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use baton_core::run::{JobView, Status, run_status};
use baton_git::{LocalRepo, TreeFile};
use chrono::Utc;

use crate::LocalError;
use crate::engine::{self, JobResult, Options, Progress};
use crate::plan::{self, Code, Group, Plan, PlannedJob};
use crate::record::{
    self, JCI_PREFIX, JobRecord, Machine, RunRecord, file_from_disk, files_under, job_folder,
};

/// Renders a run's `index.html` from its record and each job's log (in the record's order).
pub type Render<'a> = &'a (dyn Fn(&RunRecord, &[Vec<u8>]) -> String + Sync);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tasks or pipelines; empty: what a push of the current branch starts.
    pub targets: Vec<String>,
    /// Run a snapshot of the working tree instead of `HEAD`.
    pub dirty: bool,
    /// Run this commit or branch instead of `HEAD` (cron entries with `branch:`).
    pub rev: Option<String>,
    pub parallel: usize,
    pub supervisor: PathBuf,
    pub supervisor_args: Vec<OsString>,
    pub docker_host: Option<String>,
    /// `--no-cache`: jobs with `cache:` run even when an earlier run had the same inputs.
    pub no_cache: bool,
    /// Forks each job's supervisor without an exec, when `main` started one.
    pub launcher: Option<std::sync::Arc<baton_exec::launcher::Launcher>>,
}

/// A stored run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub record: RunRecord,
    pub refname: String,
}

/// Runs the repository that `dir` is in and stores the result.
pub async fn run(
    dir: &Path,
    opts: &RunOptions,
    progress: &dyn Progress,
    render: Render<'_>,
) -> Result<Finished, LocalError> {
    // The repository and its `HEAD` in one git process (unless another commit is asked for).
    let (repo, head) = LocalRepo::discover_at_head(dir, opts.rev.is_none()).await?;
    let code = code(&repo, head, opts.dirty, opts.rev.as_deref()).await?;
    let mirror = repo.mirror();
    let workdir = tempfile::Builder::new()
        .prefix("baton-run-")
        .tempdir()
        .map_err(|e| LocalError::io("make a temporary folder in", &std::env::temp_dir(), e))?;
    // The checkout most jobs need, started now: it runs while `.baton/` is read and planned.
    let ahead: engine::Ahead = std::sync::Arc::new(std::sync::Mutex::new(Some(tokio::spawn({
        let (mirror, commit) = (mirror.clone(), code.commit.clone());
        let dest = workdir.path().join("ahead");
        async move { mirror.checkout_borrowing(&commit, &dest).await }
    }))));
    let result = run_in(
        &repo, &code, &mirror, opts, progress, render, &workdir, &ahead,
    )
    .await;
    // Not taken (no job checked out, or the run failed before any started): stopped (git is
    // killed when its task is dropped) or awaited before its folder goes.
    let left = ahead.lock().expect("ahead checkout poisoned").take();
    if let Some(handle) = left {
        if result.is_err() {
            handle.abort();
        }
        let _ = handle.await;
    }
    remove_later(workdir);
    result
}

/// [`run`] once the code is known, in `workdir`.
#[allow(clippy::too_many_arguments)]
async fn run_in(
    repo: &LocalRepo,
    code: &Code,
    mirror: &baton_git::Mirror,
    opts: &RunOptions,
    progress: &dyn Progress,
    render: Render<'_>,
    workdir: &tempfile::TempDir,
    ahead: &engine::Ahead,
) -> Result<Finished, LocalError> {
    let files = repo.read_tree(&code.commit, ".baton").await?;
    let jci = files.is_empty()
        && !repo
            .read_tree(&code.commit, ".jci/run.sh")
            .await?
            .is_empty();
    let mut plan = if jci {
        jci_plan(code)
    } else {
        let config = plan::load(&files, code.key.as_str())?;
        plan::select(&config, &opts.targets, code)?
    };
    if plan.jobs.is_empty() {
        let why = if plan.notes.is_empty() {
            String::new()
        } else {
            format!(": {}", plan.notes.join("; "))
        };
        return Err(LocalError::Usage(format!(
            "nothing to run: a push of {} starts no task or pipeline of .baton/{why} (hint: name one: `baton run TASK`)",
            code.branch.as_deref().unwrap_or("a detached HEAD")
        )));
    }
    let cache = if plan.jobs.iter().any(|j| j.cache.is_some()) {
        crate::cache::CacheIndex::read(repo).await
    } else {
        crate::cache::CacheIndex::default()
    };
    let options = Options {
        parallel: opts.parallel,
        supervisor: opts.supervisor.clone(),
        supervisor_args: opts.supervisor_args.clone(),
        docker_host: opts.docker_host.clone(),
        cache: std::sync::Arc::new(cache),
        no_cache: opts.no_cache,
        launcher: opts.launcher.clone(),
        ahead: ahead.clone(),
    };
    let started_at = Utc::now();
    let results =
        engine::execute(&mut plan, code, mirror, &options, workdir.path(), progress).await;
    let mut record = build_record(&plan, &results, code, started_at);
    let (tests, counts) = crate::results::collect(&plan, &results, &record.id);
    for (job, counts) in record.jobs.iter_mut().zip(counts) {
        job.tests = counts;
    }
    let files = if jci {
        jci_files(&record, &results, render)
    } else {
        let mut files = tree_files(&record, &results, render);
        if let Some(tree) = tests {
            files.push(TreeFile {
                path: crate::results::RESULTS_FILE.into(),
                executable: false,
                bytes: serde_json::to_vec(&tree).expect("a result tree serializes"),
            });
        }
        files
    };
    let refname = if jci {
        format!("{JCI_PREFIX}{}/{}", record.commit, record.id)
    } else {
        record::ref_name(&record.commit, &record.id)
    };
    record::save(repo, &record, files, &refname).await?;
    Ok(Finished { record, refname })
}

/// Removes the jobs' folders in a process of its own, so that `baton run` ends once its result
/// ref is written: deleting checkouts is slow on some disks (ext4 with `discard` took 165 ms
/// for a one-file repository under load). If that process cannot start, they go now.
fn remove_later(dir: tempfile::TempDir) {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let path = dir.keep();
    let spawned = Command::new("rm")
        .args(["-rf", "--"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if spawned.is_err() {
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// The code to build: `HEAD` (`at_head`, when already read), or a snapshot of the working tree.
async fn code(
    repo: &LocalRepo,
    at_head: Option<(baton_git::Oid, Option<String>)>,
    dirty: bool,
    rev: Option<&str>,
) -> Result<Code, LocalError> {
    let (head, branch) = match (rev, at_head) {
        (None, Some(known)) => known,
        (None, None) => repo.head().await?,
        (Some(rev), _) => {
            let is_branch = repo.resolve(&format!("refs/heads/{rev}")).await.is_ok();
            (repo.resolve(rev).await?, is_branch.then(|| rev.to_owned()))
        }
    };
    if dirty && rev.is_some() {
        return Err(LocalError::Usage(
            "--dirty runs the working tree; it cannot be combined with --rev".into(),
        ));
    }
    let top = repo.top().unwrap_or(repo.git_dir()).to_path_buf();
    let repo_name = top
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (commit, tree) = if dirty {
        let (tree, commit) = repo.snapshot(&head).await?;
        (commit, Some(tree))
    } else {
        (head.clone(), None)
    };
    Ok(Code {
        key: tree.as_ref().unwrap_or(&commit).to_string(),
        commit,
        head,
        tree,
        dirty,
        branch,
        repo_name,
        repo_path: top.to_string_lossy().into_owned(),
    })
}

fn build_record(
    plan: &Plan,
    results: &[JobResult],
    code: &Code,
    started_at: chrono::DateTime<Utc>,
) -> RunRecord {
    let ended_at = Utc::now();
    let views: Vec<JobView> = results
        .iter()
        .zip(&plan.jobs)
        .map(|(r, j)| JobView {
            status: r.status,
            allow_failure: j.allow_failure,
            ended_seq: r.ended_at.map_or(u64::MAX, |t| t.timestamp_millis() as u64),
        })
        .collect();
    let status = if results.is_empty() {
        Status::Skipped
    } else {
        run_status(&views)
    };
    let jobs = plan
        .jobs
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (j, r))| job_record(i, j, r, &plan.groups[j.group]))
        .collect();
    RunRecord {
        format: record::FORMAT,
        id: record::new_run_id(started_at),
        status: status.to_string(),
        targets: plan.groups.iter().map(|g| g.target.clone()).collect(),
        commit: code.key.clone(),
        head: code.head.to_string(),
        tree: code.tree.as_ref().map(ToString::to_string),
        dirty: code.dirty,
        branch: code.branch.clone(),
        trigger: plan.trigger.clone(),
        started_at,
        ended_at,
        duration_ms: (ended_at - started_at).num_milliseconds().max(0) as u64,
        machine: Machine::here(),
        baton_version: env!("CARGO_PKG_VERSION").into(),
        jobs,
        notes: plan.notes.clone(),
    }
}

fn job_record(index: usize, job: &PlannedJob, r: &JobResult, group: &Group) -> JobRecord {
    let folder = job_folder(index, &job.key);
    let artifacts = r
        .dir
        .as_deref()
        .map(|d| files_under(&d.join(baton_exec::layout::OUT_DIR)))
        .unwrap_or_default()
        .into_iter()
        .map(|(p, _)| format!("{folder}/out/{p}"))
        .collect();
    JobRecord {
        name: job.key.clone(),
        target: group.target.clone(),
        status: r.status.to_string(),
        reason: r.reason.clone(),
        exit_code: r.exit_code,
        started_at: r.started_at,
        ended_at: r.ended_at,
        duration_ms: match (r.started_at, r.ended_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0) as u64),
            _ => None,
        },
        log: format!("{folder}/log"),
        artifacts,
        allow_failure: job.allow_failure,
        cache: r.cache.clone(),
        tests: None,
    }
}

fn log_of(r: &JobResult) -> Vec<u8> {
    r.dir
        .as_deref()
        .and_then(|d| std::fs::read(d.join(baton_exec::layout::LOG_FILE)).ok())
        .unwrap_or_default()
}

/// Each job's log and artifacts, and `index.html`.
fn tree_files(record: &RunRecord, results: &[JobResult], render: Render<'_>) -> Vec<TreeFile> {
    let mut files = Vec::new();
    let mut logs = Vec::new();
    for (j, r) in record.jobs.iter().zip(results) {
        let log = log_of(r);
        logs.push(log.clone());
        if let Some(dir) = &r.dir {
            files.push(TreeFile {
                path: j.log.clone(),
                executable: false,
                bytes: log,
            });
            let out = dir.join(baton_exec::layout::OUT_DIR);
            let prefix = j.log.trim_end_matches("log");
            for (rel, exec) in files_under(&out) {
                files.push(file_from_disk(
                    format!("{prefix}out/{rel}"),
                    &out.join(&rel),
                    exec,
                ));
            }
        }
    }
    files.push(TreeFile {
        path: "index.html".into(),
        executable: false,
        bytes: render(record, &logs).into_bytes(),
    });
    files
}

/// git-jci's one job: `.jci/run.sh` with its environment.
fn jci_plan(code: &Code) -> Plan {
    let script = "export JCI_REPO_ROOT=\"$PWD\" JCI_OUTPUT_DIR=\"$BATON_OUTPUT_DIR\"\n\
                  if [ -x .jci/run.sh ]; then ./.jci/run.sh; else bash .jci/run.sh; fi\n";
    let mut env = plan::base_env(code, "push", "run.sh");
    env.push(("JCI_COMMIT".into(), code.commit.to_string()));
    Plan {
        groups: vec![Group {
            target: ".jci/run.sh".into(),
            pipeline: false,
            continue_after_failure: false,
            on_error: None,
        }],
        jobs: vec![PlannedJob {
            key: "run.sh".into(),
            group: 0,
            name: "run.sh".into(),
            depends_on: Vec::new(),
            allow_failure: false,
            script: script.into(),
            env,
            timeout: None,
            container: None,
            checkout: true,
            server_only: None,
            junit: Vec::new(),
            cache: None,
            artifacts: Default::default(),
        }],
        trigger: "push".into(),
        notes: Vec::new(),
    }
}

/// git-jci's layout: `status.txt` (`ok`/`err`), `run.output.txt`, the output folder's files at
/// the top, and `index.html` unless the job wrote one.
fn jci_files(record: &RunRecord, results: &[JobResult], render: Render<'_>) -> Vec<TreeFile> {
    let ok = record.status == Status::Success.as_str();
    let log = results.first().map(log_of).unwrap_or_default();
    let mut files = vec![
        TreeFile {
            path: "status.txt".into(),
            executable: false,
            bytes: if ok {
                b"ok\n".to_vec()
            } else {
                b"err\n".to_vec()
            },
        },
        TreeFile {
            path: "run.output.txt".into(),
            executable: false,
            bytes: log.clone(),
        },
    ];
    let mut wrote_index = false;
    if let Some(dir) = results.first().and_then(|r| r.dir.as_ref()) {
        let out = dir.join(baton_exec::layout::OUT_DIR);
        for (rel, exec) in files_under(&out) {
            if ["status.txt", "run.output.txt", "run.json"].contains(&rel.as_str()) {
                continue;
            }
            wrote_index |= rel == "index.html";
            files.push(file_from_disk(rel.clone(), &out.join(&rel), exec));
        }
    }
    if !wrote_index {
        files.push(TreeFile {
            path: "index.html".into(),
            executable: false,
            bytes: render(record, std::slice::from_ref(&log)).into_bytes(),
        });
    }
    files
}
