//! Checkouts from a mirror compared byte for byte with `git archive` of the same commit, and the
//! merges pull requests would make: clean, deterministic, and in conflict.

mod common;

use std::os::unix::fs::PermissionsExt;

use baton_git::{GitError, MergeOutcome, Mirror, Oid};
use common::tree::{archive, sample_repo, snapshot};
use common::{Upstream, mirror_dir};

#[tokio::test]
async fn checkout_equals_git_archive_byte_for_byte() {
    let (up, first, second) = sample_repo();
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();

    for commit in [&first, &second] {
        let dest = t.path().join(format!("job-{commit}"));
        let co = m.checkout(commit, &dest).await.unwrap();
        assert_eq!(co.commit(), commit);
        let want_dir = t.path().join(format!("archive-{commit}"));
        archive(up.path(), commit, &want_dir);
        let got = snapshot(co.path());
        assert_eq!(
            got,
            snapshot(&want_dir),
            "checkout of {commit} differs from git archive"
        );
        assert!(got.contains_key("bin/run") && got["bin/run"].0 == "exec");
        // The checkout is detached at exactly that commit and borrows the mirror's objects.
        let head = common::git_in(co.path(), &["rev-parse", "HEAD"], 0);
        assert_eq!(head.trim(), commit.as_str());
        let alternates =
            std::fs::read_to_string(co.path().join(".git/objects/info/alternates")).unwrap();
        assert!(alternates.contains(dir.to_str().unwrap()), "{alternates}");

        // A job that made its tree read-only does not stop the removal.
        let ro = co.path().join("src");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let path = co.path().to_owned();
        co.remove().await.unwrap();
        assert!(!path.exists());
    }

    // A commit the mirror does not have fails cleanly and leaves nothing behind.
    let dest = t.path().join("job-missing");
    let unknown = Oid::parse(&"cd".repeat(20)).unwrap();
    let err = m.checkout(&unknown, &dest).await.unwrap_err();
    assert!(matches!(err, GitError::MissingCommit(_)), "{err}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_job_cannot_move_the_mirrors_refs_from_its_checkout() {
    let (up, first, second) = sample_repo();
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let co = m.checkout(&second, &t.path().join("job")).await.unwrap();
    common::git_in(
        co.path(),
        &["update-ref", "refs/heads/main", first.as_str()],
        0,
    );
    common::git_in(co.path(), &["config", "remote.origin.url", "/elsewhere"], 0);
    assert_eq!(m.resolve("refs/heads/main").await.unwrap(), Some(second));
    let again = Mirror::ensure(&up.url(), &dir).await.unwrap();
    again.fetch().await.unwrap();
}

/// base: main with `shared.txt`; head: a branch changing other lines/files.
fn pr_repo(conflict: bool) -> (Upstream, Oid, Oid) {
    let up = Upstream::new();
    up.write("shared.txt", b"line 1\nline 2\nline 3\n");
    up.write("other.txt", b"other\n");
    up.commit("base");
    up.git(&["checkout", "--quiet", "-b", "feature"]);
    up.write("feature.txt", b"new feature\n");
    up.write("shared.txt", b"line 1 (feature)\nline 2\nline 3\n");
    let head = up.commit("feature work");
    up.git(&["checkout", "--quiet", "main"]);
    if conflict {
        up.write("shared.txt", b"line 1 (main)\nline 2\nline 3\n");
    } else {
        up.write("shared.txt", b"line 1\nline 2\nline 3 (main)\n");
    }
    up.write("other.txt", b"other on main\n");
    let base = up.commit("main moves on");
    (up, base, head)
}

#[tokio::test]
async fn clean_merge_for_a_pull_request() {
    let (up, base, head) = pr_repo(false);
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let out = m.merge_for_pr(&base, &head).await.unwrap();
    let MergeOutcome::Merged { tree, commit } = out.clone() else {
        panic!("{out:?}")
    };
    // The same pair gives the same merge commit.
    assert_eq!(m.merge_for_pr(&base, &head).await.unwrap(), out);
    let info = m.commit_info(&commit).await.unwrap();
    assert_eq!(info.parents, vec![base.clone(), head.clone()]);
    assert_eq!(info.author_name, "Baton");
    // Dated with the head's commit date, not the clock: the same pair, the same commit.
    let head_info = m.commit_info(&head).await.unwrap();
    assert_eq!(info.author_time, head_info.committer_time);
    assert_eq!(info.committer_time, head_info.committer_time);
    assert_eq!(info.subject, format!("Merge {head} into {base}"));
    let tree_of = common::git_in(&dir, &["rev-parse", &format!("{commit}^{{tree}}")], 0);
    assert_eq!(tree_of.trim(), tree.as_str());

    // A checkout of the merge has both sides' changes.
    let co = m.checkout(&commit, &t.path().join("merged")).await.unwrap();
    let read = |p: &str| std::fs::read_to_string(co.path().join(p)).unwrap();
    assert_eq!(
        read("shared.txt"),
        "line 1 (feature)\nline 2\nline 3 (main)\n"
    );
    assert_eq!(read("feature.txt"), "new feature\n");
    assert_eq!(read("other.txt"), "other on main\n");
    co.remove().await.unwrap();
}

#[tokio::test]
async fn conflicting_merge_names_the_paths() {
    let (up, base, head) = pr_repo(true);
    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    assert_eq!(
        m.merge_for_pr(&base, &head).await.unwrap(),
        MergeOutcome::Conflict {
            paths: vec!["shared.txt".to_owned()]
        }
    );
    let unknown = Oid::parse(&"ef".repeat(20)).unwrap();
    let err = m.merge_for_pr(&base, &unknown).await.unwrap_err();
    assert!(
        matches!(&err, GitError::MissingCommit(c) if c == unknown.as_str()),
        "{err}"
    );
}

/// Adds `lib` as a submodule of `app` at `path`.
fn add_submodule(app: &Upstream, lib: &Upstream, path: &str) {
    app.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "--quiet",
        "add",
        &lib.url(),
        path,
    ]);
}

#[tokio::test]
async fn submodules_are_checked_out_at_their_recorded_commits() {
    let lib = Upstream::new();
    lib.write("lib.txt", b"library v1\n");
    let v1 = lib.commit("v1");
    let app = Upstream::new();
    app.write("app.txt", b"app\n");
    add_submodule(&app, &lib, "vendor/lib");
    let with_lib = app.commit("add lib");
    // The library moves on; the app still records v1.
    lib.write("lib.txt", b"library v2\n");
    lib.commit("v2");

    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&app.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let co = m.checkout(&with_lib, &t.path().join("job")).await.unwrap();
    let text = std::fs::read_to_string(co.path().join("vendor/lib/lib.txt")).unwrap();
    assert_eq!(text, "library v1\n");
    let head = common::git_in(&co.path().join("vendor/lib"), &["rev-parse", "HEAD"], 0);
    assert_eq!(head.trim(), v1.as_str());
}

#[tokio::test]
async fn lfs_files_get_their_content() {
    let up = Upstream::new();
    up.git(&["lfs", "install", "--local"]);
    up.git(&["lfs", "track", "*.bin"]);
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    up.write("assets/big.bin", &blob);
    up.write("small.txt", b"plain\n");
    let commit = up.commit("lfs");

    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let co = m.checkout(&commit, &t.path().join("job")).await.unwrap();
    assert_eq!(
        std::fs::read(co.path().join("assets/big.bin")).unwrap(),
        blob,
        "the LFS pointer was replaced by the content"
    );
    let status = common::git_in(co.path(), &["status", "--porcelain"], 0);
    assert_eq!(status, "", "the checkout is clean");
}

/// An app with a submodule and an LFS file, mirrored.
async fn app_with_extras() -> (Upstream, Upstream, Oid, Oid, tempfile::TempDir, Mirror) {
    let lib = Upstream::new();
    lib.write("lib.txt", b"library\n");
    lib.commit("v1");
    let app = Upstream::new();
    app.write("app.txt", b"app\n");
    let plain = app.commit("plain");
    app.git(&["lfs", "install", "--local"]);
    app.git(&["lfs", "track", "*.bin"]);
    app.write("big.bin", &[7u8; 3000]);
    add_submodule(&app, &lib, "vendor/lib");
    let extras = app.commit("lfs and a submodule");
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&app.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    (lib, app, plain, extras, t, m)
}

#[tokio::test]
async fn a_fetched_checkout_gets_submodules_and_lfs_files_from_the_flattened_tree() {
    let (_lib, _app, plain, extras, t, m) = app_with_extras().await;
    assert_eq!(m.flat_commit(&plain).await.unwrap(), None, "nothing to add");
    let flat = m
        .flat_commit(&extras)
        .await
        .unwrap()
        .expect("a flattened tree");
    // Kept, and the same commit when asked again.
    assert_eq!(m.flat_commit(&extras).await.unwrap(), Some(flat.clone()));
    let kept = m.resolve(&baton_git::flat_ref(&extras)).await.unwrap();
    assert_eq!(kept, Some(flat));

    // A worker's fetch (here from the mirror's path) equals the server's checkout, file for file.
    let server = m.checkout(&extras, &t.path().join("server")).await.unwrap();
    let url = m.dir().to_str().unwrap().to_owned();
    let env = baton_git::GitEnv::default();
    let worker = baton_git::fetch_checkout(&url, &extras, &t.path().join("worker"), &env)
        .await
        .unwrap();
    let mut want = snapshot(server.path());
    want.remove("vendor/lib/.git");
    assert_eq!(snapshot(worker.path()), want);
    assert_eq!(
        want["big.bin"].1,
        vec![7u8; 3000],
        "LFS content, not a pointer"
    );
    assert_eq!(want["vendor/lib/lib.txt"].1, b"library\n");
    let head = common::git_in(worker.path(), &["rev-parse", "HEAD"], 0);
    assert_eq!(head.trim(), extras.as_str(), "HEAD stays the commit");
}
