//! Reading from a mirror at a commit, without a checkout: files under a directory, a commit's
//! metadata, the paths a push changed.

use crate::cmd::{At, Git, GitError};
use crate::{Mirror, Oid};

/// The most `.baton/` (or any directory read with [`Mirror::read_tree`]) may hold, in bytes.
pub const READ_TREE_LIMIT: u64 = 8 * 1024 * 1024;

/// A commit's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: Oid,
    pub parents: Vec<Oid>,
    pub author_name: String,
    pub author_email: String,
    /// Seconds since the epoch and the author's UTC offset (`+0200`).
    pub author_time: i64,
    pub author_tz: String,
    pub committer_time: i64,
    pub committer_tz: String,
    /// The message's first line.
    pub subject: String,
    /// The whole message.
    pub message: String,
}

impl Mirror {
    fn git(&self) -> Git<'_> {
        Git::new(&self.env, At::GitDir(self.dir()))
    }

    /// Every regular file under `dir` (a path from the repository root, like `.baton`) at
    /// `commit`, as `(path from the root, contents)`, sorted by path. Symlinks and submodules
    /// are skipped; a commit without `dir` gives an empty list. Refuses more than
    /// [`READ_TREE_LIMIT`] bytes in all.
    pub async fn read_tree(
        &self,
        commit: &Oid,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        if dir.is_empty() || dir.starts_with('-') || dir.starts_with('/') {
            return Err(GitError::BadArgument {
                what: "directory",
                given: dir.to_owned(),
                reason: "give a relative path from the repository root",
            });
        }
        if let Some(files) = self.memo().tree(commit, dir) {
            return Ok(files);
        }
        let files = self.read_tree_now(commit, dir).await?;
        self.memo().keep_tree(commit, dir, &files);
        Ok(files)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, crate::mirror::Memo> {
        self.shared_memo().lock().expect("mirror memo poisoned")
    }

    async fn read_tree_now(
        &self,
        commit: &Oid,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        let g = self
            .git()
            .args(["ls-tree", "-r", "-z", "-l", "--full-tree"])
            .arg(format!("{commit}^{{tree}}"))
            .args(["--", dir]);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(self.classify(g.failed(&done), commit).await);
        }
        let mut files = Vec::new();
        let mut total = 0u64;
        for entry in done.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let text = String::from_utf8_lossy(entry);
            let (meta, path) = text
                .split_once('\t')
                .ok_or_else(|| g.unexpected(format!("ls-tree entry {text:?}")))?;
            let fields: Vec<&str> = meta.split_whitespace().collect();
            let [mode, kind, oid, size] = fields[..] else {
                return Err(g.unexpected(format!("ls-tree entry {text:?}")));
            };
            if kind != "blob" || !matches!(mode, "100644" | "100755") {
                continue;
            }
            total += size
                .parse::<u64>()
                .map_err(|_| g.unexpected(format!("size {size:?}")))?;
            files.push((path.to_owned(), Oid::parse(oid)?));
        }
        if total > READ_TREE_LIMIT {
            return Err(GitError::TooLarge {
                dir: dir.to_owned(),
                commit: commit.to_string(),
                size: total,
                limit: READ_TREE_LIMIT,
            });
        }
        let blobs = self.cat_blobs(files.iter().map(|(_, o)| o)).await?;
        Ok(files.into_iter().map(|(p, _)| p).zip(blobs).collect())
    }

    /// The contents of blobs, in order, through one `git cat-file --batch`.
    async fn cat_blobs<'a>(
        &self,
        oids: impl Iterator<Item = &'a Oid>,
    ) -> Result<Vec<Vec<u8>>, GitError> {
        let mut input = Vec::new();
        let mut count = 0;
        for oid in oids {
            input.extend_from_slice(oid.as_str().as_bytes());
            input.push(b'\n');
            count += 1;
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let g = self.git().args(["cat-file", "--batch"]).stdin(input);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        let mut out = Vec::with_capacity(count);
        let mut rest = &done.stdout[..];
        for _ in 0..count {
            let nl = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| g.unexpected("a truncated cat-file header"))?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let size: usize = match header.split(' ').collect::<Vec<_>>()[..] {
                [_, "blob", size] => size.parse().map_err(|_| g.unexpected(&header))?,
                _ => return Err(g.unexpected(format!("cat-file header {header:?}"))),
            };
            let body = rest
                .get(nl + 1..nl + 1 + size)
                .ok_or_else(|| g.unexpected("a truncated blob"))?;
            out.push(body.to_vec());
            rest = rest.get(nl + 2 + size..).unwrap_or_default();
        }
        Ok(out)
    }

    /// An error for `commit`: [`GitError::MissingCommit`] when the mirror lacks it, else `err`.
    pub(crate) async fn classify(&self, err: GitError, commit: &Oid) -> GitError {
        match self.has_commit(commit).await {
            Ok(false) => GitError::MissingCommit(commit.to_string()),
            _ => err,
        }
    }

    /// Whether the mirror has `commit` (as a commit, or a tag pointing at one).
    pub async fn has_commit(&self, commit: &Oid) -> Result<bool, GitError> {
        let (done, g) = self
            .git()
            .args(["cat-file", "-e"])
            .arg(format!("{commit}^{{commit}}"))
            .run()
            .await?;
        match done.code {
            Some(0) => Ok(true),
            Some(1) | Some(128) => Ok(false),
            _ => Err(g.failed(&done)),
        }
    }

    /// Author, dates and message of `commit`.
    pub async fn commit_info(&self, commit: &Oid) -> Result<CommitInfo, GitError> {
        if let Some(info) = self.memo().info(commit) {
            return Ok(info);
        }
        let info = self.commit_info_now(commit).await?;
        self.memo().keep_info(&info);
        Ok(info)
    }

    async fn commit_info_now(&self, commit: &Oid) -> Result<CommitInfo, GitError> {
        let (done, g) = self
            .git()
            .args(["cat-file", "commit"])
            .arg(commit.as_str())
            .run()
            .await?;
        if done.code != Some(0) {
            return Err(self.classify(g.failed(&done), commit).await);
        }
        let raw = String::from_utf8_lossy(&done.stdout);
        let (headers, message) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut info = CommitInfo {
            id: commit.clone(),
            parents: Vec::new(),
            author_name: String::new(),
            author_email: String::new(),
            author_time: 0,
            author_tz: String::new(),
            committer_time: 0,
            committer_tz: String::new(),
            subject: message.lines().next().unwrap_or_default().trim().to_owned(),
            message: message.to_owned(),
        };
        for line in headers.lines() {
            if let Some(p) = line.strip_prefix("parent ") {
                info.parents.push(Oid::parse(p)?);
            } else if let Some(a) = line.strip_prefix("author ") {
                let (name, email, time, tz) =
                    split_ident(a).ok_or_else(|| g.unexpected(format!("author line {a:?}")))?;
                (info.author_name, info.author_email) = (name, email);
                (info.author_time, info.author_tz) = (time, tz);
            } else if let Some(c) = line.strip_prefix("committer ") {
                let (_, _, time, tz) =
                    split_ident(c).ok_or_else(|| g.unexpected(format!("committer line {c:?}")))?;
                (info.committer_time, info.committer_tz) = (time, tz);
            }
        }
        Ok(info)
    }

    /// The paths that differ between `before` and `after` (added, modified, deleted; a rename
    /// counts as both names), sorted. When `before` is all zeros (a new branch) every file of
    /// `after` counts as changed.
    pub async fn changed_paths(&self, before: &Oid, after: &Oid) -> Result<Vec<String>, GitError> {
        let g = if before.is_zero() {
            self.git()
                .args(["ls-tree", "-r", "-z", "--name-only", "--full-tree"])
                .arg(format!("{after}^{{tree}}"))
        } else {
            self.git()
                .args([
                    "diff-tree",
                    "-r",
                    "-z",
                    "--name-only",
                    "--no-renames",
                    "--no-commit-id",
                ])
                .arg(format!("{before}^{{tree}}"))
                .arg(format!("{after}^{{tree}}"))
        };
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            let err = g.failed(&done);
            let err = self.classify(err, after).await;
            return Err(if before.is_zero() {
                err
            } else {
                self.classify(err, before).await
            });
        }
        let mut paths: Vec<String> = done
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }
}

/// `Name <email> 1700000000 +0200` → its parts.
fn split_ident(s: &str) -> Option<(String, String, i64, String)> {
    let open = s.rfind(" <")?;
    let close = s.rfind('>')?;
    let name = s[..open].to_owned();
    let email = s.get(open + 2..close)?.to_owned();
    let mut rest = s[close + 1..].split_whitespace();
    let time = rest.next()?.parse().ok()?;
    let tz = rest.next().unwrap_or("+0000").to_owned();
    Some((name, email, time, tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert_eq!(
            split_ident("A <B> Name <a@b.c> 1700000000 +0200"),
            Some((
                "A <B> Name".into(),
                "a@b.c".into(),
                1_700_000_000,
                "+0200".into()
            ))
        );
        assert_eq!(split_ident("nobody"), None);
    }
}
