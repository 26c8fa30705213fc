//! Tests of `LocalRepo` with real git in temporary repositories.

use super::*;

#[test]
fn only_result_refs_with_plain_names_pass() {
    assert!(check_run_ref("refs/baton-runs/abc/20261207T010203000Z-a1b2c3").is_ok());
    assert!(check_run_ref("refs/jci-runs/abc/x").is_ok());
    assert!(check_run_ref("refs/heads/main").is_err());
    assert!(check_run_ref("refs/baton-runs/../heads/main").is_err());
    assert!(check_run_ref("refs/baton-runs/a b").is_err());
}

fn sh_git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "a")
        .env("GIT_AUTHOR_EMAIL", "a@example.com")
        .env("GIT_COMMITTER_NAME", "a")
        .env("GIT_COMMITTER_EMAIL", "a@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn discovery_reads_head_and_its_branch_in_the_same_process_or_says_it_did_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    sh_git(&dir, &["init", "-q", "-b", "main"]);
    // Unborn: the repository is found, `HEAD` is not known.
    let (repo, head) = LocalRepo::discover_at_head(&dir.join("sub"), true)
        .await
        .unwrap();
    assert_eq!(head, None);
    assert_eq!(repo.top(), Some(dir.canonicalize().unwrap().as_path()));
    assert!(repo.head().await.is_err());
    sh_git(&dir, &["commit", "-q", "--allow-empty", "-m", "first"]);
    let commit = Oid::parse(&sh_git(&dir, &["rev-parse", "HEAD"])).unwrap();
    let (repo, head) = LocalRepo::discover_at_head(&dir.join("sub"), true)
        .await
        .unwrap();
    assert_eq!(head, Some((commit.clone(), Some("main".into()))));
    assert_eq!(head.unwrap(), repo.head().await.unwrap());
    assert_eq!(repo.git_dir(), dir.canonicalize().unwrap().join(".git"));
    sh_git(&dir, &["checkout", "-q", "--detach"]);
    let (_, head) = LocalRepo::discover_at_head(&dir, true).await.unwrap();
    assert_eq!(head, Some((commit.clone(), None)));
    // Not asked: not read.
    let (_, head) = LocalRepo::discover_at_head(&dir, false).await.unwrap();
    assert_eq!(head, None);
    // A bare repository: no top, `HEAD` from `head()`.
    let bare = tmp.path().join("b.git");
    sh_git(
        tmp.path(),
        &["clone", "-q", "--bare", dir.to_str().unwrap(), "b.git"],
    );
    let (repo, head) = LocalRepo::discover_at_head(&bare, true).await.unwrap();
    assert_eq!((repo.top(), head), (None, None));
    assert_eq!(repo.head().await.unwrap().0, commit);
}

#[tokio::test]
async fn a_run_is_one_parentless_commit_read_back_and_deleted_by_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sh_git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("a.txt"), "a\n").unwrap();
    sh_git(dir, &["add", "-A"]);
    sh_git(dir, &["commit", "-q", "-m", "first"]);
    let repo = LocalRepo::discover(dir).await.unwrap();
    let head = repo.resolve("HEAD").await.unwrap();
    assert_eq!(repo.branch().await.unwrap().as_deref(), Some("main"));
    assert_eq!(
        repo.head().await.unwrap(),
        (head.clone(), Some("main".into()))
    );
    sh_git(dir, &["checkout", "-q", "--detach"]);
    assert_eq!(repo.head().await.unwrap(), (head.clone(), None));
    sh_git(dir, &["checkout", "-q", "main"]);
    let name = format!("refs/baton-runs/{head}/20261207T000000000Z-abcdef");
    let files = [
        TreeFile {
            path: "run.json".into(),
            executable: false,
            bytes: b"{}".to_vec(),
        },
        TreeFile {
            path: "jobs/01-a \"b\"/log".into(),
            executable: true,
            bytes: vec![0, 1, 2],
        },
    ];
    let oid = repo.write_run(&name, "a run", &files).await.unwrap();
    assert_eq!(sh_git(dir, &["rev-parse", &name]), oid.as_str());
    assert_eq!(
        sh_git(dir, &["rev-list", "--parents", "-n1", &name]),
        oid.as_str()
    );
    let got = repo
        .read_files(&[
            format!("{name}:run.json"),
            format!("{name}:nope"),
            format!("{name}:jobs/01-a \"b\"/log"),
        ])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"{}".to_vec()), None, Some(vec![0, 1, 2])]);
    assert_eq!(
        repo.list_files(&name, "jobs").await.unwrap(),
        ["jobs/01-a \"b\"/log"]
    );
    assert!(
        repo.write_run("refs/heads/main", "x", &files)
            .await
            .is_err()
    );
    repo.delete_refs(std::slice::from_ref(&name)).await.unwrap();
    assert!(repo.refs("refs/baton-runs/").await.unwrap().is_empty());
    assert_eq!(sh_git(dir, &["status", "--porcelain"]), "");
}

fn run_files() -> Vec<TreeFile> {
    let file = |path: &str, executable: bool, bytes: &[u8]| TreeFile {
        path: path.into(),
        executable,
        bytes: bytes.to_vec(),
    };
    vec![
        file("run.json", false, b"{}"),
        file("jobs/01-a/log", false, b"hello\n"),
        file("jobs/01-a/out/tool", true, b"#!/bin/sh\n"),
        file("jobs/01-a/out/a.b/c", false, b""),
        file("jobs/01-a.x", false, b"sorted as git sorts `01-a/`"),
        file("index.html", false, b"<html>"),
    ]
}

#[tokio::test]
async fn a_run_written_in_process_is_git_s_own_and_never_overwrites_a_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sh_git(dir, &["init", "-q", "-b", "main"]);
    sh_git(dir, &["commit", "-q", "--allow-empty", "-m", "first"]);
    let repo = LocalRepo::discover(dir).await.unwrap();
    assert!(repo.in_process, "a plain repository is written in process");
    let name = "refs/baton-runs/abc/20261208T000000000Z-000001";
    let files = run_files();
    let oid = repo
        .write_run(name, "baton run x: success", &files)
        .await
        .unwrap();
    assert_eq!(
        sh_git(dir, &["for-each-ref", "--format=%(objectname) %(refname)"]),
        format!(
            "{} refs/baton-runs/abc/20261208T000000000Z-000001\n{} refs/heads/main",
            oid,
            sh_git(dir, &["rev-parse", "main"])
        )
    );
    sh_git(dir, &["fsck", "--full", "--strict", "--no-dangling"]);
    assert_eq!(
        sh_git(dir, &["cat-file", "-p", &format!("{name}:jobs/01-a/log")]),
        "hello"
    );
    let commit = sh_git(dir, &["cat-file", "-p", name]);
    assert!(!commit.contains("\nparent "), "{commit}");
    assert!(
        commit.contains("\nauthor Baton <baton@localhost> "),
        "{commit}"
    );
    assert!(commit.ends_with("\n\nbaton run x: success"), "{commit}");
    // The same tree, byte for byte, as `git fast-import` writes for the same files.
    let by_git = LocalRepo {
        in_process: false,
        ..repo.clone()
    };
    let other = "refs/baton-runs/abc/20261208T000000000Z-000002";
    by_git.write_run(other, "by git", &files).await.unwrap();
    assert_eq!(
        sh_git(dir, &["rev-parse", &format!("{name}^{{tree}}")]),
        sh_git(dir, &["rev-parse", &format!("{other}^{{tree}}")])
    );
    // A ref that exists is never moved, whether loose or packed.
    let err = repo.write_run(name, "again", &files).await.unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    assert_eq!(sh_git(dir, &["rev-parse", name]), oid.as_str());
    // Its lock is gone after the refusal too.
    assert!(
        !dir.join(".git/refs/baton-runs/abc")
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".lock"))
    );
    sh_git(dir, &["pack-refs", "--all"]);
    assert!(repo.write_run(other, "again", &files).await.is_err());
    assert!(repo.write_run("refs/heads/x", "x", &files).await.is_err());
    sh_git(dir, &["fsck", "--full", "--strict", "--no-dangling"]);
    // No reflog for a result ref, as git writes none for refs outside heads and remotes.
    assert!(!dir.join(".git/logs/refs/baton-runs").exists());
}

#[tokio::test]
async fn baton_is_read_in_process_as_git_reads_it_packed_or_loose() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sh_git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join(".baton/sub/deeper")).unwrap();
    std::fs::write(dir.join("README"), "r\n").unwrap();
    std::fs::write(dir.join(".baton/ci.yaml"), "tasks: {}\n").unwrap();
    std::fs::write(dir.join(".baton/sub.yaml"), "a\n").unwrap();
    std::fs::write(dir.join(".baton/sub/deeper/x.yaml"), "x\n").unwrap();
    std::os::unix::fs::symlink("ci.yaml", dir.join(".baton/link.yaml")).unwrap();
    sh_git(dir, &["add", "-A"]);
    sh_git(dir, &["commit", "-q", "-m", "first"]);
    for packed in [false, true] {
        if packed {
            sh_git(dir, &["gc", "-q", "--prune=now"]);
        }
        let (repo, head) = LocalRepo::discover_at_head(dir, true).await.unwrap();
        assert!(repo.in_process);
        let (commit, branch) = head.unwrap();
        assert_eq!(branch.as_deref(), Some("main"));
        for path in [
            ".baton",
            ".baton/sub/",
            "README",
            "README/x",
            "nothing",
            ".baton/link.yaml",
        ] {
            assert_eq!(
                repo.read_tree(&commit, path).await.unwrap(),
                repo.mirror().read_tree(&commit, path).await.unwrap(),
                "{path}, packed: {packed}"
            );
        }
        let files = repo.read_tree(&commit, ".baton").await.unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".baton/ci.yaml",
                ".baton/sub.yaml",
                ".baton/sub/deeper/x.yaml"
            ]
        );
        let unknown = Oid::parse(&"1".repeat(40)).unwrap();
        assert!(matches!(
            repo.read_tree(&unknown, ".baton").await,
            Err(GitError::MissingCommit(_))
        ));
    }
}

#[test]
fn a_local_repo_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<LocalRepo>();
}

#[tokio::test]
async fn a_reftable_repository_is_left_to_git() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sh_git(dir, &["init", "-q", "-b", "main", "--ref-format=reftable"]);
    sh_git(dir, &["commit", "-q", "--allow-empty", "-m", "first"]);
    let (repo, head) = LocalRepo::discover_at_head(dir, true).await.unwrap();
    assert!(!repo.in_process);
    assert_eq!(head.unwrap().1.as_deref(), Some("main"));
    let name = "refs/baton-runs/abc/20261208T000000000Z-000001";
    let oid = repo.write_run(name, "x", &run_files()).await.unwrap();
    assert_eq!(sh_git(dir, &["rev-parse", name]), oid.as_str());
}

#[test]
fn paths_are_quoted_for_fast_import() {
    assert_eq!(quote("jobs/a\"b\\c\n"), "\"jobs/a\\\"b\\\\c\\n\"");
}
