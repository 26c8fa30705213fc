//! Result refs a mirror's remote holds (`refs/baton-runs/…`, `refs/jci-runs/…`: runs made on
//! developers' machines and pushed), fetched only when asked for and a few at a time, and read
//! with their sizes known before any content is: the mirror's own fetch never copies them.

use crate::cmd::{At, Git, GitError};
use crate::{Mirror, Oid, RUN_REF_PREFIXES};

/// Where fetched result refs are kept while they are read (deleted after).
pub const IMPORT_PREFIX: &str = "refs/baton/import/";

/// One file of a tree, with its size: only regular files (`100644`, `100755`) are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub size: u64,
    pub executable: bool,
}

impl Mirror {
    /// The result refs on the remote and their commits, sorted by name.
    pub async fn remote_run_refs(&self) -> Result<Vec<(String, Oid)>, GitError> {
        let patterns: Vec<String> = RUN_REF_PREFIXES.iter().map(|p| format!("{p}*")).collect();
        let g = Git::new(&self.env, At::GitDir(self.dir()))
            .args(["ls-remote", "--refs", "--end-of-options", "origin"])
            .args(patterns);
        let out = g.output().await?;
        let text = String::from_utf8_lossy(&out);
        let mut refs = Vec::new();
        for line in text.lines() {
            if let Some((oid, name)) = line.split_once('\t') {
                refs.push((name.to_owned(), Oid::parse(oid)?));
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// Fetches the result refs `names` from the remote (each a name [`Mirror::remote_run_refs`]
    /// gave) under [`IMPORT_PREFIX`] with their position as name; returns each one's commit
    /// as fetched (`None`: the remote no longer has it).
    pub async fn fetch_run_refs(&self, names: &[String]) -> Result<Vec<Option<Oid>>, GitError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut specs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            crate::local::check_run_ref(name)?;
            specs.push(format!("+{name}:{IMPORT_PREFIX}{i}"));
        }
        let fetch = |specs: Vec<String>| {
            Git::new(&self.env, At::GitDir(self.dir()))
                .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
                .args(["--no-recurse-submodules", "--end-of-options", "origin"])
                .args(specs)
                .run()
        };
        let (done, g) = fetch(specs.clone()).await?;
        if done.code != Some(0) {
            // A name the remote no longer has fails the whole fetch: then one at a time,
            // leaving out those that fail for that reason (an unreachable remote fails all).
            let mut any = false;
            for spec in specs {
                let (one, _) = fetch(vec![spec]).await?;
                any |= one.code == Some(0);
            }
            if !any {
                return Err(g.failed(&done));
            }
        }
        let fetched = self.refs(IMPORT_PREFIX).await?;
        Ok((0..names.len())
            .map(|i| {
                let want = format!("{IMPORT_PREFIX}{i}");
                fetched
                    .iter()
                    .find(|(n, _)| *n == want)
                    .map(|(_, o)| o.clone())
            })
            .collect())
    }

    /// Deletes every ref under [`IMPORT_PREFIX`] (their objects go with git's next gc).
    pub async fn drop_fetched_run_refs(&self) -> Result<(), GitError> {
        let refs = self.refs(IMPORT_PREFIX).await?;
        if refs.is_empty() {
            return Ok(());
        }
        let input: String = refs.iter().map(|(r, _)| format!("delete {r}\n")).collect();
        Git::new(&self.env, At::GitDir(self.dir()))
            .args(["update-ref", "--stdin"])
            .stdin(input.into_bytes())
            .output()
            .await?;
        Ok(())
    }

    /// The regular files of `commit`'s tree with their sizes, at most `max` of them (`None`
    /// when it holds more): symlinks and submodules are left out.
    pub async fn tree_entries(
        &self,
        commit: &Oid,
        max: usize,
    ) -> Result<Option<Vec<TreeEntry>>, GitError> {
        let g = Git::new(&self.env, At::GitDir(self.dir()))
            .args([
                "ls-tree",
                "-r",
                "-l",
                "-z",
                "--full-tree",
                "--end-of-options",
            ])
            .arg(format!("{commit}^{{tree}}"));
        let out = g.output().await?;
        let mut entries = Vec::new();
        for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            // `<mode> SP <type> SP <object> SP+ <size> TAB <path>`
            let text = String::from_utf8_lossy(rec);
            let Some((meta, path)) = text.split_once('\t') else {
                continue;
            };
            let mut parts = meta.split_whitespace();
            let (mode, kind, size) = (parts.next(), parts.next(), parts.nth(1));
            let executable = match (mode, kind) {
                (Some("100644"), Some("blob")) => false,
                (Some("100755"), Some("blob")) => true,
                _ => continue,
            };
            if entries.len() == max {
                return Ok(None);
            }
            entries.push(TreeEntry {
                path: path.to_owned(),
                size: size.and_then(|s| s.parse().ok()).unwrap_or(u64::MAX),
                executable,
            });
        }
        Ok(Some(entries))
    }

    /// The files named `rev:path` in `specs` (`None` for those that do not exist), through one
    /// `git cat-file --batch`.
    pub async fn read_files(&self, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = String::new();
        for spec in specs {
            if spec.contains('\n') {
                return Err(GitError::BadArgument {
                    what: "object name",
                    given: spec.clone(),
                    reason: "it holds a newline",
                });
            }
            input.push_str(spec);
            input.push('\n');
        }
        let g = Git::new(&self.env, At::GitDir(self.dir()))
            .args(["cat-file", "--batch"])
            .stdin(input.into_bytes());
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        let mut out = Vec::with_capacity(specs.len());
        let mut rest = &done.stdout[..];
        for _ in specs {
            let nl = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| g.unexpected("a truncated cat-file answer"))?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                out.push(None);
                rest = &rest[nl + 1..];
                continue;
            }
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| g.unexpected(format!("cat-file header {header:?}")))?;
            let body = rest
                .get(nl + 1..nl + 1 + size)
                .ok_or_else(|| g.unexpected("a truncated object"))?;
            out.push(Some(body.to_vec()));
            rest = rest.get(nl + 2 + size..).unwrap_or_default();
        }
        Ok(out)
    }
}
