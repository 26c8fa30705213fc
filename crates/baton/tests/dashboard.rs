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
    authorized_users: [alice]
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
    assert!(html.contains("&#34;command&#34;"), "the definition: {html}");
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
