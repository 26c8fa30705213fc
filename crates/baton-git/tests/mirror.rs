//! Mirrors of real repositories: setup, fetch (pruning, keeping Baton's own refs, concurrent
//! callers), reads at a commit, commit metadata and changed paths.

mod common;

use baton_git::{Backoff, Fetched, GitError, Mirror, Oid};
use common::{Upstream, mirror_dir};

#[tokio::test]
async fn ensure_fetch_and_read_baton_dir_at_each_commit() {
    let up = Upstream::new();
    up.write(
        ".baton/ci.yaml",
        b"tasks:\n  test:\n    command: make test\n",
    );
    up.write(".baton/more/deploy.yml", b"tasks: {}\n");
    up.write(".batonx", b"not in .baton/");
    up.write("README", b"hello");
    let first = up.commit("first");
    up.write(
        ".baton/ci.yaml",
        b"tasks:\n  test:\n    command: make check\n",
    );
    std::fs::remove_file(up.path().join(".baton/more/deploy.yml")).unwrap();
    std::os::unix::fs::symlink("ci.yaml", up.path().join(".baton/link.yaml")).unwrap();
    let second = up.commit("second");

    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    assert_eq!(m.fetch().await.unwrap(), Fetched::Ran);
    assert_eq!(
        m.resolve("refs/heads/main").await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(m.resolve("refs/heads/nope").await.unwrap(), None);

    let files = m.read_tree(&first, ".baton").await.unwrap();
    assert_eq!(
        files,
        vec![
            (
                ".baton/ci.yaml".to_owned(),
                b"tasks:\n  test:\n    command: make test\n".to_vec()
            ),
            (".baton/more/deploy.yml".to_owned(), b"tasks: {}\n".to_vec()),
        ]
    );
    // The symlink is skipped; the file changed.
    let files = m.read_tree(&second, ".baton").await.unwrap();
    assert_eq!(
        files,
        vec![(
            ".baton/ci.yaml".to_owned(),
            b"tasks:\n  test:\n    command: make check\n".to_vec()
        )]
    );
    assert_eq!(m.read_tree(&second, "nothing-here").await.unwrap(), vec![]);
    // A file is read as itself (git-jci's `.jci/run.sh`); a path through a file, a symlink
    // and an empty path component are nothing more.
    assert_eq!(
        m.read_tree(&second, "README").await.unwrap(),
        vec![("README".to_owned(), b"hello".to_vec())]
    );
    assert_eq!(
        m.read_tree(&second, ".baton/more").await.unwrap(),
        vec![],
        "gone in the second commit"
    );
    assert_eq!(
        m.read_tree(&first, ".baton//more/").await.unwrap(),
        vec![(".baton/more/deploy.yml".to_owned(), b"tasks: {}\n".to_vec())]
    );
    assert_eq!(m.read_tree(&second, "README/x").await.unwrap(), vec![]);
    assert_eq!(
        m.read_tree(&second, ".baton/link.yaml").await.unwrap(),
        vec![]
    );
    assert!(matches!(
        m.read_tree(&second, "--output=/tmp/x").await,
        Err(GitError::BadArgument { .. })
    ));

    // A commit the mirror never saw.
    let unknown = Oid::parse(&"ab".repeat(20)).unwrap();
    let err = m.read_tree(&unknown, ".baton").await.unwrap_err();
    assert!(matches!(err, GitError::MissingCommit(_)), "{err}");

    // ensure is idempotent and keeps what was fetched.
    let again = Mirror::ensure(&up.url(), &dir).await.unwrap();
    assert_eq!(
        again.resolve("refs/heads/main").await.unwrap(),
        Some(second)
    );
    // Refspecs set by someone else are put back.
    common::git_in(&dir, &["config", "--unset-all", "remote.origin.fetch"], 0);
    common::git_in(
        &dir,
        &["config", "--add", "remote.origin.fetch", "+refs/*:refs/*"],
        0,
    );
    Mirror::ensure(&up.url(), &dir).await.unwrap();
    let specs = common::git_in(&dir, &["config", "--get-all", "remote.origin.fetch"], 0);
    assert_eq!(specs.lines().collect::<Vec<_>>(), baton_git::REFSPECS);
}

#[tokio::test]
async fn ensure_refuses_a_directory_that_is_not_a_mirror() {
    let (_t, dir) = mirror_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("precious.txt"), b"x").unwrap();
    let err = Mirror::ensure("/srv/x", &dir).await.unwrap_err();
    assert!(matches!(err, GitError::NotAMirror { .. }), "{err}");
    assert!(
        err.to_string().contains("is not a bare git repository"),
        "{err}"
    );
    let err = Mirror::ensure("--upload-pack=touch /tmp/pwned", &dir)
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::BadArgument { .. }), "{err}");
}

#[tokio::test]
async fn fetch_prunes_deleted_branches_but_keeps_batons_own_refs_and_follows_a_new_url() {
    let up = Upstream::new();
    up.write("a", b"1");
    let c1 = up.commit("one");
    up.git(&["branch", "topic"]);
    up.git(&["tag", "v1"]);
    up.git(&["update-ref", "refs/pull/7/head", c1.as_str()]);
    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let heads: Vec<String> = m
        .refs("refs/")
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        heads,
        [
            "refs/heads/main",
            "refs/heads/topic",
            "refs/pull/7/head",
            "refs/tags/v1"
        ]
    );

    common::git_in(&dir, &["update-ref", "refs/baton-runs/x/1", c1.as_str()], 0);
    up.git(&["branch", "-D", "topic"]);
    m.fetch().await.unwrap();
    let refs: Vec<String> = m
        .refs("refs/")
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        refs,
        [
            "refs/baton-runs/x/1",
            "refs/heads/main",
            "refs/pull/7/head",
            "refs/tags/v1"
        ]
    );

    // The repository moved: ensure with the new URL, and fetch from there.
    let moved = Upstream::new();
    moved.write("b", b"2");
    let c2 = moved.commit("elsewhere");
    let m = Mirror::ensure(&moved.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    assert_eq!(m.resolve("refs/heads/main").await.unwrap(), Some(c2));
}

#[tokio::test]
async fn a_failed_fetch_carries_gits_stderr_and_is_retried() {
    let (t, dir) = mirror_dir();
    let missing = t.path().join("no-such-repo");
    let m = Mirror::ensure(missing.to_str().unwrap(), &dir)
        .await
        .unwrap();
    let fast = Backoff {
        first: std::time::Duration::from_millis(1),
        factor: 2,
        max: std::time::Duration::from_millis(4),
        attempts: 3,
    };
    let err = m.fetch_with_retry(&fast).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("`git fetch --prune"), "{text}");
    assert!(text.contains("no-such-repo"), "{text}");
    assert!(text.contains("exit status 128"), "{text}");
    assert_eq!(m.fetches_run(), 3);

    // The repository appears: the next fetch works.
    let up = Upstream::new();
    up.write("f", b"x");
    up.commit("c");
    std::fs::rename(up.path(), &missing).unwrap();
    assert_eq!(m.fetch_with_retry(&fast).await.unwrap(), Fetched::Ran);
}

/// Many callers fetch one mirror at once, each right after pushing its own branch: every one
/// must see its branch (no caller is served by a fetch that started before it arrived), and no
/// two `git fetch` processes may overlap (git itself would fail on the ref locks).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_of_one_mirror_are_serialized_and_shared() {
    let up = std::sync::Arc::new(Upstream::new());
    up.write("f", b"0");
    up.commit("base");
    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    let callers = 12;
    let mut tasks = Vec::new();
    for i in 0..callers {
        let up = up.clone();
        // A separate Mirror value for the same directory shares the same gate.
        let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let branch = format!("b{i}");
            let oid = tokio::task::spawn_blocking({
                let up = up.clone();
                let branch = branch.clone();
                move || {
                    up.git(&["branch", &branch, "main"]);
                    Oid::parse(up.git(&["rev-parse", &branch]).trim()).unwrap()
                }
            })
            .await
            .unwrap();
            let how = m.fetch().await.unwrap();
            let got = m.resolve(&format!("refs/heads/{branch}")).await.unwrap();
            assert_eq!(got, Some(oid), "caller {i} ({how:?}) missed its own push");
            how
        }));
    }
    let mut shared = 0;
    for t in tasks {
        if t.await.unwrap() == Fetched::Shared {
            shared += 1;
        }
    }
    let runs = m.fetches_run();
    assert_eq!(
        runs + shared,
        callers,
        "every caller ran or shared exactly one fetch"
    );
    assert!(runs >= 1);
}

#[tokio::test]
async fn commit_info_and_changed_paths() {
    let up = Upstream::new();
    up.write("keep", b"k");
    up.write("old-name", b"same content");
    up.write("dir/deleted", b"d");
    let c1 = up.commit("first");
    std::fs::rename(up.path().join("old-name"), up.path().join("new-name")).unwrap();
    std::fs::remove_file(up.path().join("dir/deleted")).unwrap();
    up.write("dir/added file", b"a");
    up.write("keep", b"k2");
    let c2 = up.commit("Second: rename and more\n\nA body line.\n[skip ci]\n");
    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();

    let info = m.commit_info(&c2).await.unwrap();
    assert_eq!(info.id, c2);
    assert_eq!(info.parents, vec![c1.clone()]);
    assert_eq!(info.author_name, "Ada Lovelace");
    assert_eq!(info.author_email, "ada@example.com");
    assert_eq!(info.author_time, 1_700_000_120);
    assert_eq!(info.author_tz, "+0000");
    assert_eq!(info.subject, "Second: rename and more");
    assert_eq!(
        info.message,
        "Second: rename and more\n\nA body line.\n[skip ci]\n"
    );

    let changed = m.changed_paths(&c1, &c2).await.unwrap();
    assert_eq!(
        changed,
        [
            "dir/added file",
            "dir/deleted",
            "keep",
            "new-name",
            "old-name"
        ]
    );
    // A new branch: every file of the pushed commit.
    let zero = Oid::parse(&"0".repeat(40)).unwrap();
    let all = m.changed_paths(&zero, &c1).await.unwrap();
    assert_eq!(all, ["dir/deleted", "keep", "old-name"]);
    // A `before` the mirror does not have (dropped by a force-push, say).
    let gone = Oid::parse(&"12".repeat(20)).unwrap();
    let err = m.changed_paths(&gone, &c2).await.unwrap_err();
    assert!(
        matches!(&err, GitError::MissingCommit(c) if c == gone.as_str()),
        "{err}"
    );
}

/// A directory larger than [`baton_git::READ_TREE_LIMIT`] in all is refused before any of it
/// is read; one just under is read whole.
#[tokio::test]
async fn a_directory_over_the_read_limit_is_refused_with_its_size() {
    let up = Upstream::new();
    let half = vec![b'x'; (baton_git::READ_TREE_LIMIT / 2) as usize];
    up.write(".baton/a.yaml", &half);
    up.write(".baton/b/b.yaml", &half);
    let fits = up.commit("at the limit");
    up.write(".baton/c.yaml", b"one byte too many\n");
    let over = up.commit("over");
    let (_t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let files = m.read_tree(&fits, ".baton").await.unwrap();
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, [".baton/a.yaml", ".baton/b/b.yaml"]);
    assert!(files.iter().all(|(_, b)| b.len() == half.len()));
    match m.read_tree(&over, ".baton").await {
        Err(GitError::TooLarge { size, limit, .. }) => {
            assert_eq!(
                (size, limit),
                (baton_git::READ_TREE_LIMIT + 18, baton_git::READ_TREE_LIMIT)
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fetch_started_after_an_events_ticket_serves_it_and_ready_needs_a_set_up_mirror() {
    let up = Upstream::new();
    up.write("f", b"0");
    up.commit("base");
    let (_t, dir) = mirror_dir();
    // Never set up by this process: nothing to fetch early.
    assert!(
        Mirror::ready(&up.url(), &dir, Default::default())
            .await
            .is_none()
    );
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let early = Mirror::ready(&up.url(), &dir, Default::default())
        .await
        .expect("a mirror set up by this process is ready");
    assert!(
        Mirror::ready("/elsewhere", &dir, Default::default())
            .await
            .is_none(),
        "another URL needs the mirror set up again"
    );
    // A push, then its event arrives (the ticket); a fetch started after it (the early
    // fetch) serves it, and no second fetch runs.
    up.write("f", b"1");
    let pushed = up.commit("pushed");
    let ticket = early.ticket();
    let before = m.fetches_run();
    assert_eq!(early.fetch().await.unwrap(), Fetched::Ran);
    assert_eq!(m.fetch_since(ticket).await.unwrap(), Fetched::Shared);
    assert_eq!(m.fetches_run(), before + 1);
    assert_eq!(m.resolve("refs/heads/main").await.unwrap(), Some(pushed));
    // A caller arriving now gets a fetch of its own.
    assert_eq!(m.fetch().await.unwrap(), Fetched::Ran);
}

/// A mirror half set up (made, its URL not set yet: a server was killed in the middle) whose
/// config is locked (`config.lock`) by another git.
fn half_set_up(dir: &std::path::Path) -> std::path::PathBuf {
    let out = std::process::Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = dir.join("config.lock");
    std::fs::write(&lock, b"").unwrap();
    lock
}

/// A server killed while it set a mirror up leaves the git it started still writing the
/// mirror's config, and its restart sets the mirror up again at once: a config lock held for a
/// moment is waited for (git alone would fail at once), and one left by a git killed mid-write
/// (nothing would ever remove it) goes once it is older than the wait.
#[tokio::test]
async fn a_config_lock_is_waited_for_and_a_stale_one_removed() {
    let up = Upstream::new();
    up.write("README", b"hello");
    let head = up.commit("first");

    let (_t, dir) = mirror_dir();
    let lock = half_set_up(&dir);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::fs::remove_file(&lock).unwrap();
    });
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    holder.join().unwrap();
    assert_eq!(m.fetch().await.unwrap(), Fetched::Ran);
    assert_eq!(
        m.resolve("refs/heads/main").await.unwrap(),
        Some(head.clone())
    );

    let (_t2, dir) = mirror_dir();
    let lock = half_set_up(&dir);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    assert!(!lock.exists());
    assert_eq!(m.fetch().await.unwrap(), Fetched::Ran);
    assert_eq!(m.resolve("refs/heads/main").await.unwrap(), Some(head));
}
