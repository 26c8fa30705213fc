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
mod mirror;
mod oid;
mod read;
mod retry;
mod work;

pub use cmd::{GitEnv, GitError};
pub use mirror::{Fetched, Mirror, REFSPECS};
pub use oid::Oid;
pub use read::{CommitInfo, READ_TREE_LIMIT};
pub use retry::{Backoff, retry};
pub use work::{Checkout, MergeOutcome};

/// The object id on the first line of `stdout`.
pub(crate) fn parse_oid_line(git: &cmd::Git<'_>, stdout: &[u8]) -> Result<Oid, GitError> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next().unwrap_or_default().trim();
    Oid::parse(line)
        .map_err(|_| git.unexpected(format!("{line:?} where an object id was expected")))
}
