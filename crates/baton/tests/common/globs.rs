//! `artifacts:` globs, the same on every executor: two tasks (`keep`, whose globs keep some
//! files of the working directory and match nothing for one, and `need`, whose required glob
//! matches nothing), and the checks of what their runs kept and said.

use super::{Server, id_of, reason, status};

/// The two tasks, with `extra` (indented task keys: `image:`, `queues:`) added to each.
pub fn tasks(extra: &str) -> String {
    format!(
        r#"
tasks:
  keep:
{extra}
    artifacts: [dist/*.tar.gz, "logs/**", "missing/*.xml", "outside/*"]
    command: |
      mkdir -p dist/deep logs/sub
      echo tarball > dist/app.tar.gz
      echo deeper > dist/deep/b.tar.gz
      echo log > logs/sub/run.log
      echo own > "$BATON_OUTPUT_DIR/own.txt"
      ln -s /etc/hostname dist/escape.tar.gz
      ln -s /etc outside
      echo done
  need:
{extra}
    artifacts: {{paths: [dist/*.tar.gz, "missing/*.xml"], required: true}}
    command: |
      mkdir -p dist && echo tarball > dist/app.tar.gz
      echo done
"#
    )
}

/// Runs both tasks on `s` and checks the artifacts API and the logs; each job ran on a worker
/// whose name starts with `worker`.
pub async fn check(s: &Server, worker: &str) {
    let id = id_of(&s.trigger("keep", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success", "{run:#}\n{}", s.stderr());
    let ran_on = run["jobs"][0]["worker"].as_str().unwrap_or("");
    assert!(ran_on.starts_with(worker), "ran on {ran_on:?}: {run:#}");
    let listed = s.get_ok(&format!("/runs/{id}/artifacts")).await;
    let mut paths: Vec<String> = listed["jobs"][0]["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts listed: {listed:#}"))
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    // `*` stays within its folder, symlinks (to a file or a folder) are never followed, and
    // what the job wrote to $BATON_OUTPUT_DIR is there too.
    assert_eq!(
        paths,
        ["dist/app.tar.gz", "logs/sub/run.log", "own.txt"],
        "{listed:#}"
    );
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let got = s
        .http
        .get(format!(
            "{}/runs/{id}/artifacts/{job}/dist/app.tar.gz",
            s.base
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.text().await.unwrap(), "tarball\n");
    let log = s.log_text(id, None).await;
    assert!(log.starts_with("done\n"), "{log}");
    for glob in ["missing/*.xml", "outside/*"] {
        assert!(
            log.contains(&format!(
                "baton: warning: artifacts glob \"{glob}\" matched no file in the job's working directory\n"
            )),
            "no warning for {glob}: {log}"
        );
    }
    assert!(!log.contains("dist/*.tar.gz"), "{log}");

    let id = id_of(&s.trigger("need", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "failed", "{run:#}");
    let ran_on = run["jobs"][0]["worker"].as_str().unwrap_or("");
    assert!(ran_on.starts_with(worker), "ran on {ran_on:?}: {run:#}");
    assert_eq!(
        reason(&run["jobs"][0]),
        "failed: required artifacts not found: missing/*.xml matched no file",
        "{run:#}"
    );
    let log = s.log_text(id, None).await;
    assert!(
        log.contains("baton: error: required artifacts glob \"missing/*.xml\" matched no file"),
        "{log}"
    );
}
