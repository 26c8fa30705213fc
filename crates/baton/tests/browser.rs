//! Real-browser tests: Debian's `chromium`, headless, driven through `chromedriver` with
//! fantoccini. They log in, trigger a run with arguments, watch its log stream in, cancel a run,
//! open a pipeline's DAG, see a 404 for a run outside `authorized_users`, and sign in through an
//! OpenID Connect stand-in on another site. Screenshots of the
//! main pages (1400 px desktop, 390 px phone, light and dark) land in `target/screenshots/`.
//! A running pipeline's page follows it without reloading (DAG, pills, status, appended log
//! lines with their colours), and at 390 px no page is wider than the phone.
//!
//! Missing `chromium` or `chromedriver` fails the test with the install hint: no silent skip.

#[path = "common/chrome.rs"]
mod chrome;
mod common;
#[path = "common/users.rs"]
mod users;

use std::path::PathBuf;
use std::process::Command;

use fantoccini::Locator;
use serde_json::json;

use chrome::login;
use chrome::*;
use common::*;
use users::*;

#[tokio::test]
async fn browser_flows() {
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("go");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/logs/travis-rust-redox-371852012.ansi.log");
    assert!(
        fixture.is_file(),
        "cannot read the fixture log {}",
        fixture.display()
    );
    let config = format!(
        r#"
administrators: [root]
tasks:
  hello:
    description: says hello
    authorized_users: [alice]
    command: |
      printf '\e[1;32mhello\e[0m %s\n' "${{who:-world}}"
  slow:
    description: waits for a gate
    authorized_users: [alice]
    command: |
      echo "before gate"
      for i in $(seq 600); do [ -e "{gate}" ] && break; sleep 0.1; done
      echo "after gate"
      sleep 1
  forever:
    authorized_users: [alice]
    command: sleep 300
  fixture:
    description: a real Travis log with colours and progress lines
    authorized_users: [alice]
    command: cat "{fixture}"
  secret:
    command: echo secret
pipelines:
  build:
    authorized_users: [alice]
    tasks:
      fetch: {{script: ["echo fetch"]}}
      compile: {{script: ["echo compile"], depends_on: [fetch]}}
      test: {{script: ["echo test"], depends_on: [fetch]}}
      package: {{script: ["echo package"], depends_on: [compile, test]}}
"#,
        gate = gate.display(),
        fixture = fixture.display()
    );
    let s = Server::start(&config);
    for u in ["root", "alice", "eve"] {
        add_user(&s, u, &format!("pw-{u}"));
    }
    let (_driver, c) = browser().await;

    // Log in; the dashboard lists alice's tasks and not the secret one.
    login(&c, &s, "alice").await;
    let fx = id_of(&s.trigger("fixture", &[]).await);
    s.wait_run(fx).await;
    goto(&c, &format!("{}/", s.base)).await;
    wait_text(&c, "main", "hello").await;
    assert!(!text_of(&c, "main").await.contains("secret"));
    shoot(&c, "dashboard").await;

    // Trigger with an argument through the form; the run page shows the coloured log.
    goto(&c, &format!("{}/trigger/task/hello", s.base)).await;
    c.find(Locator::Css("#extra"))
        .await
        .unwrap()
        .send_keys("who=browser")
        .await
        .unwrap();
    shoot(&c, "trigger").await;
    click(&c, "#go").await;
    let hello = run_id_from_url(&c).await;
    wait_text(&c, "#log", "hello browser").await;
    wait_text(&c, "#status", "success").await;
    s.wait_run(hello).await;
    goto(&c, &format!("{}/runs/{hello}", s.base)).await;
    let src = c.source().await.unwrap();
    assert!(
        src.contains("class=\"f2 bo\">hello</span>"),
        "coloured output"
    );
    shoot(&c, "run").await;

    // Live log: the page shows the first line, then the rest streams in after the gate opens.
    goto(&c, &format!("{}/trigger/task/slow", s.base)).await;
    click(&c, "#go").await;
    let slow = run_id_from_url(&c).await;
    wait_text(&c, "#log", "before gate").await;
    assert!(!text_of(&c, "#log").await.contains("after gate"));
    std::fs::write(&gate, b"").unwrap();
    wait_text(&c, "#log", "after gate").await;
    wait_text(&c, "#status", "success").await;
    assert_eq!(status(&s.run(slow).await), "success");

    // Cancel a running run from its page.
    goto(&c, &format!("{}/trigger/task/forever", s.base)).await;
    click(&c, "#go").await;
    let forever = run_id_from_url(&c).await;
    s.wait_until(forever, "running", |r| status(r) == "running")
        .await;
    goto(&c, &format!("{}/runs/{forever}", s.base)).await;
    click(&c, "#cancel").await;
    wait_text(&c, "#status", "canceled").await;

    // A pipeline's DAG: four nodes, each a link to its job's log.
    goto(&c, &format!("{}/trigger/pipeline/build", s.base)).await;
    click(&c, "#go").await;
    let build = run_id_from_url(&c).await;
    s.wait_run(build).await;
    goto(&c, &format!("{}/runs/{build}", s.base)).await;
    let nodes = c.find_all(Locator::Css(".dag svg a.node")).await.unwrap();
    assert_eq!(nodes.len(), 4, "one node per pipeline task");
    shoot(&c, "pipeline").await;
    click(&c, ".dag svg a.node[data-job=\"package\"]").await;
    wait_text(&c, "#log", "package").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("job=package")
    );

    // A real CI log renders like a terminal; the runs list.
    goto(&c, &format!("{}/runs/{fx}", s.base)).await;
    let log = text_of(&c, "#log").await;
    assert!(log.contains("Compiling"), "fixture log rendered");
    assert!(!c.source().await.unwrap().contains('\u{1b}'));
    shoot(&c, "log-fixture").await;
    goto(&c, &format!("{}/runs", s.base)).await;
    shoot(&c, "runs").await;
    // The list refreshes itself when a run appears (SSE change events), no reload needed.
    wait_change_feed(&c).await;
    let fresh = id_of(&s.trigger("fixture", &[]).await);
    wait_text(&c, "main", &format!("#{fresh}")).await;
    s.wait_run(fresh).await;
    goto(&c, &format!("{}/me", s.base)).await;
    shoot(&c, "me").await;

    // Eve is not in authorized_users: alice's run is a 404 page for her.
    click(&c, "header nav button").await;
    wait_text(&c, "main", "Log in").await;
    shoot(&c, "login").await;
    login(&c, &s, "eve").await;
    goto(&c, &format!("{}/runs/{hello}", s.base)).await;
    wait_text(&c, "main", "404").await;
    assert!(!text_of(&c, "main").await.contains("hello browser"));
    shoot(&c, "denied").await;

    // An administrator disables a task from the dashboard; triggering it is then refused.
    goto(&c, &format!("{}/me", s.base)).await;
    click(&c, "header nav button").await;
    wait_text(&c, "main", "Log in").await;
    login(&c, &s, "root").await;
    wait_text(&c, "main", "secret").await;
    click(&c, "button.toggle[data-task=\"hello\"]").await;
    wait_text(&c, "button.toggle[data-task=\"hello\"]", "Enable").await;
    shoot(&c, "dashboard-admin").await;
    let (st, _) = s.post("/tasks/hello/trigger", json!({})).await;
    assert_eq!(st, 409, "a disabled task refuses triggers");

    c.close().await.unwrap();
    drop(_driver);

    // The dark theme follows the system setting.
    let (_driver, c) = dark_browser().await;
    login(&c, &s, "alice").await;
    let dark = c
        .execute(
            "return window.matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    goto(&c, &format!("{}/runs/{fx}", s.base)).await;
    shoot(&c, "dark-log-fixture").await;
    goto(&c, &format!("{}/runs/{build}", s.base)).await;
    shoot(&c, "dark-pipeline").await;
    assert_eq!(
        dark,
        json!(true),
        "chromium was asked for a dark colour scheme"
    );
    c.close().await.unwrap();
}

/// Single sign-on in the real browser, across sites: Baton listens on 127.0.0.2 and the
/// OpenID Connect stand-in on 127.0.0.1, so the flow's cookie must survive the provider's
/// cross-site redirect back (SameSite=Lax on a top-level GET).
#[tokio::test]
async fn single_sign_on_in_the_browser() {
    use common::idp::{Oidc, OidcUser};
    let idp = Oidc::start(
        "baton-ui",
        "ui-secret",
        OidcUser::new("carol-1", "carol@example.com", "carol"),
    );
    let s = Server::start_on(
        &format!(
            "server:
  auth:
    corp:
      issuer: {}
      client_id: baton-ui
      client_secret: ui-secret
      label: Sign in with Corp
administrators: [root]
tasks:
  carols: {{command: \"true\", authorized_users: [carol@example.com]}}
  secret: {{command: \"true\"}}
",
            idp.issuer
        ),
        "127.0.0.2",
    );
    idp.expect_redirect_uri(&format!("{}/auth/corp/callback", s.base));
    let (_d, c) = browser().await;
    goto(&c, &format!("{}/runs", s.base)).await;
    // Not signed in: the login page, with the provider's button.
    wait_text(&c, "#sso-corp", "Sign in with Corp").await;
    shoot(&c, "login-sso").await;
    click(&c, "#sso-corp").await;
    // Through the provider and back, signed in, on the page first asked for.
    wait_text(&c, "header nav", "carol@example.com").await;
    let url = c.current_url().await.unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.2"), "{url}");
    assert_eq!(url.path(), "/runs", "{url}");
    goto(&c, &format!("{}/", s.base)).await;
    let dash = c.source().await.unwrap();
    assert!(dash.contains("carols"), "carol sees her task:\n{dash}");
    assert!(
        !dash.contains(">secret<"),
        "carol must not see `secret`:\n{dash}"
    );
    assert_eq!(idp.count("token"), 1, "{}", idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
    // Logging out ends the Baton session.
    click(&c, "header form button").await;
    wait_text(&c, "h1", "Log in").await;
    goto(&c, &format!("{}/runs", s.base)).await;
    wait_text(&c, "#sso-corp", "Sign in with Corp").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_running_pipeline_page_follows_the_run_and_fits_a_phone() {
    let gates = tempfile::tempdir().unwrap();
    let (g1, g2) = (gates.path().join("one"), gates.path().join("two"));
    let wait = |g: &std::path::Path| {
        format!(
            "for i in $(seq 1200); do [ -e '{0}' ] && break; sleep 0.05; done; [ -e '{0}' ]",
            g.display()
        )
    };
    let config = format!(
        r#"
administrators: [root]
pipelines:
  live:
    description: a pipeline watched while it runs
    authorized_users: [alice]
    tasks:
      fetch:
        script:
          - printf 'before the gate\n'
          - "{w1}"
          - printf '\033[1;32mgreen after\033[0m \033[7minverse\033[0m\n'
      compile: {{script: ["{w2}", "echo compiled"], depends_on: [fetch]}}
      docs: {{script: ["echo no docs; exit 3"], depends_on: [fetch], allow_failure: true}}
      package: {{script: ["echo package"], depends_on: [compile]}}
"#,
        w1 = wait(&g1),
        w2 = wait(&g2),
    );
    let s = Server::start(&config);
    add_user(&s, "alice", "pw-alice");
    let (_driver, c) = browser().await;
    login(&c, &s, "alice").await;
    let id = id_of(&s.trigger_pipeline("live", &[]).await);
    s.wait_until(id, "fetch running", |r| {
        status(job(r, "fetch")) == "running"
    })
    .await;
    // The job is named, so the page keeps its log when fetch ends (a page with no job named
    // moves on to the job that runs next).
    goto(&c, &format!("{}/runs/{id}?job=fetch", s.base)).await;
    wait_text(&c, "#log", "before the gate").await;
    wait_change_feed(&c).await;
    // Marks this page: a reload would lose the mark.
    c.execute("window.stillTheSamePage = true", vec![])
        .await
        .unwrap();
    let title = c.title().await.unwrap();
    assert!(
        title.contains("running"),
        "the title shows the status: {title}"
    );

    // Lines appended live keep their colours, inverse included.
    std::fs::write(&g1, b"").unwrap();
    wait_text(&c, "#log", "green after").await;
    wait_js(&c, "document.querySelector('#log span.f2.bo') && document.querySelector('#log span.f2.bo').textContent === 'green after'").await;
    wait_js(&c, "document.querySelector('#log span.fi.bi') && document.querySelector('#log span.fi.bi').textContent === 'inverse'").await;
    assert!(!c.source().await.unwrap().contains('\u{1b}'));

    // fetch ended, compile runs: the DAG, the pills and the badge say so without a reload.
    wait_js(
        &c,
        "document.querySelector('.dag a.node[data-job=compile]').dataset.status === 'running'",
    )
    .await;
    wait_js(
        &c,
        "document.querySelector('.dag a.node[data-job=fetch]').dataset.status === 'success'",
    )
    .await;
    wait_js(
        &c,
        "document.querySelector('nav.jobs a[data-job=compile]').classList.contains('s-running')",
    )
    .await;
    wait_js(
        &c,
        "document.querySelector('.dag a.node[data-job=docs]').dataset.status === 'failed'",
    )
    .await;
    assert_eq!(
        text_of(&c, "#status").await,
        "running",
        "the run still runs"
    );
    assert!(
        c.find(Locator::Css("nav.jobs a[data-job=docs].allowed"))
            .await
            .is_ok(),
        "docs failed but may: drawn apart"
    );
    // The run's duration ticks while it runs.
    wait_js(&c, "document.querySelector('#ran.tick')").await;
    wait_text(&c, "#live", "This job ended: success").await;
    shoot(&c, "pipeline-running").await;

    std::fs::write(&g2, b"").unwrap();
    s.wait_run(id).await;
    wait_text(&c, "#status", "success").await;
    wait_js(
        &c,
        "document.querySelector('.dag a.node[data-job=package]').dataset.status === 'success'",
    )
    .await;
    wait_js(&c, "document.title.indexOf('success') >= 0").await;
    let same = c
        .execute("return window.stillTheSamePage === true", vec![])
        .await
        .unwrap();
    assert_eq!(
        same,
        json!(true),
        "the page updated itself without reloading"
    );
    let reason = text_of(&c, "main").await;
    assert!(
        !reason.contains("task `docs`"),
        "an allowed failure is blamed: {reason}"
    );

    // The log's search counts matches and steps through them; wrap toggles.
    goto(&c, &format!("{}/runs/{id}?job=fetch", s.base)).await;
    c.find(Locator::Css("#log-search"))
        .await
        .unwrap()
        .send_keys("GREEN")
        .await
        .unwrap();
    wait_text(&c, "#log-count", "1 of 1").await;
    wait_js(
        &c,
        "document.querySelector('#log .line.hit-current').textContent.indexOf('green after') >= 0",
    )
    .await;
    c.find(Locator::Css("#log-search"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    c.find(Locator::Css("#log-search"))
        .await
        .unwrap()
        .send_keys("the")
        .await
        .unwrap();
    wait_text(&c, "#log-count", "1 of 1").await;
    c.find(Locator::Css("#log-search"))
        .await
        .unwrap()
        .send_keys("\u{8}\u{8}")
        .await
        .unwrap();
    wait_text(&c, "#log-count", "1 of 2").await;
    click(&c, "#log-next").await;
    wait_text(&c, "#log-count", "2 of 2").await;
    click(&c, "#log-next").await;
    wait_text(&c, "#log-count", "1 of 2").await;
    click(&c, "#log-wrap").await;
    wait_js(
        &c,
        "document.getElementById('log').classList.contains('wrap')",
    )
    .await;

    // At phone width, no page is wider than the phone; the DAG scrolls inside its box.
    let pages = [
        ("main-dashboard", "/".to_owned()),
        ("main-runs", "/runs".to_owned()),
        ("main-pipeline", format!("/runs/{id}")),
        ("main-me", "/me".to_owned()),
        ("main-trigger", "/trigger/pipeline/live".to_owned()),
        ("main-404", "/no/such/page".to_owned()),
    ];
    for (name, path) in &pages {
        goto(&c, &format!("{}{path}", s.base)).await;
        shoot(&c, name).await;
        c.set_window_size(390, 844).await.unwrap();
        laid_out_at(&c, 390).await;
        let bad = overflowing(&c).await;
        assert!(bad.is_empty(), "{path} overflows a 390 px phone: {bad:?}");
        c.set_window_size(1280, 900).await.unwrap();
    }
    c.set_window_size(390, 844).await.unwrap();
    goto(&c, &format!("{}/runs/{id}", s.base)).await;
    laid_out_at(&c, 390).await;
    let scrolls = c
        .execute(
            "var d = document.querySelector('.dag'); d.scrollLeft = 1000;\
             return d.scrollWidth > d.clientWidth && d.scrollLeft > 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(scrolls, json!(true), "the DAG scrolls sideways on a phone");
    c.close().await.unwrap();
    drop(_driver);

    // The same pages in the dark theme.
    let (_driver, c) = dark_browser().await;
    login(&c, &s, "alice").await;
    for (name, path) in &pages {
        goto(&c, &format!("{}{path}", s.base)).await;
        shoot(&c, &format!("dark-{name}")).await;
    }
    c.close().await.unwrap();
}

/// A local run's stored `index.html` (`baton run`, read back with git) opens from a file in
/// Chromium, shows the run, and makes no request at all (no stylesheet, script or image).
#[tokio::test]
async fn a_local_runs_stored_page_opens_offline() {
    use common::gitrepo::{commit_text, git, init};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    init(&repo);
    let ci = "tasks:\n  test:\n    command: printf '\\033[32mgreen\\033[0m ok\\n'; exit 1\n";
    commit_text(&repo, &[(".baton/ci.yaml", ci)], "first");
    let out = Command::new(BIN)
        .args(["run"])
        .current_dir(&repo)
        .env("HOME", &repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let refname = git(
        &repo,
        &["for-each-ref", "--format=%(refname)", "refs/baton-runs/"],
    );
    let page = tmp.path().join("index.html");
    let html = git(
        &repo,
        &["cat-file", "blob", &format!("{refname}:index.html")],
    );
    std::fs::write(&page, html).unwrap();
    let (_d, c) = browser().await;
    goto(&c, &format!("file://{}", page.display())).await;
    assert_eq!(text_of(&c, "#status").await, "failed");
    assert!(text_of(&c, "pre.log").await.contains("green ok"));
    let requests = c
        .execute(
            "return performance.getEntriesByType('resource').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(requests, json!(0), "the page fetched something");
    shoot(&c, "local-run").await;
}
