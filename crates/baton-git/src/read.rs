//! Reading from a mirror at a commit, without a checkout: files under a directory, a commit's
//! metadata, the paths a push changed.

use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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

    /// One `git cat-file --batch-command` for all of it: the commit's tree, then down `dir`'s
    /// path, its subtrees, each file's size (all checked against the limit before any is
    /// read), then the files, in `ls-tree -r` order.
    async fn read_tree_now(
        &self,
        commit: &Oid,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        let g = self.git().args(["cat-file", "--batch-command"]);
        let mut batch = Batch::start(&g)?;
        let read = self.read_tree_in(&mut batch, &g, commit, dir).await;
        let ended = batch.end(&g).await;
        match (read, ended) {
            (Ok(files), Ok(())) => Ok(files),
            (Err(e @ GitError::TooLarge { .. }), _) => Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => Err(self.classify(e, commit).await),
        }
    }

    async fn read_tree_in(
        &self,
        batch: &mut Batch,
        g: &Git<'_>,
        commit: &Oid,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        let hash_len = commit.as_str().len() / 2;
        let root = match batch.contents(g, &format!("{commit}^{{tree}}")).await? {
            Some((kind, body)) if kind == "tree" => body,
            _ => return Err(g.unexpected(format!("{commit} names no commit with a tree"))),
        };
        // Down the path: a missing component (or one that is not a directory) means nothing.
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        let mut tree = root;
        let mut at = String::new();
        let mut found = None;
        for (i, part) in parts.iter().enumerate() {
            let entries = tree_entries(g, &tree, hash_len)?;
            let Some(entry) = entries.into_iter().find(|e| e.name == part.as_bytes()) else {
                return Ok(Vec::new());
            };
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if i + 1 == parts.len() {
                found = Some(entry);
                break;
            }
            if entry.mode != "40000" {
                return Ok(Vec::new());
            }
            tree = match batch.contents(g, entry.oid.as_str()).await? {
                Some((kind, body)) if kind == "tree" => body,
                _ => return Err(g.unexpected(format!("tree {} of {at} is missing", entry.oid))),
            };
        }
        let Some(top) = found else {
            return Ok(Vec::new());
        };
        // Every regular file under it (or it, when it is one), depth first in tree order.
        let mut files: Vec<(String, Oid)> = Vec::new();
        let mut stack = vec![(at, top)];
        while let Some((path, entry)) = stack.pop() {
            match entry.mode.as_str() {
                "100644" | "100755" => files.push((path, entry.oid)),
                "40000" => {
                    let body = match batch.contents(g, entry.oid.as_str()).await? {
                        Some((kind, body)) if kind == "tree" => body,
                        _ => {
                            return Err(
                                g.unexpected(format!("tree {} of {path} is missing", entry.oid))
                            );
                        }
                    };
                    let entries = tree_entries(g, &body, hash_len)?;
                    for e in entries.into_iter().rev() {
                        let name = String::from_utf8_lossy(&e.name).into_owned();
                        stack.push((format!("{path}/{name}"), e));
                    }
                }
                // Symlinks and submodules are not files of the directory.
                _ => {}
            }
        }
        let mut total = 0u64;
        for (path, oid) in &files {
            total += match batch.info(g, oid.as_str()).await? {
                Some((kind, size)) if kind == "blob" => size,
                _ => return Err(g.unexpected(format!("blob {oid} of {path} is missing"))),
            };
        }
        within_read_limit(dir, commit, total)?;
        let mut out = Vec::with_capacity(files.len());
        for (path, oid) in files {
            match batch.contents(g, oid.as_str()).await? {
                Some((kind, body)) if kind == "blob" => out.push((path, body)),
                _ => return Err(g.unexpected(format!("blob {oid} of {path} is missing"))),
            }
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

/// One entry of a tree object.
struct TreeEntry {
    /// As git writes it: `100644`, `100755`, `120000`, `40000`, `160000`.
    mode: String,
    name: Vec<u8>,
    oid: Oid,
}

/// The entries of a tree object's body (`MODE NAME\0HASH`, the hash `hash_len` raw bytes).
fn tree_entries(g: &Git<'_>, body: &[u8], hash_len: usize) -> Result<Vec<TreeEntry>, GitError> {
    let bad = || g.unexpected("a malformed tree object");
    let mut entries = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let nul = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
        if nul < space || rest.len() < nul + 1 + hash_len {
            return Err(bad());
        }
        let hex: String = rest[nul + 1..nul + 1 + hash_len]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        entries.push(TreeEntry {
            mode: String::from_utf8_lossy(&rest[..space]).into_owned(),
            name: rest[space + 1..nul].to_vec(),
            oid: Oid::parse(&hex)?,
        });
        rest = &rest[nul + 1 + hash_len..];
    }
    Ok(entries)
}

/// A `git cat-file --batch-command` session: one command at a time, each answer read before
/// the next is sent (the output is flushed after each without `--buffer`).
struct Batch {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Batch {
    fn start(g: &Git<'_>) -> Result<Batch, GitError> {
        let mut cmd = g.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| GitError::Spawn {
            source: Arc::new(e),
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        match stdout {
            Some(stdout) => Ok(Batch {
                child,
                stdin,
                stdout,
            }),
            None => Err(g.unexpected("no output pipe")),
        }
    }

    /// Sends `command SPEC` and reads the header: `None` when git says the object is missing.
    async fn ask(
        &mut self,
        g: &Git<'_>,
        command: &str,
        spec: &str,
    ) -> Result<Option<(String, u64)>, GitError> {
        let io = |e: std::io::Error| g.unexpected(format!("cat-file stopped answering: {e}"));
        if spec.contains('\n') {
            return Err(g.unexpected(format!("an object name with a newline: {spec:?}")));
        }
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| g.unexpected("cat-file's input is closed"))?;
        stdin
            .write_all(format!("{command} {spec}\n").as_bytes())
            .await
            .map_err(io)?;
        stdin.flush().await.map_err(io)?;
        let mut header = String::new();
        if self.stdout.read_line(&mut header).await.map_err(io)? == 0 {
            return Err(g.unexpected("cat-file ended before answering"));
        }
        let fields: Vec<&str> = header.trim_end().split(' ').collect();
        match fields[..] {
            [_, kind, size] => {
                let size = size
                    .parse()
                    .map_err(|_| g.unexpected(format!("cat-file header {header:?}")))?;
                Ok(Some((kind.to_owned(), size)))
            }
            [.., "missing"] | [.., "ambiguous"] => Ok(None),
            _ => Err(g.unexpected(format!("cat-file header {header:?}"))),
        }
    }

    /// An object's type and size.
    async fn info(&mut self, g: &Git<'_>, spec: &str) -> Result<Option<(String, u64)>, GitError> {
        self.ask(g, "info", spec).await
    }

    /// An object's type and contents.
    async fn contents(
        &mut self,
        g: &Git<'_>,
        spec: &str,
    ) -> Result<Option<(String, Vec<u8>)>, GitError> {
        let Some((kind, size)) = self.ask(g, "contents", spec).await? else {
            return Ok(None);
        };
        let io = |e: std::io::Error| g.unexpected(format!("a truncated object from cat-file: {e}"));
        let len = usize::try_from(size).map_err(|_| g.unexpected("an object too large"))?;
        let mut body = vec![0u8; len + 1];
        self.stdout.read_exact(&mut body).await.map_err(io)?;
        body.pop(); // the newline after the contents
        Ok(Some((kind, body)))
    }

    /// Closes the input and waits for git to exit; an error unless it exited 0.
    async fn end(mut self, g: &Git<'_>) -> Result<(), GitError> {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        let _ = self.stdout.read_to_end(&mut rest).await;
        let mut stderr = Vec::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_end(&mut stderr).await;
        }
        let status = self.child.wait().await.map_err(|e| GitError::Spawn {
            source: Arc::new(e),
        })?;
        if status.success() {
            return Ok(());
        }
        Err(g.failed(&crate::cmd::Finished {
            code: status.code(),
            stdout: rest,
            stderr: crate::cmd::redact(String::from_utf8_lossy(&stderr).trim()),
        }))
    }
}

/// Refuses to read `total` bytes of `dir` at `commit` when that is over [`READ_TREE_LIMIT`].
pub(crate) fn within_read_limit(
    dir: &str,
    commit: &impl std::fmt::Display,
    total: u64,
) -> Result<(), GitError> {
    if total > READ_TREE_LIMIT {
        return Err(GitError::TooLarge {
            dir: dir.to_owned(),
            commit: commit.to_string(),
            size: total,
            limit: READ_TREE_LIMIT,
        });
    }
    Ok(())
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
