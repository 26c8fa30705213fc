//! SIGKILL a silent job's supervisor (with the server up, and with the server down meanwhile):
//! the job's whole process tree is dead before the job is marked `broken` or retried, so two
//! attempts never overlap. Runs once per containment mechanism (cgroup v2 where the machine has
//! one, and the forced process-group fallback). Also: a job whose log file is deleted says so.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, id_of, is_dead, reason, status, wait_file};
use serde_json::Value;

/// A silent job: appends `start`, then (first attempt only) a subshell that sleeps 6 s and then
/// appends `end 1`; it records every pid it starts. Each attempt first appends `overlap` for any
/// pid of an earlier attempt that is still alive.
const SILENT: &str = r#"
      echo "start $BATON_ATTEMPT $$" >> "$lines"
      for p in $(sed -n 's/^pid [0-9]* //p' "$lines"); do
        if [ -e "/proc/$p" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null; then
          echo "overlap $BATON_ATTEMPT $p" >> "$lines"
        fi
      done
      if [ "$BATON_ATTEMPT" = 1 ]; then
        ( sleep 6 & echo "pid 1 $!" >> "$lines"; wait; echo "end 1" >> "$lines" ) &
        echo "pid 1 $!" >> "$lines"
        echo "pid 1 $$" >> "$lines"
        while [ "$(grep -c '^pid 1 ' "$lines")" -lt 3 ]; do sleep 0.01; done
        echo "ready 1" >> "$lines"
        wait
      fi
      echo "end $BATON_ATTEMPT" >> "$lines"
"#;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
  kill_grace: 1s
tasks:
  silent:
    retries: 0
    command: |{SILENT}
  silent_retry:
    retries: 1
    command: |{SILENT}
  dropped_log:
    command: |
      echo before
      rm ../log
      echo after
"#
    )
}

/// Which mechanism a server uses for its jobs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The default: a cgroup v2 per job where the machine has a usable one.
    Auto,
    /// `--job-containment process-group`: the fallback, forced.
    ProcessGroup,
}

fn start(mode: Mode) -> Server {
    match mode {
        Mode::Auto => Server::start(&config()),
        Mode::ProcessGroup => {
            Server::start_with(&config(), &["--job-containment", "process-group"])
        }
    }
}

/// Whether this machine has a cgroup v2 hierarchy we (root) can write: then `auto` must use it.
fn cgroup2_writable() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let is_root = unsafe { libc::geteuid() } == 0;
    is_root
        && mounts.lines().any(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, r)| r.starts_with("cgroup2 ") && r.contains(" rw"))
        })
}

/// One started first attempt: its lines file, job id and recorded pids.
struct Silent {
    id: i64,
    job: i64,
    lines: PathBuf,
}

async fn trigger_silent(s: &Server, task: &str) -> Silent {
    let lines = s.root.path().join(format!("{task}.lines"));
    let id = id_of(&s.trigger(task, &[("lines", lines.to_str().unwrap())]).await);
    let run = s
        .wait_until(id, "running", |r| status(r) == "running")
        .await;
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    wait_for_line(&lines, "ready 1").await;
    Silent { id, job, lines }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_for_line(path: &Path, line: &str) {
    let deadline = Instant::now() + common::WAIT;
    while !lines_of(path).iter().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "{line:?} never appeared in {}: {:?}",
            path.display(),
            lines_of(path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn first_attempt_pids(path: &Path) -> Vec<i32> {
    let pids: Vec<i32> = lines_of(path)
        .iter()
        .filter_map(|l| l.strip_prefix("pid 1 "))
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{:?}", lines_of(path));
    pids
}

/// SIGKILLs the supervisor of attempt 1 of `job` and waits until it is gone.
async fn kill_supervisor(s: &Server, job: i64) {
    let sup: Value = serde_json::from_slice(
        &std::fs::read(s.job_dir(job, 1).join("supervisor.json")).expect("supervisor.json"),
    )
    .unwrap();
    let pid = sup["pid"].as_i64().unwrap() as i32;
    // SAFETY: a plain syscall on the pid the job's own supervisor recorded.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    let deadline = Instant::now() + common::WAIT;
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "supervisor {pid} did not die");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every pid of the first attempt is dead NOW (the run already said it ended or retried), and
/// nothing appends `end 1` by the time the first attempt's sleep would have finished.
async fn assert_first_attempt_dead(path: &Path, ready_at: Instant) {
    let alive: Vec<i32> = first_attempt_pids(path)
        .into_iter()
        .filter(|p| !is_dead(*p))
        .collect();
    assert!(
        alive.is_empty(),
        "processes of the first attempt still run: {alive:?}; lines: {:?}",
        lines_of(path)
    );
    // Bounded wait past the moment the first attempt's `sleep 6` would have ended.
    let until = ready_at + Duration::from_millis(6500);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = lines_of(path);
    assert!(
        !lines.iter().any(|l| l == "end 1"),
        "the first attempt ran on after its supervisor died: {lines:?}"
    );
}

fn assert_mechanism(s: &Server, job: i64, attempt: u64, mode: Mode) {
    let rec: Value = serde_json::from_slice(
        &std::fs::read(s.job_dir(job, attempt).join("process.json")).expect("process.json"),
    )
    .unwrap();
    let want = if mode == Mode::Auto && cgroup2_writable() {
        "cgroup"
    } else {
        "process_group"
    };
    assert_eq!(rec["mechanism"], want, "{rec:#}");
    if want == "cgroup" {
        let cg = PathBuf::from(rec["cgroup"].as_str().expect("cgroup path"));
        assert!(
            !cg.exists(),
            "the job's cgroup {} is removed once its processes are dead",
            cg.display()
        );
    } else {
        assert!(rec["pgid"].as_i64().is_some(), "{rec:#}");
    }
}

fn assert_broken_by_lost_supervisor(run: &Value) {
    assert_eq!(status(run), "broken", "{run:#}");
    assert!(reason(run).contains("supervisor"), "{run:#}");
    assert_eq!(run["jobs"][0]["attempt"], 1, "{run:#}");
}

fn assert_retried_without_overlap(run: &Value, path: &Path) {
    assert_eq!(status(run), "success", "{run:#}");
    assert_eq!(run["jobs"][0]["attempt"], 2, "{run:#}");
    let lines = lines_of(path);
    assert!(
        lines.iter().any(|l| l.starts_with("start 2 ")) && lines.iter().any(|l| l == "end 2"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("overlap")),
        "the second attempt started while the first still ran: {lines:?}"
    );
}

async fn supervisor_killed_without_retries(mode: Mode) {
    let s = start(mode);
    let job = trigger_silent(&s, "silent").await;
    let ready_at = Instant::now();
    kill_supervisor(&s, job.job).await;
    let run = s.wait_run(job.id).await;
    assert_broken_by_lost_supervisor(&run);
    assert_first_attempt_dead(&job.lines, ready_at).await;
    assert_mechanism(&s, job.job, 1, mode);
}

async fn supervisor_killed_with_a_retry(mode: Mode) {
    let s = start(mode);
    let job = trigger_silent(&s, "silent_retry").await;
    let ready_at = Instant::now();
    kill_supervisor(&s, job.job).await;
    let run = s.wait_run(job.id).await;
    assert_retried_without_overlap(&run, &job.lines);
    assert_first_attempt_dead(&job.lines, ready_at).await;
    assert_mechanism(&s, job.job, 1, mode);
    assert_mechanism(&s, job.job, 2, mode);
}

async fn supervisor_killed_while_the_server_is_down(mode: Mode) {
    let mut s = start(mode);
    let plain = trigger_silent(&s, "silent").await;
    let retried = trigger_silent(&s, "silent_retry").await;
    let ready_at = Instant::now();
    s.kill9();
    kill_supervisor(&s, plain.job).await;
    kill_supervisor(&s, retried.job).await;
    s.restart();

    let run = s.wait_run(plain.id).await;
    assert_broken_by_lost_supervisor(&run);
    let run = s.wait_run(retried.id).await;
    assert_retried_without_overlap(&run, &retried.lines);
    assert_first_attempt_dead(&plain.lines, ready_at).await;
    assert_first_attempt_dead(&retried.lines, ready_at).await;
    assert_mechanism(&s, plain.job, 1, mode);
    assert_mechanism(&s, retried.job, 1, mode);
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_supervisor_kills_the_job_cgroup() {
    supervisor_killed_without_retries(Mode::Auto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_supervisor_kills_the_job_process_group() {
    supervisor_killed_without_retries(Mode::ProcessGroup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_lost_supervisor_never_overlaps_cgroup() {
    supervisor_killed_with_a_retry(Mode::Auto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_lost_supervisor_never_overlaps_process_group() {
    supervisor_killed_with_a_retry(Mode::ProcessGroup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn supervisor_lost_while_server_down_cgroup() {
    supervisor_killed_while_the_server_is_down(Mode::Auto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn supervisor_lost_while_server_down_process_group() {
    supervisor_killed_while_the_server_is_down(Mode::ProcessGroup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_log_is_named_in_the_reason() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger("dropped_log", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "broken", "{run:#}");
    let why = reason(&run);
    assert!(
        why.contains("log file") && why.contains("was deleted while the job ran"),
        "{run:#}"
    );
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    wait_file(&s.job_dir(job, 1).join("exit.json")).await;
}
