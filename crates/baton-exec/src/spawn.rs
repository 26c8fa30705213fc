//! Starting a job's process (the job's bash, or its direct command) for the supervisor.
//!
//! A job with a cgroup starts INSIDE it: `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) with the cgroup
//! directory's fd, so no task is ever moved between cgroups. Moving one (writing "0" into
//! `cgroup.procs` between fork and exec) takes the cgroup threadgroup rwsem for write and waits
//! for an RCU grace period: 13–17 ms on a small VM, more than the rest of the trigger-to-start
//! path. Where `clone3` is refused (`ENOSYS`: an old kernel or a seccomp filter, `EPERM`: some
//! seccomp filters; `E2BIG`: a 5.3–5.6 kernel without `CLONE_INTO_CGROUP`), and for a job
//! without a cgroup, the process starts the old way: `std::process::Command`, joining the cgroup
//! (if any) in `pre_exec`.
//!
//! Both ways give the child the same start: stdin `/dev/null`, stdout and stderr the given pipes,
//! the given working directory and complete environment, its own process group, the default
//! signal mask and `SIGPIPE` disposition, death with the supervisor (`PR_SET_PDEATHSIG` plus a
//! `getppid` check), every fd from 3 up close-on-exec; the program is looked up on the child's
//! `PATH` as `execvp` does. After `clone3` the child runs only async-signal-safe calls on data
//! prepared before the clone; a failure reaches the parent as an errno through a close-on-exec
//! pipe (as std does), and the child `_exit(127)`s.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::unix;

/// What to start, and where.
pub(crate) struct JobCommand {
    /// A path, or a name looked up on the child's `PATH` (`/bin:/usr/bin` without one).
    pub program: PathBuf,
    /// The arguments after the program (argv[0] is the program as given).
    pub args: Vec<OsString>,
    /// The child's whole environment.
    pub env: BTreeMap<OsString, OsString>,
    pub cwd: PathBuf,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The job's cgroup (a cgroup v2 directory), if it has one.
    pub cgroup: Option<PathBuf>,
    /// The supervisor's pid: the child dies with it.
    pub parent: i32,
}

/// How the child was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    /// `clone3(CLONE_INTO_CGROUP)`: in its cgroup from its first instruction.
    IntoCgroup,
    /// `fork`, then (with a cgroup) a write to `cgroup.procs` before exec.
    Migrated,
}

/// A started child: wait for it with [`JobProcess::wait`] (the supervisor reaps it once).
#[derive(Debug)]
pub(crate) struct JobProcess {
    pid: i32,
    /// Read by the tests, which must know which way they took.
    #[cfg_attr(not(test), allow(dead_code))]
    way: Way,
}

impl JobProcess {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn way(&self) -> Way {
        self.way
    }

    /// Blocks until the child exits, and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut status = 0;
        loop {
            // SAFETY: writes one int into `status`.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                return Ok(ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Starts `cmd`: straight into its cgroup where the kernel can, else the old way.
pub(crate) fn spawn(cmd: JobCommand) -> io::Result<JobProcess> {
    if let Some(cg) = &cmd.cgroup {
        match spawn_into_cgroup(&cmd, cg) {
            Err(e) if clone3_unavailable(&e) => {}
            r => return r,
        }
    }
    spawn_migrating(cmd)
}

/// `clone3` (or its `cgroup` field) is not there: start the old way. `EPERM` too: some seccomp
/// filters refuse unknown syscalls with it (a cgroup we truly may not enter fails the old way
/// as well, and says so).
fn clone3_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::E2BIG | libc::EPERM)
    )
}

/// The old way: `std::process::Command`, joining the cgroup (if any) between fork and exec.
pub(crate) fn spawn_migrating(cmd: JobCommand) -> io::Result<JobProcess> {
    // Opened here; the child writes "0" into it (joins the cgroup) before it execs.
    let procs = match &cmd.cgroup {
        Some(cg) => {
            let p = cg.join("cgroup.procs");
            Some(OpenOptions::new().write(true).open(&p).map_err(|e| {
                io::Error::new(e.kind(), format!("could not open {}: {e}", p.display()))
            })?)
        }
        None => None,
    };
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    let parent = cmd.parent;
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args)
        .env_clear()
        .envs(&cmd.env)
        .current_dir(&cmd.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(cmd.stdout))
        .stderr(Stdio::from(cmd.stderr));
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        c.pre_exec(move || {
            unix::die_with_parent(parent)?;
            if let Some(fd) = procs_fd {
                unix::join_cgroup(fd)?;
            }
            unix::cloexec_from_fd_3()
        })
    };
    let child = c.spawn()?;
    // `c` holds our copies of the pipes' write ends: dropped here, so the reader sees EOF.
    drop(c);
    drop(procs);
    // The pid is all we keep: `Child` neither waits nor kills when dropped, and holds no pipe.
    Ok(JobProcess {
        pid: child.id() as i32,
        way: Way::Migrated,
    })
}

/// The kernel's `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>` (libc's constant is an overflowing `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the child of `clone3` needs, all allocated before the clone.
struct Prepared {
    /// Where to look for the program, in `execvp`'s order.
    paths: Vec<CString>,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh <path> <args...>`: for a program that is not an executable format (`ENOEXEC`),
    /// as `execvp` does; slot 1 is set to the path being tried, in the child's copy.
    sh_argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
}

fn cstring(s: &OsStr, what: &str) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {s:?} contains a NUL byte"),
        )
    })
}

const SH: &std::ffi::CStr = c"/bin/sh";

fn prepare(cmd: &JobCommand) -> io::Result<Prepared> {
    let program = cmd.program.as_os_str();
    let argv: Vec<CString> = std::iter::once(program)
        .chain(cmd.args.iter().map(OsString::as_os_str))
        .map(|a| cstring(a, "argument"))
        .collect::<io::Result<_>>()?;
    let mut envp = Vec::with_capacity(cmd.env.len());
    for (k, v) in &cmd.env {
        let mut entry = k.clone();
        entry.push("=");
        entry.push(v);
        envp.push(cstring(&entry, "environment entry")?);
    }
    // `execvp`: a name with a slash is a path; else each `PATH` entry in turn (an empty entry is
    // the working directory).
    let paths = if program.as_bytes().contains(&b'/') {
        vec![cstring(program, "program")?]
    } else {
        let path = cmd
            .env
            .get(OsStr::new("PATH"))
            .map(|p| p.as_bytes())
            .unwrap_or(b"/bin:/usr/bin");
        path.split(|b| *b == b':')
            .map(|dir| {
                if dir.is_empty() {
                    cstring(program, "program")
                } else {
                    cstring(
                        Path::new(OsStr::from_bytes(dir)).join(program).as_os_str(),
                        "program",
                    )
                }
            })
            .collect::<io::Result<_>>()?
    };
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv_ptrs = ptrs(&argv);
    let mut sh_argv = vec![SH.as_ptr(), std::ptr::null()];
    sh_argv.extend_from_slice(&argv_ptrs[1..]);
    Ok(Prepared {
        paths,
        argv: argv_ptrs,
        sh_argv,
        envp: ptrs(&envp),
        _envp: envp,
        _argv: argv,
        cwd: cstring(cmd.cwd.as_os_str(), "working directory")?,
    })
}

/// Starts `cmd` with `clone3(CLONE_INTO_CGROUP)` in cgroup `cg`. `ENOSYS` / `E2BIG` / `EPERM`
/// mean the kernel (or a filter) will not (see [`spawn`]); nothing started then.
pub(crate) fn spawn_into_cgroup(cmd: &JobCommand, cg: &Path) -> io::Result<JobProcess> {
    let mut p = prepare(cmd)?;
    let cgroup = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(cg)
        .map_err(|e| io::Error::new(e.kind(), format!("could not open {}: {e}", cg.display())))?;
    let null = OpenOptions::new().read(true).open("/dev/null")?;
    let (report_rx, report_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let fds = ChildFds {
        stdin: null.as_raw_fd(),
        stdout: cmd.stdout.as_raw_fd(),
        stderr: cmd.stderr.as_raw_fd(),
        report: report_tx.as_raw_fd(),
    };
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: like fork (no CLONE_VM, no new stack): the child continues on its copy of this
    // stack and runs only `child`, which makes async-signal-safe calls and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child; see above.
        unsafe { child(&mut p, fds, cmd.parent) }
    }
    let pid = pid as i32;
    // Our copies of the child's ends: the pipes' write ends are the caller's (dropped with `cmd`).
    drop(report_tx);
    drop(null);
    drop(cgroup);
    match read_report(report_rx) {
        Ok(None) => Ok(JobProcess {
            pid,
            way: Way::IntoCgroup,
        }),
        Ok(Some(e)) | Err(e) => {
            let _ = JobProcess {
                pid,
                way: Way::IntoCgroup,
            }
            .wait();
            Err(e)
        }
    }
}

/// The child's error report: nothing (EOF: the exec succeeded), or the errno it failed with.
fn read_report(rx: OwnedFd) -> io::Result<Option<io::Error>> {
    use std::io::Read;
    // At most a report's 8 bytes; the child's end closes at its exec or exit (EOF).
    let mut buf = Vec::with_capacity(8);
    std::fs::File::from(rx).take(9).read_to_end(&mut buf)?;
    let have = buf.len();
    match have {
        0 => Ok(None),
        8 if &buf[4..] == b"NOEX" => {
            let errno = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
            Ok(Some(io::Error::from_raw_os_error(errno)))
        }
        _ => Err(io::Error::other(format!(
            "the job's process sent a malformed start report ({have} bytes)"
        ))),
    }
}

#[derive(Clone, Copy)]
struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    report: RawFd,
}

/// In the child of `clone3`: report the errno of the call that failed, and exit.
unsafe fn fail(report: RawFd) -> ! {
    // SAFETY: reads this thread's errno; writes a stack buffer; exits.
    unsafe {
        let errno = *libc::__errno_location();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&errno.to_be_bytes());
        buf[4..].copy_from_slice(b"NOEX");
        libc::write(report, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// The child of `clone3`, up to `execve`. Async-signal-safe calls only: no allocation, no lock.
/// The fds to put at 0, 1 and 2 are 3 or above (the supervisor keeps 0–2 open), or the very
/// fd they go to.
unsafe fn child(p: &mut Prepared, fds: ChildFds, parent: i32) -> ! {
    // SAFETY: (this whole function) plain syscalls on data prepared before the clone.
    unsafe {
        for (fd, target) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            let ok = if fd == target {
                // dup2 onto itself would keep close-on-exec.
                libc::fcntl(fd, libc::F_SETFD, 0) != -1
            } else {
                libc::dup2(fd, target) != -1
            };
            if !ok {
                fail(fds.report);
            }
        }
        if libc::chdir(p.cwd.as_ptr()) != 0 || libc::setpgid(0, 0) != 0 {
            fail(fds.report);
        }
        // As std: the default signal mask, and SIGPIPE back to its default (Rust ignores it).
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0
            || libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0
            || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
        {
            fail(fds.report);
        }
        if let Err(e) = unix::die_with_parent(parent) {
            // Its error is an errno (the parent gone: ESRCH, which errno does not hold).
            *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::ESRCH);
            fail(fds.report);
        }
        let _ = unix::cloexec_from_fd_3();
        // `execvp`'s search: EACCES is remembered and the search goes on; a missing file too.
        let mut eacces = false;
        for path in &p.paths {
            libc::execve(path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            let errno = *libc::__errno_location();
            match errno {
                libc::ENOEXEC => {
                    p.sh_argv[1] = path.as_ptr();
                    libc::execve(SH.as_ptr(), p.sh_argv.as_ptr(), p.envp.as_ptr());
                    fail(fds.report);
                }
                libc::EACCES => eacces = true,
                libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(fds.report),
            }
        }
        if eacces {
            *libc::__errno_location() = libc::EACCES;
        }
        fail(fds.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    /// A pipe's ends (close-on-exec).
    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: writes two fds into `fds`.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both are ours alone.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// A fresh cgroup v2 for one test (no cgroup v2 here fails the test: it must be there).
    struct TestCgroup(PathBuf);

    impl TestCgroup {
        fn new(name: &str) -> Self {
            let jobs = match crate::tree::Containment::detect(crate::tree::ContainmentMode::Cgroup)
            {
                Ok(crate::tree::Containment::Cgroups(p)) => p,
                other => panic!("these tests need a writable cgroup v2: {other:?}"),
            };
            let cg = jobs.join(format!("spawn-test-{name}-{}", std::process::id()));
            std::fs::create_dir(&cg).expect("create the test cgroup");
            TestCgroup(cg)
        }

        /// The path `/proc/<pid>/cgroup` shows for it (`0::<path>`).
        fn shown(&self) -> String {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            let jobs = self.0.parent().unwrap();
            // `jobs` is `<mount><own>/baton-jobs`; the test cgroup sits in it.
            format!(
                "{}/{}/{}",
                own.trim_end_matches('/'),
                jobs.file_name().unwrap().to_str().unwrap(),
                self.0.file_name().unwrap().to_str().unwrap()
            )
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn command(program: &str, args: &[&str], cgroup: Option<&Path>) -> (JobCommand, OwnedFd) {
        let (rx, tx) = pipe();
        let (_, tx2) = pipe();
        let env: BTreeMap<OsString, OsString> =
            [("PATH", "/usr/bin:/bin"), ("SPAWN_TEST", "a=b c")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
        let cmd = JobCommand {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env,
            cwd: std::env::temp_dir(),
            stdout: tx,
            stderr: tx2,
            cgroup: cgroup.map(Path::to_path_buf),
            parent: unix::self_pid(),
        };
        (cmd, rx)
    }

    fn output(rx: OwnedFd) -> String {
        let mut s = String::new();
        std::fs::File::from(rx).read_to_string(&mut s).unwrap();
        s
    }

    const PROBE: &str = "grep ^0:: /proc/self/cgroup; echo \"$SPAWN_TEST\"; pwd; \
                         cut -d' ' -f5 /proc/$$/stat; echo $$; ls /proc/self/fd | wc -l";

    /// What the probe must print: the cgroup, the environment, the working directory, its own
    /// process group, and only fds 0, 1, 2 (plus the one `ls` reads) open.
    fn check_probe(out: &str, cgroup: Option<&TestCgroup>) {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{out}");
        if let Some(cg) = cgroup {
            assert_eq!(lines[0], format!("0::{}", cg.shown()), "{out}");
        }
        assert_eq!(lines[1], "a=b c", "{out}");
        assert_eq!(
            Path::new(lines[2]).canonicalize().unwrap(),
            std::env::temp_dir().canonicalize().unwrap()
        );
        assert_eq!(lines[3], lines[4], "its own process group: {out}");
        assert_eq!(lines[5], "4", "fds 0-2 and ls's own: {out}");
    }

    #[test]
    fn clone3_starts_the_child_inside_its_cgroup() {
        let cg = TestCgroup::new("clone3");
        let (cmd, rx) = command("bash", &["-c", PROBE], Some(&cg.0));
        let mut child = spawn_into_cgroup(&cmd, &cg.0).expect("clone3(CLONE_INTO_CGROUP)");
        drop(cmd);
        assert_eq!(child.way(), Way::IntoCgroup);
        let out = output(rx);
        assert!(child.wait().unwrap().success());
        check_probe(&out, Some(&cg));
    }

    #[test]
    fn the_fallback_joins_the_cgroup_before_exec() {
        let cg = TestCgroup::new("fallback");
        let (cmd, rx) = command("bash", &["-c", PROBE], Some(&cg.0));
        let mut child = spawn_migrating(cmd).expect("fork and join");
        assert_eq!(child.way(), Way::Migrated);
        let out = output(rx);
        assert!(child.wait().unwrap().success());
        check_probe(&out, Some(&cg));
    }

    #[test]
    fn without_a_cgroup_the_child_starts_the_old_way() {
        let (cmd, rx) = command("bash", &["-c", PROBE], None);
        let mut child = spawn(cmd).unwrap();
        assert_eq!(child.way(), Way::Migrated);
        let out = output(rx);
        assert!(child.wait().unwrap().success());
        check_probe(&out, None);
    }

    #[test]
    fn exit_status_and_exec_errors_come_back() {
        let cg = TestCgroup::new("errors");
        let (cmd, rx) = command("bash", &["-c", "exit 3"], Some(&cg.0));
        let mut child = spawn(cmd).unwrap();
        assert_eq!(child.way(), Way::IntoCgroup);
        assert_eq!(output(rx), "");
        assert_eq!(child.wait().unwrap().code(), Some(3));

        let (cmd, _rx) = command("no-such-program-here", &[], Some(&cg.0));
        let err = spawn(cmd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

        let (mut cmd, _rx) = command("bash", &[], Some(&cg.0));
        cmd.cwd = "/no/such/dir".into();
        let err = spawn(cmd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

        // A script with no `#!` runs under /bin/sh, as with execvp.
        let script = std::env::temp_dir().join(format!("spawn-test-{}.sh", std::process::id()));
        std::fs::write(&script, "echo plain script\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (cmd, rx) = command(script.to_str().unwrap(), &[], Some(&cg.0));
        let mut child = spawn(cmd).unwrap();
        assert_eq!(output(rx), "plain script\n");
        assert!(child.wait().unwrap().success());
        let _ = std::fs::remove_file(&script);
    }
}
