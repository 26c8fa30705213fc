//! Real SSH test hosts: one network namespace per host, joined to the root namespace by a veth
//! pair on a per-test bridge (`10.213.N.0/24`, the server side is `10.213.N.1`), each running
//! the machine's own `/usr/sbin/sshd` with a generated host key and an authorized client key.
//!
//! The namespaces share the file system, so dtach, curl and bash are there; every host gets its
//! own work dir. Needs root, `ip`, `sshd`, `ssh-keygen`, `dtach` and `curl`: a missing tool
//! fails the test loudly. Everything (sshd, the jobs' processes, namespaces, bridge) is torn
//! down in `Drop`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT_NET: AtomicU32 = AtomicU32::new(1);

/// Runs a command that must succeed; panics with its output otherwise.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (is it installed? see scripts/test.sh)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Fails loudly when something the SSH tests need is missing.
pub fn require_tools() {
    for tool in [
        "/usr/sbin/sshd",
        "/usr/bin/ssh",
        "/usr/bin/scp",
        "/usr/bin/ssh-keygen",
        "/usr/bin/dtach",
        "/usr/bin/curl",
        "/usr/sbin/ip",
        "/usr/bin/unshare",
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the SSH tests need openssh-server, openssh-client, dtach, curl and iproute2 (scripts/test.sh installs them)"
        );
    }
    // SAFETY: plain syscall.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the SSH tests create network namespaces and need root"
    );
}

pub struct TestHost {
    /// The worker name used in the config (`w1`, …).
    pub name: String,
    pub ns: String,
    /// The root-side end of the veth pair (set it down to cut the host off).
    pub veth: String,
    pub addr: String,
    /// The worker's `work_dir` (absolute).
    pub work_dir: PathBuf,
    sshd: Option<Child>,
    sshd_args: Vec<String>,
    log: PathBuf,
}

pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub n: u32,
    pub bridge: String,
    /// The server side: listen here so workers can call back.
    pub gateway: String,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    pub hosts: Vec<TestHost>,
}

impl TestNet {
    /// `count` hosts named `w1..wN`.
    pub fn new(count: usize) -> TestNet {
        require_tools();
        // Unique per test in this process; the pid spreads concurrent test processes.
        let k = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        assert!(k < 20, "at most 20 test networks per test binary");
        let n = (std::process::id() % 12) * 20 + k + 1;
        let dir = tempfile::Builder::new()
            .prefix("baton-ssh-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let bridge = format!("btsb{n}");
        let gateway = format!("10.213.{n}.1");
        // Leftovers of a crashed earlier run with the same number.
        quiet("ip", &["link", "del", &bridge]);
        for i in 1..=count {
            quiet("ip", &["netns", "del", &format!("btsn{n}h{i}")]);
        }
        sh("ip", &["link", "add", &bridge, "type", "bridge"]);
        sh(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &bridge],
        );
        sh("ip", &["link", "set", &bridge, "up"]);
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");

        let client_key = root.join("client_key");
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                client_key.to_str().unwrap(),
            ],
        );
        let authorized = root.join("authorized_keys");
        std::fs::copy(root.join("client_key.pub"), &authorized).unwrap();
        let known_hosts = root.join("known_hosts");
        let mut known = String::new();

        let mut net = TestNet {
            dir,
            n,
            bridge,
            gateway,
            client_key,
            known_hosts: known_hosts.clone(),
            hosts: Vec::new(),
        };
        for i in 1..=count {
            let ns = format!("btsn{n}h{i}");
            let veth = format!("btsv{n}h{i}");
            let peer = format!("btsp{n}h{i}");
            let addr = format!("10.213.{n}.{}", 10 + i);
            sh("ip", &["netns", "add", &ns]);
            sh(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            );
            sh("ip", &["link", "set", &veth, "master", &net.bridge]);
            sh("ip", &["link", "set", &veth, "up"]);
            sh("ip", &["link", "set", &peer, "netns", &ns]);
            let nsx = |args: &[&str]| {
                let mut a = vec!["netns", "exec", &ns];
                a.extend_from_slice(args);
                sh("ip", &a);
            };
            nsx(&["ip", "link", "set", "lo", "up"]);
            nsx(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &peer]);
            nsx(&["ip", "link", "set", &peer, "up"]);
            nsx(&["ip", "route", "add", "default", "via", &net.gateway]);

            let hdir = root.join(format!("h{i}"));
            std::fs::create_dir_all(&hdir).unwrap();
            let host_key = hdir.join("host_key");
            sh(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    host_key.to_str().unwrap(),
                ],
            );
            let pubkey = std::fs::read_to_string(hdir.join("host_key.pub")).unwrap();
            let mut parts = pubkey.split_whitespace();
            known.push_str(&format!(
                "{addr} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ));
            let cfg = hdir.join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "Port 22\nListenAddress {addr}\nHostKey {hk}\nPidFile {pid}\n\
                     AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nMaxSessions 50\nMaxStartups 100\n\
                     Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n",
                    hk = host_key.display(),
                    pid = hdir.join("sshd.pid").display(),
                    auth = authorized.display(),
                ),
            )
            .unwrap();
            let work_dir = hdir.join("baton");
            // Each host gets its own empty home (a private mount namespace over /root), so the
            // machine's dotfiles never run in the hosts' sessions and `~` differs per host.
            let home = hdir.join("home");
            std::fs::create_dir_all(&home).unwrap();
            let sshd_args = vec![
                "netns".to_string(),
                "exec".into(),
                ns.clone(),
                "unshare".into(),
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "sh".into(),
                "-c".into(),
                "mount --bind \"$1\" /root && exec /usr/sbin/sshd -D -e -f \"$2\"".into(),
                "sh".into(),
                home.to_string_lossy().into_owned(),
                cfg.to_string_lossy().into_owned(),
            ];
            let mut host = TestHost {
                name: format!("w{i}"),
                ns,
                veth,
                addr,
                work_dir,
                sshd: None,
                sshd_args,
                log: hdir.join("sshd.log"),
            };
            host.start_sshd();
            net.hosts.push(host);
        }
        std::fs::write(&known_hosts, known).unwrap();
        net
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut TestHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    /// The `server:` and `workers:` sections for these hosts (all on queue `default`).
    pub fn config(&self, heartbeat: &str) -> String {
        let mut y = format!(
            "server:\n  ssh_key: {}\n  known_hosts: {}\n  heartbeat_timeout: {heartbeat}\n  kill_grace: 1s\nworkers:\n",
            self.client_key.display(),
            self.known_hosts.display()
        );
        for h in &self.hosts {
            y.push_str(&format!(
                "  {}:\n    host: root@{}\n    work_dir: {}\n    queues: [default]\n",
                h.name,
                h.addr,
                h.work_dir.display()
            ));
        }
        y
    }

    /// A path inside the shared test dir (visible to the hosts too).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl TestHost {
    pub fn start_sshd(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("ip")
            .args(&self.sshd_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sshd in its namespace");
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let sa: std::net::SocketAddr = format!("{}:22", self.addr).parse().unwrap();
        while std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_err() {
            if let Some(c) = self.sshd.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "sshd in {} exited ({st}): {}",
                    self.ns,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sshd in {} did not listen on {sa} within 10 s: {}",
                self.ns,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of every process in this host's namespace (sshd, its sessions, the jobs).
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| !super::is_dead(*p))
            .collect()
    }

    /// The host dies: SIGKILL to sshd and every process in its namespace.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..20 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                // SAFETY: plain syscall on a pid of our own test namespace.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts the host's network (its veth on the bridge goes down).
    pub fn cut(&self) {
        sh("ip", &["link", "set", &self.veth, "down"]);
    }

    pub fn restore(&self) {
        sh("ip", &["link", "set", &self.veth, "up"]);
    }

    /// The job folders left on this host.
    pub fn job_folders(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(jobs) = std::fs::read_dir(self.work_dir.join("jobs")) {
            for j in jobs.flatten() {
                if let Ok(atts) = std::fs::read_dir(j.path()) {
                    out.extend(atts.flatten().map(|a| a.path()));
                }
            }
        }
        out
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.kill();
            quiet("ip", &["netns", "del", &h.ns]);
            quiet("ip", &["link", "del", &h.veth]);
        }
        quiet("ip", &["link", "del", &self.bridge]);
    }
}
