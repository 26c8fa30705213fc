//! `baton validate` reports every error with its exact place; `serve` refuses a bad config;
//! the py4CI fixture loads.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

/// (file, line, col, a piece of the message)
type Expect = (&'static str, usize, usize, &'static str);

fn bad_config_dir() -> (tempfile::TempDir, std::path::PathBuf, Vec<Expect>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let mut expect: Vec<Expect> = Vec::new();

    // Line numbers below are 1-based; columns count characters from 1.
    std::fs::write(
        dir.join("a.yaml"),
        "\
tasks:
  t1:
    command: echo hi
    colour: red
  t2:
    command: echo hi
    timeout: 5 parsecs
  t3:
    command: echo hi
    schedule: 61 * * * *
",
    )
    .unwrap();
    // line 4 `    colour: red`: the key starts at column 5
    expect.push(("a.yaml", 4, 5, "unknown key \"colour\""));
    // line 7 `    timeout: 5 parsecs`: the value starts after `    timeout: ` (13 chars)
    expect.push(("a.yaml", 7, 14, "invalid duration \"5 parsecs\""));
    // line 10 `    schedule: 61 * * * *`: the value starts after `    schedule: ` (14 chars)
    expect.push(("a.yaml", 10, 15, "invalid cron expression"));

    std::fs::write(
        dir.join("b.yaml"),
        "\
pipelines:
  p:
    tasks:
      x:
        script: [echo x]
        depends_on: [y]
      y:
        script: [echo y]
        depends_on: [x]
      z:
        script: [echo z]
        depends_on:
          - nope
",
    )
    .unwrap();
    // the cycle x -> y -> x is reported at the key of `x` (line 4, column 7)
    expect.push(("b.yaml", 4, 7, "dependency cycle: x -> y -> x"));
    // line 13 `          - nope`: the item starts at column 13
    expect.push((
        "b.yaml",
        13,
        13,
        "missing task \"nope\" referenced in depends_on",
    ));

    std::fs::write(
        dir.join("c.yaml"),
        "\
tasks:
  follow:
    command: echo f
    triggered_by:
      - task: ghost
",
    )
    .unwrap();
    // line 5 `      - task: ghost`: the value starts after `      - task: ` (14 chars)
    expect.push(("c.yaml", 5, 15, "unknown task \"ghost\" in triggered_by"));
    (tmp, dir, expect)
}

#[test]
fn validate_reports_every_error_at_its_place() {
    let (_tmp, dir, expect) = bad_config_dir();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate must exit 1; stderr:\n{stderr}"
    );

    let diag_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(dir.to_str().unwrap()))
        .collect();
    for (file, line, col, msg) in &expect {
        let prefix = format!("{}:{line}:{col}: ", dir.join(file).display());
        assert!(
            diag_lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(msg)),
            "expected a diagnostic `{prefix}...{msg}...`; got:\n{stderr}"
        );
    }
    assert_eq!(
        diag_lines.len(),
        expect.len(),
        "exactly one diagnostic per error expected; got:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} error(s)", expect.len())),
        "summary line missing:\n{stderr}"
    );
}

#[test]
fn serve_refuses_a_bad_config() {
    let (tmp, dir, _) = bad_config_dir();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&dir)
        .arg("--data")
        .arg(tmp.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve kept running with a bad config; stdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stdout.contains("ready"), "must not report ready: {stdout}");
    assert!(stderr.contains("refusing to start"), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{}:4:5: ", dir.join("a.yaml").display())),
        "serve must print the diagnostics too:\n{stderr}"
    );
}

#[test]
fn py4ci_fixture_validates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/configs/py4ci"
    );
    let out = Command::new(BIN)
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "py4CI fixture must validate; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

/// A bad duration names its key and lists the units that key takes: `start_delay` takes `ms`
/// too, py4CI's `timeout` does not.
#[test]
fn bad_duration_names_key_and_units() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pipelines.yml");
    std::fs::write(
        &file,
        "pipelines:\n  p:\n    start_delay: -1s\n    queue_limit: 1\n    tasks:\n      t:\n        script: [\"true\"]\n",
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let want = format!(
        "{}:3:18: start_delay: invalid duration \"-1s\": expected a positive number followed by ms, s, m, h, d or w",
        file.display()
    );
    assert!(
        stderr.lines().any(|l| l == want),
        "expected the line\n{want}\ngot:\n{stderr}"
    );

    let tasks = tmp.path().join("tasks.yaml");
    std::fs::write(&tasks, "tasks:\n  a:\n    command: x\n    timeout: 100ms\n").unwrap();
    let (code, stderr) = validate(&tasks);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let want = format!(
        "{}:4:14: timeout: invalid duration \"100ms\": expected a positive number followed by s, m, h, d or w",
        file.with_file_name("tasks.yaml").display()
    );
    assert!(
        stderr.lines().any(|l| l == want),
        "expected the line\n{want}\ngot:\n{stderr}"
    );
}

/// `validate` shows the offending line with a caret under the column, and suggests the key or
/// task that was probably meant.
#[test]
fn validate_shows_the_line_and_suggests_names() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.yaml");
    std::fs::write(
        &file,
        "pipelines:\n  p:\n    tasks:\n      build: {script: [\"true\"]}\n      test: {script: [\"true\"], depend_on: [build]}\n      pack: {script: [\"true\"], depends_on: [buld]}\n",
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1));
    let f = file.display();
    let expected = format!(
        "{f}:5:32: unknown key \"depend_on\" in task \"test\" of pipeline \"p\"; did you mean \"depends_on\"?\n"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains(
            "  |\n5 |       test: {script: [\"true\"], depend_on: [build]}\n  |                                ^\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing task \"buld\" referenced in depends_on of task \"pack\"; did you mean \"build\"?"),
        "{stderr}"
    );
}

/// `baton validate PATH`: its exit code and what it printed on stderr.
fn validate(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
