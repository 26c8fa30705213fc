//! Reruns and declared arguments, end to end through the real server: a rerun of only a
//! pipeline's failed jobs carries the successes over (not run again, their artifacts shown),
//! reruns with other arguments, and `args:` checked on every trigger path (API, UI form, CLI)
//! with a 400 that says what was wrong.

mod common;
#[path = "common/users.rs"]
mod users;

use serde_json::json;

use common::*;

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
administrators: [root]
tasks:
  deploy:
    description: ships a version
    args:
      version: {{description: the version to ship, required: true}}
      env: {{description: where to, default: staging, choices: [staging, prod]}}
      note: {{description: free text}}
    command: echo "deploying $version to $env ($note)"
  free:
    command: echo "free $x"
pipelines:
  ci:
    continue_running_tasks_after_failure: true
    tasks:
      build:
        script:
          - echo built >> "{dir}/build-count"
          - echo artifact > "$BATON_OUTPUT_DIR/build.txt"
      docs: {{script: ["echo docs >> '{dir}/docs-count'"]}}
      test:
        depends_on: [build]
        script: ["echo test >> '{dir}/test-count'", "test -e '{dir}/fixed'"]
      package:
        depends_on: [test]
        script: ["echo package >> '{dir}/package-count'"]
"#,
        dir = dir.display()
    )
}

fn lines(dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn rerunning_failed_jobs_carries_the_successes_over() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&config(dir.path()));
    let first = id_of(&s.trigger_pipeline("ci", &[]).await);
    let run = s.wait_run(first).await;
    assert_eq!(status(&run), "failed", "{run}");
    assert_eq!(status(job(&run, "build")), "success");
    assert_eq!(status(job(&run, "docs")), "success");
    assert_eq!(status(job(&run, "package")), "skipped");
    let build_job = job(&run, "build")["id"].as_i64().unwrap();

    // A run with nothing failed, a task's run and new arguments with it are refused.
    std::fs::write(dir.path().join("fixed"), b"").unwrap();
    let (st, v) = s
        .post(
            &format!("/runs/{first}/rerun?failed=true"),
            json!({"args": {"x": "1"}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_rerun", "{v}");
    assert!(reason_text(&v).contains("keeps its arguments"), "{v}");

    let (st, v) = s
        .post(&format!("/runs/{first}/rerun?failed=true"), json!({}))
        .await;
    assert_eq!(st, 201, "{v}");
    let second = id_of(&v);
    let run = s.wait_run(second).await;
    assert_eq!(status(&run), "success", "{run}");
    assert_eq!(run["ancestors"], json!([first]), "{run}");
    for carried in ["build", "docs"] {
        let j = job(&run, carried);
        assert_eq!(status(j), "skipped", "{j}");
        assert!(
            reason(j).starts_with("carried over: succeeded as job "),
            "{j}"
        );
    }
    assert_eq!(
        reason(job(&run, "build")),
        format!("carried over: succeeded as job {build_job} (run {first})")
    );
    assert_eq!(status(job(&run, "test")), "success");
    assert_eq!(status(job(&run, "package")), "success");
    // The carried jobs did not run again; the failed one and its dependent did.
    assert_eq!(lines(dir.path(), "build-count"), 1);
    assert_eq!(lines(dir.path(), "docs-count"), 1);
    assert_eq!(lines(dir.path(), "test-count"), 2);
    assert_eq!(lines(dir.path(), "package-count"), 1);
    // The carried build's artifacts are the new run's.
    let arts = s.get_ok(&format!("/runs/{second}/artifacts")).await;
    let build = arts["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "build")
        .unwrap_or_else(|| panic!("{arts}"));
    assert_eq!(build["artifacts"][0]["path"], "build.txt", "{arts}");
    // Pills on the run page and on the runs list name each carried job and link to the job
    // that ran; jobs that ran have none.
    let html = page(&s, &format!("/runs/{second}")).await;
    for name in ["build", "docs"] {
        let pill = format!(
            "<a class=\"pill carried\" data-carried=\"{name}\" href=\"/runs/{first}?job={name}\""
        );
        assert!(html.contains(&pill), "{pill} in {html}");
    }
    assert!(
        html.contains(&format!("title=\"carried over: it succeeded as job {build_job} of run #{first}\">carried from #{first}</a>")),
        "{html}"
    );
    assert_eq!(html.matches("class=\"pill carried\"").count(), 2, "{html}");
    let list = page(&s, "/runs").await;
    let row = |id: i64| {
        list.split(&format!("<tr><td><a href=\"/runs/{id}\">"))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("run {id} in {list}"))
            .to_owned()
    };
    let second_row = row(second);
    for name in ["build", "docs"] {
        assert!(
            second_row.contains(&format!(
                "data-carried=\"{name}\" href=\"/runs/{first}?job={name}\""
            )) && second_row.contains(&format!("{name} from #{first}</a>")),
            "{second_row}"
        );
    }
    assert!(!row(first).contains("carried"), "{}", row(first));

    // Rerunning the failed jobs of a run that had none, or of a task, is a clear 400.
    let (st, v) = s
        .post(&format!("/runs/{second}/rerun?failed=true"), json!({}))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_rerun")),
        "{v}"
    );
    assert!(reason_text(&v).contains("nothing to rerun"), "{v}");
    let task = id_of(&s.trigger("free", &[("x", "1")]).await);
    s.wait_run(task).await;
    let (st, v) = s
        .post(&format!("/runs/{task}/rerun?failed=true"), json!({}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(reason_text(&v).contains("not a pipeline"), "{v}");

    // A rerun with other arguments runs with them, linked to the old run.
    let (st, v) = s
        .post(&format!("/runs/{task}/rerun"), json!({"args": {"x": "2"}}))
        .await;
    assert_eq!(st, 201, "{v}");
    let again = s.wait_run(id_of(&v)).await;
    assert_eq!(again["args"], json!({"x": "2"}), "{again}");
    assert_eq!(again["ancestors"], json!([task]));
    assert!(s.log_text(id_of(&again), None).await.contains("free 2"));

    // The CLI: `baton rerun RUN --failed` and `--arg`.
    let out = s.cli(&["rerun", &first.to_string(), "--failed"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    let third: i64 = o.trim().parse().unwrap();
    let run = s.wait_run(third).await;
    assert_eq!(status(job(&run, "build")), "skipped", "{run}");
    assert_eq!(lines(dir.path(), "build-count"), 1);
    let out = s.cli(&["rerun", &task.to_string(), "--arg", "x=3"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    let run = s.wait_run(o.trim().parse().unwrap()).await;
    assert_eq!(run["args"], json!({"x": "3"}));
}

/// A page's HTML, as the operator (bearer token).
async fn page(s: &Server, path: &str) -> String {
    let r = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.text().await.unwrap()
}

fn reason_text(v: &serde_json::Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn declared_arguments_are_checked_on_every_trigger_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&config(dir.path()));

    // API: a missing required argument, an unknown one and a value outside the choices are
    // 400s that name the problem; nothing is recorded.
    for (args, want) in [
        (json!({}), "argument \"version\" of deploy is required"),
        (
            json!({"version": "1", "verison": "2"}),
            "unknown argument \"verison\": deploy declares only version, env, note",
        ),
        (
            json!({"version": "1", "env": "dev"}),
            "must be one of staging, prod, not \"dev\"",
        ),
    ] {
        let (st, v) = s
            .post("/tasks/deploy/trigger", json!({ "args": args }))
            .await;
        assert_eq!(st, 400, "{args}: {v}");
        assert_eq!(v["error"]["code"], "bad_argument", "{v}");
        assert!(reason_text(&v).contains(want), "{args}: {v}");
    }
    let (_, runs) = s.get("/runs?task=deploy").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");

    // Defaults are filled in; the job sees them.
    let id = id_of(&s.trigger("deploy", &[("version", "1.2")]).await);
    let run = s.wait_run(id).await;
    assert_eq!(
        run["args"],
        json!({"version": "1.2", "env": "staging"}),
        "{run}"
    );
    assert!(
        s.log_text(id, None)
            .await
            .contains("deploying 1.2 to staging")
    );

    // The declaration is in the API's task list.
    let tasks = s.get_ok("/tasks").await;
    let deploy = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy")
        .unwrap();
    assert_eq!(deploy["args"][1]["choices"], json!(["staging", "prod"]));
    assert_eq!(deploy["args"][0]["required"], json!(true));

    // A rerun with an argument the task does not declare is refused the same way.
    let (st, v) = s
        .post(
            &format!("/runs/{id}/rerun"),
            json!({"args": {"bogus": "1"}}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_argument")),
        "{v}"
    );

    // The CLI says the same and fails.
    let out = s.cli(&["trigger", "deploy", "--arg", "env=prod"]);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "{o}");
    assert!(
        e.contains("argument \"version\" of deploy is required"),
        "{e}"
    );

    // The UI form: a select for choices with the default chosen, the description as help, and
    // a refused post answers 400 with the message on the form.
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let http = users::no_redirects();
    let form = users::page(&s, &cookie, "/trigger/task/deploy").await;
    assert!(form.contains("<select name=\"arg.env\""), "{form}");
    assert!(
        form.contains("<option value=\"staging\" selected>"),
        "{form}"
    );
    assert!(form.contains("the version to ship"), "{form}");
    assert!(!form.contains("version=1.0"), "no hard-coded placeholder");
    assert!(
        !form.contains("name=\"extra\""),
        "declared: no free-form arguments"
    );
    let csrf = users::csrf_in(&form);
    let resp = http
        .post(format!("{}/trigger/task/deploy", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(users::form_encode(&[
            ("csrf", &csrf),
            ("arg.version", ""),
            ("arg.env", "prod"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("is required: give it a value"), "{page}");
    assert!(
        page.contains("<option value=\"prod\" selected>"),
        "the refused form keeps what was chosen"
    );
}
