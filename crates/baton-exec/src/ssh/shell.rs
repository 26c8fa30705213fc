//! The shell text the server sends to a worker. The scripts are `.sh` files next to this one
//! (checked by shellcheck); a script's inputs travel in a prelude of `NAME='value'` lines, every
//! value single-quoted by [`shell_quote`] (or base64 for content with a NUL byte), so that no
//! value is ever shell syntax on the worker.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::job::JobSpec;

/// The runner, uploaded as `run.sh` (see the file for what it does).
pub(super) const RUNNER: &str = include_str!("runner.sh");
const PREPARE: &str = include_str!("prepare.sh");
const LAUNCH: &str = include_str!("launch.sh");
const FOLLOW: &str = include_str!("follow.sh");
const FINISH: &str = include_str!("finish.sh");
const PROBE: &str = include_str!("probe.sh");

/// `'…'` quoting for POSIX shells: safe for any value without NUL.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `script` behind a prelude that sets its inputs: one `NAME='value'` line per input, each value
/// quoted by [`shell_quote`]. Names are fixed identifiers of this module, never values.
fn with_inputs(inputs: &[(&str, &str)], script: &str) -> String {
    let mut out = String::new();
    for (name, value) in inputs {
        debug_assert!(valid_env_name(name), "{name:?} is not a shell name");
        out.push_str(&format!("{name}={}\n", shell_quote(value)));
    }
    out.push_str(script);
    out
}

pub(super) fn valid_env_name(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// The job's environment as a file bash sources: `export NAME='value'` lines, every value
/// quoted by [`shell_quote`]. Names must be valid shell names.
pub(super) fn env_file(spec: &JobSpec) -> Result<String, String> {
    let fixed = [
        ("BATON_RUN_ID".to_string(), spec.run_id.to_string()),
        ("BATON_JOB_ID".to_string(), spec.job_id.to_string()),
        ("BATON_TASK".to_string(), spec.task.clone()),
    ];
    export_lines(spec.env.iter().chain(fixed.iter()))
}

/// `export K='v'` lines of the job's secrets, for `secrets.sh` on the worker: created 0600
/// (the upload runs under `umask 077`), sourced by the runner and kept until the folder is
/// removed, so that a server re-attaching after a restart can read the values back to mask
/// them ([`parse_secrets`]): a job's minted forge token is in no store the server keeps.
pub(super) fn secrets_file(spec: &JobSpec) -> Result<String, String> {
    export_lines(spec.secrets.env.iter())
}

/// The values of a `secrets.sh` written by [`secrets_file`] (`export K='v'` lines, each value
/// quoted by [`shell_quote`]); lines of any other shape are skipped.
pub(super) fn parse_secrets(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(after) = rest
            .strip_prefix("export ")
            .and_then(|r| r.split_once('='))
            .filter(|(k, _)| valid_env_name(k))
            .map(|(_, v)| v)
        else {
            // Not ours: skip the line.
            rest = rest.split_once('\n').map_or("", |(_, r)| r);
            continue;
        };
        // `'…'` pieces joined by `\'`: a quote inside the value is written `'\''`.
        let mut value = String::new();
        let mut r = after;
        let parsed = loop {
            let Some(body) = r.strip_prefix('\'') else {
                break None;
            };
            let Some((piece, tail)) = body.split_once('\'') else {
                break None;
            };
            value.push_str(piece);
            match tail.strip_prefix("\\'") {
                Some(more) => {
                    value.push('\'');
                    r = more;
                }
                None => break Some(tail),
            }
        };
        match parsed {
            Some(tail) if tail.is_empty() || tail.starts_with('\n') => {
                values.push(value);
                rest = tail.strip_prefix('\n').unwrap_or(tail);
            }
            _ => rest = after.split_once('\n').map_or("", |(_, r)| r),
        }
    }
    values
}

fn export_lines<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> Result<String, String> {
    let mut out = String::new();
    for (k, v) in pairs {
        if !valid_env_name(k) {
            return Err(format!(
                "environment variable name {k:?} cannot be set by a shell on an SSH worker"
            ));
        }
        if v.contains('\0') {
            return Err(format!(
                "environment variable {k} contains a NUL byte, which no environment can carry"
            ));
        }
        out.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    Ok(out)
}

/// Bash that writes `content` to the file `name` (a fixed name, never a value) in the current
/// folder: one `printf` builtin of the content single-quoted by [`shell_quote`], or, for content
/// with a NUL byte (which no shell word can hold), a base64 here-document.
pub(super) fn put_file(name: &str, content: &str) -> String {
    if content.contains('\0') {
        format!(
            "base64 -d > {name} <<'BATON_B64'\n{}\nBATON_B64\n",
            STANDARD.encode(content.as_bytes())
        )
    } else {
        format!("printf '%s' {} > {name}\n", shell_quote(content))
    }
}

/// `(host, port, host[:port] as written, path)` of an `http://` URL that bash's
/// `/dev/tcp/HOST/PORT` can reach and an HTTP request line can carry as it is; `None` for
/// anything else (https, user info, odd characters), which the runner leaves to curl.
pub(super) fn plain_http(url: &str) -> Option<(String, u16, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    // `host`, `host:port`, `[v6]`, `[v6]:port`: the port part is "" or ":port".
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?,
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port = match port {
        "" => 80,
        p => p.strip_prefix(':')?.parse().ok()?,
    };
    let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
    let path_ok = |c: char| c.is_ascii_graphic() && !"?#%\\\"'`$".contains(c);
    if host.is_empty() || !host.chars().all(host_ok) || !path.chars().all(path_ok) || port == 0 {
        return None;
    }
    Some((
        host.to_string(),
        port,
        authority.to_string(),
        path.to_string(),
    ))
}

/// The runner's arguments: the timeout in 0.2 s ticks (0 = none) and the kill grace in seconds.
fn runner_args(spec: &JobSpec) -> (String, String) {
    let limit = spec
        .timeout
        .map_or(0, |t| t.as_millis().div_ceil(200).max(1) as u64);
    (
        limit.to_string(),
        format!("{:.3}", spec.kill_grace.as_secs_f64()),
    )
}

/// The start session's script (for `bash -s`): make the job folder `remote_dir`, write `files`
/// into it, start the runner under dtach, say `started`, then follow the log from byte `done`.
pub(super) fn start_script(
    remote_dir: &str,
    spec: &JobSpec,
    files: &[(&str, String)],
    done: u64,
) -> String {
    let (limit, grace) = runner_args(spec);
    let mut s = with_inputs(
        &[("D", remote_dir), ("LIMIT", &limit), ("GRACE", &grace)],
        PREPARE,
    );
    for (name, content) in files {
        s.push_str(&put_file(name, content));
    }
    s.push_str(LAUNCH);
    // The same session then follows the log; prepare.sh made `D` absolute.
    let from = (done + 1).to_string();
    s.push_str(&with_inputs(&[("FROM", &from)], FOLLOW));
    s
}

/// The log follower (for `bash -s`, see `follow.sh`) from byte `done` (0-based).
pub(super) fn follow_script(remote_dir: &str, done: u64) -> String {
    let from = (done + 1).to_string();
    with_inputs(&[("D", remote_dir), ("FROM", &from)], FOLLOW)
}

/// The finishing script (for `bash -s`, see `finish.sh`).
pub(super) fn finish_script(remote_dir: &str) -> String {
    with_inputs(&[("D", remote_dir)], FINISH)
}

/// The probe (for `bash -s`, see `probe.sh`).
pub(super) fn probe_script(remote_dir: &str) -> String {
    with_inputs(&[("D", remote_dir)], PROBE)
}

/// A command line that asks the runner to cancel (it sees the file `cancel`).
pub(super) fn cancel_command(remote_dir: &str) -> String {
    format!(
        "cd {} 2>/dev/null && : > cancel; true",
        shell_quote(remote_dir)
    )
}

/// A command line that prints the job's `secrets.sh`, if it has one.
pub(super) fn secrets_command(remote_dir: &str) -> String {
    format!(
        "cd {} 2>/dev/null || exit 0; if [ -e secrets.sh ]; then cat secrets.sh; fi",
        shell_quote(remote_dir)
    )
}

/// A command line that removes the job folder.
pub(super) fn remove_command(remote_dir: &str) -> String {
    format!("rm -rf -- {}", shell_quote(remote_dir))
}

/// A command line that prints the job's log from byte `done` (0-based).
pub(super) fn log_from_command(remote_dir: &str, done: u64) -> String {
    format!(
        "cd {} && tail -c +{} log",
        shell_quote(remote_dir),
        done + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Stdio;
    use std::time::Duration;

    #[test]
    fn uploaded_files_arrive_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let evil = "a'b\"c $(touch pwned) `touch pwned` ; \\ $HOME * '' \\'\n\tend\r\n\u{e9}";
        for (name, content) in [("one", evil), ("two", "with\0nul'")] {
            let mut child = std::process::Command::new("bash")
                .arg("-s")
                .current_dir(tmp.path())
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let script = put_file(name, content);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            assert_eq!(
                std::fs::read(tmp.path().join(name)).unwrap(),
                content.as_bytes()
            );
        }
        assert!(!tmp.path().join("pwned").exists());
    }

    #[test]
    fn script_inputs_reach_the_script_as_values_never_as_syntax() {
        let tmp = tempfile::tempdir().unwrap();
        let evil = "x'; touch pwned; echo '$(touch pwned2)`touch pwned3`";
        let script = with_inputs(
            &[("D", evil), ("N", "2")],
            "#!/usr/bin/env bash\nprintf '%s|%s' \"$D\" \"$N\"\n",
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{evil}|2"));
        for f in ["pwned", "pwned2", "pwned3"] {
            assert!(!tmp.path().join(f).exists(), "{f}");
        }
    }

    #[test]
    fn every_script_starts_with_a_shebang_for_shellcheck() {
        for s in [RUNNER, PREPARE, LAUNCH, FOLLOW, FINISH, PROBE] {
            assert!(s.starts_with("#!/usr/bin/env bash\n"), "{s}");
        }
    }

    #[test]
    fn the_runner_gets_its_timeout_in_ticks_and_its_grace_in_seconds() {
        let mut spec = spec();
        assert_eq!(runner_args(&spec), ("0".into(), "1.000".into()));
        spec.timeout = Some(Duration::from_millis(1001));
        spec.kill_grace = Duration::from_millis(2500);
        assert_eq!(runner_args(&spec), ("6".into(), "2.500".into()));
    }

    #[test]
    fn plain_http_callbacks_are_split_for_dev_tcp() {
        let p = plain_http;
        assert_eq!(
            p("http://10.0.0.1:8700/api/v1/callbacks/jobs/7"),
            Some((
                "10.0.0.1".into(),
                8700,
                "10.0.0.1:8700".into(),
                "/api/v1/callbacks/jobs/7".into()
            ))
        );
        assert_eq!(
            p("http://ci.example/baton/api/v1/callbacks/jobs/7").map(|x| (x.0, x.1)),
            Some(("ci.example".into(), 80))
        );
        assert_eq!(
            p("http://[fd00::1]:8700/x").map(|x| (x.0, x.1, x.2)),
            Some(("fd00::1".into(), 8700, "[fd00::1]:8700".into()))
        );
        for no in [
            "https://h/x",
            "http://u@h/x",
            "http://h:0/x",
            "http://h:99999/x",
            "http://h/x?y",
            "http://h$(id)/x",
            "http:///x",
        ] {
            assert_eq!(p(no), None, "{no}");
        }
    }

    fn spec() -> JobSpec {
        JobSpec {
            run_id: 1,
            job_id: 2,
            task: "t".into(),
            script: String::new(),
            env: vec![],
            timeout: None,
            kill_grace: Duration::from_secs(1),
            secrets: Default::default(),
            container: None,
            checkout: None,
            unset_env: Vec::new(),
            artifacts: Vec::new(),
            artifacts_required: false,
            ephemeral: false,
        }
    }

    #[test]
    fn secret_values_are_read_back_as_written() {
        let evil = "a'b $(id) `x` \"q\"\nline two '' \\'";
        let spec = JobSpec {
            secrets: crate::job::JobSecrets {
                env: vec![
                    ("BATON_FORGE_TOKEN".into(), "tok-1234".into()),
                    ("EVIL".into(), evil.into()),
                    ("EMPTY".into(), String::new()),
                    ("Q".into(), "'".into()),
                ],
                mask: Vec::new(),
            },
            ..spec()
        };
        let file = secrets_file(&spec).unwrap();
        assert_eq!(parse_secrets(&file), ["tok-1234", evil, "", "'"]);
        // What bash makes of the file is what was read back.
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("{file}printf '%s' \"$EVIL\"")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), evil);
        // Lines of another shape are skipped, the rest still read.
        let odd = format!("garbage\nexport BAD-NAME='x'\nexport T='unterminated\n{file}");
        assert_eq!(parse_secrets(&odd), ["tok-1234", evil, "", "'"]);
    }

    #[test]
    fn env_values_are_quoted_never_syntax() {
        let spec = JobSpec {
            env: vec![("x".into(), "a'b $(rm -rf /) `id` \"q\"\nnl".into())],
            ..spec()
        };
        let f = env_file(&spec).unwrap();
        assert!(f.starts_with("export x='a'\\''b $(rm -rf /) `id` \"q\"\nnl'\n"));
        let bad = JobSpec {
            env: vec![("a-b".into(), "v".into())],
            ..spec
        };
        assert!(env_file(&bad).is_err());
    }
}
