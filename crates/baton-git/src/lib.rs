//! Baton's git edge: one bare mirror per repository ([`Mirror`]), fetched serialized and with
//! retries, read at any commit without a checkout ([`Mirror::read_tree`],
//! [`Mirror::commit_info`], [`Mirror::changed_paths`]), cheap working trees for jobs
//! ([`Mirror::checkout`]) and the merge a pull request would make ([`Mirror::merge_for_pr`]).
//!
//! Everything runs the `git` CLI (2.38 or newer) through `tokio::process` with an argv, never a
//! shell, and a cleared environment ([`GitEnv`]): no user or system config, no terminal prompts.
//!
//! Architecture Invariant: commits reach git only as validated [`Oid`]s and options are ended with
//! `--`/`--end-of-options`, so no webhook field can become an option or a revision expression;
//! the mirror is only written by `fetch`, `merge_for_pr` (objects) and its own setup.

mod cmd;
mod creds;
mod flat;
mod inproc;
mod local;
mod mirror;
mod oid;
mod pool;
mod read;
mod results;
mod retry;
mod rmtree;
mod serve;
mod work;

pub use cmd::{GitEnv, GitError};
pub use creds::token_user;
pub use flat::{flat_ref, wants_more};
pub use local::{LocalRepo, RUN_REF_PREFIXES};
pub use mirror::{FetchTicket, Fetched, Mirror, REFSPECS};
pub use oid::Oid;
pub use pool::{TreePool, pristine_index};
pub use read::{CommitInfo, READ_TREE_LIMIT};
pub use results::{IMPORT_PREFIX, TreeEntry};
pub use retry::{Backoff, retry};
pub use serve::{HttpBody, HttpRequest, HttpResponse, serve_http};
pub use work::{Checkout, MergeOutcome, fetch_checkout};

/// One file of a run's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// A relative path, `/`-separated (`jobs/build/log`).
    pub path: String,
    pub executable: bool,
    pub bytes: Vec<u8>,
}

/// The oldest git with `merge-tree --write-tree`.
pub const MIN_GIT: (u32, u32) = (2, 38);

/// The installed git's version, or an error saying it is missing or older than [`MIN_GIT`].
/// The server calls this once at startup.
pub async fn check_git() -> Result<(u32, u32), GitError> {
    let env = GitEnv::default();
    let g = cmd::Git::new(&env, cmd::At::Nowhere).arg("--version");
    let out = String::from_utf8_lossy(&g.output().await?).into_owned();
    let version = parse_version(&out).ok_or_else(|| GitError::Output {
        args: "--version".into(),
        detail: format!("{:?} is not a version", out.trim()),
    })?;
    if version < MIN_GIT {
        return Err(GitError::Output {
            args: "--version".into(),
            detail: format!(
                "git {}.{} is older than {}.{} (hint: install a newer git)",
                version.0, version.1, MIN_GIT.0, MIN_GIT.1
            ),
        });
    }
    Ok(version)
}

/// `git version 2.47.3` (or `2.39.5.windows.1`, `2.40.0 (Apple Git-…)`) → `(2, 47)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The object id on the first line of `stdout`.
pub(crate) fn parse_oid_line(git: &cmd::Git<'_>, stdout: &[u8]) -> Result<Oid, GitError> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next().unwrap_or_default().trim();
    Oid::parse(line)
        .map_err(|_| git.unexpected(format!("{line:?} where an object id was expected")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.39.5.windows.1"), Some((2, 39)));
        assert_eq!(
            parse_version("git version 2.40.0 (Apple Git-1)"),
            Some((2, 40))
        );
        assert_eq!(parse_version("hub version 1"), None);
        assert!((2, 37) < MIN_GIT && (2, 38) >= MIN_GIT && (3, 0) > MIN_GIT);
    }

    #[tokio::test]
    async fn the_installed_git_is_new_enough() {
        let v = check_git().await.unwrap();
        assert!(v >= MIN_GIT);
    }
}
