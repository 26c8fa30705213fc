//! More of the CLI as a user meets it: every argument of every subcommand has help text (found
//! by walking the real binary's `--help` pages), the server's ready line's token hint works as
//! printed from another directory, commands that work on a data directory refuse a missing
//! one and name it, `show` writes times as `runs` does (local time; RFC 3339 with `--json`),
//! and the fish completion script names the subcommands and parses with `fish -n`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI with no server, data directory or database from the test's environment.
fn baton(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("BATON_DATA")
        .env_remove("BATON_DB")
        .env_remove("BATON_SERVER")
        .env_remove("BATON_TOKEN")
        .stdin(Stdio::null());
    c
}

// --- Help text for every argument ------------------------------------------------------------

/// One entry of a help page's section: its spec (`--data <DATA>`, `<JOB>`, `serve`) and the
/// text that describes it (annotations such as `[env: X]` and `[default: Y]` removed).
struct Entry {
    spec: String,
    help: String,
}

/// Drops clap's `[...]` annotations (default, env, possible values, aliases).
fn without_annotations(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in text.chars() {
        match ch {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The sections (`Commands`, `Arguments`, `Options`) of a clap help page, short (`-h`: help
/// on the entry's line) or long (`--help` when an argument has a long help: on the lines
/// below it, indented further).
fn sections(page: &str) -> Vec<(String, Vec<Entry>)> {
    let mut found: Vec<(String, Vec<Entry>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in page.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 && !t.is_empty() {
            current = match t.strip_suffix(':') {
                Some(name) if ["Commands", "Arguments", "Options"].contains(&name) => {
                    found.push((name.to_owned(), Vec::new()));
                    Some(found.len() - 1)
                }
                _ => None,
            };
            continue;
        }
        let Some(at) = current else { continue };
        let (section, entries) = &mut found[at];
        let is_entry = match section.as_str() {
            "Commands" => indent == 2,
            _ => indent <= 6 && t.starts_with(['-', '<', '[']),
        };
        if is_entry {
            let (spec, help) = t.split_once("  ").unwrap_or((t, ""));
            entries.push(Entry {
                spec: spec.trim().to_owned(),
                help: help.trim().to_owned(),
            });
        } else if indent >= 8
            && let Some(last) = entries.last_mut()
        {
            last.help.push(' ');
            last.help.push_str(t);
        }
    }
    found
}

/// `baton PATH... --help`.
fn help_page(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let o = baton(&args).output().unwrap();
    assert!(o.status.success(), "baton {args:?}: {}", err(&o));
    out(&o)
}

#[test]
fn every_argument_of_every_subcommand_has_help() {
    let mut missing = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    let mut pages = 0;
    let mut options = 0;
    while let Some(path) = todo.pop() {
        let page = help_page(&path);
        pages += 1;
        let shown = if path.is_empty() {
            "baton".to_owned()
        } else {
            format!("baton {}", path.join(" "))
        };
        for (section, entries) in sections(&page) {
            for e in entries {
                if section == "Commands" {
                    if e.spec == "help" {
                        continue;
                    }
                    let mut sub = path.clone();
                    sub.push(e.spec.clone());
                    todo.push(sub);
                } else {
                    options += 1;
                }
                if without_annotations(&e.help).is_empty() {
                    missing.push(format!("{shown}: {section}: {} has no help", e.spec));
                }
            }
        }
    }
    // The walk really read the tree: the top level, its subcommands, theirs.
    assert!(pages > 30, "only {pages} help pages read");
    assert!(options > 100, "only {options} arguments read");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_help_walker_sees_a_missing_help() {
    // The parser must find an entry without help in both of clap's layouts, or the walk above
    // passes on nothing.
    let short = "Usage: x\n\nArguments:\n  <JOB>  \n\nOptions:\n      --server <SERVER>  The URL [env: S=]\n      --bare <B>  [default: 1]\n  -h, --help  Print help\n";
    let s = sections(short);
    let bare: Vec<&str> = s
        .iter()
        .flat_map(|(_, es)| es)
        .filter(|e| without_annotations(&e.help).is_empty())
        .map(|e| e.spec.as_str())
        .collect();
    assert_eq!(bare, ["<JOB>", "--bare <B>"]);
    let long = "Options:\n      --data <DATA>\n          The data\n\n          [env: D=]\n\n      --none <N>\n\n          [default: x]\n\n  -h, --help\n          Print help\n";
    let s = sections(long);
    let bare: Vec<&str> = s
        .iter()
        .flat_map(|(_, es)| es)
        .filter(|e| without_annotations(&e.help).is_empty())
        .map(|e| e.spec.as_str())
        .collect();
    assert_eq!(bare, ["--none <N>"]);
}

// --- The data directory ------------------------------------------------------------------------

/// A `baton serve` started by the test in a directory of its own; killed when dropped.
struct Serve {
    child: Child,
    ready: String,
    data: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Nothing runs under the data directory (no job ran); make sure of it.
        for pid in processes_under(&self.data) {
            // SAFETY: a plain signal to a pid found under the test's own data directory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Starts `baton serve --data data` (a relative path) in `cwd` and waits for its ready line.
fn serve_in(cwd: &Path, config: &Path) -> Serve {
    let mut child = baton(&["serve", "--data", "data", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baton serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut s = Serve {
        child,
        ready: String::new(),
        data: cwd.join("data"),
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("baton ready on http://") => {
                s.ready = line;
                return s;
            }
            Ok(_) => {}
            Err(e) => panic!("baton serve printed no ready line ({e})"),
        }
    }
}

#[tokio::test]
async fn the_ready_lines_token_hint_works_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (here, elsewhere) = (root.join("here"), root.join("elsewhere"));
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let config = root.join("baton.yaml");
    std::fs::write(&config, "tasks:\n  hello: {command: echo hello}\n").unwrap();
    let server = serve_in(&here, &config);

    // The hint names the data directory absolutely, whatever `--data` was given as.
    let line = &server.ready;
    let hint = line
        .split_once("get a token: ")
        .and_then(|(_, h)| h.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no token hint in the ready line {line:?}"));
    let want = format!("baton token create --data {}", here.join("data").display());
    assert_eq!(hint, want, "{line}");

    // Run as printed, from another directory: a token that the server takes.
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "baton");
    let o = baton(&words[1..]).current_dir(&elsewhere).output().unwrap();
    assert!(o.status.success(), "{hint} from elsewhere: {}", err(&o));
    let token = out(&o).trim().to_owned();
    assert!(token.starts_with("baton_"), "{token:?}");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "the hint created something in the directory it ran in"
    );
    let base = line["baton ready on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let st = reqwest::Client::new()
        .get(format!("{base}/api/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 200, "the hint's token is refused");

    // Without --data, from a directory with no ./baton-data: refused, naming where it looked.
    let o = baton(&["token", "create"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let looked = elsewhere.join("baton-data");
    assert!(
        err(&o).contains(&format!("no Baton data directory at {}", looked.display())),
        "{}",
        err(&o)
    );
    assert!(!looked.exists(), "token create made {}", looked.display());
}

#[test]
fn every_data_dir_command_refuses_a_missing_data_dir_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let m = missing.to_str().unwrap();
    let config = tmp.path().join("baton.yaml");
    std::fs::write(&config, "tasks:\n  hello: {command: echo hello}\n").unwrap();
    let backup = tmp.path().join("backup");
    let commands: Vec<Vec<&str>> = vec![
        vec!["user", "add", "ann", "--password-stdin"],
        vec!["user", "remove", "ann"],
        vec!["token", "revoke", "1"],
        vec!["migrate", "--dry-run"],
        vec!["backup", backup.to_str().unwrap()],
        vec!["prune", "--dry-run", "--config", config.to_str().unwrap()],
    ];
    for args in commands {
        let mut child = baton(&args)
            .args(["--data", m])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A password for `user add`, which must not get as far as reading it.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(b"a-password-long-enough\n");
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success(), "{args:?} succeeded on {m}");
        let e = err(&o);
        assert!(
            e.contains(&format!("no Baton data directory at {m}")),
            "{args:?}: {e}"
        );
        assert!(!missing.exists(), "{args:?} created {m}");
        assert!(!backup.exists(), "{args:?} made a backup of nothing");
    }
}

// --- Times in `show` and `runs` ------------------------------------------------------------------

/// The cells of a table row (columns are two or more spaces apart; a cell has single spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS`.
fn is_local_time(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

#[tokio::test]
async fn show_writes_times_as_runs_does() {
    let s = Server::start("tasks:\n  hello: {command: echo hello}\n");
    let id = id_of(&s.trigger("hello", &[]).await);
    let run = s.wait_run(id).await;
    // India: +05:30 all year, so local time differs from UTC by a visible, fixed offset.
    let cli = |args: &[&str]| {
        let o = baton(args)
            .env("BATON_SERVER", &s.base)
            .env("BATON_TOKEN", &s.token)
            .env("TZ", "Asia/Kolkata")
            .output()
            .unwrap();
        assert!(o.status.success(), "baton {args:?}: {}", err(&o));
        out(&o)
    };
    let local = |field: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{field} of {run}: {e}"));
        t.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };

    let runs = cli(&["runs"]);
    let header = cells(runs.lines().next().unwrap());
    let col = header.iter().position(|h| h == "QUEUED").unwrap();
    let row = runs
        .lines()
        .map(cells)
        .find(|c| c[0] == id.to_string())
        .unwrap_or_else(|| panic!("run {id} not listed:\n{runs}"));
    let queued_in_runs = row[col].clone();
    assert_eq!(queued_in_runs, local("enqueued_at"), "{runs}");

    let shown = cli(&["show", &id.to_string()]);
    let field = |name: &str| {
        shown
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name}: in\n{shown}"))
    };
    assert_eq!(field("queued"), queued_in_runs, "{shown}");
    assert_eq!(field("started"), local("started_at"), "{shown}");
    assert_eq!(field("ended"), local("ended_at"), "{shown}");
    for name in ["queued", "started", "ended"] {
        assert!(is_local_time(&field(name)), "{name}: {shown}");
    }

    // --json keeps RFC 3339, the same instants in both commands.
    let shown: serde_json::Value = serde_json::from_str(&cli(&["show", &id.to_string(), "--json"]))
        .expect("show --json is JSON");
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["runs", "--json"])).expect("runs --json is JSON");
    let listed = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("run {id} not in runs --json"));
    for f in ["enqueued_at", "started_at", "ended_at"] {
        let v = shown[f].as_str().unwrap_or_else(|| panic!("{f}: {shown}"));
        assert!(chrono::DateTime::parse_from_rfc3339(v).is_ok(), "{f}: {v}");
        assert_eq!(shown[f], run[f], "{f}");
    }
    assert_eq!(listed["enqueued_at"], shown["enqueued_at"]);
}

// --- Completions -------------------------------------------------------------------------------

/// The top level's subcommands, from `baton --help`.
fn subcommands() -> Vec<String> {
    sections(&help_page(&[]))
        .into_iter()
        .filter(|(s, _)| s == "Commands")
        .flat_map(|(_, es)| es)
        .map(|e| e.spec)
        .filter(|n| n != "help")
        .collect()
}

#[test]
fn fish_completions_name_every_subcommand_and_parse() {
    let o = baton(&["completions", "fish"]).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let script = out(&o);
    let subs = subcommands();
    assert!(subs.len() > 20, "{subs:?}");
    for sub in &subs {
        let offered = format!("-a \"{sub}\"");
        assert!(
            script.contains(&offered),
            "the fish script does not offer {sub} ({offered})"
        );
    }
    assert!(script.contains("complete -c baton"), "{script}");
    // fish itself reads it without a syntax error.
    let fish = ["/usr/bin/fish", "/bin/fish"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("`fish` not found: this test needs Debian's fish (hint: apt-get install fish, or run scripts/test.sh)");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("baton.fish");
    std::fs::write(&file, &script).unwrap();
    let o = Command::new(fish).arg("-n").arg(&file).output().unwrap();
    assert!(o.status.success(), "fish -n: {}", err(&o));
    // And a broken script does fail `fish -n` (the check is not a no-op).
    std::fs::write(&file, "function broken\n").unwrap();
    let o = Command::new(fish).arg("-n").arg(&file).output().unwrap();
    assert!(!o.status.success(), "fish -n passed an unclosed function");
}

#[test]
fn completions_and_man_page_into_a_closed_pipe_do_not_panic() {
    // `baton completions fish | head -1`: the reader goes away before the script is written.
    for args in [["completions", "fish"].as_slice(), &["man"]] {
        let mut child = baton(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let e = err(&o);
        assert!(!e.contains("panicked"), "baton {args:?} panicked: {e}");
        assert!(o.status.code().is_some(), "{args:?}: {:?}", o.status);
    }
}
