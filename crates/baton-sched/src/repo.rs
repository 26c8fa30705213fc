//! Runs for a repository's code: triggers that carry their own definition (a repository's
//! `.baton/` task is not in the server config) and the commit they build, the `BATON_*`
//! environment such a run's jobs get, and the checkout they start in.
//!
//! The definition travels with the trigger and is kept as the run's snapshot like any other, so
//! the scheduler never needs to know a repository's config: a run is self-contained from the
//! moment it is recorded (also across restarts).

use std::path::{Path, PathBuf};

use baton_store::{RunFolders, RunRow};

use crate::jobs::{LiveRun, TargetDef};

/// The environment a repository run's jobs get (none for other runs). Values are the run's
/// recorded facts; they reach the job only as environment variables, never as shell text.
pub(crate) fn job_env(row: &RunRow) -> Vec<(String, String)> {
    let Some(r) = &row.repo else {
        return Vec::new();
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("CI".into(), "true".into()),
        ("BATON_REPO".into(), r.repo.clone()),
        ("BATON_REPO_URL".into(), r.url.clone()),
        ("BATON_COMMIT".into(), r.commit.clone()),
        ("BATON_REF".into(), opt(&r.git_ref)),
        ("BATON_BRANCH".into(), opt(&r.branch)),
        ("BATON_TAG".into(), opt(&r.tag)),
        (
            "BATON_PR".into(),
            r.pr.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("BATON_EVENT".into(), r.event.clone()),
    ]
}

/// Whether a run's jobs get no secrets: it builds a pull request from a fork.
pub(crate) fn withholds_secrets(row: &RunRow) -> bool {
    row.repo.as_ref().is_some_and(|r| r.pr_fork)
}

/// A checkout to make before a job starts.
#[derive(Debug, Clone)]
pub(crate) struct CheckoutPlan {
    mirror: PathBuf,
    url: String,
    commit: String,
}

/// The checkout a job of `run` starts in: repository runs whose definition says `checkout`
/// (the default).
pub(crate) fn checkout_plan(folders: &RunFolders, run: &LiveRun) -> Option<CheckoutPlan> {
    let r = run.row.repo.as_ref()?;
    let wanted = match &run.def {
        TargetDef::Task(t) => t.checkout,
        TargetDef::Pipeline(p) => p.checkout,
    };
    wanted.then(|| CheckoutPlan {
        mirror: folders.repo_mirror(&r.repo),
        url: r.url.clone(),
        commit: r.commit.clone(),
    })
}

impl CheckoutPlan {
    /// Makes `<job dir>/work` a checkout of exactly the commit, from the server's mirror (no
    /// network). The job's working directory is `work/`.
    pub(crate) async fn make(&self, job_dir: &Path) -> Result<(), String> {
        let fail = |e: baton_git::GitError| {
            format!(
                "could not check out commit {} of {}: {e}",
                self.commit, self.url
            )
        };
        let commit = baton_git::Oid::parse(&self.commit).map_err(fail)?;
        let mirror = baton_git::Mirror::ensure(&self.url, &self.mirror)
            .await
            .map_err(fail)?;
        mirror
            .checkout(&commit, &job_dir.join("work"))
            .await
            .map_err(fail)?;
        Ok(())
    }
}
