//! The supervisor launcher: a small, single-threaded helper process forked from `baton serve`
//! before its async runtime starts, which forks a job's [supervisor](crate::supervisor) on
//! request, so a job's start does not re-execute the whole `baton` binary (no exec, no dynamic
//! loading, no relocations, no page faults of a fresh image).
//!
//! The server ([`LocalExecutor`](crate::LocalExecutor)) sends the job folder's path and two
//! pipe ends over a unix socket (`SCM_RIGHTS`): the read end of the secrets pipe (the
//! supervisor's stdin) and the write end of the readiness pipe (its stdout). The launcher forks;
//! the child points stdin/stdout at them, stderr at `/dev/null`, and calls
//! [`supervisor::main`](crate::supervisor::main), which starts its own session, exactly as
//! `baton __supervise` does. The launcher answers with the child's pid and a pidfd of it, which
//! the server waits on for the job's end. The readiness protocol, the secrets pipe, the claim,
//! the job's cgroup and every crash guarantee are the supervisor's own and unchanged.
//!
//! The launcher holds nothing of the server (it was forked before the server opened its
//! database, sockets or threads), ends when the server's end of the socket closes, and reaps its
//! children. Supervisors live in their own sessions and outlive it and the server. Should the
//! launcher be gone, the server falls back to executing `baton __supervise` (never losing a job).
//! A forked supervisor shares the server's address-space layout (the binary is still PIE and
//! the server's image is randomized at each start; each job's own commands are exec'd afresh).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

/// The most bytes of a job folder's path the launcher takes.
const MAX_PATH: usize = 4096;

/// The server's side: a connection to the launcher. Requests are one at a time (a fork takes
/// well under a millisecond).
#[derive(Debug)]
pub struct Launcher {
    /// `None` once the launcher is known to be gone.
    sock: Mutex<Option<OwnedFd>>,
    pid: i32,
}

/// A supervisor the launcher forked.
#[derive(Debug)]
pub struct Forked {
    pub pid: i32,
    /// A pidfd of it: readable once it has exited (whoever reaps it).
    pub pidfd: OwnedFd,
}

/// Why a launch did not happen.
#[derive(Debug)]
pub enum LaunchError {
    /// The launcher is gone and nothing was forked: start the supervisor another way.
    Gone(io::Error),
    /// The request reached the launcher but no answer came back: a supervisor may or may not
    /// run (its readiness pipe tells).
    NoAnswer(io::Error),
    /// The launcher could not fork (its errno).
    Fork(io::Error),
}

/// Forks the launcher. Call it first thing in `main`, while the process has one thread (a fork
/// of a multi-threaded process may leave locks held in the child), and after setting the
/// umask and environment supervisors must have: they keep those of this moment. `None` if the
/// fork fails (the server then execs each supervisor).
pub fn start() -> Option<Launcher> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills the two fds on success; we own them from here.
    let (ours, theirs) = unsafe {
        if libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        ) != 0
        {
            return None;
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // SAFETY: the caller guarantees a single-threaded process; the child only runs `serve`.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => {
            drop(ours);
            serve(theirs)
        }
        pid => {
            drop(theirs);
            Some(Launcher {
                sock: Mutex::new(Some(ours)),
                pid,
            })
        }
    }
}

impl Launcher {
    /// The launcher's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks for a supervisor of the job in `dir` with `stdin` (the secrets pipe's read end)
    /// and `stdout` (the readiness pipe's write end). Blocking, briefly: call it off the async
    /// threads.
    pub fn launch(
        &self,
        dir: &Path,
        stdin: OwnedFd,
        stdout: OwnedFd,
    ) -> Result<Forked, LaunchError> {
        let mut guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = guard.as_ref() else {
            return Err(LaunchError::Gone(io::Error::other(
                "the launcher stopped earlier",
            )));
        };
        let path = dir.as_os_str().as_bytes();
        if path.len() > MAX_PATH {
            return Err(LaunchError::Gone(io::Error::other(
                "job folder path too long",
            )));
        }
        if let Err(e) = send_fds(
            sock.as_raw_fd(),
            path,
            &[stdin.as_raw_fd(), stdout.as_raw_fd()],
        ) {
            *guard = None;
            return Err(LaunchError::Gone(e));
        }
        drop((stdin, stdout));
        let mut answer = [0u8; 4];
        let reply = recv_fds(sock.as_raw_fd(), &mut answer);
        let (n, mut fds) = match reply {
            Ok(r) => r,
            Err(e) => {
                *guard = None;
                return Err(LaunchError::NoAnswer(e));
            }
        };
        if n != 4 {
            *guard = None;
            return Err(LaunchError::NoAnswer(io::Error::other(
                "the launcher closed its socket",
            )));
        }
        let pid = i32::from_ne_bytes(answer);
        if pid <= 0 {
            return Err(LaunchError::Fork(io::Error::from_raw_os_error(-pid)));
        }
        match fds.pop() {
            Some(pidfd) => Ok(Forked { pid, pidfd }),
            None => Err(LaunchError::NoAnswer(io::Error::other(
                "the launcher sent no pidfd",
            ))),
        }
    }
}

/// The launcher's loop: one request, one fork, one answer; ends when the server's end closes.
fn serve(sock: OwnedFd) -> ! {
    // Nothing of the server's terminal or pipes: stdin/stdout to /dev/null, stderr kept for the
    // launcher's own last words.
    // SAFETY: plain syscalls in a single-threaded process.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
        libc::prctl(
            libc::PR_SET_NAME,
            c"baton-launcher".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::chdir(c"/".as_ptr());
    }
    let fd = sock.as_raw_fd();
    let mut children = 0usize;
    loop {
        // Reap ended supervisors; while some live, look again now and then.
        while children > 0 {
            // SAFETY: waitpid on our own children.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            children -= 1;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = if children > 0 { 200 } else { -1 };
        // SAFETY: one pollfd we own.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if ready <= 0 {
            continue;
        }
        let mut path = vec![0u8; MAX_PATH];
        let (n, fds) = match recv_fds(fd, &mut path) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => std::process::exit(0),
        };
        if n == 0 {
            // The server is gone.
            std::process::exit(0);
        }
        path.truncate(n);
        let answer = match <[OwnedFd; 2]>::try_from(fds) {
            Ok([stdin, stdout]) => fork_supervisor(fd, &path, stdin, stdout),
            Err(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let sent = match answer {
            Ok((pid, pidfd)) => {
                children += 1;
                send_fds(fd, &pid.to_ne_bytes(), &[pidfd.as_raw_fd()])
            }
            Err(e) => {
                let code = -e.raw_os_error().unwrap_or(libc::EIO);
                send_fds(fd, &code.to_ne_bytes(), &[])
            }
        };
        if sent.is_err() {
            std::process::exit(0);
        }
    }
}

/// Forks one supervisor; its pid and a pidfd of it.
fn fork_supervisor(
    sock: RawFd,
    path: &[u8],
    stdin: OwnedFd,
    stdout: OwnedFd,
) -> io::Result<(i32, OwnedFd)> {
    // SAFETY: the launcher is single-threaded; the child only sets up its fds and runs the
    // supervisor, then exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: plain syscalls on fds this process owns.
        unsafe {
            libc::close(sock);
            libc::dup2(stdin.as_raw_fd(), 0);
            libc::dup2(stdout.as_raw_fd(), 1);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null >= 0 {
                libc::dup2(null, 2);
                libc::close(null);
            }
            libc::prctl(
                libc::PR_SET_NAME,
                c"baton-superv".as_ptr() as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        drop((stdin, stdout));
        let code = crate::supervisor::main(Path::new(OsStr::from_bytes(path)));
        std::process::exit(code);
    }
    drop((stdin, stdout));
    // The child cannot have been reaped yet (only this loop reaps), so the pid is still its.
    // SAFETY: pidfd_open on our own child; the fd is ours on success.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        return Err(e);
    }
    // SAFETY: a fresh fd from pidfd_open.
    Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) }))
}

/// Sends `bytes` with `fds` (`SCM_RIGHTS`) as one message.
fn send_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space;
        // SAFETY: the control buffer has room for one header and the fds (CMSG_SPACE).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(c), payload);
        }
    }
    loop {
        // SAFETY: msg points at live buffers.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message into `buf`: its length (0: the other end closed) and the fds it
/// carried (at most 2; close-on-exec).
fn recv_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(2 * std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; its pointers outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let mut raw: RawFd = 0;
                    std::ptr::copy_nonoverlapping(
                        data.add(i * std::mem::size_of::<RawFd>()),
                        &mut raw as *mut RawFd as *mut u8,
                        std::mem::size_of::<RawFd>(),
                    );
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, fds))
}
