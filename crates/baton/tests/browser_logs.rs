//! The log viewer in a real browser (Chromium, see `common/chrome.rs`): collapsible sections
//! from GitHub's `::group::` and GitLab's `section_start`/`section_end` markers (drawn by the
//! server, and by the page for lines that arrive live), each line's arrival time behind the
//! Times toggle, stderr lines marked apart from stdout, the page's title and favicon following
//! the run, and the keyboard shortcuts (`?`, `/`, `t`, `j`/`k`, Enter, `r`). Screenshots of the
//! log page at 1400 and 390 px, light and dark, land in `target/screenshots/`.

#[path = "common/chrome.rs"]
mod chrome;
mod common;
#[path = "common/users.rs"]
mod users;

use std::time::{Duration, Instant};

use fantoccini::Client;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::json;

use chrome::login;
use chrome::*;
use common::*;
use users::*;

/// Presses the key `k` (a real key event through chromedriver, on the focused element).
async fn press(c: &Client, k: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: k })
        .then(KeyAction::Up { value: k });
    c.perform_actions(keys).await.expect("press a key");
}

/// The value of the script `js` (an expression) in the page.
async fn eval(c: &Client, js: &str) -> serde_json::Value {
    c.execute(&format!("return ({js})"), vec![]).await.unwrap()
}

/// Is the log line containing `text` shown (not folded away)?
fn shown(text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#log .line')).some(function (l) {{\
           return l.textContent.indexOf({t}) >= 0 && getComputedStyle(l).display !== 'none'; }})",
        t = json!(text)
    )
}

/// The header line of section `name`.
fn header(name: &str) -> String {
    format!(
        "document.querySelector('#log .line.sec-start[data-sec={}]')",
        json!(name)
    )
}

/// Checks what the page shows of the log the job printed before the gate.
async fn sections_before_the_gate(c: &Client) {
    // A GitHub group that ended is folded, as GitHub does; its header reads as its name.
    wait_js(
        c,
        &format!(
            "{h} && {h}.classList.contains('closed')",
            h = header("Install deps")
        ),
    )
    .await;
    assert_eq!(
        eval(
            c,
            &format!(
                "{}.textContent.indexOf('::group::')",
                header("Install deps")
            )
        )
        .await,
        json!(-1),
        "the header shows its name, not the marker"
    );
    assert_eq!(eval(c, &shown("installing")).await, json!(false));
    // GitLab's section: collapsed=true, its header text, its duration from its own times.
    let build = header("build");
    wait_js(c, &format!("{build}.classList.contains('closed')")).await;
    assert!(
        eval(c, &format!("{build}.textContent"))
            .await
            .as_str()
            .unwrap()
            .contains("Building the thing")
    );
    assert_eq!(
        eval(c, &format!("!!{build}.dataset.dur")).await,
        json!(true)
    );
    assert_eq!(eval(c, &shown("compiling")).await, json!(false));
    // Clicking a header unfolds it; the duration is drawn beside it.
    c.execute(&format!("{}.click()", header("Install deps")), vec![])
        .await
        .unwrap();
    wait_js(c, &shown("installing")).await;
    assert_eq!(
        eval(
            c,
            &format!("{}.getAttribute('aria-expanded')", header("Install deps"))
        )
        .await,
        json!("true")
    );
    // stderr is marked apart (the line is in the folded section: unfold it first).
    c.execute(&format!("{build}.click()"), vec![])
        .await
        .unwrap();
    wait_js(c, &shown("compiling")).await;
    wait_js(
        c,
        "Array.from(document.querySelectorAll('#log .line.err')).some(function (l) { return l.textContent.indexOf('oops on stderr') >= 0; })",
    )
    .await;
    assert_eq!(
        eval(
            c,
            "Array.from(document.querySelectorAll('#log .line.err')).some(function (l) { return l.textContent.indexOf('compiling') >= 0; })"
        )
        .await,
        json!(false),
        "stdout lines are not marked"
    );
    assert_eq!(
        eval(
            c,
            "getComputedStyle(document.querySelector('#log .line.err')).boxShadow !== 'none'"
        )
        .await,
        json!(true),
        "a stderr line is drawn apart"
    );
}

/// The Times toggle shows each line's arrival time, from the log's index.
async fn timestamps(c: &Client) {
    assert_eq!(
        eval(
            c,
            "document.querySelectorAll('#log .line:not([data-t])').length"
        )
        .await,
        json!(0),
        "every line has its arrival time"
    );
    assert_eq!(
        eval(
            c,
            "document.getElementById('log').classList.contains('show-ts')"
        )
        .await,
        json!(false)
    );
    click(c, "#log-times").await;
    wait_js(
        c,
        "document.getElementById('log').classList.contains('show-ts')",
    )
    .await;
    let label = eval(
        c,
        "getComputedStyle(document.querySelector('#log .line[data-t]'), '::before').content",
    )
    .await;
    let label = label
        .as_str()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    assert!(
        label.len() == 12 && label.as_bytes()[2] == b':' && label.as_bytes()[8] == b'.',
        "a line shows its time as HH:MM:SS.mmm: {label:?}"
    );
    click(c, "#log-times").await;
    wait_js(
        c,
        "!document.getElementById('log').classList.contains('show-ts')",
    )
    .await;
}

/// Waits until the page's URL names a run other than `not`; returns it.
async fn other_run(c: &Client, not: i64) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let id = run_id_from_url(c).await;
        if id != not {
            return id;
        }
        assert!(Instant::now() < deadline, "the page stayed on run {not}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_log_viewer_folds_sections_times_lines_marks_stderr_and_takes_shortcuts() {
    let gates = tempfile::tempdir().unwrap();
    let g = gates.path().join("go");
    let config = format!(
        r#"
administrators: [root]
tasks:
  sections:
    authorized_users: [alice]
    command: |
      echo '::group::Install deps'
      echo installing
      echo '::endgroup::'
      printf '\033[0Ksection_start:%s:build[collapsed=true]\r\033[0KBuilding the thing\n' "$(date +%s)"
      echo compiling
      echo 'oops on stderr' >&2
      printf '\033[0Ksection_end:%s:build\r\033[0K\n' "$(date +%s)"
      echo 'between sections'
      for i in $(seq 1200); do [ -e '{g}' ] && break; sleep 0.05; done; [ -e '{g}' ]
      echo '::group::Live group'
      echo 'live inside'
      echo 'live err' >&2
      echo '::endgroup::'
      echo 'after live'
"#,
        g = g.display()
    );
    let s = Server::start(&config);
    add_user(&s, "alice", "pw-alice");
    let id = id_of(&s.trigger("sections", &[]).await);
    // The index holds stderr's mark, through the API.
    let deadline = Instant::now() + WAIT;
    loop {
        let marks = s.get_ok(&format!("/runs/{id}/log/marks")).await;
        let streams: Vec<&str> = marks["marks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["stream"].as_str().unwrap())
            .collect();
        if streams.contains(&"stderr") && s.log_text(id, None).await.contains("between sections") {
            assert!(marks["marks"][0]["time_ms"].as_i64().unwrap() > 1_600_000_000_000);
            break;
        }
        assert!(Instant::now() < deadline, "no stderr mark: {marks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = s.get(&format!("/runs/{id}/log/marks?offset=x")).await;
    assert_eq!(code, 400);

    let (_driver, c) = browser().await;
    login(&c, &s, "alice").await;
    goto(&c, &format!("{}/runs/{id}", s.base)).await;
    wait_text(&c, "#log", "between sections").await;
    wait_change_feed(&c).await;
    // Title and favicon tell the run's state.
    assert!(c.title().await.unwrap().contains("running"));
    assert_eq!(
        eval(
            &c,
            "document.getElementById('favicon').getAttribute('href')"
        )
        .await,
        json!("/static/favicon/running.svg")
    );
    sections_before_the_gate(&c).await;
    timestamps(&c).await;

    // Lines arriving live: their section folds once it ends, stderr is marked, times are set.
    std::fs::write(&g, b"").unwrap();
    wait_text(&c, "#log", "after live").await;
    let live = header("Live group");
    wait_js(
        &c,
        &format!("{live} && {live}.classList.contains('closed') && !!{live}.dataset.dur"),
    )
    .await;
    assert_eq!(eval(&c, &shown("live inside")).await, json!(false));
    c.execute(&format!("{live}.click()"), vec![]).await.unwrap();
    wait_js(&c, &shown("live err")).await;
    wait_js(
        &c,
        "Array.from(document.querySelectorAll('#log .line.err[data-t]')).some(function (l) { return l.textContent.indexOf('live err') >= 0; })",
    )
    .await;
    s.wait_run(id).await;
    wait_js(&c, "document.title.indexOf('success') >= 0").await;
    wait_js(
        &c,
        "document.getElementById('favicon').getAttribute('href') === '/static/favicon/success.svg'",
    )
    .await;

    // Drawn by the server, the same.
    goto(&c, &format!("{}/runs/{id}", s.base)).await;
    wait_js(
        &c,
        &format!("{live} && {live}.classList.contains('closed')"),
    )
    .await;
    wait_js(
        &c,
        "Array.from(document.querySelectorAll('#log .line.err')).some(function (l) { return l.textContent.indexOf('live err') >= 0; })",
    )
    .await;

    // A #LN link to a line in a folded section opens the section.
    assert_eq!(eval(&c, &shown("live inside")).await, json!(false));
    c.execute(
        "location.hash = '#' + Array.from(document.querySelectorAll('#log .line')).find(function (l) { return l.textContent.indexOf('live inside') >= 0; }).id",
        vec![],
    )
    .await
    .unwrap();
    wait_js(&c, &shown("live inside")).await;
    c.execute(&format!("{live}.click()"), vec![]).await.unwrap();
    wait_js(&c, &format!("{live}.classList.contains('closed')")).await;

    // Keyboard: ? shows the help, Esc closes it, / goes to the search, t toggles times.
    press(&c, '?').await;
    wait_js(
        &c,
        "document.getElementById('kb-help') && !document.getElementById('kb-help').hidden",
    )
    .await;
    press(&c, Key::Escape.into()).await;
    wait_js(&c, "document.getElementById('kb-help').hidden").await;
    press(&c, '/').await;
    wait_js(&c, "document.activeElement.id === 'log-search'").await;
    press(&c, Key::Escape.into()).await;
    wait_js(&c, "document.activeElement.id !== 'log-search'").await;
    press(&c, 't').await;
    wait_js(
        &c,
        "document.getElementById('log').classList.contains('show-ts')",
    )
    .await;

    // Screenshots of the log page, sections open and times on.
    c.execute(&format!("{}.click()", header("build")), vec![])
        .await
        .unwrap();
    wait_js(&c, &shown("compiling")).await;
    shoot(&c, "log-sections").await;
    c.set_window_size(390, 844).await.unwrap();
    laid_out_at(&c, 390).await;
    let bad = overflowing(&c).await;
    assert!(bad.is_empty(), "the log page overflows a phone: {bad:?}");
    c.set_window_size(1280, 900).await.unwrap();

    // r reruns; on the list, j/k walk the rows and Enter opens one.
    press(&c, 'r').await;
    let rerun = other_run(&c, id).await;
    s.wait_run(rerun).await;
    goto(&c, &format!("{}/runs", s.base)).await;
    wait_js(
        &c,
        "document.querySelectorAll('main table tbody tr').length >= 2",
    )
    .await;
    wait_change_feed(&c).await;
    press(&c, 'j').await;
    press(&c, 'j').await;
    wait_js(
        &c,
        "document.querySelectorAll('main table tbody tr')[1].classList.contains('kb-sel')",
    )
    .await;
    press(&c, 'k').await;
    wait_js(
        &c,
        "document.querySelectorAll('main table tbody tr')[0].classList.contains('kb-sel')",
    )
    .await;
    assert_eq!(
        eval(&c, "document.querySelectorAll('.kb-sel').length").await,
        json!(1)
    );
    press(&c, Key::Enter.into()).await;
    let opened = run_id_from_url(&c).await;
    assert!(opened == rerun || opened == id, "Enter opened run {opened}");
    c.close().await.unwrap();
    drop(_driver);

    let (_driver, c) = dark_browser().await;
    login(&c, &s, "alice").await;
    goto(&c, &format!("{}/runs/{id}", s.base)).await;
    click(&c, "#log-times").await;
    c.execute(&format!("{}.click()", header("build")), vec![])
        .await
        .unwrap();
    wait_js(&c, &shown("compiling")).await;
    shoot(&c, "dark-log-sections").await;
    c.close().await.unwrap();
}
