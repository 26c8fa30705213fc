//! Artifacts in an S3-compatible bucket (`server.artifacts.s3`), against a real S3 server on
//! loopback: `s3s-fs`, which `scripts/test.sh` installs into `target/tools` (or name it with
//! `S3S_FS`). It keeps each bucket as a folder, so the test sees exactly which objects exist.
//! Without it every test here fails and says how to install it: nothing is skipped.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, WAIT, id_of, status};
use serde_json::Value;

const ACCESS_KEY: &str = "baton-test-access-7d1e";
const SECRET_KEY: &str = "baton-test-secret-52c9a0f3";
const BUCKET: &str = "artifacts";

/// The `s3s-fs` binary: `$S3S_FS`, else `target/tools/bin/s3s-fs`, else `~/.cargo/bin/s3s-fs`.
fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates = vec![workspace.join("target/tools/bin/s3s-fs")];
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed; run scripts/test.sh, or: cargo install s3s-fs \
             --features binary --locked --root target/tools"
            )
        })
}

/// A real S3 server on a free loopback port, its buckets as folders under `root`.
struct S3 {
    child: Option<Child>,
    root: PathBuf,
    port: u16,
}

impl S3 {
    fn start(root: &Path) -> S3 {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s3 = S3 {
            child: None,
            root: root.to_path_buf(),
            port,
        };
        s3.spawn();
        s3
    }

    fn spawn(&mut self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the server: stopped, it accepts connections
    /// (the kernel does) but answers nothing, so an upload hangs in flight.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("s3s-fs runs").id().to_string();
        let st = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The objects under `jobs/JOB/` as paths relative to the bucket, sorted.
    fn objects_of(&self, job: i64) -> Vec<String> {
        let base = self.root.join(BUCKET);
        let mut found = Vec::new();
        let mut stack = vec![base.join("jobs").join(job.to_string())];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    // s3s-fs keeps its own bookkeeping files beside the objects.
                    if !rel.contains(".s3s") {
                        found.push(rel);
                    }
                }
            }
        }
        found.sort();
        found
    }
}

impl S3 {
    /// The bytes of the objects under `jobs/JOB/` (s3s-fs keeps each object as a plain file).
    fn bytes_of(&self, job: i64) -> u64 {
        let base = self.root.join(BUCKET);
        self.objects_of(job)
            .iter()
            .map(|rel| std::fs::metadata(base.join(rel)).unwrap().len())
            .sum()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(endpoint: &str) -> String {
    format!(
        r#"
server:
  local_workers: 2
  artifacts:
    s3:
      bucket: {BUCKET}
      endpoint: {endpoint}
      region: us-east-1
      access_key: env:BATON_TEST_S3_ACCESS
      secret_key: env:BATON_TEST_S3_SECRET
tasks:
  make:
    retention: {{keep_last: 1}}
    command: |
      cd "$BATON_OUTPUT_DIR"
      printf 'head of the notes: 0123456789\n' > notes.txt
      mkdir sub && echo nested > sub/a.txt
      seq 1 2500000 > big.txt
      echo made
"#
    )
}

fn start_server(s3: &S3) -> Server {
    Server::start_env(
        &config(&s3.endpoint()),
        &[
            ("BATON_TEST_S3_ACCESS", ACCESS_KEY),
            ("BATON_TEST_S3_SECRET", SECRET_KEY),
        ],
    )
}

fn seq_text(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

async fn job_of(s: &Server, run: i64) -> i64 {
    s.run(run).await["jobs"][0]["id"].as_i64().unwrap()
}

/// Waits (bounded) until `pred` holds.
async fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(s: &Server, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&s.token);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_go_to_the_bucket_are_served_from_it_and_go_with_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"));
    let s = start_server(&s3);
    let id = id_of(&s.trigger("make", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let job = job_of(&s, id).await;
    let out = s.job_dir(job, 1).join("out");
    // Uploaded (the manifest last), then the disk's copy goes.
    wait_for("the upload", || !out.exists()).await;
    assert_eq!(
        s3.objects_of(job),
        [
            format!("jobs/{job}/1/files/big.txt"),
            format!("jobs/{job}/1/files/notes.txt"),
            format!("jobs/{job}/1/files/sub/a.txt"),
            format!("jobs/{job}/1/manifest.json"),
        ]
    );
    let big = seq_text(2_500_000);
    assert!(
        big.len() > 16 * 1024 * 1024,
        "big.txt must take several parts"
    );

    // Listed from the manifest, with sizes and types.
    let listed = s.get_ok(&format!("/runs/{id}/artifacts")).await;
    let files: Vec<(String, u64)> = listed["jobs"][0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_owned(),
                a["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("big.txt".to_owned(), big.len() as u64),
            ("notes.txt".to_owned(), 30),
            ("sub/a.txt".to_owned(), 7),
        ],
        "{listed:#}"
    );

    // Downloaded whole, and in ranges.
    let r = get(&s, &format!("/runs/{id}/artifacts/{job}/big.txt"), None).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap() == big, "big.txt differs");
    let r = get(
        &s,
        &format!("/runs/{id}/artifacts/{job}/notes.txt"),
        Some("bytes=19-28"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        "bytes 19-28/30"
    );
    assert_eq!(r.text().await.unwrap(), "0123456789");
    let tail = &big[big.len() - 100..];
    let range = format!("bytes={}-", big.len() - 100);
    let r = get(
        &s,
        &format!("/runs/{id}/artifacts/{job}/big.txt"),
        Some(&range),
    )
    .await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.text().await.unwrap(), tail);
    let r = get(&s, &format!("/runs/{id}/artifacts/{job}/missing.txt"), None).await;
    assert_eq!(r.status().as_u16(), 404);
    // The run page previews a text artifact from the bucket.
    let page = get(&s, &format!("/runs/{id}?preview=notes.txt"), None).await;
    assert!(page.text().await.unwrap().contains("head of the notes"));
    // The .tar.gz holds the same bytes.
    let r = get(
        &s,
        &format!("/api/v1/runs/{id}/artifacts.tar.gz?job={job}"),
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let tgz = tmp.path().join("a.tar.gz");
    std::fs::write(&tgz, r.bytes().await.unwrap()).unwrap();
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read_to_string(unpacked.join("big.txt")).unwrap() == big);
    assert_eq!(
        std::fs::read_to_string(unpacked.join("sub/a.txt")).unwrap(),
        "nested\n"
    );

    // keep_last: 1 — a newer run makes the first one go, its objects with it.
    let id2 = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(id2).await), "success");
    let job2 = job_of(&s, id2).await;
    let out2 = s.job_dir(job2, 1).join("out");
    wait_for("the second upload", || !out2.exists()).await;
    let prune = |dry: bool| {
        let mut cmd = Command::new(common::BIN);
        cmd.arg("prune")
            .arg("--data")
            .arg(&s.data)
            .arg("--config")
            .arg(&s.config_dir)
            .env("BATON_TEST_S3_ACCESS", ACCESS_KEY)
            .env("BATON_TEST_S3_SECRET", SECRET_KEY)
            .stdin(Stdio::null());
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = common::text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        stdout
    };
    // The prune counts the bucket's bytes of the doomed job besides the disk's.
    let in_bucket = s3.bytes_of(job);
    assert!(in_bucket > big.len() as u64, "{in_bucket}");
    let dry = prune(true);
    assert!(dry.starts_with("would delete 1 runs, 1 jobs, "), "{dry}");
    assert!(
        dry.contains(&format!(" on disk, {in_bucket} in the artifact bucket)")),
        "{dry}"
    );
    let total: u64 = dry
        .split(" jobs, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {dry:?}"));
    assert!(total > in_bucket, "disk bytes (the log) count too: {dry}");
    assert_eq!(s3.objects_of(job).len(), 4, "a dry run deletes nothing");
    let stdout = prune(false);
    assert!(
        stdout.starts_with(&format!("deleted 1 runs, 1 jobs, {total} bytes")),
        "{stdout}"
    );
    assert_eq!(s3.objects_of(job), Vec::<String>::new());
    assert_eq!(s3.objects_of(job2).len(), 4, "the newest run stays");

    // The keys appear nowhere: not in the server's log, not in any answer.
    let log = s.stderr();
    for secret in [ACCESS_KEY, SECRET_KEY] {
        assert!(!log.contains(secret), "a key in the server's log");
        for path in [
            format!("/runs/{id2}"),
            format!("/runs/{id2}/artifacts"),
            format!("/runs/{id2}/results"),
        ] {
            let (_, v) = s.get(&path).await;
            assert!(!v.to_string().contains(secret), "a key in {path}");
        }
    }
}

/// Waits until the results of run `id` carry a warning; its message.
async fn upload_warning(s: &Server, id: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let tree = tokio::time::timeout(WAIT, s.get_ok(&format!("/runs/{id}/results")))
            .await
            .unwrap_or_else(|_| {
                panic!("the results did not answer within {WAIT:?}\n{}", s.stderr())
            });
        if let Some(w) = find_warning(&tree) {
            return w;
        }
        assert!(Instant::now() < deadline, "no upload warning: {tree:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pending uploads the server recorded (`<data>/uploads/JOB-ATTEMPT`; the folder also
/// holds the prune lock, `prune.lock`, which is no record).
fn pending(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.data.join("uploads"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "prune.lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until job `job` of run `id` has its artifacts in the bucket, checking all along that
/// the run's listing is always whole (from the disk, then from the bucket, never in between).
async fn arrives(s: &Server, s3: &S3, id: i64, job: i64) {
    let out = s.job_dir(job, 1).join("out");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = s.get_ok(&format!("/runs/{id}/artifacts")).await;
        assert_eq!(
            listed["jobs"][0]["artifacts"].as_array().map(Vec::len),
            Some(3),
            "never a partial listing: {listed:#}"
        );
        if !out.exists() && s3.objects_of(job).len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the artifacts of job {job} did not arrive: {:?}\n{}",
            s3.objects_of(job),
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        s3.objects_of(job),
        [
            format!("jobs/{job}/1/files/big.txt"),
            format!("jobs/{job}/1/files/notes.txt"),
            format!("jobs/{job}/1/files/sub/a.txt"),
            format!("jobs/{job}/1/manifest.json"),
        ]
    );
    // Served from the bucket now.
    let r = get(s, &format!("/runs/{id}/artifacts/{job}/sub/a.txt"), None).await;
    assert_eq!(r.text().await.unwrap(), "nested\n");
    let r = get(s, &format!("/runs/{id}/artifacts/{job}/big.txt"), None).await;
    assert!(
        r.text().await.unwrap() == seq_text(2_500_000),
        "big.txt differs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_lists_nothing_half_says_so_and_is_retried_until_it_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::start(&tmp.path().join("s3"));
    let mut s = start_server(&s3);
    s3.stop();
    let id = id_of(&s.trigger("make", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let job = job_of(&s, id).await;
    // The job's results say the upload failed.
    let warning = upload_warning(&s, id).await;
    assert!(
        warning.contains(&format!("artifacts not uploaded to s3://{BUCKET}")),
        "{warning}"
    );
    assert!(
        warning.contains("they stay on this server's disk"),
        "{warning}"
    );
    // Recorded as pending, durably; nothing half-listed: the bucket has nothing of the job,
    // and the artifacts are listed and served, complete, from the disk.
    assert_eq!(pending(&s), [format!("{job}-1")]);
    assert_eq!(s3.objects_of(job), Vec::<String>::new());
    let listed = s.get_ok(&format!("/runs/{id}/artifacts")).await;
    assert_eq!(
        listed["jobs"][0]["artifacts"].as_array().unwrap().len(),
        3,
        "{listed:#}"
    );
    let r = get(&s, &format!("/runs/{id}/artifacts/{job}/sub/a.txt"), None).await;
    assert_eq!(r.text().await.unwrap(), "nested\n");

    // The run's stored report.html says so too.
    let report = s.data.join(format!("runs/{id}/report.html"));
    common::wait_file(&report).await;
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("artifacts not uploaded")
    );

    // The bucket comes back: the retry in the background uploads them, the disk's copy goes.
    s3.spawn();
    arrives(&s, &s3, id, job).await;
    assert_eq!(pending(&s), Vec::<String>::new());
    // And the job's results no longer say the upload failed: no stale warning, not counted.
    no_upload_warning(&s, id).await;

    // Down again, and the server killed before the bucket is back: the pending upload is
    // retried after the restart.
    s3.stop();
    let id2 = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(id2).await), "success");
    let job2 = job_of(&s, id2).await;
    upload_warning(&s, id2).await;
    assert_eq!(pending(&s), [format!("{job2}-1")]);
    s.kill9();
    s3.spawn();
    assert_eq!(s3.objects_of(job2), Vec::<String>::new());
    s.restart();
    arrives(&s, &s3, id2, job2).await;
    assert_eq!(pending(&s), Vec::<String>::new());
    no_upload_warning(&s, id2).await;
    assert!(!s.stderr().contains(SECRET_KEY));
}

/// Run `id`'s results, counts and report.html (arrived by then: the warning goes before the
/// disk's copy of the artifacts) carry no warning.
async fn no_upload_warning(s: &Server, id: i64) {
    let r = s.get_ok(&format!("/runs/{id}/results")).await;
    assert_eq!(find_warning(&r), None, "a stale warning: {r:#}");
    assert_eq!(r["tree"]["summary"]["warnings"], 0, "{r:#}");
    let list = s.get_ok("/runs?task=make").await;
    let run = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("run {id} not listed: {list:#}"));
    // No tests and no warning: nothing to count any more.
    assert!(run["results"].is_null(), "{run:#}");
    let report = get(s, &format!("/runs/{id}/report.html"), None).await;
    assert_eq!(report.status().as_u16(), 200);
    let report = report.text().await.unwrap();
    assert!(report.contains(&format!("#{id}")), "{report}");
    assert!(!report.contains("artifacts not uploaded"), "{report}");
}

/// The message of the first warning node of a results tree.
fn find_warning(v: &Value) -> Option<String> {
    if v["kind"] == "warning" {
        return v["message"].as_str().map(str::to_owned);
    }
    for key in ["children", "jobs"] {
        if let Some(list) = v[key].as_array() {
            for c in list {
                if let Some(w) = find_warning(c) {
                    return Some(w);
                }
            }
        }
    }
    v.get("tree").and_then(find_warning)
}

/// `baton prune` (as the test's server is configured); its stdout.
fn prune_cli(s: &Server) -> String {
    let out = Command::new(common::BIN)
        .arg("prune")
        .args(s.data_args())
        .arg("--config")
        .arg(&s.config_dir)
        .env("BATON_TEST_S3_ACCESS", ACCESS_KEY)
        .env("BATON_TEST_S3_SECRET", SECRET_KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_leaves_a_run_whose_upload_is_in_flight_until_it_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"));
    let s = start_server(&s3);
    // The bucket takes connections but answers nothing: the first upload hangs in flight.
    s3.signal("-STOP");
    let old = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(old).await), "success");
    let job = job_of(&s, old).await;
    // A newer run: keep_last 1 dooms the first (its results are not asked for, so the one
    // collector is still busy with the first's upload).
    let new = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(new).await), "success");
    let job_new = job_of(&s, new).await;
    wait_for("the upload to start", || {
        pending(&s) == [format!("{job}-1")]
    })
    .await;

    let stdout = prune_cli(&s);
    assert!(
        stdout.starts_with("deleted 0 runs, 0 jobs, 0 bytes"),
        "{stdout}"
    );
    assert_eq!(s.get(&format!("/runs/{old}")).await.0, 200);
    assert!(s.job_dir(job, 1).join("out/notes.txt").exists());
    assert_eq!(pending(&s), [format!("{job}-1")]);

    // The bucket answers again: the upload arrives (on its first try or a retry), and then
    // the run goes with its objects, none left behind.
    s3.signal("-CONT");
    arrives(&s, &s3, old, job).await;
    let out_new = s.job_dir(job_new, 1).join("out");
    wait_for("the newer run's upload", || !out_new.exists()).await;
    let stdout = prune_cli(&s);
    assert!(stdout.starts_with("deleted 1 runs, 1 jobs, "), "{stdout}");
    assert_eq!(s.get(&format!("/runs/{old}")).await.0, 404);
    assert_eq!(s3.objects_of(job), Vec::<String>::new());
    assert_eq!(s3.objects_of(job_new).len(), 4, "the newest run stays");
}

/// Retention between a job's end and its collection. The collector waits at a test gate
/// (`BATON_TEST_COLLECT_GATE`, debug builds) once it has decided to upload the job's artifacts
/// and before it records the job as pending: nothing of the run is held, so a prune deletes it.
/// The collector then finds it gone and writes nothing of it: no object in the bucket, no
/// pending record, no `report.html` (nor its folder).
#[tokio::test(flavor = "multi_thread")]
async fn a_run_pruned_before_its_job_was_collected_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"));
    let gate = tmp.path().join("gate");
    let s = Server::start_env(
        &config(&s3.endpoint()),
        &[
            ("BATON_TEST_S3_ACCESS", ACCESS_KEY),
            ("BATON_TEST_S3_SECRET", SECRET_KEY),
            ("BATON_TEST_COLLECT_GATE", gate.to_str().unwrap()),
        ],
    );
    let old = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(old).await), "success");
    let job = job_of(&s, old).await;
    let waiting = format!("the collector waits at the test gate before recording job {job}");
    wait_for("the collector at the gate", || {
        s.stderr().contains(&waiting)
    })
    .await;
    // A newer run: keep_last 1 dooms the first (the one collector waits with its job).
    let new = id_of(&s.trigger("make", &[]).await);
    assert_eq!(status(&s.wait_run(new).await), "success");
    let job_new = job_of(&s, new).await;
    assert_eq!(pending(&s), Vec::<String>::new(), "nothing recorded yet");
    assert!(s.job_dir(job, 1).join("out/notes.txt").exists());

    let stdout = prune_cli(&s);
    assert!(stdout.starts_with("deleted 1 runs, 1 jobs, "), "{stdout}");
    assert_eq!(s.get(&format!("/runs/{old}")).await.0, 404);

    // The collector goes on: the first job is gone, so nothing of it is written; the newer
    // run's (collected after it, by the same collector) arrive.
    std::fs::write(&gate, b"").unwrap();
    arrives(&s, &s3, new, job_new).await;
    assert_eq!(
        s3.objects_of(job),
        Vec::<String>::new(),
        "objects of a pruned job"
    );
    assert_eq!(pending(&s), Vec::<String>::new());
    assert!(!s.job_dir(job, 1).exists());
    assert!(
        !s.data.join("runs").join(old.to_string()).exists(),
        "a pruned run's folder came back (its report.html)"
    );
    let report = s
        .data
        .join("runs")
        .join(new.to_string())
        .join("report.html");
    wait_for("the newer run's report.html", || report.exists()).await;
}
