//! `baton run` with no server: the real binary in real git repositories in temp dirs, results
//! read back with plain git, exchanged through a bare remote and pruned.

mod common;

use std::path::Path;
use std::process::Output;

use common::gitrepo::{commit_text, git, init};
use common::text;
use serde_json::Value;

const CI: &str = r#"tasks:
  test:
    command: |
      echo "testing $BATON_COMMIT on $BATON_BRANCH"
      echo "checked out $(git rev-parse HEAD), $(git status --porcelain | wc -l) changes"
      cat notes.txt
      echo report > "$BATON_OUTPUT_DIR/report.txt"
  release:
    command: echo releasing
    on: {push: {branches: [main]}}
  gpu:
    command: nvidia-smi
    queues: [gpu]
    on: manual
pipelines:
  ci:
    tasks:
      build: {script: ["echo building"]}
      lint: {script: ["echo lint broke; exit 3"], depends_on: [build]}
      docs: {script: ["echo never"], depends_on: [lint]}
"#;

/// A repository on branch `feature` with `.baton/`; returns its HEAD.
fn repo(dir: &Path) -> String {
    init(dir);
    commit_text(
        dir,
        &[(".baton/ci.yaml", CI), ("notes.txt", "committed\n")],
        "first",
    );
    git(dir, &["checkout", "-q", "-b", "feature"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Runs the real binary in `dir`, with a home of its own.
fn baton(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("BATON_SERVER")
        .output()
        .expect("run baton")
}

fn run_refs(dir: &Path, prefix: &str) -> Vec<String> {
    let out = git(dir, &["for-each-ref", "--format=%(refname)", prefix]);
    out.lines().map(str::to_owned).collect()
}

fn record(dir: &Path, refname: &str) -> Value {
    serde_json::from_str(&git(
        dir,
        &["cat-file", "blob", &format!("{refname}:run.json")],
    ))
    .unwrap()
}

fn job<'a>(rec: &'a Value, name: &str) -> &'a Value {
    rec["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {rec:#}"))
}

#[test]
fn a_run_picks_what_a_push_starts_walks_the_dag_and_is_stored_as_a_parentless_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let head = repo(&dir);
    let out = baton(&dir, &["run"]);
    let (stdout, stderr) = text(&out);
    // The pipeline failed: `trigger --wait`'s code for failed.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("✗ ci/lint: failed"), "{stdout}");
    assert!(
        stdout.contains("--- log of ci/lint ---\nlint broke"),
        "{stdout}"
    );
    let refs = run_refs(&dir, "refs/baton-runs/");
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert!(refs[0].starts_with(&format!("refs/baton-runs/{head}/")));
    assert!(
        stdout.contains(&format!("stored as {}", refs[0])),
        "{stdout}"
    );
    let parents = git(&dir, &["rev-list", "--parents", "-n", "1", &refs[0]]);
    assert_eq!(parents.split(' ').count(), 1, "a run commit has no parent");
    let rec = record(&dir, &refs[0]);
    assert_eq!(rec["status"], "failed");
    assert_eq!(
        (rec["commit"].as_str(), rec["dirty"].as_bool()),
        (Some(head.as_str()), Some(false))
    );
    assert_eq!(rec["branch"], "feature");
    assert_eq!(rec["trigger"], "push");
    assert!(
        rec["machine"]["hostname"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    assert_eq!(
        rec["targets"],
        serde_json::json!(["test", "ci"]),
        "release is main only, gpu manual"
    );
    assert_eq!(job(&rec, "test")["status"], "success");
    assert_eq!(job(&rec, "ci/build")["status"], "success");
    assert_eq!(job(&rec, "ci/lint")["exit_code"], 3);
    assert_eq!(
        job(&rec, "ci/docs")["status"],
        "canceled",
        "fail fast: {rec:#}"
    );
    let test = job(&rec, "test");
    let log = git(
        &dir,
        &[
            "cat-file",
            "blob",
            &format!("{}:{}", refs[0], test["log"].as_str().unwrap()),
        ],
    );
    assert!(
        log.contains(&format!("testing {head} on feature")) && log.contains("committed"),
        "{log}"
    );
    assert!(
        log.contains(&format!("checked out {head}, 0 changes")),
        "{log}"
    );
    let artifact = test["artifacts"][0].as_str().unwrap();
    assert_eq!(
        git(
            &dir,
            &["cat-file", "blob", &format!("{}:{artifact}", refs[0])]
        ),
        "report"
    );
    let page = git(
        &dir,
        &["cat-file", "blob", &format!("{}:index.html", refs[0])],
    );
    assert!(
        page.contains("lint broke") && page.contains("<style>"),
        "{page}"
    );
    assert!(!page.contains("<link") && !page.contains("<script") && !page.contains("http"));
    // The user's tree and branches are untouched.
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), head);
}

#[test]
fn log_show_and_logs_read_the_stored_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let first = repo(&dir);
    assert_eq!(baton(&dir, &["run", "test"]).status.code(), Some(0));
    let second = commit_text(&dir, &[("notes.txt", "second\n")], "second commit");
    assert_eq!(baton(&dir, &["run", "ci"]).status.code(), Some(1));
    let (log, err) = text(&baton(&dir, &["log", "-n", "5"]));
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{} second commit", &second[..10])),
        "{log}{err}"
    );
    assert!(lines[1].trim_start().starts_with("failed "), "{log}");
    assert!(
        lines[2].starts_with(&format!("{} first", &first[..10])),
        "{log}"
    );
    assert!(
        lines[3].trim_start().starts_with("success ") && lines[3].contains("test"),
        "{log}"
    );
    let id = lines[1].split_whitespace().nth(1).unwrap();
    let (show, _) = text(&baton(&dir, &["show", id]));
    assert!(
        show.contains(&format!("run {id}  failed")) && show.contains(&second),
        "{show}"
    );
    assert!(show.contains("failed: exit code 3"), "{show}");
    let (json, _) = text(&baton(&dir, &["show", &id[..20], "--json"]));
    let rec: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["id"], id);
    let (lint, _) = text(&baton(&dir, &["logs", id, "--job", "lint"]));
    assert_eq!(lint, "lint broke\n");
    let missing = baton(&dir, &["logs", id, "--job", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing).1.contains("its jobs: ci/build"),
        "{}",
        text(&missing).1
    );
    let unknown = baton(&dir, &["show", "19990101T"]);
    assert!(
        text(&unknown).1.contains("no stored run"),
        "{}",
        text(&unknown).1
    );
}

#[test]
fn dirty_runs_snapshot_the_working_tree_and_are_stored_against_its_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let head = repo(&dir);
    std::fs::write(dir.join("notes.txt"), "uncommitted\n").unwrap();
    std::fs::write(dir.join("new.txt"), "untracked\n").unwrap();
    let clean = baton(&dir, &["run", "test"]);
    assert!(text(&clean).0.contains("✓ test"), "{}", text(&clean).0);
    let out = baton(&dir, &["run", "test", "--dirty", "--follow"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("[test] uncommitted"),
        "--follow prefixes each line: {stdout}"
    );
    let refs = run_refs(&dir, "refs/baton-runs/");
    assert_eq!(refs.len(), 2);
    let dirty: Vec<&String> = refs.iter().filter(|r| !r.contains(&head)).collect();
    let rec = record(&dir, dirty[0]);
    assert_eq!(rec["dirty"], true);
    assert_eq!(rec["head"], head.as_str());
    let tree = rec["tree"].as_str().unwrap();
    assert!(
        dirty[0].starts_with(&format!("refs/baton-runs/{tree}/")),
        "{dirty:?}"
    );
    assert_eq!(git(&dir, &["cat-file", "-t", tree]), "tree");
    assert_eq!(
        git(&dir, &["cat-file", "blob", &format!("{tree}:new.txt")]),
        "untracked"
    );
    // The clean run saw the commit, not the edit; the user's index is as it was.
    let clean_ref = refs.iter().find(|r| r.contains(&head)).unwrap();
    let clean_log = git(
        &dir,
        &[
            "cat-file",
            "blob",
            &format!(
                "{clean_ref}:{}",
                job(&record(&dir, clean_ref), "test")["log"]
                    .as_str()
                    .unwrap()
            ),
        ],
    );
    assert!(
        clean_log.contains("committed") && !clean_log.contains("uncommitted"),
        "{clean_log}"
    );
    assert_eq!(
        git(&dir, &["status", "--porcelain"]),
        "M notes.txt\n?? new.txt".trim_start()
    );
    // `baton log` shows the dirty run under the commit it was made on.
    let (log, _) = text(&baton(&dir, &["log", "-n", "1"]));
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(log.lines().any(|l| l.ends_with("(dirty)")), "{log}");
}

#[test]
fn parallel_jobs_are_bounded_by_j() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    init(&dir);
    let shared = tmp.path().join("order.txt");
    let task = |n: &str| {
        format!(
            "  t{n}:\n    command: echo start{n} >> \"$ORDER\"; sleep 0.2; echo end{n} >> \"$ORDER\"\n"
        )
    };
    let ci = format!("tasks:\n{}{}{}", task("1"), task("2"), task("3"));
    commit_text(&dir, &[(".baton/ci.yaml", &ci)], "three");
    let out = std::process::Command::new(common::BIN)
        .args(["run", "-j", "1"])
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("ORDER", &shared)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let order = std::fs::read_to_string(&shared).unwrap();
    assert_eq!(order, "start1\nend1\nstart2\nend2\nstart3\nend3\n");
}

#[test]
fn server_only_tasks_are_reported_and_unknown_names_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    repo(&dir);
    let out = baton(&dir, &["run", "gpu"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "skipped: {stdout}{stderr}");
    assert!(
        stdout.contains("queue gpu") && stdout.contains("server"),
        "{stdout}"
    );
    let out = baton(&dir, &["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("it defines: gpu, release, test, ci"),
        "{}",
        text(&out).1
    );
}

#[test]
fn two_clones_exchange_runs_through_a_bare_remote_moving_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    repo(&a);
    let bare = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    git(&a, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&a, &["push", "-q", "origin", "feature"]);
    baton(&a, &["run", "test"]);
    let out = baton(&a, &["push"]);
    let (pushed, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(pushed.lines().count(), 1, "{pushed}");
    assert!(err.contains("pushed 1 run(s) to origin"), "{err}");
    let on_remote = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/baton-runs/"],
    );
    assert_eq!(on_remote, pushed.trim());
    assert!(
        git(&bare, &["for-each-ref", "refs/heads/"]).lines().count() == 1,
        "no branch moved"
    );
    assert!(text(&baton(&a, &["push"])).1.contains("pushed 0 run(s)"));

    let b = tmp.path().join("b");
    git(
        tmp.path(),
        &["clone", "-q", bare.to_str().unwrap(), b.to_str().unwrap()],
    );
    assert!(
        run_refs(&b, "refs/baton-runs/").is_empty(),
        "a clone fetches no run refs"
    );
    let (pulled, err) = text(&baton(&b, &["pull"]));
    assert_eq!(pulled.trim(), on_remote, "{err}");
    let rec = record(&b, pulled.trim());
    assert_eq!(rec["status"], "success");
    git(&b, &["checkout", "-q", "feature"]);
    baton(&b, &["run", "test"]);
    assert_eq!(text(&baton(&b, &["push", "origin"])).0.lines().count(), 1);
    let (pulled, _) = text(&baton(&a, &["pull"]));
    assert_eq!(pulled.lines().count(), 1, "only B's new run: {pulled}");
    assert_eq!(run_refs(&a, "refs/baton-runs/").len(), 2);
}

#[test]
fn prune_lists_without_yes_and_deletes_refs_and_objects_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    repo(&dir);
    let bare = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    git(&dir, &["remote", "add", "origin", bare.to_str().unwrap()]);
    for _ in 0..3 {
        baton(&dir, &["run", "test"]);
    }
    baton(&dir, &["push"]);
    let refs = run_refs(&dir, "refs/baton-runs/");
    assert_eq!(refs.len(), 3);
    let oldest = git(&dir, &["rev-parse", &refs[0]]);
    let log_blob = git(&dir, &["rev-parse", &format!("{}:run.json", refs[0])]);

    let dry = baton(&dir, &["prune", "--keep-last", "1"]);
    let (listed, err) = text(&dry);
    assert_eq!(listed.lines().collect::<Vec<_>>(), refs[..2], "{err}");
    assert!(err.contains("add --yes"), "{err}");
    assert_eq!(
        run_refs(&dir, "refs/baton-runs/").len(),
        3,
        "a dry run deletes nothing"
    );
    assert!(
        text(&baton(&dir, &["prune"]))
            .1
            .contains("no run of this repository")
    );

    let real = baton(&dir, &["prune", "--keep-last", "1", "--yes", "--now"]);
    assert!(real.status.success(), "{:?}", text(&real));
    assert_eq!(run_refs(&dir, "refs/baton-runs/"), refs[2..]);
    for gone in [&oldest, &log_blob] {
        let st = std::process::Command::new("git")
            .args(["cat-file", "-e", gone])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(!st.success(), "{gone} is still in the repository after gc");
    }
    // The remote keeps its runs until pruned there.
    let remote = |bare: &Path| {
        git(bare, &["for-each-ref", "refs/baton-runs/"])
            .lines()
            .count()
    };
    assert_eq!(remote(&bare), 3);
    baton(
        &dir,
        &["prune", "--keep-last", "2", "--remote", "origin", "--yes"],
    );
    assert_eq!(remote(&bare), 2);
}

#[test]
fn a_git_jci_repository_runs_its_script_and_stores_the_jci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    init(&dir);
    let script = "#!/bin/sh\necho \"jci $JCI_COMMIT\"\ntest -f \"$JCI_REPO_ROOT/.jci/run.sh\"\necho made > \"$JCI_OUTPUT_DIR/made.txt\"\n";
    let head = commit_text(&dir, &[(".jci/run.sh", script)], "jci");
    let out = baton(&dir, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let refs = run_refs(&dir, "refs/jci-runs/");
    assert_eq!(refs.len(), 1);
    assert!(refs[0].starts_with(&format!("refs/jci-runs/{head}/")));
    let blob = |p: &str| git(&dir, &["cat-file", "blob", &format!("{}:{p}", refs[0])]);
    assert_eq!(blob("status.txt"), "ok");
    assert_eq!(blob("run.output.txt"), format!("jci {head}"));
    assert_eq!(blob("made.txt"), "made");
    assert!(blob("index.html").contains("jci "));
    let (log, _) = text(&baton(&dir, &["log"]));
    assert!(
        log.contains("success") && log.contains("(git-jci)"),
        "{log}"
    );
}

#[test]
fn image_tasks_run_on_the_local_docker_engine() {
    let image = common::busybox::image();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    init(&dir);
    let ci = format!(
        "tasks:\n  box:\n    image: {image}\n    command: |\n      echo \"in $(pwd)\"\n      cat notes.txt\n      echo boxed > \"$BATON_OUTPUT_DIR/box.txt\"\n"
    );
    commit_text(
        &dir,
        &[
            (".baton/ci.yaml", &ci),
            ("notes.txt", "from the checkout\n"),
        ],
        "box",
    );
    let out = baton(&dir, &["run", "box"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let refs = run_refs(&dir, "refs/baton-runs/");
    let rec = record(&dir, &refs[0]);
    let job = job(&rec, "box");
    let log = git(
        &dir,
        &[
            "cat-file",
            "blob",
            &format!("{}:{}", refs[0], job["log"].as_str().unwrap()),
        ],
    );
    assert!(
        log.contains("in /baton/work") && log.contains("from the checkout"),
        "{log}"
    );
    let artifact = job["artifacts"][0].as_str().unwrap();
    assert_eq!(
        git(
            &dir,
            &["cat-file", "blob", &format!("{}:{artifact}", refs[0])]
        ),
        "boxed"
    );
}

#[test]
fn cron_sync_installs_a_marked_block_idempotently_and_its_lines_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    repo(&dir);
    git(&dir, &["checkout", "-q", "main"]);
    let crontab =
        "# nightly and quick\n0 3 * * * branch:feature name:nightly test\n*/5 * * * * release\n";
    commit_text(&dir, &[(".baton/crontab", crontab)], "cron");
    let file = tmp.path().join("crontab");
    let mine = "MAILTO=me\n1 1 * * * /usr/local/bin/backup\n";
    std::fs::write(&file, mine).unwrap();
    let cron = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("CRONTAB", &file)
            .output()
            .unwrap()
    };
    let (ls, err) = text(&cron(&["cron", "ls"]));
    assert_eq!(
        ls,
        "0 3 * * *  branch:feature  name:nightly  test\n*/5 * * * *  release\n"
    );
    assert!(err.contains("not in sync"), "{err}");
    assert!(cron(&["cron", "sync"]).status.success());
    let once = std::fs::read_to_string(&file).unwrap();
    assert!(once.starts_with(mine), "{once}");
    assert_eq!(once.matches("baton cron").count(), 2, "{once}");
    assert!(
        text(&cron(&["cron", "sync"]))
            .1
            .contains("already installed")
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        once,
        "a second sync changes nothing"
    );
    assert!(
        text(&cron(&["cron", "ls"]))
            .1
            .contains("in sync with the crontab")
    );

    // The installed line runs `baton run` on the entry's branch.
    let line = once.lines().find(|l| l.contains("# nightly")).unwrap();
    let command: String = line.splitn(6, ' ').nth(5).unwrap().to_owned();
    let st = std::process::Command::new("sh")
        .args(["-c", &command])
        .env("HOME", &dir)
        .status()
        .unwrap();
    assert!(st.success(), "{command}");
    let refs = run_refs(&dir, "refs/baton-runs/");
    assert_eq!(refs.len(), 1, "{command}");
    assert_eq!(record(&dir, &refs[0])["branch"], "feature");

    commit_text(
        &dir,
        &[(".baton/crontab", "*/5 * * * * release\n")],
        "fewer",
    );
    assert!(cron(&["cron", "sync"]).status.success());
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(
        after.starts_with(mine) && !after.contains("nightly") && after.contains("release"),
        "{after}"
    );
    commit_text(&dir, &[(".baton/crontab", "# none\n")], "none");
    assert!(cron(&["cron", "sync"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        mine,
        "nothing outside the block moved"
    );
}

/// `baton web` on a free port, killed when dropped.
struct Web(std::process::Child);

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn baton_web_serves_branches_commits_and_each_runs_tree_from_the_refs() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    repo(&dir);
    assert_eq!(baton(&dir, &["run", "test"]).status.code(), Some(0));
    let refname = run_refs(&dir, "refs/baton-runs/").remove(0);
    let id = refname.rsplit('/').next().unwrap().to_owned();
    let mut child = std::process::Command::new(common::BIN)
        .args(["web", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("HOME", &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _web = Web(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let get = |path: String| async move {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (r.status().as_u16(), ct, r.text().await.unwrap())
    };
    let (st, _, home) = get.clone()("/".into()).await;
    assert_eq!(st, 200);
    assert!(
        home.contains("feature") && home.contains("main") && home.contains(&format!("/runs/{id}/")),
        "{home}"
    );
    assert!(home.contains("success"), "{home}");
    let (st, ct, page) = get.clone()(format!("/runs/{id}/")).await;
    assert_eq!((st, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(
        page.contains("committed"),
        "the run page shows the log: {page}"
    );
    let rec: Value = record(&dir, &refname);
    let log = job(&rec, "test")["log"].as_str().unwrap().to_owned();
    let (st, ct, text) = get.clone()(format!("/runs/{id}/{log}")).await;
    assert_eq!((st, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(text.contains("committed"));
    assert_eq!(get.clone()(format!("/runs/{id}/nope")).await.0, 404);
    assert_eq!(get("/runs/19990101T/".into()).await.0, 404);
}

#[test]
fn pipelines_keep_the_servers_rules_for_failures_allow_failure_and_on_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    init(&dir);
    let ci = r#"pipelines:
  onerr:
    continue_running_tasks_after_failure: true
    on_error:
      script:
        - echo "failed=$failedTaskName code=$failedTaskExitCode"
    tasks:
      one: {script: ["echo out-of-one", "exit 5"]}
      after_one: {script: ["echo never"], depends_on: [one]}
      fine: {script: ["echo fine"]}
      after_fine: {script: ["echo after fine"], depends_on: [fine]}
      flaky: {script: ["exit 1"], allow_failure: true}
      after_flaky: {script: ["echo after flaky"], depends_on: [flaky]}
"#;
    commit_text(&dir, &[(".baton/ci.yaml", ci)], "pipeline");
    let out = baton(&dir, &["run", "onerr", "-j", "1"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let refs = run_refs(&dir, "refs/baton-runs/");
    let rec = record(&dir, &refs[0]);
    let status = |name: &str| job(&rec, name)["status"].as_str().unwrap().to_owned();
    assert_eq!(status("onerr/one"), "failed");
    assert_eq!(status("onerr/after_one"), "skipped", "{rec:#}");
    assert_eq!(
        status("onerr/after_fine"),
        "success",
        "continue after failure"
    );
    assert_eq!(status("onerr/flaky"), "failed");
    assert_eq!(
        status("onerr/after_flaky"),
        "success",
        "allow_failure counts as done"
    );
    assert_eq!(status("onerr/on_error"), "success");
    let log = job(&rec, "onerr/on_error")["log"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = git(&dir, &["cat-file", "blob", &format!("{}:{log}", refs[0])]);
    assert_eq!(log, "failed=one code=5");
}

#[test]
fn artifacts_globs_are_kept_with_the_run_by_the_servers_rules_and_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    init(&dir);
    let ci = r#"tasks:
  pack:
    command: |
      mkdir -p target/deep
      echo tarball > target/app.tar.gz
      echo deeper > target/deep/other.tar.gz
      ln -s /etc/passwd target/passwd.tar.gz
      echo own > "$BATON_OUTPUT_DIR/own.txt"
    artifacts: [target/*.tar.gz, "**/other.tar.gz", missing/**]
  strict:
    command: echo nothing made
    artifacts: {paths: [dist/*.whl], required: true}
"#;
    let head = commit_text(&dir, &[(".baton/ci.yaml", ci)], "first");
    let out = baton(&dir, &["run", "pack", "strict"]);
    let (stdout, stderr) = text(&out);
    // The required glob that matched nothing fails `strict`, as on the server.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let refs = run_refs(&dir, &format!("refs/baton-runs/{head}/"));
    assert_eq!(refs.len(), 1, "{refs:?}");
    let rec = record(&dir, &refs[0]);
    let pack = job(&rec, "pack");
    assert_eq!(pack["status"], "success", "{rec:#}");
    let listed: Vec<&str> = pack["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "jobs/01-pack/out/own.txt",
            "jobs/01-pack/out/target/app.tar.gz",
            "jobs/01-pack/out/target/deep/other.tar.gz",
        ],
        "the symlink is not kept: {rec:#}"
    );
    let blob = |path: &str| git(&dir, &["cat-file", "blob", &format!("{}:{path}", refs[0])]);
    assert_eq!(blob("jobs/01-pack/out/target/app.tar.gz"), "tarball");
    assert_eq!(blob("jobs/01-pack/out/target/deep/other.tar.gz"), "deeper");
    let log = blob(pack["log"].as_str().unwrap());
    assert!(
        log.contains("baton: warning: artifacts glob \"missing/**\" matched no file"),
        "{log}"
    );
    let strict = job(&rec, "strict");
    assert_eq!(strict["status"], "failed", "{rec:#}");
    assert!(
        strict["reason"].as_str().unwrap().contains("dist/*.whl"),
        "{rec:#}"
    );
    let id = rec["id"].as_str().unwrap();
    let (show, err) = text(&baton(&dir, &["show", id]));
    assert!(
        show.contains("artifact jobs/01-pack/out/target/app.tar.gz")
            && show.contains("artifact jobs/01-pack/out/target/deep/other.tar.gz"),
        "{show}{err}"
    );
}
