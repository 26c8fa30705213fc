//! Artifact downloads serve only regular files inside the job's `out/` folder: never through a
//! symlink (outside or inside `out/`), never a path with `..`, and not even while the job swaps
//! a directory for a symlink under the server's feet. `Range` works on artifacts as on logs.

mod common;

use std::time::Duration;

use common::{Server, id_of, status};
use futures::StreamExt;

const CONFIG: &str = r#"
server:
  local_workers: 2
tasks:
  report:
    command: |
      cd "$BATON_OUTPUT_DIR"
      mkdir report
      echo '<h1>hi</h1>' > report/index.html
      echo 'hello notes' > notes.txt
      head -c 100000 /dev/urandom > data.bin
      ln -s "$outside" evil
  plain:
    command: |
      cd "$BATON_OUTPUT_DIR"
      mkdir sub
      echo artifact > sub/a.txt
      printf 0123456789 > digits
      ln -s "$outside" out_link
      ln -s sub/a.txt alias
      ln -s sub subl
      mkfifo fifo
  swap:
    command: |
      cd "$BATON_OUTPUT_DIR"
      mkdir stage
      printf 'inside-content\n' > stage/f.txt
      # Swap `real` between a directory holding f.txt and a symlink to the outside folder,
      # as fast as the kernel allows, until the test leaves the stop file.
      exec perl -e '
        my ($outside, $stop) = @ARGV;
        my $i = 0;
        while (1) {
          rename "stage", "real" or die "rename: $!";
          rename "real", "stage" or die "rename back: $!";
          symlink $outside, "real" or die "symlink: $!";
          unlink "real" or die "unlink: $!";
          last if ++$i % 1000 == 0 && -e $stop;
        }
      ' "$outside" "$stop"
"#;

/// A folder outside every job, holding a file with the same name and length as the artifact.
fn outside(s: &Server) -> String {
    let dir = s.root.path().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f.txt"), "OUTSIDE-SECRET\n").unwrap();
    std::fs::write(dir.join("a.txt"), "OUTSIDE-SECRET\n").unwrap();
    dir.to_str().unwrap().to_owned()
}

fn artifact_url(s: &Server, run: i64, job: i64, path: &str) -> String {
    format!("{}/runs/{run}/artifacts/{job}/{path}", s.base)
}

async fn job_of(s: &Server, run: i64) -> i64 {
    s.run(run).await["jobs"][0]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_regular_files_inside_out_are_served() {
    let s = Server::start(CONFIG);
    let out = outside(&s);
    let id = id_of(&s.trigger("plain", &[("outside", &out)]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run}");
    let job = job_of(&s, id).await;
    let get = |path: &str, range: Option<&str>| {
        let mut r = s
            .http
            .get(artifact_url(&s, id, job, path))
            .bearer_auth(&s.token);
        if let Some(v) = range {
            r = r.header("range", v);
        }
        r.send()
    };

    let r = get("sub/a.txt", None).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "artifact\n");

    let mut failures = Vec::new();
    for (path, why) in [
        ("out_link/a.txt", "a symlink to a folder outside out/"),
        ("alias", "a symlink inside out/ to a file inside out/"),
        (
            "subl/a.txt",
            "a symlink inside out/ to a folder inside out/",
        ),
        ("fifo", "a FIFO"),
        ("sub", "a directory"),
        ("../log", ".."),
        ("sub/..%2F..%2Flog", "an encoded .."),
        ("%2Fetc%2Fpasswd", "an absolute path"),
        ("missing", "a missing file"),
    ] {
        let r = get(path, None).await.unwrap();
        let st = r.status().as_u16();
        let body = r.text().await.unwrap();
        if st != 404 || body.contains("OUTSIDE-SECRET") || body.contains("artifact\n") {
            failures.push(format!("{path} ({why}): got {st} {body:?}, want 404"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The run page lists the regular files only.
    let page = s
        .http
        .get(format!("{}/runs/{id}", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("sub/a.txt") && page.contains("digits"),
        "{page}"
    );
    for hidden in ["out_link", "alias", "subl", "fifo"] {
        assert!(
            !page.contains(&format!("/{hidden}\"")),
            "{hidden} is listed"
        );
    }

    // Ranges, as on logs (RFC 9110).
    for (range, want_st, want_cr, want_body) in [
        ("bytes=-3", 206, Some("bytes 7-9/10"), "789"),
        (
            "bytes=2-18446744073709551615",
            206,
            Some("bytes 2-9/10"),
            "23456789",
        ),
        ("bytes=10-", 416, Some("bytes */10"), ""),
    ] {
        let r = get("digits", Some(range)).await.unwrap();
        let st = r.status().as_u16();
        let cr = r
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap();
        assert_eq!(
            (st, cr.as_deref()),
            (want_st, want_cr),
            "Range {range}: {body}"
        );
        if st == 206 {
            assert_eq!(body, want_body, "Range {range}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_swapping_a_folder_for_a_symlink_never_gets_outside_content_served() {
    const REQUESTS: usize = 4000;
    const PARALLEL: usize = 8;
    let s = Server::start(CONFIG);
    let out = outside(&s);
    let stop = s.root.path().join("stop-swapping");
    let id = id_of(
        &s.trigger(
            "swap",
            &[("outside", &out), ("stop", stop.to_str().unwrap())],
        )
        .await,
    );
    s.wait_until(id, "running", |r| status(r) == "running")
        .await;
    let job = job_of(&s, id).await;
    let url = artifact_url(&s, id, job, "real/f.txt");
    // Wait (bounded) until the swapping has begun: the staging folder exists.
    let stage = s.job_dir(job, 1).join("out");
    let deadline = std::time::Instant::now() + common::WAIT;
    while !stage.join("stage").exists() && !stage.join("real").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started swapping\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let results: Vec<(u16, String)> = futures::stream::iter(0..REQUESTS)
        .map(|_| {
            let req = s.http.get(&url).bearer_auth(&s.token);
            async move {
                // A broken answer is recorded (status 0), not fatal: the leak count matters.
                match req.send().await {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        match r.text().await {
                            Ok(body) => (st, body),
                            Err(e) => (0, format!("{st}, then {e}")),
                        }
                    }
                    Err(e) => (0, e.to_string()),
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    std::fs::write(&stop, "").unwrap();
    let ended = s.wait_run(id).await;

    let leaked = results
        .iter()
        .filter(|(_, b)| b.contains("OUTSIDE"))
        .count();
    let inside = results
        .iter()
        .filter(|(st, b)| *st == 200 && b == "inside-content\n")
        .count();
    let refused = results.iter().filter(|(st, _)| *st == 404).count();
    let other: Vec<_> = results
        .iter()
        .filter(|(st, b)| !(*st == 404 || (*st == 200 && b == "inside-content\n")))
        .take(5)
        .collect();
    eprintln!(
        "{REQUESTS} downloads during the swap: {inside} inside, {refused} refused, {leaked} from outside"
    );
    assert_eq!(
        leaked, 0,
        "{leaked} of {REQUESTS} downloads were served from outside the job's out/ folder"
    );
    assert!(
        other.is_empty(),
        "answers other than the inside file or 404: {other:?}"
    );
    // The race was really run: some downloads found the directory, some the symlink.
    assert!(
        inside > 0 && refused > 0,
        "inside {inside}, refused {refused}"
    );
    assert_eq!(status(&ended), "success", "{ended}");
}

async fn get(s: &Server, url: &str) -> reqwest::Response {
    let resp = s.http.get(url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp
}

/// Unpacks a `.tar.gz` with the system's `tar` into a fresh folder; its files, sorted.
fn untar_gz(bytes: &[u8], into: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let file = into.with_extension("tar.gz");
    std::fs::write(&file, bytes).unwrap();
    std::fs::create_dir_all(into).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::gitrepo::files(into)
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_are_listed_typed_archived_previewed_and_html_opens_sandboxed() {
    let s = Server::start(CONFIG);
    let out = outside(&s);
    let id = id_of(&s.trigger("report", &[("outside", &out)]).await);
    assert_eq!(status(&s.wait_run(id).await), "success");
    let job = job_of(&s, id).await;

    let list = s.get_ok(&format!("/runs/{id}/artifacts")).await;
    let arts = list["jobs"][0]["artifacts"].as_array().unwrap();
    let entry = |p: &str| arts.iter().find(|a| a["path"] == p).cloned();
    let notes = entry("notes.txt").unwrap_or_else(|| panic!("{list}"));
    assert_eq!(notes["size"], 12);
    assert_eq!(notes["type"], "text/plain; charset=utf-8");
    assert_eq!(
        entry("report/index.html").unwrap()["type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(entry("data.bin").unwrap()["size"], 100_000);
    assert!(entry("evil").is_none(), "{list}");

    // The run's artifacts as one .tar.gz: one folder per job, the same bytes, no symlink.
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{}/api/v1/runs/{id}/artifacts.tar.gz", s.base);
    let resp = get(&s, &url).await;
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    let files = untar_gz(&resp.bytes().await.unwrap(), &tmp.path().join("run"));
    let dir = s.job_dir(job, 1).join("out");
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "report/data.bin",
            "report/notes.txt",
            "report/report/index.html"
        ],
        "{names:?}"
    );
    assert_eq!(files[0].1, std::fs::read(dir.join("data.bin")).unwrap());
    // One job's: its paths as they are.
    let resp = get(&s, &format!("{url}?job={job}")).await;
    let files = untar_gz(&resp.bytes().await.unwrap(), &tmp.path().join("job"));
    assert_eq!(files[1], ("notes.txt".into(), b"hello notes\n".to_vec()));

    // index.html opens as a page, sandboxed.
    let page = get(
        &s,
        &format!(
            "{}?inline=1",
            artifact_url(&s, id, job, "report/index.html")
        ),
    )
    .await;
    let h = page.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(page.text().await.unwrap(), "<h1>hi</h1>\n");

    // A text artifact previewed in the run page.
    let html = get(&s, &format!("{}/runs/{id}?preview=notes.txt", s.base)).await;
    let html = html.text().await.unwrap();
    assert!(html.contains("hello notes"), "{html}");
    assert!(html.contains("artifacts.tar.gz?job="), "{html}");
}

/// `artifacts:` globs on a local job: the files they match in its working directory are kept,
/// never through a symlink; a glob that matches nothing is a warning, or fails a job that
/// requires it.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_globs_keep_files_of_the_working_directory() {
    let s = Server::start(&common::globs::tasks(""));
    common::globs::check(&s, "local-").await;
}

/// `artifacts:` globs on a container job: gathered on the server from the container's
/// `work/` once it exited, with the same rules as on a local job.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_globs_are_kept_from_the_container() {
    let img = common::busybox::image();
    let s = Server::start(&common::globs::tasks(&format!("    image: {img}")));
    common::globs::check(&s, "local-").await;
}
