//! A local job's process tree: each job runs in its own cgroup v2 (killed as one with
//! `cgroup.kill`) or, where no cgroup v2 is usable, in its own process group plus whatever
//! carries the job's `BATON_OUTPUT_DIR` in its environment. `process.json` in the job folder
//! records which, so whoever finds the supervisor gone (the server, also after a restart) can
//! kill the whole tree before the job is marked `broken` or retried.
//!
//! Job cgroups live under `<the server's own cgroup>/baton-jobs/`, named
//! `job-<job id>-<attempt>-<hash of the job folder>` (unique across servers on one machine).
//! The server creates the job's cgroup and writes `process.json`; the supervisor starts its
//! child inside the cgroup (`clone3(CLONE_INTO_CGROUP)`; where the kernel has no `clone3`, the
//! child moves itself in before it execs the job's command: see `crate::spawn`), and the
//! supervisor adds the process group to the record once the child runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::ExecError;
use crate::layout::{OUT_DIR, try_read_json, write_atomic};
use crate::unix;

/// The [`ProcessRecord`] of a job folder.
pub const PROCESS_FILE: &str = "process.json";
/// The cgroup, under the server's own, that holds one cgroup per job.
pub const JOBS_CGROUP: &str = "baton-jobs";
/// How long one [`kill_tree`] waits for the killed processes to be gone.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How job trees are to be contained (`--job-containment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContainmentMode {
    /// A cgroup per job where a cgroup v2 is usable, else the process group.
    #[default]
    Auto,
    /// A cgroup per job, or refuse to start.
    Cgroup,
    /// The process group plus the `BATON_OUTPUT_DIR` scan, even where cgroups would work.
    ProcessGroup,
}

impl std::str::FromStr for ContainmentMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cgroup" => Ok(Self::Cgroup),
            "process-group" => Ok(Self::ProcessGroup),
            other => Err(format!(
                "unknown job containment {other:?}: expected auto, cgroup or process-group"
            )),
        }
    }
}

/// The mechanism one job uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Cgroup,
    ProcessGroup,
}

/// `process.json`: how to find every process of a job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProcessRecord {
    pub mechanism: Mechanism,
    /// The job's own cgroup (mechanism `cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// The job's process group (its first process's pid), once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    /// The start time of the group's leader, so a reused pid is not mistaken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid_start_time: Option<u64>,
}

impl ProcessRecord {
    fn process_group() -> Self {
        ProcessRecord {
            mechanism: Mechanism::ProcessGroup,
            cgroup: None,
            pgid: None,
            pgid_start_time: None,
        }
    }

    /// Read `process.json` of `dir`; a folder without one (a supervisor run by hand) uses the
    /// process group.
    pub fn read(dir: &Path) -> Result<Self, ExecError> {
        Ok(try_read_json(&dir.join(PROCESS_FILE))?.unwrap_or_else(Self::process_group))
    }

    /// Write `process.json` of `dir` (atomically; it is only useful while the machine is up,
    /// so not synced).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("ProcessRecord serializes");
        write_atomic(&dir.join(PROCESS_FILE), &json, false)
    }
}

/// Where an executor puts its jobs' trees; decided once, when it is made.
#[derive(Clone, Debug)]
pub enum Containment {
    /// Job cgroups go under this one (`<own cgroup>/baton-jobs`).
    Cgroups(PathBuf),
    /// Process groups; why not cgroups.
    ProcessGroups(String),
}

impl Containment {
    /// Looks for a usable cgroup v2 (mounted read-write, with `cgroup.kill`, ours to write) as
    /// `mode` asks. Only [`ContainmentMode::Cgroup`] can fail.
    pub fn detect(mode: ContainmentMode) -> Result<Self, ExecError> {
        match mode {
            ContainmentMode::ProcessGroup => Ok(Self::ProcessGroups(
                "process groups were asked for (--job-containment process-group)".into(),
            )),
            ContainmentMode::Auto => Ok(match jobs_cgroup() {
                Ok(p) => Self::Cgroups(p),
                Err(why) => Self::ProcessGroups(why),
            }),
            ContainmentMode::Cgroup => jobs_cgroup()
                .map(Self::Cgroups)
                .map_err(ExecError::NoCgroup),
        }
    }

    /// The record of a job about to start in `dir`: creates its cgroup (one `mkdir`). A cgroup
    /// that cannot be created falls back to the process group (logged), so jobs still run.
    pub fn prepare(&self, dir: &Path, job_id: i64) -> ProcessRecord {
        let Self::Cgroups(parent) = self else {
            return ProcessRecord::process_group();
        };
        let cg = parent.join(format!("job-{job_id}{}", name_suffix(dir)));
        match fs::create_dir(&cg) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(
                    "could not create cgroup {}: {e}; job {job_id} uses its process group",
                    cg.display()
                );
                return ProcessRecord::process_group();
            }
        }
        ProcessRecord {
            mechanism: Mechanism::Cgroup,
            cgroup: Some(cg),
            pgid: None,
            pgid_start_time: None,
        }
    }
}

/// `-<attempt>-<hash of the folder>`: the end of the name of the cgroup of the job in `dir`.
fn name_suffix(dir: &Path) -> String {
    let attempt = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hash = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("-{attempt}-{}", hex::encode(&hash[..4]))
}

/// Whether `cg` can be the cgroup of the job in `dir` (one of `dirs`, the folder as given and
/// resolved): `…/baton-jobs/job-<id>-<attempt>-<hash of the folder>`. The job may write its own
/// folder, so the server never kills a cgroup the record merely names.
fn is_job_cgroup(cg: &Path, dirs: &[&Path]) -> bool {
    let name = cg.file_name().and_then(|n| n.to_str()).unwrap_or("");
    cg.is_absolute()
        && cg.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        })
        && cg.parent().and_then(|p| p.file_name()) == Some(JOBS_CGROUP.as_ref())
        && name.starts_with("job-")
        && dirs.iter().any(|d| name.ends_with(&name_suffix(d)))
}

/// `<own cgroup v2>/baton-jobs`, created if needed, or why it cannot be used.
fn jobs_cgroup() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (root, mount) = cgroup2_mount(&mountinfo)
        .ok_or_else(|| "no cgroup2 file system is mounted read-write".to_string())?;
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| "this process is in no cgroup v2 hierarchy".to_string())?;
    let rel = Path::new(own).strip_prefix(&root).map_err(|_| {
        format!(
            "our cgroup {own} is outside the mounted cgroup2 tree (root {})",
            root.display()
        )
    })?;
    let base = mount.join(rel);
    // Moving a process between two cgroups needs write access to their common ancestor.
    nix::unistd::access(&base.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("cannot write {}: {e}", base.join("cgroup.procs").display()))?;
    let parent = base.join(JOBS_CGROUP);
    match fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create cgroup {}: {e}", parent.display())),
    }
    if !parent.join("cgroup.kill").exists() {
        return Err(format!(
            "{} has no cgroup.kill (needs Linux 5.14 or later)",
            parent.display()
        ));
    }
    Ok(parent)
}

/// The first read-write cgroup2 mount in `/proc/self/mountinfo`: (its root in the hierarchy,
/// where it is mounted).
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            return None;
        }
        let f: Vec<&str> = left.split(' ').collect();
        let (root, mount, opts) = (f.get(3)?, f.get(4)?, f.get(5)?);
        opts.split(',').any(|o| o == "rw").then(|| {
            (
                PathBuf::from(unescape(root)),
                PathBuf::from(unescape(mount)),
            )
        })
    })
}

/// Undo mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| b.get(j).is_some_and(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal(i + 1) && octal(i + 2) && octal(i + 3) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every process of one job, as its record names them.
#[derive(Clone, Debug)]
pub struct Tree {
    rec: ProcessRecord,
    /// `BATON_OUTPUT_DIR=<dir>/out`: processes that left the process group still carry it.
    tag: Vec<u8>,
}

impl Tree {
    /// The tree of the job in `dir` (absolute) as `rec` describes it.
    pub fn new(dir: &Path, rec: ProcessRecord) -> Self {
        let tag = format!("BATON_OUTPUT_DIR={}", dir.join(OUT_DIR).display()).into_bytes();
        Tree { rec, tag }
    }

    /// The record.
    pub fn record(&self) -> &ProcessRecord {
        &self.rec
    }

    /// Sets the process group once the job's first process runs.
    pub fn set_group(&mut self, pgid: i32) {
        self.rec.pgid = Some(pgid);
        self.rec.pgid_start_time = unix::proc_stat(pgid).ok().map(|s| s.start_time);
    }

    /// The job's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&Path> {
        match self.rec.mechanism {
            Mechanism::Cgroup => self.rec.cgroup.as_deref(),
            Mechanism::ProcessGroup => None,
        }
    }

    /// Sends `sig` to the whole tree. In a cgroup that is every process in it (`SIGKILL` through
    /// `cgroup.kill`); otherwise the process group, and with `tagged` also every process carrying
    /// the job's `BATON_OUTPUT_DIR` (a scan of `/proc`).
    pub fn signal(&self, sig: Signal, tagged: bool) {
        if let Some(pgid) = self.group() {
            let _ = unix::signal_group(pgid, sig);
        }
        match self.cgroup() {
            Some(cg) if sig == Signal::SIGKILL => {
                let _ = fs::write(cg.join("cgroup.kill"), b"1");
            }
            Some(cg) => {
                for pid in cgroup_pids(cg) {
                    let _ = unix::signal_process(pid, sig);
                }
            }
            None if tagged => {
                for pid in self.scan() {
                    let _ = unix::signal_process(pid, sig);
                }
            }
            None => {}
        }
    }

    /// Whether no process of the tree is left (zombies count as gone).
    pub fn is_empty(&self) -> bool {
        match self.cgroup() {
            Some(cg) => match fs::read_to_string(cg.join("cgroup.events")) {
                Ok(ev) => ev.lines().any(|l| l == "populated 0"),
                Err(_) => !cg.exists(),
            },
            None => self.scan().is_empty(),
        }
    }

    /// SIGKILLs the whole tree until it is gone (at most `limit`), then removes the cgroup.
    /// Returns what was done, or why some process may still live.
    pub fn kill_and_wait(&self, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        loop {
            self.signal(Signal::SIGKILL, true);
            if self.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "processes of {} still live {limit:?} after SIGKILL",
                    self.describe()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        if let Some(cg) = self.cgroup() {
            remove_cgroup(cg);
        }
        Ok(format!("every process of {} is dead", self.describe()))
    }

    /// "cgroup …" or "process group N".
    pub fn describe(&self) -> String {
        match (self.cgroup(), self.rec.pgid) {
            (Some(cg), _) => format!("the job's cgroup {}", cg.display()),
            (None, Some(pgid)) => format!(
                "the job's process group {pgid} and its {}",
                String::from_utf8_lossy(&self.tag)
            ),
            (None, None) => format!(
                "the job (processes carrying {})",
                String::from_utf8_lossy(&self.tag)
            ),
        }
    }

    /// The process group, unless its number now belongs to someone else (its leader is alive
    /// with another start time). While any member lives, Linux does not reuse the number.
    fn group(&self) -> Option<i32> {
        let pgid = self.rec.pgid.filter(|p| *p > 1)?;
        match (unix::proc_stat(pgid), self.rec.pgid_start_time) {
            (Ok(st), Some(t)) if st.start_time != t => None,
            _ => Some(pgid),
        }
    }

    /// Live (not zombie) processes in the process group or carrying the tag.
    fn scan(&self) -> Vec<i32> {
        let me = unix::self_pid();
        let group = self.group();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(st) = unix::proc_stat(pid) else {
                continue;
            };
            if matches!(st.state, 'Z' | 'X' | 'x') {
                continue;
            }
            let in_group = group.is_some_and(|g| g == st.pgrp);
            if in_group || unix::environ_has(pid, &self.tag) {
                out.push(pid);
            }
        }
        out
    }
}

/// The pids in cgroup `cg` and its descendants.
fn cgroup_pids(cg: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for sub in subdirs(cg) {
        out.extend(cgroup_pids(&sub));
    }
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes an empty cgroup and any (empty) cgroups a job made below it. Best effort: a cgroup
/// that stays busy is logged and left behind.
pub fn remove_cgroup(cg: &Path) {
    for sub in subdirs(cg) {
        remove_cgroup(&sub);
    }
    for _ in 0..50 {
        match fs::remove_dir(cg) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                tracing::warn!("could not remove cgroup {}: {e}", cg.display());
                return;
            }
        }
    }
    tracing::warn!("cgroup {} stayed busy; left behind", cg.display());
}

/// Kills every process of the job in `dir` (by its `process.json`) and waits, at most
/// [`KILL_WAIT`], until they are gone: for a job whose supervisor vanished, before it is marked
/// `broken` or retried.
pub fn kill_tree(dir: &Path) -> Result<String, String> {
    let given = dir;
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut rec = ProcessRecord::read(&dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; looking for the job's processes by their BATON_OUTPUT_DIR");
        ProcessRecord::process_group()
    });
    if let Some(cg) = &rec.cgroup
        && !is_job_cgroup(cg, &[given, &dir])
    {
        tracing::warn!(
            "{} names {}, which is not this job's cgroup; ignoring it",
            dir.join(PROCESS_FILE).display(),
            cg.display()
        );
        rec = ProcessRecord::process_group();
    }
    // Never our own process group, whatever the record says.
    if rec.pgid == Some(nix::unistd::getpgrp().as_raw()) {
        rec.pgid = None;
    }
    Tree::new(&dir, rec).kill_and_wait(KILL_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let info = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(("/".into(), "/sys/fs/cgroup/unified".into()))
        );
        let ro = "41 31 0:38 /a\\040b /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 ro\n";
        assert_eq!(cgroup2_mount(ro), None);
        let escaped = "41 31 0:38 /a\\040b /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(escaped),
            Some(("/a b".into(), "/mnt/c g".into()))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / /proc rw - proc proc rw\n"), None);
    }

    #[test]
    fn only_the_jobs_own_cgroup_is_trusted() {
        let dir = Path::new("/data/jobs/12/3");
        let own = format!("/sys/fs/cgroup/x/baton-jobs/job-12{}", name_suffix(dir));
        assert!(own.contains("job-12-3-"), "{own}");
        assert!(is_job_cgroup(Path::new(&own), &[dir]));
        for bad in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/x/baton-jobs",
            "/sys/fs/cgroup/x/other/job-12-3-00000000",
            "/sys/fs/cgroup/x/baton-jobs/job-12-3-00000000",
            "baton-jobs/job-12-3-00000000",
        ] {
            assert!(!is_job_cgroup(Path::new(bad), &[dir]), "{bad}");
        }
        let dotted = format!(
            "/sys/fs/cgroup/baton-jobs/../baton-jobs/job-12{}",
            name_suffix(dir)
        );
        assert!(!is_job_cgroup(Path::new(&dotted), &[dir]));
    }

    #[test]
    fn modes_parse_and_name_the_choices() {
        assert_eq!(
            "process-group".parse::<ContainmentMode>(),
            Ok(ContainmentMode::ProcessGroup)
        );
        let err = "cgroups".parse::<ContainmentMode>().unwrap_err();
        assert!(err.contains("auto, cgroup or process-group"), "{err}");
    }

    #[test]
    fn a_folder_without_a_record_uses_the_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = ProcessRecord::read(tmp.path()).unwrap();
        assert_eq!(rec.mechanism, Mechanism::ProcessGroup);
        // Nothing carries this folder's tag: killing its tree is immediate and harmless.
        let done = kill_tree(tmp.path()).unwrap();
        assert!(done.contains("is dead"), "{done}");
    }
}
