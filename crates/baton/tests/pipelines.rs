//! Pipelines: DAG order, arguments, failure handling, allow_failure, on_error.

mod common;

use common::{Server, gate, id_of, job, reason, status};
use serde_json::Value;

fn config() -> String {
    format!(
        r#"
server:
  local_workers: 2
pipelines:
  dag:
    tasks:
      a:
        script: ["echo a"]
      b:
        script: ["echo b"]
        depends_on: [a]
      c:
        script: ["echo c"]
        depends_on: [a]
      d:
        script: ["echo d"]
        depends_on: [b, c]
  args:
    tasks:
      show:
        script:
          - printf '%s\n' {{{{ .val }}}}
          - echo "quoted {{{{ .val }}}}"
  failfast:
    tasks:
      bad:
        script: ["exit 2"]
      after_bad:
        script: ["echo never"]
        depends_on: [bad]
      slow:
        script:
          - {slow_gate}
  cont:
    continue_running_tasks_after_failure: true
    tasks:
      bad:
        script: ["exit 2"]
      after_bad:
        script: ["echo never"]
        depends_on: [bad]
      after_after:
        script: ["echo never"]
        depends_on: [after_bad]
      other:
        script: ["echo other"]
      after_other:
        script: ["echo after other"]
        depends_on: [other]
  tolerant:
    tasks:
      flaky:
        script: ["exit 1"]
        allow_failure: true
      next:
        script: ["echo next"]
        depends_on: [flaky]
  onerr:
    continue_running_tasks_after_failure: true
    on_error:
      script:
        - echo "failed=$failedTaskName code=$failedTaskExitCode"
    tasks:
      one:
        script: ["echo out-of-one", "exit 5"]
      two:
        script: ["exit 6"]
        depends_on: [one_ok]
      one_ok:
        script: ["echo fine"]
  unknownvar:
    on_error:
      script:
        - echo "handling {{{{ .failedTaskName }}}}{{{{ .failedTaskStderr }}}}"
        - echo "{{{{ .does_not_exist_and_error }}}}"
        - echo "after the unknown variable"
    tasks:
      bad:
        script: ["exit 3"]
  needs_val:
    tasks:
      show:
        script:
          - echo "v={{{{ .val }}}}"
          - echo after
"#,
        slow_gate = gate("never_created"),
    )
}

fn ts<'a>(j: &'a Value, field: &str) -> &'a str {
    j[field]
        .as_str()
        .unwrap_or_else(|| panic!("job has no {field}: {j:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dag_order_follows_dependencies() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("dag", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    for (name, deps) in [("b", vec!["a"]), ("c", vec!["a"]), ("d", vec!["b", "c"])] {
        let j = job(&run, name);
        assert_eq!(status(j), "success");
        for dep in deps {
            let d = job(&run, dep);
            // RFC 3339 UTC timestamps of one format compare as strings.
            assert!(
                ts(j, "started_at") >= ts(d, "ended_at"),
                "{name} started at {} before its dependency {dep} ended at {}",
                ts(j, "started_at"),
                ts(d, "ended_at")
            );
        }
    }
    assert_eq!(s.log_text(id, Some("d")).await, "d\n");
    // A pipeline's log needs a job name.
    let resp = s
        .http
        .get(s.url(&format!("/runs/{id}/log")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_reach_scripts_as_data() {
    let s = Server::start(&config());
    let evil = "$(touch HACKED); echo pwned";
    let id = id_of(&s.trigger_pipeline("args", &[("val", evil)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let log = s.log_text(id, Some("show")).await;
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some(evil), "log: {log:?}");
    let hacked: Vec<_> = walk(&s.data)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "HACKED"))
        .collect();
    assert!(
        hacked.is_empty(),
        "an argument ran as a command: {hacked:?}"
    );
    assert!(!std::path::Path::new("HACKED").exists());
    assert_eq!(
        lines.next(),
        Some(format!("quoted {evil}").as_str()),
        "log: {log:?}"
    );

    // Inside double quotes (as prunner scripts often write it) the value must stay intact too:
    // whitespace and glob characters are data.
    let tricky = "a  b   *";
    let id = id_of(&s.trigger_pipeline("args", &[("val", tricky)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let log = s.log_text(id, Some("show")).await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.first().copied(), Some(tricky), "log: {log:?}");
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("quoted {tricky}").as_str()),
        "`echo \"quoted {{{{ .val }}}}\"` must print the value unchanged; log: {log:?}"
    );
}

/// Argument names become environment variables of bash; names that bash itself interprets
/// (BASH_ENV is expanded, command substitution included, when bash starts) must not turn an
/// argument value into code: the trigger is refused before anything is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn argument_names_cannot_inject_code_through_bash_variables() {
    let s = Server::start(&config());
    let (st, body) = s
        .post(
            "/pipelines/args/trigger",
            serde_json::json!({"args": {"val": "x", "BASH_ENV": "$(touch HACKED)"}}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_argument", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("BASH_ENV")),
        "the error names the argument: {body}"
    );
    let runs = s.get_ok("/runs").await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(0),
        "a refused trigger records nothing: {runs}"
    );
    let hacked: Vec<_> = walk(&s.data)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "HACKED"))
        .collect();
    assert!(hacked.is_empty(), "BASH_ENV ran a command: {hacked:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_fast_cancels_the_rest() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("failfast", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    assert!(
        reason(&run).contains("bad") && reason(&run).contains("exit code 2"),
        "{run:#}"
    );
    assert_eq!(status(job(&run, "bad")), "failed");
    assert_eq!(job(&run, "bad")["exit_code"], 2);
    let after = job(&run, "after_bad");
    assert_eq!(status(after), "canceled", "{run:#}");
    assert!(reason(after).contains("fail fast"), "{run:#}");
    let slow = job(&run, "slow");
    assert_eq!(
        status(slow),
        "canceled",
        "the running job is stopped: {run:#}"
    );
    // Nobody asked for this cancel: the reason must say it was the fail-fast rule.
    assert!(
        reason(slow).contains("fail fast"),
        "reason of the stopped job: {run:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn continue_after_failure_skips_only_dependants() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("cont", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    assert_eq!(status(job(&run, "bad")), "failed");
    assert_eq!(status(job(&run, "other")), "success");
    assert_eq!(status(job(&run, "after_other")), "success");
    let ab = job(&run, "after_bad");
    assert_eq!(status(ab), "skipped", "{run:#}");
    assert_eq!(reason(ab), "skipped: dependency `bad` did not succeed");
    let aa = job(&run, "after_after");
    assert_eq!(status(aa), "skipped", "{run:#}");
    assert_eq!(
        reason(aa),
        "skipped: dependency `after_bad` did not succeed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_failure_lets_dependants_run() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("tolerant", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(job(&run, "flaky")), "failed", "{run:#}");
    assert_eq!(status(job(&run, "next")), "success", "{run:#}");
    assert_eq!(status(&run), "success", "{run:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_error_runs_once_with_the_failed_task() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("onerr", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    assert_eq!(status(job(&run, "one")), "failed");
    assert_eq!(status(job(&run, "two")), "failed", "{run:#}");
    let on_error: Vec<&Value> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["name"] == "on_error")
        .collect();
    assert_eq!(on_error.len(), 1, "on_error runs exactly once: {run:#}");
    assert_eq!(status(on_error[0]), "success", "{run:#}");
    let log = s.log_text(id, Some("on_error")).await;
    assert_eq!(log, "failed=one code=5\n");
}

/// prunner fails a task whose template names a variable that was not passed (its tests assert
/// it for an `on_error` handler): the job fails, its log names the variable, and the script stops
/// there.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_template_variable_fails_the_job_and_names_it() {
    let s = Server::start(&config());
    let id = id_of(&s.trigger_pipeline("unknownvar", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    let on_error = job(&run, "on_error");
    assert_eq!(status(on_error), "failed", "{run:#}");
    let log = s.log_text(id, Some("on_error")).await;
    // stdout's line and bash's message on stderr are two pipes: either may come first.
    assert!(log.contains("handling bad\n"), "{log}");
    assert!(
        log.contains("does_not_exist_and_error: not passed as an argument to this run"),
        "the log must name the variable: {log}"
    );
    assert!(!log.contains("after the unknown variable"), "{log}");

    let id = id_of(&s.trigger_pipeline("needs_val", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    let log = s.log_text(id, Some("show")).await;
    assert!(
        log.contains("val: not passed as an argument to this run") && !log.contains("after"),
        "{log}"
    );
    // Passed (even empty), it is a value.
    let id = id_of(&s.trigger_pipeline("needs_val", &[("val", "")]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}");
    assert_eq!(s.log_text(id, Some("show")).await, "v=\nafter\n");
}
