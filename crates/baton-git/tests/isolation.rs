//! Baton's own environment does not reach git: a `GIT_DIR`, a global config that rewrites URLs
//! and a `GIT_CONFIG_PARAMETERS` left in the server's environment change nothing.
//! (One test in its own binary: it changes the process environment.)

mod common;

use baton_git::Mirror;
use common::{Upstream, mirror_dir};

#[tokio::test]
async fn the_servers_git_environment_is_ignored() {
    let up = Upstream::new();
    up.write(".baton/ci.yaml", b"tasks: {}\n");
    let c = up.commit("c");
    let (t, dir) = mirror_dir();
    let evil_config = t.path().join("evil.gitconfig");
    std::fs::write(
        &evil_config,
        format!("[url \"/nonexistent/\"]\n\tinsteadOf = {}\n", up.url()),
    )
    .unwrap();
    // SAFETY: this binary runs only this test, and sets the variables before any thread reads them.
    unsafe {
        std::env::set_var("GIT_DIR", "/nonexistent/git-dir");
        std::env::set_var("GIT_CONFIG_GLOBAL", &evil_config);
        std::env::set_var(
            "GIT_CONFIG_PARAMETERS",
            "'remote.origin.url'='/nonexistent/x'",
        );
        std::env::set_var("GIT_CONFIG_COUNT", "1");
        std::env::set_var("GIT_CONFIG_KEY_0", "core.bare");
        std::env::set_var("GIT_CONFIG_VALUE_0", "false");
    }
    let m = Mirror::ensure(&up.url(), &dir).await.unwrap();
    m.fetch().await.unwrap();
    assert_eq!(m.resolve("refs/heads/main").await.unwrap(), Some(c.clone()));
    let files = m.read_tree(&c, ".baton").await.unwrap();
    assert_eq!(files.len(), 1);
    let co = m.checkout(&c, &t.path().join("job")).await.unwrap();
    assert!(co.path().join(".baton/ci.yaml").exists());
}
