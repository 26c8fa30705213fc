//! Integration tests of the local executor and the supervisor.
//!
//! `harness = false`: this binary is also the supervisor. Started as
//! `<this> __supervise <dir>` it runs `baton_exec::supervisor::main`, which is
//! exactly what the `baton` binary does; `<this> __gen` prints the
//! deterministic 200 MB test stream. Otherwise it runs the tests below in
//! sequence (an optional argument filters them by substring).

use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use baton_exec::{
    ExecError, ExitRecord, JobSpec, LocalExecutor, Outcome, Reattach, read_log_range,
};

// ---------------------------------------------------------------- helpers

fn executor() -> LocalExecutor {
    LocalExecutor::new(
        std::env::current_exe().expect("current_exe"),
        vec![OsString::from("__supervise")],
    )
}

fn spec(script: &str) -> JobSpec {
    JobSpec {
        run_id: 7,
        job_id: 9,
        task: "build".into(),
        script: script.into(),
        env: vec![],
        timeout: None,
        kill_grace: Duration::from_secs(5),
        secrets: Default::default(),
        container: None,
        checkout: None,
        unset_env: Vec::new(),
        artifacts: Vec::new(),
        artifacts_required: false,
        ephemeral: false,
    }
}

fn job_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("runs").join("9")
}

async fn run(dir: &Path, spec: &JobSpec) -> ExitRecord {
    let handle = executor().start(dir, spec).await.expect("start");
    match handle.wait().await {
        Outcome::Exited(rec) => rec,
        Outcome::Lost(why) => panic!("job lost: {why}"),
    }
}

fn log_of(dir: &Path) -> Vec<u8> {
    fs::read(dir.join("log")).expect("read log")
}

/// Poll until `cond` holds, panicking after `bound`.
async fn eventually(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gone, or a zombie nobody reaped yet (in a container, pid 1 may not reap).
fn pid_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => {
            let state = s[s.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap();
            state == "Z" || state == "X"
        }
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("pid"))
        .collect()
}

// ------------------------------------------- the deterministic big stream

const GEN_TOTAL: u64 = 200_000_000;
/// [LINE_START, LINE_END) holds no '\n': a 10 MB line.
const LINE_START: u64 = 50_000_000;
const LINE_END: u64 = 60_000_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Fill `buf` with the stream's bytes at `offset..` (offset multiple of 8).
fn gen_fill(offset: u64, buf: &mut [u8]) {
    assert_eq!(offset % 8, 0);
    for (k, chunk) in buf.chunks_mut(8).enumerate() {
        let pos = offset + 8 * k as u64;
        let word = splitmix(pos / 8).to_le_bytes();
        for (j, b) in chunk.iter_mut().enumerate() {
            let p = pos + j as u64;
            *b = if (LINE_START..LINE_END).contains(&p) && word[j] == b'\n' {
                b'x'
            } else {
                word[j]
            };
        }
    }
}

fn gen_main() {
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < GEN_TOTAL {
        let n = (GEN_TOTAL - off).min(buf.len() as u64) as usize;
        gen_fill(off, &mut buf[..n]);
        out.write_all(&buf[..n]).expect("write stream");
        off += n as u64;
    }
    out.flush().expect("flush");
}

// ------------------------------------------------------------------ tests

async fn output_env_and_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let mut s = spec(
        r#"echo out1
echo err1 >&2
echo out2
echo err2 >&2
echo "run=$BATON_RUN_ID job=$BATON_JOB_ID task=$BATON_TASK my=$MY_VAR"
echo "out=$BATON_OUTPUT_DIR"
echo "pwd=$PWD"
echo artifact > "$BATON_OUTPUT_DIR/a.txt"
echo "fds=$(ls /proc/self/fd | sort -n | tr '\n' ' ')"
"#,
    );
    s.env.push(("MY_VAR".into(), "hello world".into()));
    let t0 = Instant::now();
    let handle = executor().start(&dir, &s).await.expect("start");
    println!("    (start took {:?})", t0.elapsed());
    assert!(
        dir.join("log").exists(),
        "log exists as soon as start returns"
    );
    assert!(dir.join("supervisor.json").exists());
    let sup = handle.supervisor();
    // The supervisor leads its own session: it outlives the server's.
    let stat = fs::read_to_string(format!("/proc/{}/stat", sup.pid)).unwrap();
    let session: i32 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(session, sup.pid, "supervisor runs in its own session");
    let rec = match handle.wait().await {
        Outcome::Exited(r) => r,
        Outcome::Lost(w) => panic!("lost: {w}"),
    };
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert!(rec.success());
    assert_eq!(rec.signal, None);
    assert!(rec.error.is_none());
    let abs = fs::canonicalize(&dir).unwrap();
    let expected = format!(
        "out1\nout2\nrun=7 job=9 task=build my=hello world\nout={}\npwd={}\nfds=0 1 2 3 \n",
        abs.join("out").display(),
        abs.join("work").display()
    );
    // stdout and stderr are two pipes, appended as they arrive: each stream keeps its order
    // (writes on the two made microseconds apart may land either way round; see
    // stderr_is_marked_apart_in_one_log for the order of writes that are not).
    let log = String::from_utf8_lossy(&log_of(&dir)).into_owned();
    let (err, out): (Vec<&str>, Vec<&str>) = log
        .split_inclusive('\n')
        .partition(|l| l.starts_with("err"));
    assert_eq!(out.concat(), expected);
    assert_eq!(err, ["err1\n", "err2\n"]);
    assert_eq!(rec.log_bytes, log.len() as u64);
    assert!(rec.ended_at >= rec.started_at);
    assert_eq!(
        fs::read_to_string(dir.join("out/a.txt")).unwrap(),
        "artifact\n"
    );
    assert_eq!(baton_exec::read_exit(&dir), Some(rec));
}

async fn secrets_are_masked_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let mut s =
        spec("printf 'token=abracadabra\\n'; printf 'split abra'; printf 'cadabra end\\n'\n");
    s.secrets.mask = vec!["abracadabra".into()];
    let rec = run(&dir, &s).await;
    assert_eq!(rec.exit_code, Some(0));
    assert_eq!(log_of(&dir), b"token=***\nsplit *** end\n");

    // A secret environment entry reaches the job through the supervisor's stdin pipe: the job
    // sees it, its log shows `***` for it and its base64 form, and no file of the job holds it.
    let dir = tmp.path().join("e");
    let mut s = spec("echo \"v=$DEPLOY_TOKEN\"; printf %s \"$DEPLOY_TOKEN\" | base64\n");
    s.secrets.env = vec![("DEPLOY_TOKEN".into(), "s3cr3t-v4lue-xyz".into())];
    s.secrets.mask = vec!["s3cr3t-v4lue-xyz".into()];
    let rec = run(&dir, &s).await;
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert_eq!(log_of(&dir), b"v=***\n***\n");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("s3cr3t-v4lue-xyz"),
                "{}: {text}",
                path.display()
            );
        }
    }
}

/// stdout and stderr reach one log, each chunk marked in `log.idx` with its stream and arrival
/// time; a secret is masked on either stream.
async fn stderr_is_marked_apart_in_one_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    // Each write waits until the log holds the one before, so the order is known.
    let script = r#"sz() { wc -c < "$BATON_OUTPUT_DIR/../log"; }
say() {
  n=$(sz)
  if [ "$1" = 2 ]; then echo "$2" >&2; else echo "$2"; fi
  for i in $(seq 400); do [ "$(sz)" -gt "$n" ] && return; sleep 0.05; done
}
say 1 'out one'
say 2 'err one'
say 1 'out two'
say 2 'err abracadabra'
"#;
    let mut s = spec(script);
    s.secrets.mask = vec!["abracadabra".into()];
    let before = chrono::Utc::now().timestamp_millis();
    let rec = run(&dir, &s).await;
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    let log = log_of(&dir);
    assert_eq!(log, b"out one\nerr one\nout two\nerr ***\n");
    let marks = baton_exec::read_marks(&dir.join("log"), 0, u64::MAX, 100).unwrap();
    let streams: Vec<(u64, &str)> = marks
        .iter()
        .map(|m| (m.offset, m.stream.as_str()))
        .collect();
    assert_eq!(
        streams,
        [(0, "stdout"), (8, "stderr"), (16, "stdout"), (24, "stderr")]
    );
    let after = chrono::Utc::now().timestamp_millis();
    assert!(
        marks
            .iter()
            .all(|m| m.time_ms >= before && m.time_ms <= after),
        "arrival times within the run: {marks:?}"
    );
    assert!(marks.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
}

async fn exit_codes_and_pipefail() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = run(&tmp.path().join("a"), &spec("echo before\nexit 3\n")).await;
    assert_eq!(rec.exit_code, Some(3));
    assert!(!rec.success());
    let rec = run(
        &tmp.path().join("b"),
        &spec("false | true\necho not reached\n"),
    )
    .await;
    assert_eq!(rec.exit_code, Some(1), "pipefail + errexit: {rec:?}");
    assert_eq!(log_of(&tmp.path().join("b")), b"");
    let rec = run(&tmp.path().join("c"), &spec("false\necho not reached\n")).await;
    assert_eq!(rec.exit_code, Some(1), "errexit");
    let rec = run(&tmp.path().join("d"), &spec("true | true\necho fine\n")).await;
    assert_eq!(rec.exit_code, Some(0));
    assert_eq!(log_of(&tmp.path().join("d")), b"fine\n");
}

async fn cancel_kills_process_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let script = r#"
sleep 1000 &
echo $! >> "$BATON_OUTPUT_DIR/pids"
bash -c 'sleep 1000 & echo $! >> "$BATON_OUTPUT_DIR/pids"; wait' &
echo $! >> "$BATON_OUTPUT_DIR/pids"
echo waiting
sleep 1000
"#;
    let ex = executor();
    let handle = ex.start(&dir, &spec(script)).await.expect("start");
    let pids_file = dir.join("out/pids");
    eventually("3 pids", Duration::from_secs(20), || {
        read_pids(&pids_file).len() == 3
    })
    .await;
    let pids = read_pids(&pids_file);
    assert!(pids.iter().all(|&p| !pid_gone(p)), "tree is running");
    let t0 = Instant::now();
    ex.cancel(&dir).expect("cancel");
    let rec = match handle.wait().await {
        Outcome::Exited(r) => r,
        Outcome::Lost(w) => panic!("lost: {w}"),
    };
    assert!(rec.canceled, "{rec:?}");
    assert!(!rec.timed_out);
    assert_eq!(rec.signal, Some(15), "bash died of SIGTERM: {rec:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "SIGTERM suffices, no grace wait"
    );
    for p in pids {
        eventually(&format!("pid {p} to die"), Duration::from_secs(10), || {
            pid_gone(p)
        })
        .await;
    }
    assert_eq!(log_of(&dir), b"waiting\n");
    // Cancelling a finished job is fine.
    ex.cancel(&dir).expect("cancel after end");
}

async fn cancel_escalates_to_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let mut s = spec(
        r#"trap '' TERM
sleep 1000 &
echo $! > "$BATON_OUTPUT_DIR/pids"
while true; do sleep 0.05; done
"#,
    );
    s.kill_grace = Duration::from_millis(700);
    let ex = executor();
    let handle = ex.start(&dir, &s).await.expect("start");
    let pids_file = dir.join("out/pids");
    eventually("pid file", Duration::from_secs(20), || {
        read_pids(&pids_file).len() == 1
    })
    .await;
    let t0 = Instant::now();
    ex.cancel(&dir).expect("cancel");
    let rec = match handle.wait().await {
        Outcome::Exited(r) => r,
        Outcome::Lost(w) => panic!("lost: {w}"),
    };
    let took = t0.elapsed();
    assert!(rec.canceled);
    assert_eq!(rec.signal, Some(9), "SIGKILLed: {rec:?}");
    assert!(
        took >= Duration::from_millis(600),
        "grace honoured: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let p = read_pids(&pids_file)[0];
    eventually("sleeper to die", Duration::from_secs(10), || pid_gone(p)).await;
}

async fn timeout_kills_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let mut s = spec(
        r#"sleep 1000 &
echo $! > "$BATON_OUTPUT_DIR/pids"
sleep 1000
"#,
    );
    s.timeout = Some(Duration::from_secs(1));
    s.kill_grace = Duration::from_secs(1);
    let t0 = Instant::now();
    let rec = run(&dir, &s).await;
    let took = t0.elapsed();
    assert!(rec.timed_out, "{rec:?}");
    assert!(!rec.canceled);
    assert_eq!(rec.exit_code, None);
    assert_eq!(rec.signal, Some(15));
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let p = read_pids(&dir.join("out/pids"))[0];
    eventually("background sleep to die", Duration::from_secs(10), || {
        pid_gone(p)
    })
    .await;
}

async fn stragglers_do_not_keep_the_job_alive() {
    // The script exits while a backgrounded child still holds the pipe.
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let s = spec(
        r#"sleep 1000 &
echo $! > "$BATON_OUTPUT_DIR/pids"
echo bye
"#,
    );
    let t0 = Instant::now();
    let rec = run(&dir, &s).await;
    assert_eq!(rec.exit_code, Some(0));
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(log_of(&dir), b"bye\n");
    let p = read_pids(&dir.join("out/pids"))[0];
    eventually("straggler to die", Duration::from_secs(10), || pid_gone(p)).await;
}

async fn huge_binary_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let mut s = spec("\"$TEST_EXE\" __gen\n");
    s.env.push((
        "TEST_EXE".into(),
        std::env::current_exe()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ));
    let t0 = Instant::now();
    let rec = run(&dir, &s).await;
    println!(
        "    (200 MB job took {:?}, supervisor VmHWM {:?} KiB)",
        t0.elapsed(),
        rec.max_rss_kb
    );
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert_eq!(rec.log_bytes, GEN_TOTAL);
    let rss = rec.max_rss_kb.expect("max_rss_kb recorded");
    assert!(rss < 64 * 1024, "supervisor peak RSS {rss} KiB");
    // Compare byte for byte with the regenerated stream.
    let mut f = fs::File::open(dir.join("log")).unwrap();
    let mut got = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let (mut off, mut nul, mut nl_in_line) = (0u64, 0u64, 0u64);
    loop {
        let n = read_full(&mut f, &mut got);
        if n == 0 {
            break;
        }
        gen_fill(off, &mut want[..n]);
        assert!(
            got[..n] == want[..n],
            "log differs in the MiB at offset {off}"
        );
        for (i, &b) in got[..n].iter().enumerate() {
            let p = off + i as u64;
            nul += u64::from(b == 0);
            if b == b'\n' && (LINE_START..LINE_END).contains(&p) {
                nl_in_line += 1;
            }
        }
        off += n as u64;
    }
    assert_eq!(off, GEN_TOTAL);
    assert!(nul > 100_000, "stream has NUL bytes");
    assert_eq!(nl_in_line, 0, "10 MB line without newline");
    assert!(std::str::from_utf8(&read_log_range(&dir.join("log"), 0, 4096).unwrap()).is_err());
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

async fn survives_dropped_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let ex = executor();
    let handle = ex
        .start(&dir, &spec("sleep 2\necho done\n"))
        .await
        .expect("start");
    let pid = handle.supervisor().pid;
    drop(handle); // the "server" forgets the job
    assert!(!pid_gone(pid), "supervisor keeps running");
    let handle = match ex.reattach(&dir) {
        Reattach::Running(h) => h,
        other => panic!("expected Running, got {other:?}"),
    };
    // A second supervisor on the same dir refuses to run the job again.
    let second = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("__supervise")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.starts_with("error: ") && said.contains("already running"),
        "{said}"
    );
    match handle.wait().await {
        Outcome::Exited(rec) => {
            assert_eq!(rec.exit_code, Some(0));
            assert_eq!(rec.log_bytes, 5);
        }
        Outcome::Lost(w) => panic!("lost: {w}"),
    }
    assert_eq!(log_of(&dir), b"done\n");
    match ex.reattach(&dir) {
        Reattach::Finished(rec) => assert_eq!(rec.exit_code, Some(0)),
        other => panic!("expected Finished, got {other:?}"),
    }
    // Never twice.
    match ex.start(&dir, &spec("echo again\n")).await {
        Err(ExecError::AlreadyStarted { .. }) => {}
        other => panic!("expected AlreadyStarted, got {other:?}"),
    }
    assert_eq!(log_of(&dir), b"done\n");
}

async fn vanished_supervisor() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = executor();

    // A pid that is dead.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id() as i32;
    child.wait().unwrap();
    let a = tmp.path().join("a");
    fs::create_dir_all(&a).unwrap();
    fs::write(
        a.join("supervisor.json"),
        format!(r#"{{"pid":{dead},"start_time":1}}"#),
    )
    .unwrap();
    match ex.reattach(&a) {
        Reattach::Vanished(why) => {
            assert!(why.contains("no longer running"), "{why}");
            assert!(why.contains(&dead.to_string()), "{why}");
        }
        other => panic!("expected Vanished, got {other:?}"),
    }
    assert!(matches!(ex.cancel(&a), Err(ExecError::NotRunning { .. })));

    // A live pid with another start time: pid reuse, not our supervisor.
    let b = tmp.path().join("b");
    fs::create_dir_all(&b).unwrap();
    let me = std::process::id();
    fs::write(
        b.join("supervisor.json"),
        format!(r#"{{"pid":{me},"start_time":1}}"#),
    )
    .unwrap();
    assert!(matches!(ex.reattach(&b), Reattach::Vanished(_)));

    // This very process as the supervisor (its real pid and start time), but of another boot:
    // a folder another host's server launched. Nothing is waited on or signalled here (a
    // signal to this pid or its group would end this test).
    let d = tmp.path().join("d");
    fs::create_dir_all(&d).unwrap();
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let start_time: u64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
    fs::write(
        d.join("supervisor.json"),
        format!(r#"{{"pid":{me},"start_time":{start_time},"boot":1}}"#),
    )
    .unwrap();
    match ex.reattach(&d) {
        Reattach::Vanished(why) => assert!(why.contains("ran on another host"), "{why}"),
        other => panic!("expected Vanished, got {other:?}"),
    }
    assert!(matches!(ex.cancel(&d), Err(ExecError::NotRunning { .. })));
    // Of this boot but another pid namespace (another container on this host): the same.
    fs::write(
        d.join("supervisor.json"),
        format!(r#"{{"pid":{me},"start_time":{start_time},"pidns":1}}"#),
    )
    .unwrap();
    match ex.reattach(&d) {
        Reattach::Vanished(why) => assert!(why.contains("another pid namespace"), "{why}"),
        other => panic!("expected Vanished, got {other:?}"),
    }
    assert!(matches!(ex.cancel(&d), Err(ExecError::NotRunning { .. })));
    // The same with no boot recorded (an older folder) is this process: running.
    fs::write(
        d.join("supervisor.json"),
        format!(r#"{{"pid":{me},"start_time":{start_time}}}"#),
    )
    .unwrap();
    assert!(matches!(ex.reattach(&d), Reattach::Running(_)));

    // Nothing at all: nobody took it, so recovery claims it and it never runs from there.
    let c = tmp.path().join("c");
    fs::create_dir_all(&c).unwrap();
    assert!(matches!(ex.reattach(&c), Reattach::NeverStarted(_)));
}

/// A job with a cgroup starts inside it (`clone3(CLONE_INTO_CGROUP)`): its command's first
/// look at `/proc/self/cgroup` shows the job's cgroup, for a direct command and for bash; without
/// a cgroup (process-group containment) it starts the old way, in its own process group.
async fn job_starts_inside_its_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, script) in ["cat /proc/self/cgroup", "cat /proc/self/cgroup; true"]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("cg{i}"));
        let rec = run(&dir, &spec(script)).await;
        assert_eq!(rec.exit_code, Some(0), "{script}: {rec:?}");
        let cg = baton_exec::tree::ProcessRecord::read(&dir)
            .unwrap()
            .cgroup
            .expect("this test needs a usable cgroup v2 (the job got none)");
        // `/sys/fs/cgroup[/unified]/<path>`: the log shows `0::/<path>`, the part under the
        // cgroup2 mount, which ends with the job's baton-jobs/job-... folders.
        let log = String::from_utf8(log_of(&dir)).unwrap();
        let line = log
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or_else(|| panic!("{script}: no cgroup v2 line in {log:?}"));
        assert!(
            line.contains("/baton-jobs/job-") && cg.ends_with(line.trim_start_matches('/')),
            "{script}: the job ran in {line}, not in its cgroup {}",
            cg.display()
        );
    }
    // Process groups: no cgroup, the old way.
    let ex = LocalExecutor::with_containment(
        std::env::current_exe().unwrap(),
        vec![OsString::from("__supervise")],
        baton_exec::tree::Containment::detect(baton_exec::tree::ContainmentMode::ProcessGroup)
            .unwrap(),
    );
    let dir = tmp.path().join("pg");
    let handle = ex
        .start(&dir, &spec("cut -d' ' -f5 /proc/self/stat; echo $$"))
        .await
        .unwrap();
    let rec = match handle.wait().await {
        Outcome::Exited(rec) => rec,
        Outcome::Lost(why) => panic!("job lost: {why}"),
    };
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert!(
        baton_exec::tree::ProcessRecord::read(&dir)
            .unwrap()
            .cgroup
            .is_none()
    );
    let log = String::from_utf8(log_of(&dir)).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    // `cut` is in bash's process group (bash leads it).
    assert_eq!(lines[0], lines[1], "{log}");
}

async fn bash_cannot_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = job_dir(&tmp);
    let mut s = spec("echo hi\n");
    s.env.push(("PATH".into(), "/nonexistent".into()));
    let rec = run(&dir, &s).await;
    let err = rec.error.clone().expect("error recorded");
    assert!(err.starts_with("could not start bash: "), "{err}");
    assert_eq!(rec.exit_code, None);
    assert!(!rec.success());
}

async fn supervisor_program_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = LocalExecutor::new(PathBuf::from("/nonexistent/baton"), vec![]);
    match ex.start(&job_dir(&tmp), &spec("true\n")).await {
        Err(e @ ExecError::Spawn { .. }) => assert!(e.to_string().contains("/nonexistent/baton")),
        other => panic!("expected Spawn error, got {other:?}"),
    }
    // A program that exits without saying "ready".
    let ex = LocalExecutor::new(PathBuf::from("false"), vec![]);
    match ex.start(&tmp.path().join("x"), &spec("true\n")).await {
        Err(e @ ExecError::NotReady { .. }) => {
            assert!(e.to_string().contains("exit status: 1"), "{e}")
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// The supervisor of `dir` as the executor starts it, with its stdin pipe in our hands.
fn spawn_supervisor(dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .arg("__supervise")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the supervisor")
}

/// The server stops while launching a job: its recovery and the (slow) supervisor race for
/// the job folder. Whichever claims it first wins, so the job runs at most once from it; a
/// supervisor that never got its secrets refuses to run without them.
async fn a_launch_cut_short_runs_at_most_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = executor();
    for (case, secrets_arrive) in [("late", true), ("orphaned", false)] {
        let marker = tmp.path().join(format!("ran-{case}"));
        let s = spec(&format!("echo ran >> '{}'\n", marker.display()));
        let dir = baton_exec::layout::prepare_job_dir(
            &tmp.path().join(case),
            &s,
            baton_exec::layout::SUPERVISOR_FILE,
        )
        .expect("prepare");
        fs::File::create(dir.join("log")).unwrap();
        let mut sup = spawn_supervisor(&dir);
        let mut stdin = sup.stdin.take().unwrap();
        if !secrets_arrive {
            // The server died before it wrote the secrets: the pipe just closes.
            drop(stdin);
            let out = sup.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(!out.status.success(), "{said}");
            assert!(said.contains("nothing ran"), "{said}");
            // Recovery finds a folder nobody took and claims it.
            match ex.reattach(&dir) {
                Reattach::NeverStarted(why) => {
                    assert!(why.contains("claimed by recovery"), "{why}")
                }
                other => panic!("expected NeverStarted, got {other:?}"),
            }
        } else {
            // Recovery runs first (the supervisor is still reading its stdin) and claims the job.
            match ex.reattach(&dir) {
                Reattach::NeverStarted(why) => {
                    assert!(why.contains("claimed by recovery"), "{why}")
                }
                other => panic!("expected NeverStarted, got {other:?}"),
            }
            // Now the secrets arrive and the supervisor goes on: it must refuse the job.
            stdin
                .write_all(&serde_json::to_vec(&s.secrets).unwrap())
                .unwrap();
            drop(stdin);
            let out = sup.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(!out.status.success(), "{said}");
            assert!(said.contains("already taken"), "{said}");
        }
        assert!(!marker.exists(), "{case}: the job ran");
        assert!(!dir.join("exit.json").exists(), "{case}");
        // A second recovery says the same and still runs nothing.
        assert!(matches!(ex.reattach(&dir), Reattach::NeverStarted(_)));
    }
}

async fn log_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("log");
    fs::write(&p, b"0123456789").unwrap();
    assert_eq!(read_log_range(&p, 0, 4).unwrap(), b"0123");
    assert_eq!(read_log_range(&p, 8, 100).unwrap(), b"89");
    assert_eq!(read_log_range(&p, 10, 100).unwrap(), b"");
    assert_eq!(read_log_range(&p, 50, 100).unwrap(), b"");
    assert_eq!(read_log_range(&p, 3, 0).unwrap(), b"");
    assert!(read_log_range(&tmp.path().join("nope"), 0, 1).is_err());
}

// ----------------------------------------------------------------- runner

type TestFn = fn() -> Pin<Box<dyn Future<Output = ()>>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|| Box::pin($name())) as TestFn)),*]
    };
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("__supervise") => {
            let dir = args.get(2).expect("__supervise <job-dir>");
            std::process::exit(baton_exec::supervisor::main(Path::new(dir)));
        }
        Some("__gen") => {
            gen_main();
            return;
        }
        _ => {}
    }
    let filter = args[1..]
        .iter()
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .map(str::to_owned);
    let all: &[(&str, TestFn)] = tests![
        log_ranges,
        output_env_and_artifacts,
        exit_codes_and_pipefail,
        secrets_are_masked_in_the_log,
        stderr_is_marked_apart_in_one_log,
        cancel_kills_process_tree,
        cancel_escalates_to_sigkill,
        timeout_kills_tree,
        stragglers_do_not_keep_the_job_alive,
        huge_binary_output,
        survives_dropped_handle,
        vanished_supervisor,
        job_starts_inside_its_cgroup,
        bash_cannot_start,
        supervisor_program_missing,
        a_launch_cut_short_runs_at_most_once,
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in all {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(f())));
        if r.is_ok() {
            passed += 1;
            println!("test {name} ... ok");
            println!("    ({:?})", t0.elapsed());
        } else {
            failed += 1;
            println!("test {name} ... FAILED");
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
