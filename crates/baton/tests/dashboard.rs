//! The dashboard and a target's page over HTTP (no browser): the queue tells a job waiting
//! for its dependencies from one waiting for a worker; the success rate leaves out canceled
//! runs; a timed task shows when it runs next; a target's page lists its runs and is a 404 to
//! whoever may not see it; an administrator disables a pipeline, which then refuses triggers.

mod common;
#[path = "common/users.rs"]
mod users;

use serde_json::json;

use common::*;
use users::*;

fn config(dir: &std::path::Path) -> String {
    let gate = |name: &str| {
        format!(
            "for i in $(seq 1200); do [ -e '{0}/{name}' ] && break; sleep 0.05; done",
            dir.display()
        )
    };
    format!(
        r#"
administrators: [root]
server: {{local_workers: 1}}
tasks:
  hold:
    # waits until the test releases it
    authorized_users: [alice]
    env: {{API_TOKEN: sup3r-s3cret-value, LEVEL: "3"}}
    command: "{hold}"
  later:
    authorized_users: [alice]
    command: "true"
  nightly:
    authorized_users: [alice]
    period: 1d
    command: "true"
  hidden:
    command: "true"
pipelines:
  chain:
    authorized_users: [alice]
    tasks:
      first: {{script: ["{first}"]}}
      second: {{script: ["true"], depends_on: [first]}}
"#,
        hold = gate("hold"),
        first = gate("first"),
    )
}

async fn page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The dashboard's queue row of job `job`: its `data-waits`.
fn waits(html: &str, job: &str) -> Option<String> {
    html.split("<tr data-waits=\"").skip(1).find_map(|row| {
        let end = row.find("</tr>")?;
        let row = &row[..end];
        row.contains(&format!("<td>{job}</td>"))
            .then(|| row[..row.find('"').unwrap()].to_owned())
    })
}

#[tokio::test]
async fn the_dashboard_tells_what_queued_jobs_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&config(dir.path()));
    add_user(&s, "alice", "pw-alice");
    let alice = format!("baton_session={}", login(&s, "alice", "pw-alice").await);

    // The pipeline's first job takes the only worker; its second waits for it, and a task
    // triggered then waits for the worker.
    let chain = id_of(&s.trigger_pipeline("chain", &[]).await);
    s.wait_until(chain, "first running", |r| {
        status(job(r, "first")) == "running"
    })
    .await;
    let later = id_of(&s.trigger("later", &[]).await);
    let (st, html) = page(&s, &alice, "/").await;
    assert_eq!(st, 200);
    assert_eq!(waits(&html, "second").as_deref(), Some("deps"), "{html}");
    assert_eq!(waits(&html, "later").as_deref(), Some("worker"), "{html}");
    assert!(html.contains("dependencies") && html.contains("a worker"));
    let queue = s.get_ok("/queue").await;
    let waits: Vec<(&str, &str)> = queue["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["job"].as_str().unwrap(), q["waits_for"].as_str().unwrap()))
        .collect();
    assert!(waits.contains(&("second", "dependencies")), "{queue}");
    assert!(waits.contains(&("later", "worker")), "{queue}");
    std::fs::write(dir.path().join("first"), b"").unwrap();
    assert_eq!(status(&s.wait_run(chain).await), "success");
    assert_eq!(status(&s.wait_run(later).await), "success");

    // A canceled run does not count against the success rate.
    let held = id_of(&s.trigger("hold", &[]).await);
    s.wait_until(held, "running", |r| status(r) == "running")
        .await;
    let (st, v) = s.post(&format!("/runs/{held}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    s.wait_run(held).await;
    std::fs::write(dir.path().join("hold"), b"").unwrap();
    let ok = id_of(&s.trigger("hold", &[]).await);
    assert_eq!(status(&s.wait_run(ok).await), "success");
    let (_, html) = page(&s, &alice, "/").await;
    let row = html
        .split("<tr data-target=\"hold\">")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains("<td>100%</td>"), "{row}");

    // The timed task says when it runs next; its page too, with its runs.
    let row = html
        .split("<tr data-target=\"nightly\">")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        row.contains("class=\"muted when next-run\">next 20"),
        "{row}"
    );
    let (st, html) = page(&s, &alice, "/targets/task/hold").await;
    assert_eq!(st, 200);
    assert!(html.contains(&format!("href=\"/runs/{ok}\"")), "{html}");
    assert!(html.contains("id=\"rate\">100%"), "{html}");
    // Its definition as written, with its place, the comment kept and the secret value not.
    let file = s.config_dir.join("baton.yaml");
    assert!(
        html.contains(&format!("id=\"source\">{}:5</code>", file.display())),
        "the definition's place: {html}"
    );
    let definition = html
        .split("id=\"definition\">")
        .nth(1)
        .unwrap()
        .split("</pre>")
        .next()
        .unwrap();
    for written in [
        "<span class=\"ln\">5</span>  hold:",
        "<span class=\"ln\">6</span>    # waits until the test releases it",
        "env: {API_TOKEN: ***, LEVEL: &#34;3&#34;}",
        "<span class=\"ln\">9</span>    command: &#34;for i in",
    ] {
        assert!(definition.contains(written), "{written} in {definition}");
    }
    assert!(!definition.contains("later:"), "{definition}");
    assert!(!html.contains("sup3r-s3cret-value"), "{html}");
    let (st, html) = page(&s, &alice, "/targets/pipeline/chain").await;
    assert_eq!(st, 200);
    assert!(
        html.contains("second: {script: [&#34;true&#34;], depends_on: [first]}"),
        "{html}"
    );
    assert_eq!(page(&s, &alice, "/targets/task/hidden").await.0, 404);
    assert_eq!(page(&s, &alice, "/targets/task/nothing").await.0, 404);
    assert_eq!(page(&s, &alice, "/targets/bogus/hold").await.0, 404);
}

#[tokio::test]
async fn an_administrator_disables_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("first"), b"").unwrap();
    let s = Server::start(&config(dir.path()));
    add_user(&s, "root", "pw-root");
    add_user(&s, "alice", "pw-alice");
    let root = format!("baton_session={}", login(&s, "root", "pw-root").await);
    let alice = format!("baton_session={}", login(&s, "alice", "pw-alice").await);
    let post = |cookie: &str, value: &str| {
        let cookie = cookie.to_owned();
        let value = value.to_owned();
        let s = &s;
        async move {
            let (_, html) = page(s, &cookie, "/").await;
            let csrf = csrf_in(&html);
            no_redirects()
                .post(format!("{}/admin/pipelines/chain/enabled", s.base))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(&[("csrf", &csrf), ("enabled", &value)]))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Not an administrator: refused, nothing changes.
    assert_eq!(post(&alice, "false").await, 403);
    assert_eq!(post(&root, "false").await, 303);
    let (st, v) = s.post("/pipelines/chain/trigger", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("disabled")),
        "{v}"
    );
    let pipelines = s.get_ok("/pipelines").await;
    assert_eq!(pipelines["pipelines"][0]["enabled"], json!(false));
    // Kept across a restart, then enabled again.
    let mut s = s;
    s.restart();
    // Pooled connections went with the old process.
    s.http = reqwest::Client::new();
    let (st, _) = s.post("/pipelines/chain/trigger", json!({})).await;
    assert_eq!(st, 409);
    let root = format!("baton_session={}", login(&s, "root", "pw-root").await);
    let (_, html) = page(&s, &root, "/").await;
    let csrf = csrf_in(&html);
    let r = no_redirects()
        .post(format!("{}/admin/pipelines/chain/enabled", s.base))
        .header("cookie", &root)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("csrf", &csrf), ("enabled", "true")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let run = s.trigger_pipeline("chain", &[]).await;
    assert_eq!(status(&s.wait_run(id_of(&run)).await), "success");
}

/// The timing row (`gantt-row`) of job `job` on a run page.
fn gantt_row(html: &str, job: &str) -> String {
    html.split("<a class=\"gantt-row\"")
        .skip(1)
        .find(|r| r.contains(&format!("data-job=\"{job}\"")))
        .and_then(|r| r.split("</a>").next())
        .unwrap_or_else(|| panic!("no timing row for {job}: {html}"))
        .to_owned()
}

#[tokio::test]
async fn a_pipelines_timing_tells_waiting_for_dependencies_from_waiting_for_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&config(dir.path()));
    add_user(&s, "alice", "pw-alice");
    let alice = format!("baton_session={}", login(&s, "alice", "pw-alice").await);
    // `hold` takes the only worker: the chain's `first` waits for a worker, `second` for
    // `first`.
    let held = id_of(&s.trigger("hold", &[]).await);
    s.wait_until(held, "running", |r| status(r) == "running")
        .await;
    let chain = id_of(&s.trigger_pipeline("chain", &[]).await);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    // While it waits, each bar says what for.
    let (_, html) = page(&s, &alice, &format!("/runs/{chain}")).await;
    let first = gantt_row(&html, "first");
    assert!(
        first.contains("for a worker so far") && !first.contains("class=\"deps\""),
        "{first}"
    );
    let second = gantt_row(&html, "second");
    assert!(
        second.contains("for dependencies so far") && !second.contains("class=\"wait\""),
        "{second}"
    );
    std::fs::write(dir.path().join("first"), b"").unwrap();
    std::fs::write(dir.path().join("hold"), b"").unwrap();
    assert_eq!(status(&s.wait_run(chain).await), "success");
    let (_, html) = page(&s, &alice, &format!("/runs/{chain}")).await;
    let first = gantt_row(&html, "first");
    assert!(
        first.contains("title=\"first: waited ")
            && first.contains(" for a worker · ran ")
            && first.contains("<rect class=\"wait\"")
            && !first.contains("class=\"deps\""),
        "{first}"
    );
    let second = gantt_row(&html, "second");
    assert!(
        second.contains("title=\"second: waited ")
            && second.contains(" for dependencies")
            && second.contains("<rect class=\"deps\""),
        "{second}"
    );
    // `second` waited at least as long as `first` did for the worker (600 ms) and then ran.
    let deps_w: i64 = second
        .split("<rect class=\"deps\" x=\"0\" y=\"4\" width=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{second}"));
    let wait_w: i64 = first
        .split("<rect class=\"wait\" x=\"0\" y=\"3\" width=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(deps_w >= wait_w && wait_w > 0, "{first}\n{second}");
    assert!(html.contains("waiting for its dependencies"), "the key");
}
