//! A developer's own repository, for `baton run` with no server: its `HEAD`, a snapshot of its
//! working tree, run results written as parentless commits under their own refs
//! (`refs/baton-runs/…`, `refs/jci-runs/…`), and moving, listing and deleting those refs.
//! Finding the repository and `HEAD`, reading `.baton/` and writing a run are done in process
//! (`inproc`, with `gix`) for a plain repository, else with git (`rev-parse`, `cat-file`, one
//! `git fast-import`).
//!
//! Local reads and writes run in the same cleared environment as everything else here. Only
//! the commands that talk to a remote (`ls-remote`, `push`, `fetch`) get the user's own `HOME`,
//! global git config and ssh agent: they reach the user's remotes with the user's credentials,
//! as a plain `git push` in that repository would.

use std::path::{Path, PathBuf};

use crate::cmd::{At, Git, GitEnv, GitError};
use crate::{Mirror, Oid, TreeFile, parse_oid_line};

/// A git repository with a working tree (or a bare one), as the user has it.
#[derive(Clone)]
pub struct LocalRepo {
    git_dir: PathBuf,
    top: Option<PathBuf>,
    env: GitEnv,
    net: GitEnv,
    /// The plain case `inproc` handles: read and written in process.
    in_process: bool,
}

impl std::fmt::Debug for LocalRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRepo")
            .field("git_dir", &self.git_dir)
            .field("top", &self.top)
            .field("in_process", &self.in_process)
            .finish()
    }
}

impl LocalRepo {
    /// The repository `dir` is in (like `git rev-parse`: `dir` or any parent).
    pub async fn discover(dir: &Path) -> Result<LocalRepo, GitError> {
        Ok(Self::discover_at_head(dir, false).await?.0)
    }

    /// The repository `dir` is in, with `HEAD`'s commit and its branch (as
    /// [`LocalRepo::head`]) when `head` is asked for and `dir` is in a working tree whose
    /// `HEAD` is a commit: one git process for what `baton run` needs first. `None` when not
    /// asked or not known that way (a bare repository, an unborn `HEAD`): ask
    /// [`LocalRepo::head`], which says why. In process for a plain repository, else by git.
    pub async fn discover_at_head(
        dir: &Path,
        head: bool,
    ) -> Result<(LocalRepo, Option<(Oid, Option<String>)>), GitError> {
        if let Some(found) = crate::inproc::discover(dir, head) {
            let repo = LocalRepo {
                git_dir: found.git_dir,
                top: Some(found.top),
                env: GitEnv::default(),
                net: user_env(),
                in_process: true,
            };
            return Ok((repo, found.head));
        }
        let env = GitEnv::default();
        let ask = |top: bool, head: bool| {
            let mut g = Git::new(&env, At::WorkTree(dir)).args([
                "rev-parse",
                "--absolute-git-dir",
                "--is-bare-repository",
            ]);
            if top {
                g = g.arg("--show-toplevel");
            }
            if head {
                // Fixed arguments only: printed in order after the three above.
                g = g.args(["HEAD^{commit}", "--symbolic-full-name", "HEAD"]);
            }
            g.run()
        };
        // One process for a working tree; a bare repository has no top and says so, and an
        // unborn `HEAD` names no commit: both are asked again without what failed.
        let (mut done, mut g) = ask(true, head).await?;
        let mut with_head = head;
        if done.code != Some(0) && head {
            (done, g) = ask(true, false).await?;
            with_head = false;
        }
        if done.code != Some(0) {
            (done, g) = ask(false, false).await?;
            with_head = false;
        }
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        let text = String::from_utf8_lossy(&done.stdout).into_owned();
        let mut lines = text.lines();
        let git_dir = PathBuf::from(lines.next().unwrap_or_default());
        let bare = lines.next() == Some("true");
        let top = lines
            .next()
            .filter(|_| !bare)
            .map(|t| PathBuf::from(t.trim_end()));
        let at_head = if with_head && !bare {
            let oid = lines.next().map(str::trim).unwrap_or_default();
            let oid = Oid::parse(oid)
                .map_err(|_| g.unexpected(format!("{text:?} where HEAD's commit was expected")))?;
            let branch = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("refs/heads/"))
                .map(str::to_owned);
            Some((oid, branch))
        } else {
            None
        };
        let repo = LocalRepo {
            git_dir,
            top,
            env,
            net: user_env(),
            in_process: false,
        };
        Ok((repo, at_head))
    }

    /// The top of the working tree (`None` for a bare repository).
    pub fn top(&self) -> Option<&Path> {
        self.top.as_deref()
    }

    /// The `.git` directory.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The repository as a [`Mirror`] for reads at a commit and checkouts (never fetched).
    pub fn mirror(&self) -> Mirror {
        let url = self.top.as_deref().unwrap_or(&self.git_dir);
        Mirror::open_local(&self.git_dir, &url.to_string_lossy(), self.env.clone())
    }

    fn git(&self) -> Git<'_> {
        Git::new(&self.env, At::GitDir(&self.git_dir))
    }

    /// The commit `rev` names (`HEAD`, a branch, an abbreviated id), checked to be a commit.
    pub async fn resolve(&self, rev: &str) -> Result<Oid, GitError> {
        let g = self
            .git()
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"));
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(GitError::BadArgument {
                what: "revision",
                given: rev.to_owned(),
                reason: "it names no commit in this repository",
            });
        }
        parse_oid_line(&g, &done.stdout)
    }

    /// `HEAD`'s commit and the branch it is on (`None` when detached), with one git process;
    /// an unborn `HEAD` fails as [`LocalRepo::resolve`] does.
    pub async fn head(&self) -> Result<(Oid, Option<String>), GitError> {
        // Fixed arguments only (no option may follow `--end-of-options`).
        let g = self
            .git()
            .args(["rev-parse", "HEAD^{commit}", "--symbolic-full-name", "HEAD"]);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return self.resolve("HEAD").await.map(|oid| (oid, None));
        }
        let text = String::from_utf8_lossy(&done.stdout).into_owned();
        let mut lines = text.lines();
        let oid = Oid::parse(lines.next().unwrap_or_default().trim())
            .map_err(|_| g.unexpected(format!("{text:?} where HEAD's commit was expected")))?;
        let branch = lines
            .next()
            .and_then(|l| l.trim().strip_prefix("refs/heads/"))
            .map(str::to_owned);
        Ok((oid, branch))
    }

    /// The branch `HEAD` is on (`None` when detached).
    pub async fn branch(&self) -> Result<Option<String>, GitError> {
        let g = self
            .git()
            .args(["symbolic-ref", "--quiet", "--short", "HEAD"]);
        let (done, g) = g.run().await?;
        match done.code {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&done.stdout).trim().to_owned(),
            )),
            Some(1) => Ok(None),
            _ => Err(g.failed(&done)),
        }
    }

    /// The working tree as it is now, uncommitted changes and untracked files included (what
    /// `git add -A` would stage; ignored files are not): its tree, and a commit of it whose
    /// parent is `HEAD`, written into the repository but referenced by nothing. The user's
    /// index is not touched (a temporary one is used).
    pub async fn snapshot(&self, head: &Oid) -> Result<(Oid, Oid), GitError> {
        let top = self.top.as_deref().ok_or_else(|| GitError::BadArgument {
            what: "repository",
            given: self.git_dir.display().to_string(),
            reason: "a bare repository has no working tree to snapshot",
        })?;
        let index = tempfile_path(&self.git_dir, "baton-snapshot-index");
        let original = self.git_dir.join("index");
        if original.exists() {
            std::fs::copy(&original, &index).map_err(|e| GitError::io(&index, e))?;
        }
        let tree = self.snapshot_tree(top, &index).await;
        let _ = std::fs::remove_file(&index);
        let tree = tree?;
        let g = self
            .git()
            .args([
                "commit-tree",
                "-p",
                head.as_str(),
                "-m",
                "baton run --dirty",
            ])
            .arg(tree.as_str());
        let g = with_ident(g);
        let out = g.output().await?;
        let commit = parse_oid_line(&self.git(), &out)?;
        Ok((tree, commit))
    }

    async fn snapshot_tree(&self, top: &Path, index: &Path) -> Result<Oid, GitError> {
        let idx = index.to_string_lossy().into_owned();
        Git::new(&self.env, At::WorkTree(top))
            .args(["add", "-A", "--", "."])
            .env("GIT_INDEX_FILE", idx.clone())
            .output()
            .await?;
        let g = Git::new(&self.env, At::WorkTree(top))
            .arg("write-tree")
            .env("GIT_INDEX_FILE", idx);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        parse_oid_line(&g, &done.stdout)
    }

    /// Like [`Mirror::read_tree`] on [`LocalRepo::mirror`]: every regular file under `dir` at
    /// `commit`, in process for a plain repository.
    pub async fn read_tree(
        &self,
        commit: &Oid,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        match self.in_process {
            true if !(dir.is_empty() || dir.starts_with('-') || dir.starts_with('/')) => {
                crate::inproc::read_tree(&crate::inproc::open(&self.git_dir)?, commit, dir)
            }
            _ => self.mirror().read_tree(commit, dir).await,
        }
    }

    /// Writes `files` as the tree of a new parentless commit with `message` and points
    /// `refname` at it (which must not exist yet): in process (loose objects, the ref by a lock
    /// file) for a plain repository, else in one `git fast-import`.
    pub async fn write_run(
        &self,
        refname: &str,
        message: &str,
        files: &[TreeFile],
    ) -> Result<Oid, GitError> {
        check_run_ref(refname)?;
        if self.in_process {
            let repo = crate::inproc::open(&self.git_dir)?;
            return crate::inproc::write_run(&repo, refname, message, files);
        }
        let mut input = Vec::new();
        input.extend_from_slice(format!("commit {refname}\nmark :1\n").as_bytes());
        input.extend_from_slice(b"committer Baton <baton@localhost> now\n");
        data(&mut input, message.as_bytes());
        for f in files {
            let mode = if f.executable { "100755" } else { "100644" };
            input.extend_from_slice(format!("M {mode} inline {}\n", quote(&f.path)).as_bytes());
            data(&mut input, &f.bytes);
        }
        input.extend_from_slice(b"\nget-mark :1\n");
        let g = self
            .git()
            // Keep the run as one small pack: no second process to unpack it into loose objects.
            // Not synced to disk, as git leaves the loose objects of a `git commit` unsynced by
            // default (`core.fsync`): the pack and its index cost two fsyncs otherwise.
            .args(["-c", "fastimport.unpackLimit=0", "-c", "core.fsync=none"])
            .args(["fast-import", "--quiet", "--date-format=now"])
            .stdin(input);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        parse_oid_line(&g, &done.stdout)
    }

    /// Every ref under `prefix` and its commit, sorted by name.
    pub async fn refs(&self, prefix: &str) -> Result<Vec<(String, Oid)>, GitError> {
        self.mirror().refs(prefix).await
    }

    /// The file at `path` in the tree of `rev` (a full ref or an object id), `None` if absent.
    pub async fn read_file(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let g = self
            .git()
            .args(["cat-file", "blob", "--end-of-options"])
            .arg(format!("{rev}:{path}"));
        let (done, _) = g.run().await?;
        Ok((done.code == Some(0)).then_some(done.stdout))
    }

    /// The files named `rev:path` in `specs` (`None` for those that do not exist), through one
    /// `git cat-file --batch`.
    pub async fn read_files(&self, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        self.mirror().read_files(specs).await
    }

    /// The paths of every file under `dir` in the tree of `rev`, sorted.
    pub async fn list_files(&self, rev: &str, dir: &str) -> Result<Vec<String>, GitError> {
        let g = self
            .git()
            .args([
                "ls-tree",
                "-r",
                "-z",
                "--name-only",
                "--full-tree",
                "--end-of-options",
            ])
            .arg(rev)
            .args(["--", dir]);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        Ok(done
            .stdout
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect())
    }

    /// The first-parent history from `rev`, newest first, at most `n` commits: id and subject.
    pub async fn log(&self, rev: &str, n: usize) -> Result<Vec<(Oid, String)>, GitError> {
        let g = self
            .git()
            .args(["log", "--first-parent", "--format=%H %s"])
            .arg(format!("--max-count={n}"))
            .args(["--end-of-options", rev, "--"]);
        let out = g.output().await?;
        let text = String::from_utf8_lossy(&out);
        let mut commits = Vec::new();
        for line in text.lines() {
            let (id, subject) = line.split_once(' ').unwrap_or((line, ""));
            commits.push((Oid::parse(id)?, subject.to_owned()));
        }
        Ok(commits)
    }

    /// Deletes `refs` (each under `refs/baton-runs/` or `refs/jci-runs/`) in one transaction.
    pub async fn delete_refs(&self, refs: &[String]) -> Result<(), GitError> {
        let mut input = String::new();
        for r in refs {
            check_run_ref(r)?;
            input.push_str(&format!("delete {r}\n"));
        }
        if refs.is_empty() {
            return Ok(());
        }
        self.git()
            .args(["update-ref", "--stdin"])
            .stdin(input.into_bytes())
            .output()
            .await?;
        Ok(())
    }

    /// `git gc`: with `now`, unreachable objects are deleted at once (`--prune=now`: this also
    /// drops any other unreachable object of the repository), else after git's own grace.
    pub async fn gc(&self, now: bool) -> Result<(), GitError> {
        let mut g = self.git().args(["gc", "--quiet"]);
        if now {
            g = g.arg("--prune=now");
        }
        g.output().await?;
        Ok(())
    }

    /// The refs under each of `prefixes` on `remote` (a remote's name or URL).
    pub async fn remote_refs(
        &self,
        remote: &str,
        prefixes: &[&str],
    ) -> Result<Vec<(String, Oid)>, GitError> {
        check_remote(remote)?;
        let patterns: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
        let g = Git::new(&self.net, At::GitDir(&self.git_dir))
            .args(["ls-remote", "--refs", "--end-of-options", remote])
            .args(patterns);
        let out = g.output().await?;
        let text = String::from_utf8_lossy(&out);
        let mut refs = Vec::new();
        for line in text.lines() {
            if let Some((oid, name)) = line.split_once('\t') {
                refs.push((name.to_owned(), Oid::parse(oid)?));
            }
        }
        Ok(refs)
    }

    /// Pushes `refs` (each to the same name) to `remote`; `delete` pushes their deletion.
    pub async fn push_refs(
        &self,
        remote: &str,
        refs: &[String],
        delete: bool,
    ) -> Result<(), GitError> {
        check_remote(remote)?;
        for chunk in refs.chunks(500) {
            let mut specs = Vec::new();
            for r in chunk {
                check_run_ref(r)?;
                specs.push(if delete {
                    format!(":{r}")
                } else {
                    format!("{r}:{r}")
                });
            }
            Git::new(&self.net, At::GitDir(&self.git_dir))
                .args(["push", "--quiet", "--no-verify", "--end-of-options", remote])
                .args(specs)
                .output()
                .await?;
        }
        Ok(())
    }

    /// Fetches `refs` (each to the same name) from `remote`.
    pub async fn fetch_refs(&self, remote: &str, refs: &[String]) -> Result<(), GitError> {
        check_remote(remote)?;
        for chunk in refs.chunks(500) {
            let mut specs = Vec::new();
            for r in chunk {
                check_run_ref(r)?;
                specs.push(format!("{r}:{r}"));
            }
            Git::new(&self.net, At::GitDir(&self.git_dir))
                .args(["fetch", "--quiet", "--no-write-fetch-head", "--no-tags"])
                .args(["--end-of-options", remote])
                .args(specs)
                .output()
                .await?;
        }
        Ok(())
    }
}

/// The prefixes of result refs: Baton's own and git-jci's.
pub const RUN_REF_PREFIXES: &[&str] = &["refs/baton-runs/", "refs/jci-runs/"];

/// A ref may only be written, moved or deleted here if it is a result ref with a sane name.
pub(crate) fn check_run_ref(name: &str) -> Result<(), GitError> {
    let under = RUN_REF_PREFIXES.iter().any(|p| name.starts_with(p));
    let sane = !name.contains("..")
        && !name.contains("//")
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if under && sane {
        Ok(())
    } else {
        Err(GitError::BadArgument {
            what: "result ref",
            given: name.to_owned(),
            reason: "it must be under refs/baton-runs/ or refs/jci-runs/ and use only letters, digits, `/-_.`",
        })
    }
}

fn check_remote(remote: &str) -> Result<(), GitError> {
    if remote.is_empty() || remote.starts_with('-') {
        return Err(GitError::BadArgument {
            what: "remote",
            given: remote.to_owned(),
            reason: "name a remote (`origin`) or give its URL",
        });
    }
    Ok(())
}

/// The user's environment for commands that reach a remote: their home, global config and
/// ssh agent.
fn user_env() -> GitEnv {
    let mut env = GitEnv::default();
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        let global = home.join(".gitconfig");
        env.vars
            .push(("GIT_CONFIG_GLOBAL".into(), global.to_string_lossy().into()));
        env.home = Some(home);
    }
    for key in ["SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH"] {
        if let Ok(v) = std::env::var(key) {
            env.vars.push((key.into(), v));
        }
    }
    env
}

/// Who commits a `--dirty` snapshot.
fn with_ident(g: Git<'_>) -> Git<'_> {
    g.env("GIT_AUTHOR_NAME", "Baton".into())
        .env("GIT_AUTHOR_EMAIL", "baton@localhost".into())
        .env("GIT_COMMITTER_NAME", "Baton".into())
        .env("GIT_COMMITTER_EMAIL", "baton@localhost".into())
}

fn tempfile_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}-{}", std::process::id()))
}

/// A fast-import `data` command with its bytes.
fn data(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("data {}\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

/// A path as a C-style quoted string, as fast-import reads it.
fn quote(path: &str) -> String {
    let mut q = String::with_capacity(path.len() + 2);
    q.push('"');
    for c in path.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\{:03o}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests;
