//! Working trees for jobs, and the merge a pull request would make.
//!
//! A checkout is a clone of the mirror that borrows its objects (what `git clone --shared
//! --no-checkout` makes, written directly) followed by `git checkout --detach <commit>`, not
//! `git worktree add`: both copy no objects (the clone
//! borrows the mirror's through `objects/info/alternates`), but a worktree shares the mirror's
//! refs and config, so a job running `git update-ref` or `git config` inside it would change the
//! mirror every later build reads. The clone has its own refs and config; the mirror is only
//! read. Removing a checkout is deleting its directory.

use std::path::{Path, PathBuf};

use crate::cmd::{At, Git, GitEnv, GitError};
use crate::rmtree::remove_tree;
use crate::{Mirror, Oid, parse_oid_line};

/// A working tree of exactly one commit, made by [`Mirror::checkout`].
#[derive(Debug)]
pub struct Checkout {
    path: PathBuf,
    commit: Oid,
}

impl Checkout {
    pub(crate) fn new(path: &Path, commit: &Oid) -> Checkout {
        Checkout {
            path: path.to_owned(),
            commit: commit.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn commit(&self) -> &Oid {
        &self.commit
    }

    /// Deletes the working tree, even where a job made files read-only.
    pub async fn remove(self) -> Result<(), GitError> {
        remove_tree(&self.path).await
    }
}

/// What merging a pull request's head into its target gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// A clean merge: its tree, and a merge commit (parents base then head) written into the
    /// mirror, the same commit id each time for the same base and head.
    Merged { tree: Oid, commit: Oid },
    /// The merge conflicts in these paths, sorted.
    Conflict { paths: Vec<String> },
}

impl Mirror {
    /// Makes `dest` (which must not exist, or be an empty directory) a working tree of exactly
    /// `commit`, from the mirror, without the network.
    pub async fn checkout(&self, commit: &Oid, dest: &Path) -> Result<Checkout, GitError> {
        self.clone_shared(dest).await?;
        self.detached_checkout(commit, dest).await
    }

    /// Like [`Mirror::checkout`], for a repository that outlives the checkout (a developer's
    /// own, for `baton run`): a fresh repository at `dest` borrowing this one's objects
    /// (`objects/info/alternates`), with no refs of it and without the ref listing a clone
    /// makes through `upload-pack`; then the same detached checkout, submodules and LFS files.
    pub async fn checkout_borrowing(
        &self,
        commit: &Oid,
        dest: &Path,
    ) -> Result<Checkout, GitError> {
        // The repository is written here rather than by `git init` (a process less): what git
        // needs to find one (`HEAD`, `objects/`, `refs/`) and a plain config.
        let git_dir = dest.join(".git");
        let info = git_dir.join("objects/info");
        let objects = std::path::absolute(self.dir().join("objects"))
            .map_err(|e| GitError::io(self.dir(), e))?;
        // Six small writes, done here rather than as six trips to the blocking pool (each
        // `tokio::fs` call is one): this is on `baton run`'s path before its first job starts.
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&info)?;
            std::fs::create_dir_all(git_dir.join("refs/heads"))?;
            std::fs::create_dir_all(git_dir.join("refs/tags"))?;
            std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n")?;
            std::fs::write(
                git_dir.join("config"),
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n",
            )?;
            let line = format!("{}\n", objects.display());
            std::fs::write(info.join("alternates"), line)
        })();
        if let Err(e) = written {
            let _ = remove_tree(dest).await;
            return Err(GitError::io(&info, e));
        }
        self.detached_checkout(commit, dest).await
    }

    /// Checks out `commit` detached in the repository at `dest`, then its submodules and LFS
    /// files; removes `dest` if any of it fails.
    async fn detached_checkout(&self, commit: &Oid, dest: &Path) -> Result<Checkout, GitError> {
        let done = Git::new(&self.env, At::WorkTree(dest))
            .args(["checkout", "--quiet", "--detach"])
            .arg(commit.as_str())
            .arg("--")
            .output()
            .await;
        if let Err(e) = done {
            let _ = remove_tree(dest).await;
            return Err(self.classify(e, commit).await);
        }
        let extras = async {
            self.update_submodules(dest).await?;
            self.pull_lfs(dest).await
        };
        if let Err(e) = extras.await {
            let _ = remove_tree(dest).await;
            return Err(e);
        }
        Ok(Checkout::new(dest, commit))
    }

    /// `dest` (absent or empty) becomes a clone of the mirror that borrows its objects, with no
    /// files checked out and no hooks: what `git clone --shared --no-checkout --template=` makes
    /// (the mirror as `origin`, its branches as `refs/remotes/origin/*`, its tags), written here
    /// from one listing of the mirror's refs instead of a clone (three processes, one of them
    /// `upload-pack`). `HEAD` is unborn until the checkout detaches it at the job's commit.
    pub(crate) async fn clone_shared(&self, dest: &Path) -> Result<(), GitError> {
        let mirror = std::path::absolute(self.dir()).map_err(|e| GitError::io(self.dir(), e))?;
        let config = format!(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n[remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
            config_value(&mirror.to_string_lossy())
        );
        let alternates = format!("{}\n", mirror.join("objects").display());
        let git = dest.join(".git");
        let written = tokio::task::spawn_blocking({
            let git = git.clone();
            move || -> std::io::Result<()> {
                std::fs::create_dir_all(git.join("objects/info"))?;
                std::fs::create_dir_all(git.join("refs/heads"))?;
                std::fs::create_dir_all(git.join("refs/tags"))?;
                std::fs::write(git.join("objects/info/alternates"), alternates)?;
                std::fs::write(git.join("config"), config)?;
                std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n")
            }
        })
        .await
        .map_err(|e| GitError::io(&git, std::io::Error::other(e)))?;
        written.map_err(|e| GitError::io(&git, e))?;
        self.write_refs(&git).await
    }

    /// Writes the mirror's refs into the clone whose git directory is `git`, as a clone has
    /// them: its branches as `refs/remotes/origin/*`, its tags (`packed-refs`, replaced whole).
    pub(crate) async fn write_refs(&self, git: &Path) -> Result<(), GitError> {
        let mut packed = String::new();
        for (name, oid) in self.refs_under(&["refs/heads/", "refs/tags/"]).await? {
            match name.strip_prefix("refs/heads/") {
                Some(branch) => packed.push_str(&format!("{oid} refs/remotes/origin/{branch}\n")),
                None => packed.push_str(&format!("{oid} {name}\n")),
            }
        }
        let file = git.join("packed-refs");
        tokio::fs::write(&file, packed)
            .await
            .map_err(|e| GitError::io(&file, e))
    }

    /// When the checkout at `dest` has a `.gitmodules`, fetches and checks out its submodules
    /// (recursively) at the commits it records, with the mirror's environment (credentials).
    /// Relative submodule URLs mean relative to the repository's own URL, so the checkout's
    /// `origin` is set to it first. Local paths are allowed as submodule URLs only when the
    /// repository itself is a local path (the operator configured it so): a repository on a
    /// forge cannot make the server copy one of its directories into a job.
    pub(crate) async fn update_submodules(&self, dest: &Path) -> Result<(), GitError> {
        let has = tokio::fs::try_exists(dest.join(".gitmodules"))
            .await
            .map_err(|e| GitError::io(dest, e))?;
        if !has {
            return Ok(());
        }
        Git::new(&self.env, At::WorkTree(dest))
            .args(["config", "remote.origin.url"])
            .arg(&self.url)
            .output()
            .await?;
        let local = self.url.starts_with('/') || self.url.starts_with("file://");
        let file = if local { "always" } else { "never" };
        Git::new(&self.env, At::WorkTree(dest))
            .arg("-c")
            .arg(format!("protocol.file.allow={file}"))
            .args([
                "submodule",
                "--quiet",
                "update",
                "--init",
                "--recursive",
                "--",
            ])
            .output()
            .await?;
        Ok(())
    }

    /// When the checkout at `dest` has LFS files (`filter=lfs` in its `.gitattributes`) and
    /// `git-lfs` is installed, replaces their pointers with their content, fetched from the
    /// repository's own URL (a local path as `file://`) with the mirror's environment. Without
    /// `git-lfs` the pointer files stay, as a plain `git clone` leaves them.
    pub(crate) async fn pull_lfs(&self, dest: &Path) -> Result<(), GitError> {
        let attributes = tokio::fs::read(dest.join(".gitattributes"))
            .await
            .unwrap_or_default();
        if !attributes.windows(10).any(|w| w == b"filter=lfs") {
            return Ok(());
        }
        let (probe, _) = Git::new(&self.env, At::WorkTree(dest))
            .args(["lfs", "version"])
            .run()
            .await?;
        if probe.code != Some(0) {
            return Ok(());
        }
        let url = if self.url.starts_with('/') {
            format!("file://{}", self.url)
        } else {
            self.url.clone()
        };
        let git = || Git::new(&self.env, At::WorkTree(dest));
        git()
            .args(["config", "remote.origin.url"])
            .arg(url)
            .output()
            .await?;
        git()
            .args(["lfs", "install", "--local", "--skip-repo"])
            .output()
            .await?;
        git().args(["lfs", "pull"]).output().await?;
        Ok(())
    }

    /// Merges `head` into `base` in memory (`git merge-tree --write-tree`, git 2.38 or newer),
    /// touching no working tree. A clean merge also gets a merge commit whose author, committer
    /// and date are fixed (Baton, the head's commit date), so the same pair always gives the
    /// same commit.
    pub async fn merge_for_pr(&self, base: &Oid, head: &Oid) -> Result<MergeOutcome, GitError> {
        // merge-tree exits 1 both for a conflict and for an unknown commit: check first.
        for commit in [base, head] {
            if !self.has_commit(commit).await? {
                return Err(GitError::MissingCommit(commit.to_string()));
            }
        }
        let g = Git::new(&self.env, At::GitDir(self.dir()))
            .args([
                "merge-tree",
                "--write-tree",
                "--name-only",
                "-z",
                "--no-messages",
                "--end-of-options",
            ])
            .args([base.as_str(), head.as_str()]);
        let (done, g) = g.run().await?;
        let mut parts = done.stdout.split(|b| *b == 0).filter(|p| !p.is_empty());
        let tree = || -> Result<Oid, GitError> {
            let first = done.stdout.split(|b| *b == 0).next().unwrap_or_default();
            Oid::parse(&String::from_utf8_lossy(first)).map_err(|_| g.unexpected("no tree id"))
        };
        match done.code {
            Some(0) => {
                let tree = tree()?;
                let commit = self.merge_commit(&tree, base, head).await?;
                Ok(MergeOutcome::Merged { tree, commit })
            }
            Some(1) => {
                parts.next();
                let mut paths: Vec<String> = parts
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                paths.sort();
                paths.dedup();
                if paths.is_empty() {
                    return Err(g.failed(&done));
                }
                Ok(MergeOutcome::Conflict { paths })
            }
            _ => Err(g.failed(&done)),
        }
    }

    async fn merge_commit(&self, tree: &Oid, base: &Oid, head: &Oid) -> Result<Oid, GitError> {
        let message = format!("Merge {head} into {base}");
        self.fixed_commit(tree, &[base, head], &message, head).await
    }

    /// Writes a commit of `tree` with `parents`, authored and committed by Baton at the commit
    /// date of `dated`, so the same inputs always give the same commit.
    pub(crate) async fn fixed_commit(
        &self,
        tree: &Oid,
        parents: &[&Oid],
        message: &str,
        dated: &Oid,
    ) -> Result<Oid, GitError> {
        let info = self.commit_info(dated).await?;
        let date = format!("{} {}", info.committer_time, info.committer_tz);
        let mut g =
            Git::new(&self.env, At::GitDir(self.dir())).args(["commit-tree", tree.as_str()]);
        for p in parents {
            g = g.args(["-p", p.as_str()]);
        }
        let g = g
            .arg("-m")
            .arg(message)
            .env("GIT_AUTHOR_NAME", "Baton".into())
            .env("GIT_AUTHOR_EMAIL", "baton@localhost".into())
            .env("GIT_COMMITTER_NAME", "Baton".into())
            .env("GIT_COMMITTER_EMAIL", "baton@localhost".into())
            .env("GIT_AUTHOR_DATE", date.clone())
            .env("GIT_COMMITTER_DATE", date);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        parse_oid_line(&g, &done.stdout)
    }
}

/// Makes `dest` (absent or an empty directory) a working tree of exactly `commit`, fetched
/// from `url` (for example Baton's smart-HTTP endpoint of a job's repository) with `env`
/// (its credentials travel as config in the environment, not in argv). The tree has its own
/// refs and config, like [`Mirror::checkout`]'s. A commit with submodules or LFS files also
/// gets their files from the commit's flattened tree (see [`Mirror::flat_commit`]), which
/// `url` must serve.
pub async fn fetch_checkout(
    url: &str,
    commit: &Oid,
    dest: &Path,
    env: &GitEnv,
) -> Result<Checkout, GitError> {
    if url.is_empty() || url.starts_with('-') {
        return Err(GitError::BadArgument {
            what: "repository URL",
            given: crate::cmd::redact(url),
            reason: "it must not be empty or start with `-`",
        });
    }
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| GitError::io(dest, e))?;
    let steps = async {
        Git::new(env, At::Nowhere)
            .args(["init", "--quiet", "--template=", "--"])
            .arg(dest)
            .output()
            .await?;
        fetch_into(env, dest, url, &format!("{commit}:refs/baton/checkout")).await?;
        Git::new(env, At::WorkTree(dest))
            .args(["checkout", "--quiet", "--detach"])
            .arg(commit.as_str())
            .arg("--")
            .output()
            .await?;
        Git::new(env, At::WorkTree(dest))
            .args(["update-ref", "-d", "refs/baton/checkout"])
            .output()
            .await?;
        fetch_flat(url, commit, dest, env).await
    };
    if let Err(e) = steps.await {
        let _ = remove_tree(dest).await;
        return Err(e);
    }
    Ok(Checkout::new(dest, commit))
}

/// `value` as a git config value: quoted, with quotes, backslashes and newlines escaped.
fn config_value(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// Fetches `refspec` from `url` into the repository at `dest`.
async fn fetch_into(env: &GitEnv, dest: &Path, url: &str, refspec: &str) -> Result<(), GitError> {
    Git::new(env, At::WorkTree(dest))
        .args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
        ])
        .arg(url)
        .arg(refspec)
        .output()
        .await?;
    Ok(())
}

/// When the checkout at `dest` has submodules or LFS files, fetches the commit's flattened
/// tree ([`crate::flat_ref`], which Baton's endpoint serves) and lays its files over the
/// checkout; HEAD and the index stay the commit's.
async fn fetch_flat(url: &str, commit: &Oid, dest: &Path, env: &GitEnv) -> Result<(), GitError> {
    let modules = tokio::fs::try_exists(dest.join(".gitmodules"))
        .await
        .map_err(|e| GitError::io(dest, e))?;
    let attributes = tokio::fs::read(dest.join(".gitattributes")).await.ok();
    if !crate::flat::wants_more(modules, attributes.as_deref()) {
        return Ok(());
    }
    let git = || Git::new(env, At::WorkTree(dest));
    let refspec = format!("{}:refs/baton/flat", crate::flat_ref(commit));
    fetch_into(env, dest, url, &refspec).await?;
    git()
        .args(["checkout", "--quiet", "refs/baton/flat", "--", "."])
        .output()
        .await?;
    git().args(["reset", "--quiet"]).output().await?;
    git()
        .args(["update-ref", "-d", "refs/baton/flat"])
        .output()
        .await?;
    Ok(())
}
