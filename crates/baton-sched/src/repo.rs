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

/// How git reaches repository `repo` for its mirror's fetches: with its `token:` as an HTTP
/// header and its `ssh_key:` as the only ssh identity (host keys checked against
/// `server.known_hosts` when set), both given through git's environment, never its argv.
pub fn git_env(
    config: &baton_core::config::Config,
    repo: &baton_core::config::RepoDef,
) -> Result<baton_git::GitEnv, baton_git::GitError> {
    let mut env = baton_git::GitEnv::default();
    if let Some(token) = &repo.token {
        env = env.with_token(
            baton_git::token_user(repo.forge.as_str()),
            token.value.expose(),
            &repo.url,
        );
    }
    if let Some(key) = &repo.ssh_key {
        let known = config.server.known_hosts.as_deref().map(Path::new);
        env = env.with_ssh_key(key, known)?;
    }
    Ok(env)
}

/// Whether a run's jobs get no secrets: it builds a pull request from a fork.
pub(crate) fn withholds_secrets(row: &RunRow) -> bool {
    row.repo.as_ref().is_some_and(|r| r.pr_fork)
}

/// How many ended jobs' working trees each repository keeps for reuse.
const TREES_KEPT: usize = 4;

/// A checkout to make before a job starts.
#[derive(Debug, Clone)]
pub(crate) struct CheckoutPlan {
    mirror: PathBuf,
    /// The repository's working trees kept for reuse.
    trees: baton_git::TreePool,
    url: String,
    commit: String,
    /// The repository's credentials (for submodules fetched from their URLs).
    env: baton_git::GitEnv,
}

/// The checkout a job of `run` starts in: repository runs whose definition says `checkout`
/// (the default).
pub(crate) fn checkout_plan(
    folders: &RunFolders,
    config: &baton_core::config::Config,
    run: &LiveRun,
) -> Option<CheckoutPlan> {
    let r = run.row.repo.as_ref()?;
    let wanted = match &run.def {
        TargetDef::Task(t) => t.checkout,
        TargetDef::Pipeline(p) => p.checkout,
    };
    // A repository no longer configured keeps its mirror; it just gets no credentials.
    let env = config
        .repos
        .get(&r.repo)
        .and_then(|def| git_env(config, def).ok())
        .unwrap_or_default();
    wanted.then(|| CheckoutPlan {
        mirror: folders.repo_mirror(&r.repo),
        trees: baton_git::TreePool::new(folders.repo_trees(&r.repo), TREES_KEPT),
        url: r.url.clone(),
        commit: r.commit.clone(),
        env,
    })
}

impl CheckoutPlan {
    /// The commit to check out.
    pub(crate) fn commit(&self) -> &str {
        &self.commit
    }

    /// Makes `<job dir>/work` a checkout of exactly the commit, from the server's mirror (no
    /// network), reusing an ended job's tree of the same repository when one waits. The job's
    /// working directory is `work/`.
    pub(crate) async fn make(&self, job_dir: &Path) -> Result<(), String> {
        let fail = |e: baton_git::GitError| {
            format!(
                "could not check out commit {} of {}: {e}",
                self.commit, self.url
            )
        };
        let commit = baton_git::Oid::parse(&self.commit).map_err(fail)?;
        let mirror = baton_git::Mirror::ensure_with(&self.url, &self.mirror, self.env.clone())
            .await
            .map_err(fail)?;
        mirror
            .checkout_pooled(&self.trees, &commit, &job_dir.join("work"))
            .await
            .map_err(fail)?;
        Ok(())
    }

    /// Once the job has ended (its end recorded, nothing of it running), puts its `work/` back
    /// for the next job of the repository, scrubbed to its commit again; a tree that cannot be
    /// kept is deleted.
    pub(crate) async fn give_back(&self, job_dir: &Path, job_id: i64, attempt: u32) {
        let work = job_dir.join("work");
        let kept = async {
            let commit = baton_git::Oid::parse(&self.commit)?;
            let mirror =
                baton_git::Mirror::ensure_with(&self.url, &self.mirror, self.env.clone()).await?;
            mirror
                .give_back_pooled(&self.trees, &work, &commit, &format!("{job_id}-{attempt}"))
                .await
        };
        if let Err(e) = kept.await {
            tracing::warn!(
                job_id,
                attempt,
                "could not keep the job's working tree: {e}"
            );
        }
    }
}
