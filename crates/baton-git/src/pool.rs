//! Working trees kept for reuse, so a job of a big repository does not write every file again.
//!
//! Writing a 10,000-file tree costs seconds on some disks; a tree left by an ended job of the
//! same repository differs from the next commit in a few files. A [`TreePool`] keeps such trees
//! (`free/<name>/tree`), each with the index Git wrote when it made the tree — before the job
//! ran, kept outside the tree, so the job could not change it (`free/<name>/index`). A reused
//! tree gets a new `.git` (a fresh `clone --shared` of the mirror: no config, hook or ref of the
//! old job survives) with that pristine index, then `checkout --force` of the commit and
//! `clean -ffdx`: Git rewrites every file whose content, mode, size, inode or change time
//! differs from what it wrote, and deletes everything it did not write. The result is the same
//! tree a fresh checkout gives, byte for byte.
//!
//! A tree moves only by `rename` (the pool lives beside the job folders, on the same file
//! system), so a tree is in exactly one place: a job's folder or the pool. A tree with
//! submodules is never reused (their Git directories lived in the old `.git`).

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

    /// Moves a free tree to `dest` and its pristine index beside it; false when none is free.
    /// Concurrent takers race through `rename`: each free tree goes to one of them.
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
            let moved = tokio::fs::rename(stage.join("index"), pristine_index(dest)).await;
            let tree = tokio::fs::rename(stage.join("tree"), dest).await;
            let _ = remove_tree(&stage).await;
            if moved.is_ok() && tree.is_ok() {
                return true;
            }
            let _ = remove_tree(dest).await;
        }
        false
    }

    /// Puts the ended job's checkout `dest` (with its pristine index) into the pool as `name`
    /// (unique per job attempt), or deletes it when the pool is full or the tree cannot be
    /// reused. Called only once nothing of the job runs any more.
    pub async fn give_back(&self, dest: &Path, name: &str) -> Result<(), GitError> {
        let index = pristine_index(dest);
        let reusable = tokio::fs::try_exists(&index).await.unwrap_or(false)
            && !tokio::fs::try_exists(dest.join(".gitmodules"))
                .await
                .unwrap_or(true);
        if !reusable || self.free_count().await >= self.keep {
            let _ = tokio::fs::remove_file(&index).await;
            return remove_tree(dest).await;
        }
        let stage = self.dir.join("staging").join(name);
        let io = |p: &Path, e| GitError::io(p, e);
        tokio::fs::create_dir_all(&stage)
            .await
            .map_err(|e| io(&stage, e))?;
        tokio::fs::create_dir_all(self.free())
            .await
            .map_err(|e| io(&self.dir, e))?;
        let moved = async {
            tokio::fs::rename(&index, stage.join("index")).await?;
            tokio::fs::rename(dest, stage.join("tree")).await?;
            tokio::fs::rename(&stage, self.free().join(name)).await
        };
        if let Err(e) = moved.await {
            let _ = remove_tree(&stage).await;
            let _ = remove_tree(dest).await;
            return Err(io(dest, e));
        }
        Ok(())
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
    /// fails), and keeps the pristine index beside it for the tree's next reuse.
    pub async fn checkout_pooled(
        &self,
        pool: &TreePool,
        commit: &Oid,
        dest: &Path,
    ) -> Result<Checkout, GitError> {
        if pool.take(dest).await {
            match self.refresh(commit, dest).await {
                Ok(()) => return self.finish_checkout(commit, dest).await,
                Err(_) => {
                    let _ = tokio::fs::remove_file(pristine_index(dest)).await;
                    remove_tree(dest).await?;
                }
            }
        }
        let checkout = self.checkout(commit, dest).await?;
        self.keep_index(dest).await;
        Ok(checkout)
    }

    /// Gives the reused tree at `dest` a new `.git` holding its pristine index, then brings
    /// its files to `commit`.
    async fn refresh(&self, commit: &Oid, dest: &Path) -> Result<(), GitError> {
        let fresh = dest.with_extension("git-new");
        remove_tree(&fresh).await?;
        self.clone_shared(&fresh).await?;
        let io = |p: &Path, e| GitError::io(p, e);
        let index = pristine_index(dest);
        tokio::fs::rename(&index, fresh.join(".git/index"))
            .await
            .map_err(|e| io(&index, e))?;
        let old = dest.join(".git");
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
        let git = || Git::new(&self.env, At::WorkTree(dest));
        git()
            .args(["checkout", "--quiet", "--force", "--detach"])
            .arg(commit.as_str())
            .arg("--")
            .output()
            .await?;
        git().args(["clean", "-ffdxq"]).output().await?;
        Ok(())
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
