//! Short-lived forge credentials for jobs: where a repository can mint them (a GitHub App, a
//! Gitea/Forgejo account), each job of a run of that repository gets one scoped to it, in its
//! environment as a secret, revoked once the job ended.
//!
//! Minting and revoking are network calls: the web layer implements [`ForgeCreds`] (this crate
//! speaks no HTTP), and they run in the job's launch task, after the batch that recorded the
//! job's start, never in the actor.

use baton_core::config::RepoDef;
use baton_exec::{BoxFuture, JobSpec};

/// Mints per-job credentials for repositories that configure it.
pub trait ForgeCreds: Send + Sync + 'static {
    /// A credential for attempt `attempt` of job `job_id`, scoped to repository `repo`;
    /// `Ok(None)` when the repository mints none. The error says what failed and what to do
    /// (the job then does not start).
    fn mint<'a>(
        &'a self,
        repo: &'a RepoDef,
        job_id: i64,
        attempt: u32,
    ) -> BoxFuture<'a, Result<Option<Box<dyn JobCred>>, String>>;
}

/// A credential minted for one job.
pub trait JobCred: Send + Sync {
    /// The token: a secret, masked in the job's log.
    fn token(&self) -> &str;
    /// The environment variables the job finds it in (`BATON_FORGE_TOKEN`…).
    fn variables(&self) -> &'static [&'static str];
    /// Revokes it, once the job ended. A failure is logged; the credential then expires on its
    /// own or is revoked by the server's leftover sweep.
    fn revoke(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Gives `cred` to the job of `spec`: in its environment, masked in its log.
pub(crate) fn hand_over(spec: &mut JobSpec, cred: &dyn JobCred) {
    for var in cred.variables() {
        spec.env.retain(|(k, _)| k != var);
        spec.secrets.env.retain(|(k, _)| k != var);
        spec.secrets
            .env
            .push(((*var).to_owned(), cred.token().to_owned()));
    }
    spec.secrets
        .mask
        .extend(baton_core::decide::mask_values([cred.token().to_owned()]));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl JobCred for Fake {
        fn token(&self) -> &str {
            "ghs_minted_token_1"
        }
        fn variables(&self) -> &'static [&'static str] {
            &["BATON_FORGE_TOKEN", "GITHUB_TOKEN"]
        }
        fn revoke(self: Box<Self>) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn the_token_replaces_plain_variables_and_is_masked() {
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
            "run_id": 1, "job_id": 2, "task": "app/t", "script": "true",
            "env": [["GITHUB_TOKEN", "from the task"], ["A", "b"]],
            "timeout": null, "kill_grace": {"secs": 5, "nanos": 0},
        }))
        .expect("a job spec");
        hand_over(&mut spec, &Fake);
        assert_eq!(spec.env, [("A".to_owned(), "b".to_owned())]);
        assert_eq!(
            spec.secrets.env,
            [
                (
                    "BATON_FORGE_TOKEN".to_owned(),
                    "ghs_minted_token_1".to_owned()
                ),
                ("GITHUB_TOKEN".to_owned(), "ghs_minted_token_1".to_owned()),
            ]
        );
        assert_eq!(spec.secrets.mask, ["ghs_minted_token_1"]);
    }
}
