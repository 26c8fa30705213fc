//! Working trees kept for reuse, so a job of a big repository does not write every file again.
//!
//! Writing a 10,000-file tree costs seconds on some disks; a tree left by an ended job of the
//! same repository differs from the next commit in a few files. A [`TreePool`] keeps such trees
//! (`free/<name>/tree`, with the commit it holds in `free/<name>/commit`), each **scrubbed** when
//! it is given back, once nothing of its job runs any more: it gets a new `.git` (no config,
//! hook or ref of the old job survives) holding the index Git wrote when it made the tree —
//! before the job ran, kept outside the tree so the job could not change it
//! ([`pristine_index`]) — then `checkout --force` of its own commit and `clean -ffdx`: Git
//! rewrites every file whose content, mode, size, inode or change time differs from what it
//! wrote, and deletes everything it did not write. A free tree is therefore exactly its commit,
//! index included, and nothing touches it in the pool, so the next job's checkout is
//! `read-tree -m -u NEW` over that index: Git writes and deletes only the files the two
//! commits differ in and does not even stat the others (`checkout --force` would stat all
//! 10,000 of a big repository), on the job's way to its first command. The scrub's cost is paid
//! after the old job, not before the new one.
//!
//! A tree moves only by `rename` (the pool lives beside the job folders, on the same file
//! system), so a tree is in exactly one place: a job's folder, the pool's staging (while it is
//! scrubbed) or the pool. A tree with submodules is never reused (their Git directories lived
//! in the old `.git`).

use std::path::{Path, PathBuf};

use crate::cmd::{At, Git, GitError};
use crate::rmtree::remove_tree;
use crate::{Checkout, Mirror, Oid};

/// The file beside a checkout (`<dest>.index`) holding the index as Git wrote it at checkout.
pub fn pristine_index(dest: &Path) -> PathBuf {
    dest.with_extension("index")
}

/// The free trees of one repository's jobs, under one folder.
#[derive(Debug, Clone)]
pub struct TreePool {
    dir: PathBuf,
    keep: usize,
}

impl TreePool {
    /// A pool in `dir` that keeps at most `keep` free trees (more are deleted when given back).
    pub fn new(dir: PathBuf, keep: usize) -> TreePool {
        TreePool { dir, keep }
    }

    fn free(&self) -> PathBuf {
        self.dir.join("free")
    }

    /// Moves a free tree to `dest`; false when none is free. Concurrent takers race through
    /// `rename`: each free tree goes to one of them. An entry that was not scrubbed (left by an
    /// older Baton: no `commit` file) is deleted.
    async fn take(&self, dest: &Path) -> bool {
        let Ok(mut entries) = tokio::fs::read_dir(self.free()).await else {
            return false;
        };
        let stage = dest.with_extension("pool");
        if let Some(parent) = dest.parent()
            && tokio::fs::create_dir_all(parent).await.is_err()
        {
            return false;
        }
        while let Ok(Some(entry)) = entries.next_entry().await {
            if tokio::fs::rename(entry.path(), &stage).await.is_err() {
                continue;
            }
            let commit = tokio::fs::read_to_string(stage.join("commit"))
                .await
                .ok()
                .and_then(|c| Oid::parse(c.trim()).ok());
            let tree = match commit {
                Some(_) => tokio::fs::rename(stage.join("tree"), dest).await,
                None => Err(std::io::Error::other("no commit recorded")),
            };
            let _ = remove_tree(&stage).await;
            if tree.is_ok() {
                return true;
            }
            let _ = remove_tree(dest).await;
        }
        false
    }

    async fn free_count(&self) -> usize {
        let Ok(mut entries) = tokio::fs::read_dir(self.free()).await else {
            return 0;
        };
        let mut n = 0;
        while let Ok(Some(_)) = entries.next_entry().await {
            n += 1;
        }
        n
    }
}

impl Mirror {
    /// Makes `dest` a working tree of exactly `commit` like [`Mirror::checkout`], reusing a
    /// free tree of `pool` when there is one (falling back to a fresh checkout when reusing
    /// fails), and keeps the pristine index beside it for the tree's scrub when it comes back.
    pub async fn checkout_pooled(
        &self,
        pool: &TreePool,
        commit: &Oid,
        dest: &Path,
    ) -> Result<Checkout, GitError> {
        if pool.take(dest).await {
            match self.advance(commit, dest).await {
                Ok(()) => return self.finish_checkout(commit, dest).await,
                Err(_) => remove_tree(dest).await?,
            }
        }
        let checkout = self.checkout(commit, dest).await?;
        self.keep_index(dest).await;
        Ok(checkout)
    }

    /// Brings the scrubbed tree at `dest` (exactly its commit, index included) to `commit`:
    /// the mirror's current refs, the files the two commits differ in (a one-tree merge keeps
    /// every other index entry without looking at its file), `HEAD` detached at `commit`.
    async fn advance(&self, commit: &Oid, dest: &Path) -> Result<(), GitError> {
        let git = dest.join(".git");
        let files = Git::new(&self.env, At::WorkTree(dest))
            .args(["read-tree", "-m", "-u", commit.as_str()])
            .output();
        tokio::try_join!(self.write_refs(&git), files)?;
        tokio::fs::write(git.join("HEAD"), format!("{commit}\n"))
            .await
            .map_err(|e| GitError::io(&git, e))
    }

    /// Puts the ended job's checkout `dest` of `commit` into `pool` as `name` (unique per job
    /// attempt), scrubbed, or deletes it when the pool is full or the tree cannot be reused.
    /// Called only once nothing of the job runs any more.
    pub async fn give_back_pooled(
        &self,
        pool: &TreePool,
        dest: &Path,
        commit: &Oid,
        name: &str,
    ) -> Result<(), GitError> {
        let index = pristine_index(dest);
        let reusable = tokio::fs::try_exists(&index).await.unwrap_or(false)
            && !tokio::fs::try_exists(dest.join(".gitmodules"))
                .await
                .unwrap_or(true);
        if !reusable || pool.free_count().await >= pool.keep {
            let _ = tokio::fs::remove_file(&index).await;
            return remove_tree(dest).await;
        }
        let stage = pool.dir.join("staging").join(name);
        let io = |p: &Path, e| GitError::io(p, e);
        let _ = remove_tree(&stage).await;
        tokio::fs::create_dir_all(&stage)
            .await
            .map_err(|e| io(&stage, e))?;
        let moved = async {
            tokio::fs::rename(&index, stage.join("index")).await?;
            tokio::fs::rename(dest, stage.join("tree")).await
        };
        if let Err(e) = moved.await {
            let _ = remove_tree(&stage).await;
            let _ = tokio::fs::remove_file(&index).await;
            let _ = remove_tree(dest).await;
            return Err(io(dest, e));
        }
        let kept = async {
            self.scrub(commit, &stage).await?;
            tokio::fs::create_dir_all(pool.free())
                .await
                .map_err(|e| io(&pool.dir, e))?;
            tokio::fs::rename(&stage, pool.free().join(name))
                .await
                .map_err(|e| io(&stage, e))
        };
        if let Err(e) = kept.await {
            let _ = remove_tree(&stage).await;
            return Err(e);
        }
        Ok(())
    }

    /// Makes `<stage>/tree` exactly `commit` again: a new `.git` holding the pristine index
    /// (`<stage>/index`), `checkout --force`, `clean -ffdx`; then records the commit.
    async fn scrub(&self, commit: &Oid, stage: &Path) -> Result<(), GitError> {
        let io = |p: &Path, e| GitError::io(p, e);
        let (tree, fresh) = (stage.join("tree"), stage.join("git-new"));
        self.clone_shared(&fresh).await?;
        let index = stage.join("index");
        tokio::fs::rename(&index, fresh.join(".git/index"))
            .await
            .map_err(|e| io(&index, e))?;
        let old = tree.join(".git");
        match tokio::fs::symlink_metadata(&old).await {
            Ok(m) if m.is_dir() => remove_tree(&old).await?,
            Ok(_) => tokio::fs::remove_file(&old)
                .await
                .map_err(|e| io(&old, e))?,
            Err(_) => {}
        }
        tokio::fs::rename(fresh.join(".git"), &old)
            .await
            .map_err(|e| io(&old, e))?;
        remove_tree(&fresh).await?;
        let git = || Git::new(&self.env, At::WorkTree(&tree));
        git()
            .args(["checkout", "--quiet", "--force", "--detach"])
            .arg(commit.as_str())
            .arg("--")
            .output()
            .await?;
        git().args(["clean", "-ffdxq"]).output().await?;
        let file = stage.join("commit");
        tokio::fs::write(&file, format!("{commit}\n"))
            .await
            .map_err(|e| io(&file, e))
    }

    /// Submodules and LFS content for the refreshed tree, then its new pristine index.
    async fn finish_checkout(&self, commit: &Oid, dest: &Path) -> Result<Checkout, GitError> {
        let extras = async {
            self.update_submodules(dest).await?;
            self.pull_lfs(dest).await
        };
        if let Err(e) = extras.await {
            let _ = remove_tree(dest).await;
            return Err(e);
        }
        self.keep_index(dest).await;
        Ok(Checkout::new(dest, commit))
    }

    /// Copies the index Git just wrote to [`pristine_index`], out of the job's reach. Without
    /// it (a commit with no files has no index) the tree is simply not reused.
    async fn keep_index(&self, dest: &Path) {
        let _ = tokio::fs::copy(dest.join(".git/index"), pristine_index(dest)).await;
    }
}
