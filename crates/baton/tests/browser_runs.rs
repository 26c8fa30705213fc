//! Real-browser tests (headless Chromium, `common/browser.rs`) of the actions and pages around
//! runs: a typed argument form (a select for choices, the default chosen, the description as
//! help), "Rerun failed" on a pipeline page (the successes carried over), "Rerun with other
//! arguments" prefilled with the run's, the jobs' timing bars, a target's own page, tags and a
//! pipeline disabled from the dashboard, and /me with its sessions and password form. Every
//! page touched fits a 390 px phone; screenshots at 1400 and 390 px, light and dark, land in
//! `target/screenshots/`.

#[path = "common/chrome.rs"]
mod chrome;
mod common;
#[path = "common/users.rs"]
mod users;

use fantoccini::{Client, Locator};
use serde_json::json;

use chrome::login;
use chrome::*;
use common::*;
use users::*;

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
administrators: [root]
tasks:
  deploy:
    description: ships a version
    authorized_users: [alice]
    tags: [release, prod]
    args:
      version: {{description: the version to ship, required: true}}
      env: {{description: where to ship it, default: staging, choices: [staging, prod]}}
    command: echo "deploying $version to $env"
  nightly:
    description: every night
    authorized_users: [alice]
    tags: [release]
    period: 1d
    command: echo nightly
pipelines:
  ci:
    description: build, test and package
    authorized_users: [alice]
    tags: [ci]
    continue_running_tasks_after_failure: true
    tasks:
      build: {{script: ["echo built >> '{dir}/build-count'", "echo art > \"$BATON_OUTPUT_DIR/build.txt\""]}}
      docs: {{script: ["echo docs"]}}
      test: {{script: ["echo testing", "test -e '{dir}/fixed'"], depends_on: [build]}}
      package: {{script: ["echo package"], depends_on: [test]}}
"#,
        dir = dir.display()
    )
}

/// Asserts the current page fits a 390 px phone, then goes back to the desktop size.
async fn fits_phone(c: &Client, what: &str) {
    c.set_window_size(390, 844).await.unwrap();
    laid_out_at(c, 390).await;
    let bad = overflowing(c).await;
    assert!(bad.is_empty(), "{what} overflows a 390 px phone: {bad:?}");
    c.set_window_size(1280, 900).await.unwrap();
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

#[tokio::test]
async fn typed_arguments_rerun_failed_and_the_target_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&config(dir.path()));
    for u in ["root", "alice"] {
        add_user(&s, u, &format!("pw-{u}"));
    }
    let (_driver, c) = browser().await;
    login(&c, &s, "alice").await;

    // The trigger form: a select with the default chosen, a required text field, help text.
    goto(&c, &format!("{}/trigger/task/deploy", s.base)).await;
    let env = c
        .find(Locator::Css("select#arg-env"))
        .await
        .expect("choices are a select");
    assert_eq!(env.prop("value").await.unwrap().as_deref(), Some("staging"));
    assert_eq!(count(&c, "select#arg-env option").await, 2);
    wait_text(&c, "form.trigger", "the version to ship").await;
    assert_eq!(count(&c, "#extra").await, 0, "declared: no free-form box");
    fits_phone(&c, "the trigger form").await;
    // The browser refuses an empty required field; filled, the run gets both values.
    c.find(Locator::Css("#arg-version"))
        .await
        .unwrap()
        .send_keys("2.0")
        .await
        .unwrap();
    c.execute("document.getElementById('arg-env').value = 'prod'", vec![])
        .await
        .unwrap();
    click(&c, "#go").await;
    let deploy = run_id_from_url(&c).await;
    let run = s.wait_run(deploy).await;
    assert_eq!(
        run["args"],
        json!({"version": "2.0", "env": "prod"}),
        "{run}"
    );

    // Rerun with other arguments: the form comes prefilled with the run's.
    goto(&c, &format!("{}/runs/{deploy}", s.base)).await;
    click(&c, "#rerun-args").await;
    wait_js(&c, "location.pathname.startsWith('/trigger/')").await;
    wait_text(&c, "h1", "Rerun").await;
    wait_text(&c, "h1", &format!("#{deploy}")).await;
    let version = c.find(Locator::Css("#arg-version")).await.unwrap();
    assert_eq!(version.prop("value").await.unwrap().as_deref(), Some("2.0"));
    let env = c.find(Locator::Css("#arg-env")).await.unwrap();
    assert_eq!(env.prop("value").await.unwrap().as_deref(), Some("prod"));
    version.clear().await.unwrap();
    version.send_keys("2.1").await.unwrap();
    click(&c, "#go").await;
    let again = run_id_from_url(&c).await;
    let run = s.wait_run(again).await;
    assert_eq!(
        run["args"],
        json!({"version": "2.1", "env": "prod"}),
        "{run}"
    );
    assert_eq!(run["ancestors"], json!([deploy]));

    // A pipeline whose test fails: its page shows timing bars and offers "Rerun failed".
    let first = id_of(&s.trigger_pipeline("ci", &[]).await);
    assert_eq!(status(&s.wait_run(first).await), "failed");
    goto(&c, &format!("{}/runs/{first}", s.base)).await;
    assert_eq!(count(&c, "#gantt .gantt-row").await, 4, "one bar per job");
    assert_eq!(
        count(&c, "#gantt .gantt-row[data-job=\"build\"] rect.ran").await,
        1
    );
    assert_eq!(
        count(&c, "#gantt .gantt-row[data-job=\"package\"] rect.ran").await,
        0,
        "a job that never ran has no run bar"
    );
    shoot(&c, "runs-pipeline-failed").await;
    fits_phone(&c, "a failed pipeline's page").await;
    std::fs::write(dir.path().join("fixed"), b"").unwrap();
    click(&c, "#rerun-failed").await;
    wait_js(&c, &format!("location.pathname != '/runs/{first}'")).await;
    let second = run_id_from_url(&c).await;
    assert_ne!(second, first);
    wait_text(&c, "#status", "success").await;
    wait_text(&c, ".carried", "build: carried over").await;
    assert_eq!(count(&c, ".carried-job").await, 2, "build and docs carried");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build-count"))
            .unwrap()
            .lines()
            .count(),
        1,
        "build did not run again"
    );
    assert_eq!(count(&c, "#rerun-failed").await, 0, "nothing failed now");
    wait_text(&c, "#ran", "of the last").await;
    shoot(&c, "runs-pipeline").await;
    fits_phone(&c, "a pipeline page").await;
    c.execute("document.getElementById('gantt').scrollIntoView()", vec![])
        .await
        .unwrap();
    shoot(&c, "runs-pipeline-timing").await;

    // A target's own page: its runs, trend, definition and trigger button; names link there.
    goto(&c, &format!("{}/", s.base)).await;
    click(&c, "tr[data-target=\"ci\"] a.target-link").await;
    wait_text(&c, "h1", "ci").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/targets/pipeline/ci")
    );
    assert_eq!(count(&c, "#trend rect.bar").await, 2);
    wait_text(&c, "#rate", "50%").await;
    wait_text(&c, "#definition", "depends_on: [build]").await;
    shoot(&c, "runs-target").await;
    fits_phone(&c, "a target's page").await;
    goto(&c, &format!("{}/targets/task/nightly", s.base)).await;
    wait_text(&c, "#timer", "every").await;
    wait_text(&c, "#next-run", "UTC").await;

    // The dashboard: tags shown and filterable; the next run of a timed task.
    goto(&c, &format!("{}/", s.base)).await;
    wait_text(&c, "tr[data-target=\"nightly\"] .next-run", "next").await;
    click(&c, "#tag-filter a.tag").await; // "ci", the first tag
    wait_text(&c, "main", "ci").await;
    assert_eq!(count(&c, "tr[data-target]").await, 1, "filtered by tag");
    goto(&c, &format!("{}/?tag=release", s.base)).await;
    assert_eq!(count(&c, "tr[data-target]").await, 2);
    goto(&c, &format!("{}/", s.base)).await;
    shoot(&c, "runs-dashboard").await;
    fits_phone(&c, "the dashboard").await;

    // /me: this browser's session is listed, with the password form.
    goto(&c, &format!("{}/me", s.base)).await;
    wait_text(&c, "#this-session", "this browser").await;
    assert_eq!(count(&c, "#password-form input[type=password]").await, 3);
    shoot(&c, "runs-me").await;
    fits_phone(&c, "/me").await;
    c.close().await.unwrap();
    drop(_driver);

    // An administrator disables a pipeline from the dashboard: it cannot be triggered.
    let (_driver, c) = browser().await;
    login(&c, &s, "root").await;
    goto(&c, &format!("{}/", s.base)).await;
    click(&c, "tr[data-target=\"ci\"] button.toggle").await;
    wait_text(&c, "tr[data-target=\"ci\"]", "disabled").await;
    let (st, v) = s.post("/pipelines/ci/trigger", json!({})).await;
    assert_eq!(st, 409, "{v}");
    click(&c, "tr[data-target=\"ci\"] button.toggle").await;
    wait_text(&c, "tr[data-target=\"ci\"] button.toggle", "Disable").await;
    c.close().await.unwrap();
    drop(_driver);

    // The same pages in the dark theme.
    let (_driver, c) = dark_browser().await;
    login(&c, &s, "alice").await;
    for (name, path) in [
        ("dashboard", "/".to_owned()),
        ("pipeline", format!("/runs/{second}")),
        ("target", "/targets/pipeline/ci".to_owned()),
        ("me", "/me".to_owned()),
    ] {
        goto(&c, &format!("{}{path}", s.base)).await;
        shoot(&c, &format!("dark-runs-{name}")).await;
    }
    c.close().await.unwrap();
}
