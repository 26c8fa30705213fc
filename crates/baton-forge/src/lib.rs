//! Baton's forge edge: verify a webhook delivery exactly as its forge documents, parse it into
//! one [`Event`], and tell whether two clone URLs name the same repository ([`same_repo`]);
//! build (never send) the API requests the server makes: commit statuses, GitHub check runs,
//! and the minting and revoking of a job's token ([`app_jwt`] signs for a time it is given).
//!
//! Architecture Invariant: no I/O, no async, no clock. The server hands in the raw body and the
//! headers; this crate never runs anything a payload names, and no payload field is trusted
//! before [`verify`] accepted the delivery.

mod checks;
mod creds;
mod event;
mod json;
mod parse;
mod status;
mod url;
mod verify;
mod web;

pub use checks::{
    CheckRun, CheckState, check_run_id, create_check_run, find_check_run, list_check_runs,
    update_check_run,
};
pub use creds::{
    ApiRequest, CredError, Method, app_jwt, gitea_revoke_request, gitea_token, gitea_token_request,
    github_revoke_request, github_token, github_token_request,
};
pub use event::{
    CommitSummary, Event, EventKind, Forge, PrAction, PullRequest, Push, RefTarget, Repository,
    skip_ci,
};
pub use parse::{HookError, ParseError, is_zero_sha, parse, receive};
pub use status::{
    CommitStatus, StatusError, StatusRequest, StatusState, api_base, repo_path, status_request,
};
pub use url::{RepoUrl, UrlError, same_repo};
pub use verify::{Headers, VerifyError, sign, signature_header, verify};
pub use web::{WebLinks, public_url, web_base};

/// The largest body a forge sends (GitHub drops deliveries above 25 MB); the server refuses
/// longer bodies before verifying them.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
