//! One bare mirror per repository, and fetches of it serialized and shared.
//!
//! The mirror is made with `git init --bare` and explicit refspecs rather than
//! `git clone --mirror`: a mirror's `+refs/*:refs/*` with `--prune` would delete Baton's own refs
//! (result refs under `refs/baton-runs/`) on every fetch. The refspecs copy branches, tags,
//! GitHub/Gitea pull request refs (`refs/pull/*`) and GitLab merge request refs
//! (`refs/merge-requests/*`), and prune what the remote deleted.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::cmd::{At, Git, GitEnv, GitError};
use crate::retry::{Backoff, retry};
use crate::{Oid, parse_oid_line};

/// The refspecs a mirror fetches.
pub const REFSPECS: &[&str] = &[
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/pull/*:refs/pull/*",
    "+refs/merge-requests/*:refs/merge-requests/*",
];

/// How long a write of a mirror's config waits for another git's lock on it.
const CONFIG_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A bare mirror of one repository on this machine.
///
/// Values for the same directory share one fetch gate, in this process: see [`Mirror::fetch`].
#[derive(Clone)]
pub struct Mirror {
    dir: PathBuf,
    pub(crate) url: String,
    pub(crate) env: GitEnv,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("url", &crate::cmd::redact(&self.url))
            .finish()
    }
}

/// The fetch gate of one mirror directory, and what this process knows of it.
struct Shared {
    /// Fetches started so far (read without the lock by arriving callers).
    started: AtomicU64,
    /// Held for the whole of a fetch; remembers the last fetch and its result.
    last: tokio::sync::Mutex<LastFetch>,
    /// Fetches actually run, for tests and the repo page.
    runs: AtomicU64,
    /// The URL this process last set the mirror up for (its config checked or written) and
    /// the config file's modification time then: a later [`Mirror::ensure_with`] with the same
    /// URL, the config untouched, runs no git. Forgotten when a fetch fails, so the next one
    /// checks again.
    ready: Mutex<Option<(String, std::time::SystemTime)>>,
    /// Reads at a commit, which never change: see [`Memo`].
    pub(crate) memo: Mutex<Memo>,
}

/// Files read under a directory at a commit: `(path, contents)`.
type Files = Vec<(String, Vec<u8>)>;

/// The last few reads of `.baton/` and of commit metadata, by commit: an event reads the same
/// commit more than once (its schedules, its targets, its runs), each a git process otherwise.
#[derive(Default)]
pub(crate) struct Memo {
    trees: VecDeque<(Oid, String, Arc<Files>)>,
    infos: VecDeque<crate::CommitInfo>,
}

/// Reads of each kind a [`Memo`] keeps.
const MEMO_ENTRIES: usize = 8;
/// The largest directory read a [`Memo`] keeps, in bytes.
const MEMO_TREE_BYTES: usize = 256 * 1024;

impl Memo {
    pub(crate) fn tree(&self, commit: &Oid, dir: &str) -> Option<Files> {
        let (_, _, files) = self
            .trees
            .iter()
            .find(|(c, d, _)| c == commit && d == dir)?;
        Some(files.as_ref().clone())
    }

    pub(crate) fn keep_tree(&mut self, commit: &Oid, dir: &str, files: &[(String, Vec<u8>)]) {
        let size: usize = files.iter().map(|(p, b)| p.len() + b.len()).sum();
        if size > MEMO_TREE_BYTES || self.tree(commit, dir).is_some() {
            return;
        }
        if self.trees.len() >= MEMO_ENTRIES {
            self.trees.pop_front();
        }
        let files = Arc::new(files.to_vec());
        self.trees
            .push_back((commit.clone(), dir.to_owned(), files));
    }

    pub(crate) fn info(&self, commit: &Oid) -> Option<crate::CommitInfo> {
        self.infos.iter().find(|i| i.id == *commit).cloned()
    }

    pub(crate) fn keep_info(&mut self, info: &crate::CommitInfo) {
        if self.info(&info.id).is_some() {
            return;
        }
        if self.infos.len() >= MEMO_ENTRIES {
            self.infos.pop_front();
        }
        self.infos.push_back(info.clone());
    }
}

#[derive(Default)]
struct LastFetch {
    number: u64,
    result: Option<Result<(), GitError>>,
}

/// One gate per mirror directory for the life of the process (a server has one per
/// repository), so what it knows outlives the short-lived [`Mirror`] values.
static GATES: LazyLock<Mutex<HashMap<PathBuf, Arc<Shared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn gate_for(dir: &Path) -> Arc<Shared> {
    let mut gates = GATES.lock().expect("mirror gate registry poisoned");
    gates
        .entry(dir.to_owned())
        .or_insert_with(|| {
            Arc::new(Shared {
                started: AtomicU64::new(0),
                last: tokio::sync::Mutex::new(LastFetch::default()),
                runs: AtomicU64::new(0),
                ready: Mutex::new(None),
                memo: Mutex::new(Memo::default()),
            })
        })
        .clone()
}

/// When an event arrived, in a mirror's count of fetches started ([`Mirror::ticket`]): a fetch
/// started after it has everything the event announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTicket(u64);

/// How a call to [`Mirror::fetch`] was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// This call ran `git fetch`.
    Ran,
    /// Another caller's fetch, started after this call arrived, served it.
    Shared,
}

impl Mirror {
    /// Makes (or updates) the bare mirror of `url` at `dir`, with the default environment.
    /// Fetches nothing: call [`Mirror::fetch`] next.
    pub async fn ensure(url: &str, dir: &Path) -> Result<Mirror, GitError> {
        Mirror::ensure_with(url, dir, GitEnv::default()).await
    }

    /// [`Mirror::ensure`] with git given `env` (credentials, ssh command) for this mirror.
    pub async fn ensure_with(url: &str, dir: &Path, env: GitEnv) -> Result<Mirror, GitError> {
        if url.is_empty() || url.starts_with('-') {
            return Err(GitError::BadArgument {
                what: "repository URL",
                given: crate::cmd::redact(url),
                reason: "it must not be empty or start with `-`",
            });
        }
        let dir = std::path::absolute(dir).map_err(|e| GitError::io(dir, e))?;
        let mirror = Mirror {
            shared: gate_for(&dir),
            dir,
            url: url.to_owned(),
            env,
        };
        let config = mirror.dir.join("config");
        let changed = || async {
            let meta = tokio::fs::metadata(&config).await;
            meta.and_then(|m| m.modified()).ok()
        };
        let seen = mirror
            .shared
            .ready
            .lock()
            .expect("mirror gate poisoned")
            .clone();
        if let Some((ready_url, at)) = seen
            && ready_url == url
            && changed().await == Some(at)
        {
            return Ok(mirror);
        }
        mirror.init().await?;
        let ready = changed().await.map(|at| (url.to_owned(), at));
        *mirror.shared.ready.lock().expect("mirror gate poisoned") = ready;
        Ok(mirror)
    }

    /// The mirror of `url` at `dir` if this process has set it up already and its config is
    /// unchanged (what [`Mirror::ensure_with`] would return without running git); `None`
    /// otherwise, and nothing is done.
    pub async fn ready(url: &str, dir: &Path, env: GitEnv) -> Option<Mirror> {
        let dir = std::path::absolute(dir).ok()?;
        let shared = gate_for(&dir);
        let seen = shared.ready.lock().expect("mirror gate poisoned").clone();
        let (ready_url, at) = seen?;
        let now = tokio::fs::metadata(dir.join("config"))
            .await
            .and_then(|m| m.modified())
            .ok()?;
        (ready_url == url && now == at).then(|| Mirror {
            shared,
            dir,
            url: url.to_owned(),
            env,
        })
    }

    /// An existing repository on this machine used like a mirror (reads at a commit,
    /// checkouts), never initialised or fetched: a developer's own `.git` directory.
    pub(crate) fn open_local(dir: &Path, url: &str, env: GitEnv) -> Mirror {
        Mirror {
            shared: gate_for(dir),
            dir: dir.to_owned(),
            url: url.to_owned(),
            env,
        }
    }

    async fn init(&self) -> Result<(), GitError> {
        let exists = tokio::fs::try_exists(&self.dir)
            .await
            .map_err(|e| GitError::io(&self.dir, e))?;
        let empty = exists && is_empty_dir(&self.dir).await?;
        if exists && !empty {
            let out = Git::new(&self.env, At::GitDir(&self.dir))
                .args(["rev-parse", "--is-bare-repository"])
                .output()
                .await;
            if !matches!(out, Ok(ref o) if o.starts_with(b"true")) {
                return Err(GitError::NotAMirror {
                    path: self.dir.clone(),
                });
            }
            let url = self.config_get("remote.origin.url").await?;
            if url.as_deref() == Some(self.url.as_str()) && self.has_refspecs().await? {
                return Ok(());
            }
        } else {
            if let Some(parent) = self.dir.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| GitError::io(parent, e))?;
            }
            Git::new(&self.env, At::Nowhere)
                .args(["init", "--bare", "--quiet", "--template="])
                .arg(&self.dir)
                .output()
                .await?;
        }
        // The URL goes last: a mirror whose URL is set is fully configured.
        let (done, g) = self
            .write_config(&["--unset-all", "remote.origin.fetch"])
            .await?;
        // Exit status 5: there was nothing to unset.
        if !matches!(done.code, Some(0) | Some(5)) {
            return Err(g.failed(&done));
        }
        for spec in REFSPECS {
            let (done, g) = self
                .write_config(&["--add", "remote.origin.fetch", spec])
                .await?;
            if done.code != Some(0) {
                return Err(g.failed(&done));
            }
        }
        let (done, g) = self.write_config(&["remote.origin.url", &self.url]).await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        Ok(())
    }

    /// Runs `git config ARGS` on the mirror, waiting (up to [`CONFIG_LOCK_WAIT`]) while another
    /// git holds the config's lock: a server killed while it set the mirror up leaves the git it
    /// had started writing the config, and its restart gets here at once. A lock still there
    /// after the wait that is older than the wait was left by a git killed mid-write (nothing
    /// ever removes it): it goes, and the write is tried once more.
    async fn write_config(
        &self,
        args: &[&str],
    ) -> Result<(crate::cmd::Finished, Git<'_>), GitError> {
        let lock = self.dir.join("config.lock");
        let deadline = tokio::time::Instant::now() + CONFIG_LOCK_WAIT;
        let mut wait = std::time::Duration::from_millis(20);
        let mut removed_stale = false;
        loop {
            let (done, g) = Git::new(&self.env, At::GitDir(&self.dir))
                .arg("config")
                .args(args.iter().copied())
                .run()
                .await?;
            let locked = done.code != Some(0) && done.stderr.contains("could not lock config file");
            if !locked {
                return Ok((done, g));
            }
            if tokio::time::Instant::now() < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_millis(500));
                continue;
            }
            let stale = tokio::fs::metadata(&lock)
                .await
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age >= CONFIG_LOCK_WAIT));
            if removed_stale || !stale {
                return Ok((done, g));
            }
            let _ = tokio::fs::remove_file(&lock).await;
            removed_stale = true;
        }
    }

    /// Whether the mirror fetches exactly [`REFSPECS`] (an older Baton may have set others).
    async fn has_refspecs(&self) -> Result<bool, GitError> {
        let (done, g) = Git::new(&self.env, At::GitDir(&self.dir))
            .args(["config", "--get-all", "remote.origin.fetch"])
            .run()
            .await?;
        match done.code {
            Some(0) => Ok(String::from_utf8_lossy(&done.stdout)
                .lines()
                .eq(REFSPECS.iter().copied())),
            Some(1) => Ok(false),
            _ => Err(g.failed(&done)),
        }
    }

    async fn config_get(&self, key: &str) -> Result<Option<String>, GitError> {
        let (done, g) = Git::new(&self.env, At::GitDir(&self.dir))
            .args(["config", "--get", key])
            .run()
            .await?;
        match done.code {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&done.stdout).trim_end().to_owned(),
            )),
            Some(1) => Ok(None),
            _ => Err(g.failed(&done)),
        }
    }

    pub(crate) fn shared_memo(&self) -> &Mutex<Memo> {
        &self.shared.memo
    }

    /// The mirror's directory (a bare repository).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many fetches this process ran for this mirror directory.
    pub fn fetches_run(&self) -> u64 {
        self.shared.runs.load(Ordering::SeqCst)
    }

    /// Brings the mirror up to date with the remote.
    ///
    /// Fetches of one mirror never overlap. A caller that arrives while a fetch runs waits for
    /// it, then either runs the next fetch itself or shares the result of one that started after
    /// it arrived (so it never gets a fetch that may predate the push it was told about). A burst
    /// of callers therefore costs at most two fetches.
    pub async fn fetch(&self) -> Result<Fetched, GitError> {
        self.fetch_since(self.ticket()).await
    }

    /// Now, in this mirror's count of fetches: what an event that arrives now takes, to have
    /// a fetch that starts meanwhile (one started early, say, while the event is recorded)
    /// serve it through [`Mirror::fetch_since`].
    pub fn ticket(&self) -> FetchTicket {
        FetchTicket(self.shared.started.load(Ordering::SeqCst))
    }

    /// [`Mirror::fetch`] for a caller that arrived at `ticket`: a fetch started since then
    /// (running or ended) serves it, else it runs one.
    pub async fn fetch_since(&self, ticket: FetchTicket) -> Result<Fetched, GitError> {
        let arrived = ticket.0;
        let mut last = self.shared.last.lock().await;
        if last.number > arrived
            && let Some(result) = &last.result
        {
            return result.clone().map(|()| Fetched::Shared);
        }
        let number = self.shared.started.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.runs.fetch_add(1, Ordering::SeqCst);
        // `--no-show-forced-updates`: git would walk each updated branch's history to tell
        // a force-push apart (thousands of commits for a big push); the mirror takes either.
        let result = Git::new(&self.env, At::GitDir(&self.dir))
            .args([
                "fetch",
                "--prune",
                "--quiet",
                "--no-recurse-submodules",
                "--no-write-fetch-head",
                "--no-show-forced-updates",
                "origin",
            ])
            .output()
            .await
            .map(|_| ());
        if result.is_err() {
            *self.shared.ready.lock().expect("mirror gate poisoned") = None;
        }
        *last = LastFetch {
            number,
            result: Some(result.clone()),
        };
        result.map(|()| Fetched::Ran)
    }

    /// [`Mirror::fetch`], retried as `backoff` says; the error is the last try's.
    pub async fn fetch_with_retry(&self, backoff: &Backoff) -> Result<Fetched, GitError> {
        self.fetch_since_with_retry(self.ticket(), backoff).await
    }

    /// [`Mirror::fetch_since`], retried as `backoff` says (the retries fetch again).
    pub async fn fetch_since_with_retry(
        &self,
        ticket: FetchTicket,
        backoff: &Backoff,
    ) -> Result<Fetched, GitError> {
        retry(backoff, |attempt| {
            let ticket = if attempt == 1 { ticket } else { self.ticket() };
            self.fetch_since(ticket)
        })
        .await
    }

    /// The commit a ref (`refs/heads/main`, `refs/tags/v1`) points at, if it exists.
    pub async fn resolve(&self, full_ref: &str) -> Result<Option<Oid>, GitError> {
        if !full_ref.starts_with("refs/") {
            return Err(GitError::BadArgument {
                what: "ref",
                given: full_ref.to_owned(),
                reason: "give a full ref name starting with `refs/`",
            });
        }
        let (done, g) = Git::new(&self.env, At::GitDir(&self.dir))
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{full_ref}^{{commit}}"))
            .run()
            .await?;
        match done.code {
            Some(0) => parse_oid_line(&g, &done.stdout).map(Some),
            Some(1) => Ok(None),
            _ => Err(g.failed(&done)),
        }
    }

    /// Every ref under `prefix` (`refs/heads/`) and its object, sorted by name: what a poller
    /// compares between two fetches.
    pub async fn refs(&self, prefix: &str) -> Result<Vec<(String, Oid)>, GitError> {
        self.refs_under(&[prefix]).await
    }

    /// [`Mirror::refs`] under any of `prefixes`, in one listing.
    pub(crate) async fn refs_under(
        &self,
        prefixes: &[&str],
    ) -> Result<Vec<(String, Oid)>, GitError> {
        let g = Git::new(&self.env, At::GitDir(&self.dir))
            .args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .args(prefixes);
        let (done, g) = g.run().await?;
        if done.code != Some(0) {
            return Err(g.failed(&done));
        }
        let text = String::from_utf8_lossy(&done.stdout);
        let mut out = Vec::new();
        for line in text.lines() {
            let (oid, name) = line
                .split_once(' ')
                .ok_or_else(|| g.unexpected(format!("line {line:?}")))?;
            out.push((name.to_owned(), Oid::parse(oid)?));
        }
        Ok(out)
    }
}

async fn is_empty_dir(dir: &Path) -> Result<bool, GitError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        // A file where the mirror should be.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(false),
        Err(e) => return Err(GitError::io(dir, e)),
    };
    Ok(entries
        .next_entry()
        .await
        .map_err(|e| GitError::io(dir, e))?
        .is_none())
}
