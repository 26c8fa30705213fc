//! The worker-side scripts, run by a local bash as sshd would run them.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::artifacts::unpack;
use super::finish::trailer;
use super::shell::{finish_script, follow_script};

/// The finishing script, run by a local bash as sshd would run it: the answer up to the
/// trailer (or the end), then (after `ok`, if `ack`) the rest, and whether bash succeeded.
fn run_finish(dir: &Path, done: u64, ack: bool) -> (Vec<u8>, Vec<u8>, bool) {
    use std::io::Read;
    // Relative to the login directory, as work_dir may be.
    let name = dir.file_name().unwrap().to_string_lossy();
    let mut child = std::process::Command::new("bash")
        .arg("-s")
        .current_dir(dir.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(finish_script(&name).as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // opened early, told later
    writeln!(stdin, "go {done} 00ff00ff00ff00ff").unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while trailer(&got, "00ff00ff00ff00ff").is_none() {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    if ack {
        stdin.write_all(b"ok\n").unwrap();
    }
    drop(stdin);
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let st = child.wait().unwrap();
    (got, rest, st.success())
}

#[test]
fn the_finishing_script_answers_then_removes_the_folder_only_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    fs::create_dir_all(dir.join("out/sub")).unwrap();
    fs::write(dir.join("log"), b"0123456789").unwrap();
    fs::write(dir.join("out/sub/f"), b"artifact").unwrap();
    // No runner.pid and no exit: the runner is gone.
    let (got, _, ok) = run_finish(&dir, 0, false);
    assert!(ok);
    assert_eq!(got, b"vanished\n");
    // A live process whose command line says run.sh stands in for the runner.
    let mut runner = std::process::Command::new("bash")
        .args(["-c", "read -r -t 30 x", "run.sh"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    fs::write(dir.join("runner.pid"), format!("{}\n", runner.id())).unwrap();
    let (got, _, _) = run_finish(&dir, 0, false);
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(got, b"running\n");
    let (got, _, _) = run_finish(&tmp.path().join("nope"), 0, false);
    assert_eq!(got, b"gone\n");

    fs::write(dir.join("exit"), b"143\n").unwrap();
    fs::write(dir.join("canceled"), b"").unwrap();
    let (got, rest, ok) = run_finish(&dir, 4, false);
    assert!(ok);
    assert!(rest.is_empty());
    let head = b"exit 143\ncanceled\nlog 6\n456789tar\n";
    assert!(got.starts_with(head), "{:?}", String::from_utf8_lossy(&got));
    let (at, rc, msg) = trailer(&got, "00ff00ff00ff00ff").unwrap();
    assert_eq!((rc, msg.as_str()), (0, ""));
    let tar_path = tmp.path().join("a.tar");
    fs::write(&tar_path, &got[head.len()..]).unwrap();
    let fetch = tmp.path().join("fetch");
    unpack(&tar_path, (at - head.len()) as u64, &fetch).unwrap();
    assert_eq!(fs::read(fetch.join("sub/f")).unwrap(), b"artifact");
    assert!(dir.exists(), "no word, no removal");

    let (_, rest, ok) = run_finish(&dir, 10, true);
    assert!(ok);
    assert_eq!(rest, b"removed\n");
    assert!(!dir.exists(), "removed once told");
}

#[test]
fn a_waiting_finisher_ends_quietly_with_its_session() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("exit"), b"0\n").unwrap();
    let mut child = std::process::Command::new("bash")
        .arg("-s")
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(finish_script("job").as_bytes()).unwrap();
    drop(stdin);
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(out.is_empty());
    assert!(dir.exists());
}

#[test]
fn the_follower_ends_with_the_runner_or_when_its_stdin_closes() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("log"), b"0123456789").unwrap();
    let follow = |stdin_open: bool| {
        let mut runner = std::process::Command::new("bash")
            .args(["-c", "read -r -t 30 x", "run.sh"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        fs::write(dir.join("runner.pid"), format!("{}\n", runner.id())).unwrap();
        let mut child = std::process::Command::new("bash")
            .arg("-s")
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take();
        let script = follow_script("job", 4);
        stdin
            .as_mut()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut got = [0u8; 6];
        out.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"456789");
        let t0 = std::time::Instant::now();
        if stdin_open {
            // The runner ends: so does the follower, successfully.
            runner.kill().unwrap();
            runner.wait().unwrap();
        } else {
            stdin = None;
        }
        let st = child.wait().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3), "ended promptly");
        drop(stdin);
        let _ = runner.kill();
        let _ = runner.wait();
        st.success()
    };
    assert!(
        follow(true),
        "the runner's end ends the follower with success"
    );
    assert!(!follow(false), "a closed stdin stops it");
}

#[test]
fn an_empty_out_folder_sends_no_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    fs::create_dir_all(dir.join("out")).unwrap();
    fs::write(dir.join("log"), b"abc").unwrap();
    fs::write(dir.join("exit"), b"0\n").unwrap();
    let (got, rest, ok) = run_finish(&dir, 3, true);
    assert!(ok);
    assert_eq!(
        got,
        b"exit 0\nlog 0\nempty\n\nBATON-END-00ff00ff00ff00ff 0 \n"
    );
    assert_eq!(rest, b"removed\n");
    assert!(!dir.exists());
}

#[test]
fn a_worker_without_tar_says_notar() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["bash", "cat", "wc", "tail", "head", "grep", "rm", "tr"] {
        let Some(found) = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
        else {
            return; // an unusual machine: nothing to check here
        };
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let dir = tmp.path().join("job");
    fs::create_dir_all(dir.join("out")).unwrap();
    fs::write(dir.join("out/f"), b"x").unwrap();
    fs::write(dir.join("log"), b"abc").unwrap();
    fs::write(dir.join("exit"), b"0\n").unwrap();
    let mut child = std::process::Command::new(bin.join("bash"))
        .arg("-s")
        .current_dir(tmp.path())
        .env_clear()
        .env("PATH", &bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(finish_script("job").as_bytes()).unwrap();
    stdin.write_all(b"go 1 0123456789abcdef\nok\n").unwrap();
    drop(stdin);
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        String::from_utf8_lossy(&out),
        "exit 0\nlog 2\nbcnotar\n\nBATON-END-0123456789abcdef 0 \nremoved\n"
    );
}

/// The probe's answer for the job folder `dir`.
fn probe(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy();
    let out = std::process::Command::new("bash")
        .arg("-s")
        .current_dir(dir.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(super::shell::probe_script(&name).as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_probe_tells_running_ended_vanished_and_gone_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    assert_eq!(probe(&dir), "gone\n");
    fs::create_dir_all(&dir).unwrap();
    assert_eq!(probe(&dir), "vanished\n");
    let mut runner = std::process::Command::new("bash")
        .args(["-c", "read -r -t 30 x", "run.sh"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    fs::write(dir.join("runner.pid"), format!("{}\n", runner.id())).unwrap();
    assert_eq!(probe(&dir), "running\n");
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(probe(&dir), "vanished\n");
    fs::write(dir.join("exit"), b"143\n").unwrap();
    fs::write(dir.join("timed_out"), b"").unwrap();
    assert_eq!(probe(&dir), "exit 143\ntimed_out\n");
}
