//! Real-browser tests: Debian's `chromium`, headless, driven through `chromedriver` with
//! fantoccini. They log in, trigger a run with arguments, watch its log stream in, cancel a run,
//! open a pipeline's DAG, see a 404 for a run outside `authorized_users`, and sign in through an
//! OpenID Connect stand-in on another site. Screenshots of the
//! main pages (1400 px desktop, 390 px phone, light and dark) land in `target/screenshots/`.
//! A running pipeline's page follows it without reloading (DAG, pills, status, appended log
//! lines with their colours), and at 390 px no page is wider than the phone.
//!
//! Missing `chromium` or `chromedriver` fails the test with the install hint: no silent skip.

mod common;
#[path = "common/users.rs"]
mod users;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use common::*;
use users::*;

/// chromedriver and every Chromium process it starts. Dropping it (also when a test panics)
/// kills them all: chromedriver leads its own process group, and Chromium's helpers are found
/// by the profile folder that only this browser uses.
struct Driver {
    child: Child,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: plain signal calls on a process group and pids we started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        for pid in processes_under(self.profile.path()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn need(cmd: &str, pkg: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = PathBuf::from(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{cmd}` not found: the browser tests need Debian's {pkg} (hint: apt-get install chromium chromium-driver, or run scripts/test.sh)"
    );
}

async fn browser() -> (Driver, Client) {
    browser_with(&[]).await
}

/// A browser whose pages see a dark system colour scheme.
async fn dark_browser() -> (Driver, Client) {
    browser_with(&[
        "--force-dark-mode",
        "--blink-settings=preferredColorScheme=0",
    ])
    .await
}

async fn browser_with(extra: &[&str]) -> (Driver, Client) {
    let chromium = need("chromium", "chromium");
    let driver = need("chromedriver", "chromium-driver");
    // Port 0: chromedriver binds a free port itself and names it when it is ready.
    let mut child = Command::new(driver)
        .arg("--port=0")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("chromedriver's stdout");
    let d = Driver {
        child,
        profile: tempfile::tempdir().expect("a profile folder for chromium"),
    };
    let port = ready_port(stdout);
    let user_data_dir = format!("--user-data-dir={}", d.profile.path().display());
    let mut args = vec![
        user_data_dir.as_str(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match c {
            Ok(c) => return (d, c),
            Err(e) if Instant::now() > deadline => panic!("cannot start a chromium session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads chromedriver's output until its ready line ("... started successfully on port N.")
/// and returns N; keeps draining the output afterwards.
fn ready_port(stdout: std::process::ChildStdout) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, p)| p.trim_end_matches('.').trim().parse::<u16>().ok());
            if let Some(p) = port
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(p);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("chromedriver did not say it was ready (its port) within 30 s")
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the current page at desktop and phone widths.
async fn shoot(c: &Client, name: &str) {
    for (w, h, tag) in [(1400, 900, "desktop"), (390, 844, "phone")] {
        c.set_window_size(w, h).await.unwrap();
        laid_out_at(c, w).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots_dir().join(format!("{name}-{tag}.png")), png).unwrap();
    }
    c.set_window_size(1280, 900).await.unwrap();
}

/// Waits until the page is laid out at width `w` and a frame at that size has been painted.
async fn laid_out_at(c: &Client, w: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        // Resolves after two animation frames: the next frame after any pending layout.
        let width = c
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 requestAnimationFrame(() => requestAnimationFrame(() => done(window.innerWidth)));",
                vec![],
            )
            .await
            .unwrap();
        if width == json!(w) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the window was resized to {w} px but the page is {width} px wide"
        );
    }
}

/// Waits until the page's change feed (`/api/v1/events`) is connected, so that a change made
/// from now on reaches it.
async fn wait_change_feed(c: &Client) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = c
            .execute("return document.body.dataset.changes || ''", vec![])
            .await
            .unwrap();
        if state == json!("open") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page's change feed did not connect within {WAIT:?} (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element matching `css` contains `want`.
async fn wait_text(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = text_of(c, css).await;
        if t.contains(want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{css} never showed {want:?}; it shows {t:?}\npage: {}",
                c.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(c: &Client, s: &Server, user: &str) {
    c.goto(&format!("{}/login", s.base)).await.unwrap();
    c.find(Locator::Css("#user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(&long(&format!("pw-{user}")))
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "header nav", user).await;
}

/// Clicks the element matching `css`. A live page may redraw it between finding and clicking
/// (its summary refreshes as the run changes): then the new one is clicked.
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match e.click().await {
            Ok(_) => return,
            Err(err)
                if Instant::now() < deadline && format!("{err:?}").contains("StaleElement") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("cannot click {css}: {err}"),
        }
    }
}

async fn run_id_from_url(c: &Client) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.unwrap();
        if let Some(id) = url
            .path()
            .strip_prefix("/runs/")
            .and_then(|p| p.parse().ok())
        {
            return id;
        }
        assert!(Instant::now() < deadline, "never reached a run page: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    c.goto(&format!("{}/", s.base)).await.unwrap();
    wait_text(&c, "main", "hello").await;
    assert!(!text_of(&c, "main").await.contains("secret"));
    shoot(&c, "dashboard").await;

    // Trigger with an argument through the form; the run page shows the coloured log.
    c.goto(&format!("{}/trigger/task/hello", s.base))
        .await
        .unwrap();
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
    c.goto(&format!("{}/runs/{hello}", s.base)).await.unwrap();
    let src = c.source().await.unwrap();
    assert!(
        src.contains("class=\"f2 bo\">hello</span>"),
        "coloured output"
    );
    shoot(&c, "run").await;

    // Live log: the page shows the first line, then the rest streams in after the gate opens.
    c.goto(&format!("{}/trigger/task/slow", s.base))
        .await
        .unwrap();
    click(&c, "#go").await;
    let slow = run_id_from_url(&c).await;
    wait_text(&c, "#log", "before gate").await;
    assert!(!text_of(&c, "#log").await.contains("after gate"));
    std::fs::write(&gate, b"").unwrap();
    wait_text(&c, "#log", "after gate").await;
    wait_text(&c, "#status", "success").await;
    assert_eq!(status(&s.run(slow).await), "success");

    // Cancel a running run from its page.
    c.goto(&format!("{}/trigger/task/forever", s.base))
        .await
        .unwrap();
    click(&c, "#go").await;
    let forever = run_id_from_url(&c).await;
    s.wait_until(forever, "running", |r| status(r) == "running")
        .await;
    c.goto(&format!("{}/runs/{forever}", s.base)).await.unwrap();
    click(&c, "#cancel").await;
    wait_text(&c, "#status", "canceled").await;

    // A pipeline's DAG: four nodes, each a link to its job's log.
    c.goto(&format!("{}/trigger/pipeline/build", s.base))
        .await
        .unwrap();
    click(&c, "#go").await;
    let build = run_id_from_url(&c).await;
    s.wait_run(build).await;
    c.goto(&format!("{}/runs/{build}", s.base)).await.unwrap();
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
    c.goto(&format!("{}/runs/{fx}", s.base)).await.unwrap();
    let log = text_of(&c, "#log").await;
    assert!(log.contains("Compiling"), "fixture log rendered");
    assert!(!c.source().await.unwrap().contains('\u{1b}'));
    shoot(&c, "log-fixture").await;
    c.goto(&format!("{}/runs", s.base)).await.unwrap();
    shoot(&c, "runs").await;
    // The list refreshes itself when a run appears (SSE change events), no reload needed.
    wait_change_feed(&c).await;
    let fresh = id_of(&s.trigger("fixture", &[]).await);
    wait_text(&c, "main", &format!("#{fresh}")).await;
    s.wait_run(fresh).await;
    c.goto(&format!("{}/me", s.base)).await.unwrap();
    shoot(&c, "me").await;

    // Eve is not in authorized_users: alice's run is a 404 page for her.
    click(&c, "header nav button").await;
    wait_text(&c, "main", "Log in").await;
    shoot(&c, "login").await;
    login(&c, &s, "eve").await;
    c.goto(&format!("{}/runs/{hello}", s.base)).await.unwrap();
    wait_text(&c, "main", "404").await;
    assert!(!text_of(&c, "main").await.contains("hello browser"));
    shoot(&c, "denied").await;

    // An administrator disables a task from the dashboard; triggering it is then refused.
    c.goto(&format!("{}/me", s.base)).await.unwrap();
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
    c.goto(&format!("{}/runs/{fx}", s.base)).await.unwrap();
    shoot(&c, "dark-log-fixture").await;
    c.goto(&format!("{}/runs/{build}", s.base)).await.unwrap();
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
    c.goto(&format!("{}/runs", s.base)).await.unwrap();
    // Not signed in: the login page, with the provider's button.
    wait_text(&c, "#sso-corp", "Sign in with Corp").await;
    shoot(&c, "login-sso").await;
    click(&c, "#sso-corp").await;
    // Through the provider and back, signed in, on the page first asked for.
    wait_text(&c, "header nav", "carol@example.com").await;
    let url = c.current_url().await.unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.2"), "{url}");
    assert_eq!(url.path(), "/runs", "{url}");
    c.goto(&format!("{}/", s.base)).await.unwrap();
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
    c.goto(&format!("{}/runs", s.base)).await.unwrap();
    wait_text(&c, "#sso-corp", "Sign in with Corp").await;
    c.close().await.unwrap();
}

/// The elements of the page that reach past the viewport's edges (outside the scroll boxes
/// meant to scroll: the DAG and logs), as "tag#id.class left–right".
async fn overflowing(c: &Client) -> Vec<String> {
    let found = c
        .execute(
            "var w = document.documentElement.clientWidth, bad = [];\
             if (document.documentElement.scrollWidth > w) bad.push('page scrolls sideways: ' + document.documentElement.scrollWidth);\
             document.querySelectorAll('body *').forEach(function (e) {\
               if (e.parentElement.closest('.dag, pre') ) return;\
               var r = e.getBoundingClientRect();\
               if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5))\
                 bad.push(e.tagName + '#' + e.id + '.' + e.getAttribute('class') + ' ' + Math.round(r.left) + '-' + Math.round(r.right));\
             });\
             return bad;",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Waits until the script `js` (an expression) is true in the page.
async fn wait_js(c: &Client, js: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(&format!("return !!({js})"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "never true: {js}\npage: {}",
                c.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    c.goto(&format!("{}/runs/{id}?job=fetch", s.base))
        .await
        .unwrap();
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
    c.goto(&format!("{}/runs/{id}?job=fetch", s.base))
        .await
        .unwrap();
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
        c.goto(&format!("{}{path}", s.base)).await.unwrap();
        shoot(&c, name).await;
        c.set_window_size(390, 844).await.unwrap();
        laid_out_at(&c, 390).await;
        let bad = overflowing(&c).await;
        assert!(bad.is_empty(), "{path} overflows a 390 px phone: {bad:?}");
        c.set_window_size(1280, 900).await.unwrap();
    }
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{}/runs/{id}", s.base)).await.unwrap();
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
        c.goto(&format!("{}{path}", s.base)).await.unwrap();
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
    c.goto(&format!("file://{}", page.display())).await.unwrap();
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
