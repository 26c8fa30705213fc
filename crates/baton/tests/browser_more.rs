//! More of the UI in a real browser (Chromium, see `common/chrome.rs`): a canceled pipeline's
//! page opens on the job that ran, not one that never started; the DAG's labels say each
//! status once and a running node's time ticks without a reload; the worker line names each
//! worker once; a `#L100` anchor outside the log's tail loads the lines around it and
//! highlights the line; the log's Top and End buttons, and "follow", which stops when the
//! reader scrolls up; the /runs filter row's labels and fields at one height; /me's empty
//! token list says so; the dashboard shows when a timed task last ran.

#[path = "common/chrome.rs"]
mod chrome;
mod common;
#[path = "common/users.rs"]
mod users;

use std::collections::BTreeSet;
use std::path::Path;

use fantoccini::Client;
use serde_json::{Value, json};

use chrome::login;
use chrome::*;
use common::*;
use users::*;

/// The value of the script `js` (an expression) in the page.
async fn eval(c: &Client, js: &str) -> Value {
    c.execute(&format!("return ({js})"), vec![]).await.unwrap()
}

/// The text of the element matching `css` ("" without one), read in one script: a live page
/// may redraw it between finding it and reading it.
async fn text_now(c: &Client, css: &str) -> String {
    let v = eval(
        c,
        &format!(
            "(function () {{ var e = document.querySelector({}); return e ? e.textContent : ''; }})()",
            json!(css)
        ),
    )
    .await;
    v.as_str().unwrap().trim().to_owned()
}

/// A shell line that waits (bounded, 60 s) for the file `path`; exits 9 if it never appears.
fn wait_for(path: &Path) -> String {
    let p = path.display();
    format!(
        "for i in $(seq 1200); do [ -e '{p}' ] && break; sleep 0.05; done; [ -e '{p}' ] || exit 9"
    )
}

// --- A pipeline's page -------------------------------------------------------------------------

fn pipelines(dir: &Path) -> String {
    format!(
        r#"
administrators: [root]
server: {{local_workers: 2}}
pipelines:
  halted:
    tasks:
      build: {{script: ["echo building", "sleep 300"]}}
      package: {{script: ["echo packaging"], depends_on: [build]}}
  broken:
    continue_running_tasks_after_failure: true
    tasks:
      compile: {{script: ["echo compiling", "exit 3"]}}
      test: {{script: ["echo testing"], depends_on: [compile]}}
      docs: {{script: ["echo docs"]}}
  ticking:
    tasks:
      slow: {{script: ["echo slow", "{gate}"]}}
      after: {{script: ["echo after"], depends_on: [slow]}}
  spread:
    tasks:
      one: {{script: ["echo one"]}}
      two: {{script: ["echo two"], depends_on: [one]}}
      three: {{script: ["echo three"], depends_on: [one]}}
      four: {{script: ["echo four"], depends_on: [two, three]}}
      five: {{script: ["echo five"], depends_on: [four]}}
"#,
        gate = wait_for(&dir.join("slow-go")),
    )
}

/// The text under a DAG node's name: its status, and its duration once it started.
async fn node_state(c: &Client, job: &str) -> String {
    eval(
        c,
        &format!(
            "(function () {{ var n = document.querySelector('.dag a.node[data-job={}]');\
               return n ? n.querySelectorAll('text')[1].textContent : ''; }})()",
            json!(job)
        ),
    )
    .await
    .as_str()
    .unwrap()
    .to_owned()
}

#[tokio::test]
async fn a_pipelines_page_opens_the_right_job_ticks_and_names_each_worker_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&pipelines(dir.path()));
    add_user(&s, "root", "pw-root");
    let (_driver, c) = browser().await;
    login(&c, &s, "root").await;

    // Canceled while `build` runs: `package` never started, so the page opens on `build`.
    let halted = id_of(&s.trigger_pipeline("halted", &[]).await);
    s.wait_until(halted, "build running", |r| {
        status(job(r, "build")) == "running"
    })
    .await;
    let (st, v) = s.post(&format!("/runs/{halted}/cancel"), json!({})).await;
    assert!(st < 300, "cancel answered {st}: {v}");
    let run = s.wait_run(halted).await;
    assert_eq!(status(&run), "canceled", "{run:#}");
    assert!(
        job(&run, "package")["started_at"].is_null(),
        "package must never have started: {run:#}"
    );
    goto(&c, &format!("{}/runs/{halted}", s.base)).await;
    wait_text(&c, "#log", "building").await;
    assert_eq!(
        eval(&c, "document.getElementById('log').dataset.jobName").await,
        "build"
    );
    assert_eq!(
        eval(
            &c,
            "document.querySelector('nav.jobs a.current').dataset.job"
        )
        .await,
        "build",
        "the job pill selected is the one shown"
    );
    let reason = text_now(&c, "p.reason").await;
    assert!(
        !reason.contains("package"),
        "blames a job that never ran: {reason}"
    );
    shoot(&c, "more-canceled-pipeline").await;

    // The DAG says each status once: a skipped job reads "skipped", not "skipped · skipped".
    let broken = id_of(&s.trigger_pipeline("broken", &[]).await);
    let run = s.wait_run(broken).await;
    assert_eq!(status(job(&run, "test")), "skipped", "{run:#}");
    goto(&c, &format!("{}/runs/{broken}", s.base)).await;
    for name in ["compile", "test", "docs"] {
        let label = node_state(&c, name).await;
        let st = status(job(&run, name));
        assert_eq!(
            label.matches(st).count(),
            1,
            "{name}'s node says its status {st:?} other than once: {label:?}"
        );
    }
    assert_eq!(node_state(&c, "test").await, "skipped");
    assert!(node_state(&c, "compile").await.starts_with("failed · "));

    // A running node's time ticks on the page, with no reload; it stops once the job ended.
    let ticking = id_of(&s.trigger_pipeline("ticking", &[]).await);
    s.wait_until(ticking, "slow running", |r| {
        status(job(r, "slow")) == "running"
    })
    .await;
    goto(&c, &format!("{}/runs/{ticking}", s.base)).await;
    let tick = ".dag a.node[data-job=\"slow\"] tspan.tick";
    wait_js(&c, &format!("document.querySelector('{tick}')")).await;
    c.execute("window.notReloaded = true", vec![])
        .await
        .unwrap();
    let first = text_now(&c, tick).await;
    assert!(!first.is_empty());
    wait_js(
        &c,
        &format!(
            "document.querySelector('{tick}') && document.querySelector('{tick}').textContent !== {}",
            json!(first)
        ),
    )
    .await;
    assert_eq!(eval(&c, "window.notReloaded === true").await, true);
    shoot(&c, "more-running-dag").await;
    std::fs::write(dir.path().join("slow-go"), b"").unwrap();
    assert_eq!(status(&s.wait_run(ticking).await), "success");
    wait_text(&c, "#status", "success").await;
    wait_js(&c, &format!("!document.querySelector('{tick}')")).await;
    assert!(node_state(&c, "slow").await.starts_with("success · "));

    // Five jobs on two workers: the worker line names each one once.
    let spread = id_of(&s.trigger_pipeline("spread", &[]).await);
    let run = s.wait_run(spread).await;
    assert_eq!(status(&run), "success", "{run:#}");
    let used: BTreeSet<String> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["worker"].as_str().unwrap().to_owned())
        .collect();
    goto(&c, &format!("{}/runs/{spread}", s.base)).await;
    let line = text_now(&c, "#worker").await;
    let named: Vec<&str> = line.split(", ").collect();
    let unique: BTreeSet<String> = named.iter().map(|w| w.to_string()).collect();
    assert_eq!(named.len(), unique.len(), "a worker named twice: {line:?}");
    assert_eq!(unique, used, "{line:?}");
    c.close().await.unwrap();
}

// --- The log viewer ---------------------------------------------------------------------------

fn logs(dir: &Path) -> String {
    let gate = |n: u32| wait_for(&dir.join(format!("go{n}")));
    let lines = |word: &str, n: u32| format!("for i in $(seq {n}); do echo \"{word} $i\"; done");
    format!(
        r#"
administrators: [root]
tasks:
  big:
    command: |
      awk 'BEGIN {{ for (i = 1; i <= 40000; i++) printf "line %d: xxxxxxxxxxxxxxxxxxxx\n", i }}'
  stream:
    command: |
      {first}
      {g1}
      {second}
      {g2}
      {third}
      {g3}
      {fourth}
      {g4}
"#,
        first = lines("first", 300),
        second = lines("second", 60),
        third = lines("third", 60),
        fourth = lines("fourth", 60),
        g1 = gate(1),
        g2 = gate(2),
        g3 = gate(3),
        g4 = gate(4),
    )
}

/// Is the window scrolled to the end of the page?
const AT_END: &str = "window.innerHeight + window.scrollY >= document.body.scrollHeight - 2";

#[tokio::test]
async fn the_log_viewer_jumps_to_lines_top_and_end_and_follows_until_scrolled_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&logs(dir.path()));
    add_user(&s, "root", "pw-root");
    let (_driver, c) = browser().await;
    login(&c, &s, "root").await;

    // `#L100` is far outside the tail the page shows: the page loads the lines around it.
    let big = id_of(&s.trigger("big", &[]).await);
    assert_eq!(status(&s.wait_run(big).await), "success");
    goto(&c, &format!("{}/runs/{big}", s.base)).await;
    wait_text(&c, "#log", "line 40000:").await;
    assert_eq!(eval(&c, "!!document.getElementById('L100')").await, false);
    goto(&c, &format!("{}/", s.base)).await;
    goto(&c, &format!("{}/runs/{big}#L100", s.base)).await;
    wait_js(
        &c,
        "new URLSearchParams(location.search).get('line') === '100'",
    )
    .await;
    wait_js(&c, "document.getElementById('L100')").await;
    assert_eq!(eval(&c, "location.hash").await, "#L100");
    let l100 = text_of(&c, "#L100").await;
    assert!(l100.contains("line 100:"), "{l100:?}");
    assert_eq!(
        eval(&c, "(document.querySelector(':target') || {}).id").await,
        "L100",
        "the line is the page's target"
    );
    assert_eq!(
        eval(
            &c,
            "getComputedStyle(document.getElementById('L100')).backgroundColor !== \
             getComputedStyle(document.getElementById('L101')).backgroundColor"
        )
        .await,
        true,
        "the line is highlighted"
    );
    wait_js(
        &c,
        "(function () { var r = document.getElementById('L100').getBoundingClientRect();\
           return r.top >= 0 && r.bottom <= window.innerHeight; })()",
    )
    .await;
    shoot(&c, "more-log-line-100").await;

    // A live log: End and Top move the page; the page follows new lines while at the end.
    let stream = id_of(&s.trigger("stream", &[]).await);
    goto(&c, &format!("{}/runs/{stream}", s.base)).await;
    wait_text(&c, "#log", "first 300").await;
    assert_eq!(
        eval(&c, "document.getElementById('log').dataset.live").await,
        "true"
    );
    // (A live page whose first lines fit the window follows them down: start from the top.)
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    assert_eq!(
        eval(&c, AT_END).await,
        false,
        "the log is longer than the window"
    );
    click(&c, "#log-bottom").await;
    wait_js(&c, AT_END).await;
    click(&c, "#log-top").await;
    wait_js(
        &c,
        "window.scrollY > 0 && Math.abs(document.getElementById('log').getBoundingClientRect().top) < 2",
    )
    .await;
    click(&c, "#log-bottom").await;
    wait_js(&c, AT_END).await;
    std::fs::write(dir.path().join("go1"), b"").unwrap();
    wait_text(&c, "#log", "second 60").await;
    wait_js(&c, AT_END).await;

    // Scrolled up, the page stays where the reader is while lines keep coming.
    let here = eval(
        &c,
        "(window.scrollTo(0, window.scrollY - 1500), window.scrollY)",
    )
    .await;
    let here = here.as_f64().unwrap();
    std::fs::write(dir.path().join("go2"), b"").unwrap();
    wait_text(&c, "#log", "third 60").await;
    assert_eq!(
        eval(&c, AT_END).await,
        false,
        "follow pulled the reader down"
    );
    let now = eval(&c, "window.scrollY").await.as_f64().unwrap();
    assert!(
        (now - here).abs() < 300.0,
        "the page moved from {here} to {now}"
    );

    // Back at the end (the End button), it follows again.
    click(&c, "#log-bottom").await;
    wait_js(&c, AT_END).await;
    std::fs::write(dir.path().join("go3"), b"").unwrap();
    wait_text(&c, "#log", "fourth 60").await;
    wait_js(&c, AT_END).await;
    std::fs::write(dir.path().join("go4"), b"").unwrap();
    assert_eq!(status(&s.wait_run(stream).await), "success");
    c.close().await.unwrap();
}

// --- Lists: /runs, /me, the dashboard ----------------------------------------------------------

/// For each visual row of the /runs filter form: the labels' tops, the fields' tops and the
/// fields' heights must agree (within a pixel). Answers the rows that do not, and how many
/// rows and fields it looked at.
const FILTER_ROWS: &str = r#"
var items = Array.prototype.map.call(document.querySelectorAll('form.filters > label'), function (l) {
  var f = l.querySelector('input, select');
  return { name: l.textContent.trim().split(/\s+/)[0], label: l.getBoundingClientRect(), field: f.getBoundingClientRect() };
});
var button = document.querySelector('form.filters > button').getBoundingClientRect();
var rows = [];
items.forEach(function (it) {
  var row = rows.find(function (r) { return it.label.top < r.bottom && it.label.bottom > r.top; });
  if (!row) { row = { top: it.label.top, bottom: it.label.bottom, items: [] }; rows.push(row); }
  row.top = Math.min(row.top, it.label.top); row.bottom = Math.max(row.bottom, it.label.bottom);
  row.items.push(it);
});
var bad = [];
rows.forEach(function (r) {
  var a = r.items[0];
  r.items.forEach(function (it) {
    if (Math.abs(it.label.top - a.label.top) > 1) bad.push(it.name + ' label top ' + it.label.top + ' vs ' + a.name + ' ' + a.label.top);
    if (Math.abs(it.field.top - a.field.top) > 1) bad.push(it.name + ' field top ' + it.field.top + ' vs ' + a.name + ' ' + a.field.top);
    if (Math.abs(it.field.height - a.field.height) > 1) bad.push(it.name + ' field height ' + it.field.height + ' vs ' + a.name + ' ' + a.field.height);
  });
  if (button.top < r.bottom && button.bottom > r.top && Math.abs(button.bottom - a.field.bottom) > 1)
    bad.push('the Filter button ends at ' + button.bottom + ', the fields at ' + a.field.bottom);
});
var q = document.querySelector('form.filters input[name=q]'), cs = getComputedStyle(q);
var ctx = document.createElement('canvas').getContext('2d');
ctx.font = cs.font;
var room = q.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
if (ctx.measureText(q.placeholder).width > room) bad.push('the search placeholder is cut: ' + ctx.measureText(q.placeholder).width + ' > ' + room);
return { bad: bad, rows: rows.length, fields: items.length };
"#;

async fn filter_row_lines_up(c: &Client, width: u32) {
    c.set_window_size(width, 900).await.unwrap();
    laid_out_at(c, width).await;
    let v = c.execute(FILTER_ROWS, vec![]).await.unwrap();
    assert!(v["fields"].as_u64().unwrap() >= 10, "{v}");
    assert_eq!(
        v["bad"],
        json!([]),
        "at {width} px ({} rows): {v}",
        v["rows"]
    );
}

#[tokio::test]
async fn filters_line_up_empty_token_lists_say_so_and_timed_tasks_show_their_last_run() {
    let s = Server::start(
        r#"
administrators: [root]
server: {local_workers: 2}
tasks:
  hello:
    authorized_users: [alice]
    command: echo hello
  every-second:
    authorized_users: [alice]
    period: 1s
    command: echo tick
  cron-second:
    authorized_users: [alice]
    schedule: "* * * * * *"
    command: echo tock
"#,
    );
    for u in ["root", "alice"] {
        add_user(&s, u, &format!("pw-{u}"));
    }
    let (_driver, c) = browser().await;
    login(&c, &s, "alice").await;

    // /runs: the filter row's labels and fields at one height, at desktop and phone widths.
    goto(&c, &format!("{}/runs", s.base)).await;
    filter_row_lines_up(&c, 1400).await;
    filter_row_lines_up(&c, 390).await;
    c.set_window_size(1280, 900).await.unwrap();
    shoot(&c, "more-runs-filters").await;

    // /me without tokens: a sentence, not a table of headers; with one, the table; revoked,
    // the sentence again.
    goto(&c, &format!("{}/me", s.base)).await;
    wait_text(&c, "#no-tokens", "No API tokens yet").await;
    assert_eq!(
        eval(&c, "!!document.querySelector('table.tokens')").await,
        false
    );
    shoot(&c, "more-me-no-tokens").await;
    click(&c, "#new-token-btn").await;
    wait_js(&c, "document.getElementById('new-token')").await;
    assert_eq!(
        eval(
            &c,
            "document.querySelectorAll('table.tokens tbody tr').length"
        )
        .await,
        1
    );
    assert_eq!(
        eval(&c, "!!document.getElementById('no-tokens')").await,
        false
    );
    click(&c, "table.tokens button.danger").await;
    wait_text(&c, "#no-tokens", "No API tokens yet").await;

    // The dashboard: each timed task shows when it last ran, linked to that run.
    for task in ["every-second", "cron-second"] {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let runs = s
                .get_ok(&format!("/runs?task={task}&trigger=schedule"))
                .await;
            if !runs["runs"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{task} never fired: {runs}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    goto(&c, &format!("{}/", s.base)).await;
    for task in ["every-second", "cron-second"] {
        // Read in one go: the dashboard redraws itself as runs come.
        let last = eval(
            &c,
            &format!(
                "(function () {{ var a = document.querySelector('tr[data-target={}] a.when');\
                   return a ? [a.getAttribute('href'), a.textContent.trim()] : null; }})()",
                json!(task)
            ),
        )
        .await;
        let href = last[0]
            .as_str()
            .unwrap_or_else(|| panic!("{task} shows no last run: {last}"));
        let id: i64 = href
            .strip_prefix("/runs/")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{task}'s last run links to {href}"));
        let run = s.run(id).await;
        assert_eq!(run["target"], task, "{run}");
        let queued = chrono::DateTime::parse_from_rfc3339(run["enqueued_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            last[1].as_str().unwrap(),
            queued.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            "{task}"
        );
        wait_text(&c, &format!("tr[data-target=\"{task}\"] .next-run"), "next").await;
    }
    assert!(
        text_now(&c, "tr[data-target=\"hello\"]")
            .await
            .contains("never ran")
    );
    shoot(&c, "more-dashboard-timed").await;
    c.close().await.unwrap();
}
