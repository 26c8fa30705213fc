//! Reused working trees: whatever the job before did to its tree, files, index or `.git`, the
//! next checkout from the pool equals `git archive` of its commit byte for byte, and nothing the
//! old job put into `.git` runs.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use baton_git::{Mirror, TreePool, pristine_index};
use common::mirror_dir;
use common::tree::{archive, sample_repo, snapshot};

fn tamper(tree: &Path, marker: &Path) {
    let w = |p: &str, b: &[u8]| std::fs::write(tree.join(p), b).unwrap();
    // A tracked file changed in place (same size, mtime put back), one changed, one deleted,
    // a mode changed, untracked and ignored files and a nested repository added.
    let readme = tree.join("README.md");
    let mtime = std::fs::metadata(&readme).unwrap().modified().unwrap();
    let len = std::fs::metadata(&readme).unwrap().len() as usize;
    w("README.md", &b"X".repeat(len));
    std::fs::File::options()
        .write(true)
        .open(&readme)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    w("src/main.rs", b"fn main() { evil() }\n");
    std::fs::remove_file(tree.join("crlf.txt")).unwrap();
    std::fs::set_permissions(tree.join("bin/run"), std::fs::Permissions::from_mode(0o644)).unwrap();
    w("untracked.txt", b"left over\n");
    w(".gitignore-not", b"x\n");
    std::fs::create_dir_all(tree.join("target/debug")).unwrap();
    w("target/debug/app", b"build output\n");
    // The job's `.git`: an index that says the changed files are as committed, a config that
    // would run a command, a hook.
    common::git_in(
        tree,
        &["add", "-A", "--", "README.md", "src", "bin", "crlf.txt"],
        0,
    );
    common::git_in(tree, &["init", "-q", "nested"], 0);
    let cmd = format!("touch {}", marker.display());
    common::git_in(tree, &["config", "core.fsmonitor", &cmd], 0);
    std::fs::create_dir_all(tree.join(".git/hooks")).unwrap();
    let hook = tree.join(".git/hooks/post-checkout");
    std::fs::write(&hook, format!("#!/bin/sh\n{cmd}\n")).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_reused_tree_equals_a_fresh_checkout_whatever_the_last_job_did() {
    let (up, first, second) = sample_repo();
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let pool = TreePool::new(t.path().join("trees"), 2);
    let marker = t.path().join("ran");

    let one = t.path().join("job1/work");
    std::fs::create_dir_all(one.parent().unwrap()).unwrap();
    m.checkout_pooled(&pool, &first, &one).await.unwrap();
    assert!(pristine_index(&one).exists(), "the pristine index is kept");
    let inode = std::fs::metadata(&one).unwrap().ino();
    tamper(&one, &marker);
    m.give_back_pooled(&pool, &one, &first, "1-1")
        .await
        .unwrap();
    assert!(!one.exists() && !pristine_index(&one).exists());

    for (n, commit) in [(2, &second), (3, &first)] {
        let dest = t.path().join(format!("job{n}/work"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let co = m.checkout_pooled(&pool, commit, &dest).await.unwrap();
        assert_eq!(
            std::fs::metadata(&dest).unwrap().ino(),
            inode,
            "job {n} reused the first tree"
        );
        let want = t.path().join(format!("archive{n}"));
        archive(up.path(), commit, &want);
        assert_eq!(snapshot(co.path()), snapshot(&want), "job {n}");
        let head = common::git_in(&dest, &["rev-parse", "HEAD"], 0);
        assert_eq!(head.trim(), commit.as_str());
        let status = common::git_in(&dest, &["status", "--porcelain", "--ignored"], 0);
        assert_eq!(status, "", "job {n}: a clean tree");
        assert!(!marker.exists(), "nothing of the old job's .git ran");
        if n == 2 {
            tamper(&dest, &marker);
        }
        m.give_back_pooled(&pool, &dest, commit, &format!("{n}-1"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_full_pool_deletes_what_it_cannot_keep_and_an_empty_pool_checks_out_fresh() {
    let (up, first, _) = sample_repo();
    let (t, dir) = mirror_dir();
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    let pool = TreePool::new(t.path().join("trees"), 1);
    let mut dests = Vec::new();
    for n in 0..3 {
        let dest = t.path().join(format!("job{n}/work"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        m.checkout_pooled(&pool, &first, &dest).await.unwrap();
        dests.push(dest);
    }
    for (n, dest) in dests.iter().enumerate() {
        m.give_back_pooled(&pool, dest, &first, &format!("{n}-1"))
            .await
            .unwrap();
        assert!(!dest.exists());
    }
    let free = std::fs::read_dir(t.path().join("trees/free"))
        .unwrap()
        .count();
    assert_eq!(free, 1, "the pool keeps at most one tree");
    // A tree made read-only by its job is still reused or replaced, never an error.
    let dest = t.path().join("job9/work");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    m.checkout_pooled(&pool, &first, &dest).await.unwrap();
    std::fs::set_permissions(dest.join("src"), std::fs::Permissions::from_mode(0o500)).unwrap();
    m.give_back_pooled(&pool, &dest, &first, "9-1")
        .await
        .unwrap();
    let again = t.path().join("job10/work");
    std::fs::create_dir_all(again.parent().unwrap()).unwrap();
    let co = m.checkout_pooled(&pool, &first, &again).await.unwrap();
    let want = t.path().join("archive");
    archive(up.path(), &first, &want);
    assert_eq!(snapshot(co.path()), snapshot(&want));
}
