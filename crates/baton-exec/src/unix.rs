//! Process control on Linux: process identity through `/proc` (pid + start
//! time, to survive pid reuse), signals to processes and process groups,
//! and a few fd tricks the supervisor needs.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// The bits of `/proc/<pid>/stat` we care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Read `/proc/<pid>/stat`.
pub fn proc_stat(pid: i32) -> io::Result<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

fn parse_stat(text: &str) -> io::Result<ProcStat> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/<pid>/stat");
    // Field 2 (comm) is in parentheses and may contain spaces and ')'.
    let rest = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    // `rest` starts at field 3; field 5 is 2 further, field 22 another 17.
    let pgrp = fields.nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let start_time = fields
        .nth(16)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(ProcStat {
        state,
        pgrp,
        start_time,
    })
}

/// This process's pid.
pub fn self_pid() -> i32 {
    std::process::id() as i32
}

/// Is the process `pid` the one that started at `start_time`, and not dead
/// (a zombie counts as dead)?
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Ok(st) => st.start_time == start_time && !matches!(st.state, 'Z' | 'X' | 'x'),
        Err(_) => false,
    }
}

/// Send `sig` to process `pid`.
pub fn signal_process(pid: i32, sig: Signal) -> Result<(), Errno> {
    signal::kill(Pid::from_raw(pid), sig)
}

/// Whether the environment of process `pid` holds the exact entry `entry` (`NAME=value`);
/// false for processes we may not inspect.
pub fn environ_has(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry))
}

/// For `pre_exec` (async-signal-safe): die by SIGKILL when the parent (the supervisor, pid
/// `parent`) dies; fails if it already has.
pub fn die_with_parent(parent: i32) -> io::Result<()> {
    // SAFETY: plain syscalls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// For `pre_exec` (async-signal-safe): move the calling process into the cgroup whose
/// `cgroup.procs` is open as `procs` ("0" names the writer). Slow (the kernel waits for an RCU
/// grace period): only where the child cannot start inside its cgroup with `clone3`.
pub fn join_cgroup(procs: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: a write of one byte from a static buffer to an open descriptor.
    let n = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `sig` to every process of group `pgid`. A group that no longer
/// exists is not an error.
pub fn signal_group(pgid: i32, sig: Signal) -> Result<(), Errno> {
    match signal::killpg(Pid::from_raw(pgid), sig) {
        Err(Errno::ESRCH) => Ok(()),
        r => r,
    }
}

/// Start a new session (for `pre_exec`: async-signal-safe).
pub fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(|_| ()).map_err(io::Error::from)
}

/// Mark every fd from 3 up close-on-exec (for `pre_exec`: async-signal-safe),
/// so a job never inherits descriptors its supervisor or the server leaked.
/// Best effort: needs Linux 5.11.
pub fn cloexec_from_fd_3() -> io::Result<()> {
    // SAFETY: a plain syscall on integers.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

/// Point fd 1 at `/dev/null` (closing whatever it was, e.g. a readiness pipe).
pub fn stdout_to_dev_null() -> io::Result<()> {
    let null = OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(null.as_fd()).map_err(io::Error::from)
}

/// Best effort: grow a pipe's buffer (fewer wake-ups for chatty jobs).
pub fn set_pipe_size(fd: impl AsFd, bytes: i32) {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(bytes));
}

/// How many bytes pipe `fd` holds now (`FIONREAD`; 0 when it cannot tell).
pub fn pipe_bytes(fd: RawFd) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let r = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Moves `count` bytes from pipe `from` into file `to` at `*offset` with `splice(2)` (no copy
/// through this process), advancing `*offset` by what moved. The pipe must hold them already.
pub fn splice_all(from: RawFd, to: RawFd, offset: &mut u64, count: usize) -> io::Result<()> {
    let mut left = count;
    while left > 0 {
        let mut off = nix::libc::loff_t::try_from(*offset).map_err(io::Error::other)?;
        // SAFETY: plain fds and an offset we own; no buffers.
        let n = unsafe {
            nix::libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                &mut off,
                left,
                nix::libc::SPLICE_F_MOVE | nix::libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the pipe held fewer bytes than it said",
            ));
        }
        *offset += n as u64;
        left -= n as usize;
    }
    Ok(())
}

/// This process's peak resident set size (`VmHWM`), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1000 200 18446744073709551615";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.pgrp, 4242);
        assert_eq!(st.start_time, 987654);
    }

    #[test]
    fn self_is_alive_and_wrong_start_time_is_not() {
        let st = proc_stat(self_pid()).unwrap();
        assert!(is_alive(self_pid(), st.start_time));
        assert!(!is_alive(self_pid(), st.start_time + 1));
        assert!(peak_rss_kb().unwrap() > 0);
    }
}
