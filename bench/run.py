#!/usr/bin/env python3
"""Baton's benchmarks. Every figure is printed beside a baseline measured in the same run.

(a) 100 runs of /bin/true through the server with 2 workers   vs make -j2, 100 /bin/true targets
(b) trigger-to-start latency p50/p99 on an idle server          vs spawning the same bash directly
(c) a 100-task DAG pipeline                                    vs the same DAG in make -j2
(d) idle server RSS and startup-to-ready time                   vs the aims (10 MiB, 20 ms)
(e) capture of a task writing 1 GiB                             vs `head -c 1G > file` directly
(f) trivial runs on Docker, an SSH worker and an agent          vs the local executor, same server
(g) the web UI's runs page with 100,000 runs in the store        vs the aim (50 ms)
(h) trigger p50 and throughput, 10,000 queued + 1,000 stored/task vs the same on an empty server
(i) 1,000 live-log viewers of one busy job: server CPU, peak RSS  vs the aim (64 MiB)
(j) server RSS under 1,000 parallel bad logins (loopback)      vs the aim (64 MiB)
(k) webhook -> first command in a 10,000-file checkout          vs `git clone` of the same repo
    (warm mirror), and for a push of 1,000 commits                 (bench/webhook.py)
(l) `baton run` of a trivial one-task .baton/, to the result ref  vs the script run directly plus
                                                                   one `git commit-tree`
(p) dispatch throughput with 1, 2, 3 servers on PostgreSQL      vs 1 server on SQLite; failover
    time after SIGKILL of the active server                        vs the lease it waits out
    (bench/cluster.py)
(q) 1,000 simulated agents, 3 servers, ~12 runs/s with bursts   vs the aims (dispatch p99 < 50 ms)
    (bench/agents_sim.py)
(r) backlog -> first command on a new docker-provider agent     vs `docker run --rm` of the same
    (pool min 0; bench/pool_docker.py)                             command in the same image
"""
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The `baton` binary: bench/run.py's first argument, or set by a script that imports these helpers.
BATON = os.path.abspath(sys.argv[1]) if __name__ == "__main__" else None
N = 100


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, config, host="127.0.0.1"):
        self.dir = tempfile.mkdtemp(prefix="baton-bench-")
        self.cfg = os.path.join(self.dir, "baton.yaml")
        with open(self.cfg, "w") as f:
            f.write(config)
        self.port = free_port(host)
        self.data = os.path.join(self.dir, "data")
        self.host = host
        self.stderr = subprocess.DEVNULL
        t0 = time.perf_counter()
        self.spawn()
        self.wait_ready()
        self.ready_s = time.perf_counter() - t0
        self.token = subprocess.check_output(
            [BATON, "token", "create", "--data", self.data], text=True).strip()

    def spawn(self):
        """Starts `baton serve` on this server's config, data dir and port (again after a kill)."""
        self.proc = subprocess.Popen(
            [BATON, "serve", "--config", self.cfg, "--data", self.data,
             "--listen", f"{self.host}:{self.port}"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def wait_ready(self):
        """Waits for the ready line of the server just spawned, then connects."""
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise SystemExit(f"server did not start: {line!r}")
        self.conn = http.client.HTTPConnection(self.host, self.port)

    def req(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, "/api/v1" + path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def wait(self, run_id):
        while True:
            run = self.req("GET", f"/runs/{run_id}/wait?timeout=30")
            if run["status"] not in ("queued", "started", "running"):
                return run

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def anon_kib(self):
        """Anonymous memory (heap, stacks): RSS less the pages mapped from files, such as the
        binary's code, which the kernel can drop and re-read at will."""
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_j2(makefile):
    d = tempfile.mkdtemp(prefix="baton-bench-make-")
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(makefile)
    t0 = time.perf_counter()
    subprocess.run(["make", "-s", "-j2", "-C", d, "all"], check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    shutil.rmtree(d)
    return dt


def row(name, value, unit, base, base_unit, ratio, aim=""):
    print(f"{name:<44} {value:>10.2f} {unit:<5} baseline {base:>9.2f} {base_unit:<5} ratio {ratio:>6.2f}x {aim}")


def bench_throughput():
    cfg = """server: {local_workers: 2}
tasks:
  t:
    command: /bin/true
    concurrency: 2
    wait_list: {size: 1000}
"""
    s = Server(cfg)
    try:
        t0 = time.perf_counter()
        ids = [s.req("POST", "/tasks/t/trigger")["id"] for _ in range(N)]
        for i in ids:
            assert s.wait(i)["status"] == "success"
        baton = time.perf_counter() - t0
    finally:
        s.stop()
    targets = " ".join(f"t{i}" for i in range(N))
    mk = f".PHONY: all {targets}\nall: {targets}\n" + "".join(f"t{i}:\n\t@/bin/true\n" for i in range(N))
    make = make_j2(mk)
    row("(a) 100 x /bin/true, 2 workers", baton, "s", make, "s", baton / make, "(aim <= 3x)")


def bench_latency():
    cfg = """server: {local_workers: 2}
tasks:
  l:
    command: date +%s%N > "$BATON_OUTPUT_DIR/t"
"""
    s = Server(cfg)
    lat = []
    try:
        for _ in range(50):
            t0 = time.time_ns()
            run = s.req("POST", "/tasks/l/trigger")
            run = s.wait(run["id"])
            job = run["jobs"][0]
            path = os.path.join(s.data, "jobs", str(job["id"]), str(job["attempt"]), "out", "t")
            with open(path) as f:
                lat.append((int(f.read().strip()) - t0) / 1e6)
    finally:
        s.stop()
    base = []
    for _ in range(50):
        t0 = time.time_ns()
        out = subprocess.check_output(["bash", "-eo", "pipefail", "-c", "date +%s%N"], text=True)
        base.append((int(out.strip()) - t0) / 1e6)
    lat.sort()
    base.sort()
    p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
    row("(b) trigger-to-start p50", p(lat, 0.5), "ms", p(base, 0.5), "ms", p(lat, 0.5) / p(base, 0.5), "(aim p50 <= 2 ms)")
    row("(b) trigger-to-start p99", p(lat, 0.99), "ms", p(base, 0.99), "ms", p(lat, 0.99) / p(base, 0.99))


def bench_dag():
    # A binary-tree-shaped DAG of 100 tasks: task i depends on task (i-1)//2.
    lines = ["server: {local_workers: 2}", "pipelines:", "  dag:", "    tasks:"]
    mk_targets = []
    for i in range(N):
        lines += [f"      t{i}:", "        script: [/bin/true]"]
        if i > 0:
            lines.append(f"        depends_on: [t{(i - 1) // 2}]")
        mk_targets.append((f"t{i}", f"t{(i - 1) // 2}" if i > 0 else ""))
    cfg = "\n".join(lines) + "\n"
    s = Server(cfg)
    try:
        t0 = time.perf_counter()
        run = s.req("POST", "/pipelines/dag/trigger")
        run = s.wait(run["id"])
        assert run["status"] == "success", run["status"]
        baton = time.perf_counter() - t0
    finally:
        s.stop()
    names = " ".join(t for t, _ in mk_targets)
    mk = f".PHONY: all {names}\nall: {names}\n" + "".join(f"{t}: {d}\n\t@/bin/true\n" for t, d in mk_targets)
    make = make_j2(mk)
    row("(c) 100-task DAG pipeline, 2 workers", baton, "s", make, "s", baton / make)


def bench_idle():
    """(d) RSS and spawn-to-ready time of an idle server restarted on its data dir (the first
    start, which creates the database and runs every migration, is printed apart)."""
    s = Server("server: {local_workers: 2}\ntasks:\n  t: {command: 'true'}\n")
    first = s.ready_s * 1000
    readies, rss, private = [], [], []
    try:
        for _ in range(5):
            s.proc.kill()
            s.proc.wait()
            t0 = time.perf_counter()
            s.spawn()
            s.wait_ready()
            readies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.3)
            rss.append(s.rss_kib() / 1024)
            private.append(s.anon_kib() / 1024)
    finally:
        s.stop()
    r, m, p = statistics.median(readies), statistics.median(rss), statistics.median(private)
    row("(d) idle server RSS", m, "MiB", 10.0, "MiB", m / 10.0, "(aim <= 10 MiB)")
    row("(d) idle server anonymous memory", p, "MiB", 10.0, "MiB", p / 10.0, "(heap and stacks)")
    row("(d) startup-to-ready (restart)", r, "ms", 20.0, "ms", r / 20.0, "(aim <= 20 ms)")
    row("(d) first start (new database)", first, "ms", 20.0, "ms", first / 20.0,
        "(creates the store: every migration)")


def bench_capture():
    gib = 1 << 30
    s = Server(f"server: {{local_workers: 1}}\ntasks:\n  big:\n    command: head -c {gib} /dev/zero\n")
    try:
        run = s.req("POST", "/tasks/big/trigger")
        run = s.wait(run["id"])
        job = run["jobs"][0]
        d = os.path.join(s.data, "jobs", str(job["id"]), str(job["attempt"]))
        with open(os.path.join(d, "exit.json")) as f:
            rec = json.load(f)
        size = os.path.getsize(os.path.join(d, "log"))
        assert size == gib, size
        parse = lambda t: _ts(t)
        secs = parse(rec["ended_at"]) - parse(rec["started_at"])
        mbps = gib / secs / 1e6
        sup_rss = (rec.get("max_rss_kb") or 0) / 1024
    finally:
        s.stop()
    d = tempfile.mkdtemp(prefix="baton-bench-cap-")
    t0 = time.perf_counter()
    subprocess.run(f"head -c {gib} /dev/zero > {d}/f", shell=True, check=True)
    base = gib / (time.perf_counter() - t0) / 1e6
    shutil.rmtree(d)
    row("(e) capture of 1 GiB", mbps, "MB/s", base, "MB/s", mbps / base, "(aim >= 200 MB/s)")
    row("(e) supervisor peak RSS during capture", sup_rss, "MiB", 10.0, "MiB", sup_rss / 10.0, "(flat)")


def bench_ui():
    """The runs page of the web UI (and the API's run list) with 100,000 runs in the store."""
    import sqlite3
    cfg = "server: {local_workers: 1}\ntasks:\n  t: {command: 'true', tags: [bench]}\n"
    s = Server(cfg)
    s.proc.kill()
    s.proc.wait()
    db = sqlite3.connect(os.path.join(s.data, "baton.db"))
    now = int(time.time() * 1000)
    statuses = ["success", "failed", "success", "skipped", "canceled"]
    db.executemany(
        "INSERT INTO runs (id, kind, target, trigger, args, tags, definition, status, reason,"
        " priority, partition_key, enqueued_at, not_before, started_at, ended_at)"
        " VALUES (?, 'task', 't', 'api', '{\"k\":\"v\"}', '[\"bench\"]', '{}', ?, NULL, 0,"
        " NULL, ?, NULL, ?, ?)",
        ((i, statuses[i % 5], now - (100000 - i) * 1000, now - (100000 - i) * 1000,
          now - (100000 - i) * 1000 + 500) for i in range(1, 100001)))
    db.executemany(
        "INSERT INTO jobs (id, run_id, name, status, reason, attempt, worker, exit_code,"
        " queued_at, started_at, ended_at, ended_seq) VALUES (?, ?, 't', ?, NULL, 1, 'local-1',"
        " 0, ?, ?, ?, ?)",
        ((i, i, statuses[i % 5], now, now, now, i) for i in range(1, 100001)))
    db.commit()
    db.close()
    # Restart on the filled store.
    s.spawn()
    s.wait_ready()

    def page(path):
        times = []
        for _ in range(21):
            t0 = time.perf_counter()
            s.conn.request("GET", path, headers={"Authorization": f"Bearer {s.token}",
                                                 "Accept": "text/html"})
            r = s.conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        return times[10]
    try:
        ui = page("/runs")
        ui_filtered = page("/runs?status=failed&cursor=50000")
        api = page("/api/v1/runs?limit=50")
    finally:
        s.stop()
    row("(g) UI runs page, 100,000 runs, p50", ui, "ms", 50.0, "ms", ui / 50.0, "(aim < 50 ms)")
    row("(g) UI filtered page deep in the list", ui_filtered, "ms", 50.0, "ms", ui_filtered / 50.0, "")
    row("(g) API run list, 50 runs, p50", api, "ms", 50.0, "ms", api / 50.0, "")


BUSYBOX = "baton-bench-busybox:latest"


def bench_login_flood():
    """1,000 parallel logins with wrong passwords, each with a valid form token (the expensive
    kind: it reaches the password check), from 250 loopback source addresses, 4 each; the
    server's peak RSS (VmHWM) and its RSS once the flood is over."""
    s = Server("tasks:\n  t: {command: 'true'}\n")
    subprocess.run([BATON, "user", "add", "admin", "--password-stdin", "--data", s.data],
                   input="right-password\n", text=True, check=True, capture_output=True)
    time.sleep(0.3)
    idle = s.rss_kib() / 1024
    sources = [f"127.0.0.{i}" for i in range(2, 252)]
    tokens = {}
    for src in sources:
        c = http.client.HTTPConnection(s.host, s.port, source_address=(src, 0))
        c.request("GET", "/login")
        r = c.getresponse()
        r.read()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        tokens[src] = (cookie, cookie.split("=", 1)[1])
        c.close()
    statuses = {}
    lock = threading.Lock()
    start = threading.Barrier(1000)

    def attempt(i):
        src = sources[i % len(sources)]
        cookie, token = tokens[src]
        user = "admin" if i % 10 == 0 else f"nobody{i}"
        body = f"csrf={token}&next=%2F&user={user}&password=guess{i}"
        c = http.client.HTTPConnection(s.host, s.port, timeout=120, source_address=(src, 0))
        try:
            start.wait()
            c.request("POST", "/login", body=body, headers={
                "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
            r = c.getresponse()
            r.read()
            code = r.status
        except OSError as e:
            code = type(e).__name__
        finally:
            c.close()
        with lock:
            statuses[code] = statuses.get(code, 0) + 1

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(1000)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    with open(f"/proc/{s.proc.pid}/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    time.sleep(2)
    settled = s.rss_kib() / 1024
    s.stop()
    answers = ", ".join(f"{n} x {k}" for k, n in sorted(statuses.items(), key=str))
    row("(j) login flood: peak server RSS", peak, "MiB", 64.0, "MiB", peak / 64.0, "(aim < 64 MiB)")
    row("(j) login flood: RSS 2 s after it", settled, "MiB", 64.0, "MiB", settled / 64.0,
        f"(idle before: {idle:.1f} MiB)")
    print(f"    1,000 logins answered in {took:.1f} s: {answers}")


def busybox_image():
    """The container image for (f): Debian's busybox-static, `docker import`ed (no registry)."""
    if subprocess.run(["docker", "image", "inspect", BUSYBOX], capture_output=True).returncode == 0:
        return BUSYBOX
    root = tempfile.mkdtemp(prefix="baton-bench-img-")
    os.makedirs(f"{root}/bin")
    os.makedirs(f"{root}/tmp")
    shutil.copy("/bin/busybox", f"{root}/bin/busybox")
    for applet in subprocess.check_output(["/bin/busybox", "--list"], text=True).split():
        if applet != "busybox":
            os.symlink("busybox", f"{root}/bin/{applet}")
    subprocess.run(["tar", "-C", root, "-cf", f"{root}/rootfs.tar", "bin", "tmp"], check=True)
    subprocess.run(["docker", "import", f"{root}/rootfs.tar", BUSYBOX], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(root)
    return BUSYBOX


def bench_executors():
    """Trigger-to-end latency and throughput of trivial runs on each kind of executor, beside
    the local executor, in one server: local, Docker, an SSH worker in a network namespace,
    and a pull-mode agent."""
    here = os.path.dirname(os.path.abspath(__file__))
    hostdir = tempfile.mkdtemp(prefix="baton-bench-ssh-")
    addr = subprocess.check_output([f"{here}/sshhost.sh", "up", hostdir], text=True).strip()
    image = busybox_image()
    cfg = f"""server:
  agent_queues: [agent]
  ssh_key: {hostdir}/client_key
  known_hosts: {hostdir}/known_hosts
workers:
  local1: {{queues: [local]}}
  ssh1: {{host: root@{addr}, queues: [ssh], work_dir: {hostdir}/work}}
tasks:
"""
    kinds = {"local": "queues: [local]", "docker": f"queues: [local]\n    image: {image}",
             "ssh": "queues: [ssh]", "agent": "queues: [agent]"}
    for k, extra in kinds.items():
        cfg += f"  {k}:\n    {extra}\n    command: 'true'\n    wait_list: {{size: 1000}}\n"
    s = Server(cfg, host="10.214.0.1")
    join = subprocess.check_output(
        [BATON, "token", "create", "--name", "agent-join", "--data", s.data], text=True).strip()
    agent = subprocess.Popen(
        [BATON, "agent", "--server", f"http://10.214.0.1:{s.port}", "--token", join,
         "--queues", "agent", "--name", "bench", "--work-dir", os.path.join(s.dir, "agent")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            ws = {w["name"]: w["state"] for w in s.req("GET", "/workers")["workers"]}
            if ws.get("agent:bench:1") == "idle" and ws.get("ssh1") == "idle":
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"workers did not come up: {ws}")
        results = {}
        for kind in kinds:
            lat = []
            for _ in range(15):
                t0 = time.perf_counter()
                run = s.wait(s.req("POST", f"/tasks/{kind}/trigger")["id"])
                assert run["status"] == "success", run
                lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            t0 = time.perf_counter()
            ids = [s.req("POST", f"/tasks/{kind}/trigger")["id"] for _ in range(30)]
            for i in ids:
                assert s.wait(i)["status"] == "success"
            results[kind] = (lat[len(lat) // 2], 30 / (time.perf_counter() - t0))
    finally:
        agent.kill()
        agent.wait()
        s.stop()
        subprocess.run([f"{here}/sshhost.sh", "down", hostdir])
        shutil.rmtree(hostdir, ignore_errors=True)
    # The engine's own floor for the same work: `docker run --rm` of the same image and command.
    plain = []
    for _ in range(15):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", image, "true"], check=True,
                       stdout=subprocess.DEVNULL)
        plain.append((time.perf_counter() - t0) * 1000)
    plain.sort()
    ll, lt = results["local"]
    dl = results["docker"][0]
    row("(f) docker: trigger-to-end p50 vs docker run", dl, "ms", plain[len(plain) // 2], "ms",
        dl / plain[len(plain) // 2], "(baseline: docker run --rm; aim <= 0.7x)")
    for kind in ("docker", "ssh", "agent"):
        kl, kt = results[kind]
        row(f"(f) {kind}: trigger-to-end p50, trivial run", kl, "ms", ll, "ms", kl / ll, "(baseline: local)")
        row(f"(f) {kind}: throughput, 1 worker", kt, "run/s", lt, "run/s", kt / lt, "(baseline: local)")


def _ts(t):
    # RFC 3339 with nanoseconds: 2026-01-01T00:00:00.123456789Z
    m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z", t)
    import calendar
    y, mo, d, h, mi, s, frac = m.groups()
    base = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    return base + (int(frac) / 10 ** len(frac) if frac else 0)


def bench_webhook():
    import webhook  # bench/webhook.py, beside this file

    webhook.run(sys.modules[__name__])


def bench_cluster():
    import cluster  # bench/cluster.py, beside this file

    cluster.run(sys.modules[__name__])


def bench_agents_sim():
    import agents_sim  # bench/agents_sim.py, beside this file

    agents_sim.run(sys.modules[__name__])


def bench_pool_docker():
    import pool_docker  # bench/pool_docker.py, beside this file

    pool_docker.run(sys.modules[__name__])


def bench_local_run():
    d = tempfile.mkdtemp(prefix="baton-bench-local-")
    env = dict(os.environ, HOME=d, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="b",
               GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@example.com")

    def git(*args):
        return subprocess.run(["git", *args], cwd=d, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    os.makedirs(os.path.join(d, ".baton"))
    with open(os.path.join(d, ".baton", "ci.yaml"), "w") as f:
        f.write("tasks:\n  t:\n    command: /bin/true\n")
    git("add", "-A")
    git("commit", "-q", "-m", "trivial")
    tree = git("write-tree")
    runs, direct = [], []
    for _ in range(11):
        t0 = time.perf_counter()
        subprocess.run([BATON, "run"], cwd=d, env=env, check=True, stdout=subprocess.DEVNULL)
        runs.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        subprocess.run(["bash", "-eo", "pipefail", "-c", "/bin/true"], check=True)
        git("commit-tree", "-m", "direct", tree)
        direct.append((time.perf_counter() - t0) * 1000)
    shutil.rmtree(d, ignore_errors=True)
    b, base = statistics.median(runs), statistics.median(direct)
    row("(l) baton run, trivial task, p50", b, "ms", base, "ms", b / base,
        "(aim <= 2x; git jci run: ~21 ms)")


def fill_finished(data, targets, per_target, first_id=1):
    """Writes `per_target` ended runs (and a job each) of each of `targets` straight into a
    stopped server's SQLite store; returns the next free run id."""
    import sqlite3
    db = sqlite3.connect(os.path.join(data, "baton.db"))
    now = int(time.time() * 1000)
    statuses = ["success", "failed", "success", "skipped", "canceled"]
    rows, i = [], first_id
    for target in targets:
        for k in range(per_target):
            rows.append((i, target, statuses[k % 5], now - (per_target - k) * 1000))
            i += 1
    db.executemany(
        "INSERT INTO runs (id, kind, target, trigger, args, tags, definition, status, reason,"
        " priority, partition_key, enqueued_at, not_before, started_at, ended_at)"
        " VALUES (?, 'task', ?, 'api', '{}', '[]', '{}', ?, NULL, 0, NULL, ?, NULL, ?, ?)",
        ((r, t, st, at, at, at + 500) for r, t, st, at in rows))
    db.executemany(
        "INSERT INTO jobs (id, run_id, name, status, reason, attempt, worker, exit_code,"
        " queued_at, started_at, ended_at, ended_seq) VALUES (?, ?, ?, ?, NULL, 1, 'local-1',"
        " 0, ?, ?, ?, ?)",
        ((r, r, t, st, at, at, at + 500, r) for r, t, st, at in rows))
    db.commit()
    db.close()
    return i


def trigger_many(s, target, n, threads=4):
    """Triggers `target` `n` times over `threads` connections of their own."""
    errors = []

    def worker(count):
        conn = http.client.HTTPConnection(s.host, s.port)
        headers = {"Authorization": f"Bearer {s.token}", "Content-Type": "application/json"}
        for _ in range(count):
            conn.request("POST", f"/api/v1/tasks/{target}/trigger", body="{}", headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status >= 400:
                errors.append(f"{r.status} {body[:200]!r}")
                return
        conn.close()
    ts = [threading.Thread(target=worker, args=(n // threads + (i < n % threads),))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"trigger {target}: {errors[0]}")


def bench_loaded():
    """(h) Trigger-to-start p50 and dispatch throughput on a server holding 10,000 queued runs
    (a task on an agent queue no agent serves) and 1,000 ended runs of each task in its store,
    against the same figures on an empty server, in the same run."""
    cfg = """server: {local_workers: 2, agent_queues: [held]}
tasks:
  l:
    command: date +%s%N > "$BATON_OUTPUT_DIR/t"
  t:
    command: /bin/true
    concurrency: 2
    wait_list: {size: 1000}
  held:
    command: /bin/true
    queues: [held]
    concurrency: 1
    wait_list: {size: 10000}
"""

    def measure(s):
        lat = []
        for _ in range(30):
            t0 = time.time_ns()
            run = s.wait(s.req("POST", "/tasks/l/trigger")["id"])
            job = run["jobs"][0]
            path = os.path.join(s.data, "jobs", str(job["id"]), str(job["attempt"]), "out", "t")
            with open(path) as f:
                lat.append((int(f.read().strip()) - t0) / 1e6)
        t0 = time.perf_counter()
        ids = [s.req("POST", "/tasks/t/trigger")["id"] for _ in range(N)]
        for i in ids:
            run = s.wait(i)
            if run["status"] != "success":
                raise SystemExit(f"(h): run {i} ended {run['status']}")
        return statistics.median(lat), N / (time.perf_counter() - t0)

    empty = Server(cfg)
    try:
        e_lat, e_thr = measure(empty)
    finally:
        empty.stop()
    s = Server(cfg)
    try:
        s.proc.kill()
        s.proc.wait()
        fill_finished(s.data, ["l", "t", "held"], 1000, first_id=1)
        s.spawn()
        s.wait_ready()
        trigger_many(s, "held", 10_000)
        before = sum(1 for e in s.req("GET", "/queue")["queue"] if e["target"] == "held")
        l_lat, l_thr = measure(s)
        after = sum(1 for e in s.req("GET", "/queue")["queue"] if e["target"] == "held")
    finally:
        s.stop()
    row("(h) trigger-to-start p50, 10,000 queued", l_lat, "ms", e_lat, "ms", l_lat / e_lat,
        "(baseline: empty server; aim <= 1.5x)")
    row("(h) dispatch throughput, 10,000 queued", l_thr, "run/s", e_thr, "run/s", e_thr / l_thr,
        "(ratio: empty / loaded; aim <= 1.5x)")
    print(f"    runs of `held` waiting in the queue: {before} before, {after} after")
    if before != 10_000 or after != 10_000:
        raise SystemExit("(h): the queue did not hold the 10,000 runs throughout")


def bench_viewers():
    """(i) 1,000 concurrent live-log viewers (SSE over HTTP/1.0, one socket each) of one job
    that writes 2,000 lines over about 10 s: the server's CPU and peak RSS, and every viewer
    checked to have received every byte of the log. Baseline: the aim (64 MiB)."""
    import resource
    import selectors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    viewers = 1000
    cfg = """server: {local_workers: 1}
tasks:
  busy:
    command: for i in $(seq 1 2000); do printf 'line %05d %s\\n' $i abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz; sleep 0.005; done
"""
    s = Server(cfg)
    try:
        rss0 = s.rss_kib()
        run = s.req("POST", "/tasks/busy/trigger")
        rid = run["id"]
        req = (f"GET /api/v1/runs/{rid}/log/stream HTTP/1.0\r\nHost: {s.host}\r\n"
               f"Authorization: Bearer {s.token}\r\nAccept: text/event-stream\r\n\r\n").encode()
        sel = selectors.DefaultSelector()
        bufs = {}
        with open(f"/proc/{s.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu0, t0 = int(fields[11]) + int(fields[12]), time.perf_counter()
        for _ in range(viewers):
            c = socket.create_connection((s.host, s.port))
            c.sendall(req)
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            bufs[c] = bytearray()
        peak = 0
        open_ = viewers
        deadline = time.time() + 120
        while open_ and time.time() < deadline:
            for key, _ in sel.select(timeout=0.5):
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except BlockingIOError:
                    continue
                if data:
                    bufs[c] += data
                else:
                    sel.unregister(c)
                    c.close()
                    open_ -= 1
            peak = max(peak, s.rss_kib())
        with open(f"/proc/{s.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12]) - cpu0) / os.sysconf("SC_CLK_TCK")
        wall = time.perf_counter() - t0
        with open(f"/proc/{s.proc.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        final = s.wait(rid)
        job = final["jobs"][0]
        with open(os.path.join(s.data, "jobs", str(job["id"]), str(job["attempt"]), "log"), "rb") as f:
            log = f.read().decode()
        complete = 0
        for buf in bufs.values():
            text = []
            for block in bytes(buf).split(b"\r\n\r\n", 1)[-1].decode().split("\n\n"):
                lines = block.split("\n")
                if "event: log" in lines:
                    data = "\n".join(l[6:] for l in lines if l.startswith("data: "))
                    text.append(json.loads(data)["text"])
            complete += "".join(text) == log
    finally:
        s.stop()
    if open_:
        raise SystemExit(f"(i): {open_} viewers were still open after 120 s")
    mib = max(hwm, peak) / 1024
    row("(i) 1,000 live-log viewers: peak RSS", mib, "MiB", 64.0, "MiB", mib / 64.0,
        f"(aim <= 64 MiB; idle before {rss0 / 1024:.1f} MiB)")
    row("(i) 1,000 live-log viewers: server CPU", cpu / wall * 100, "%", 200.0, "%",
        cpu / wall / 2, f"(of 2 cores, over {wall:.1f} s)")
    print(f"    {complete} of {viewers} viewers received every byte of the {len(log)}-byte log")
    if complete != viewers:
        raise SystemExit(f"(i): only {complete} of {viewers} viewers got the whole log")


def _example(name):
    """A bench example binary of baton-results, built by bench/run.sh next to the release binary."""
    path = os.path.join(os.path.dirname(os.path.abspath(BATON)), "examples", name)
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run bench/run.sh (it builds the examples)")
    return path


def bench_junit():
    """(m) Parse time and peak memory of a 100 MB JUnit report, collected as a job's reports are;
    baseline: Python's streaming ElementTree.iterparse over the same file, in the same run."""
    d = tempfile.mkdtemp(prefix="baton-bench-junit-")
    try:
        path = os.path.join(d, "junit.xml")
        out = "x" * 200
        with open(path, "w") as f:
            f.write('<?xml version="1.0"?>\n<testsuites>\n')
            i, size = 0, 0
            while size < 100 * 1024 * 1024:
                if i % 1000 == 0:
                    if i:
                        f.write("</testsuite>\n")
                    f.write(f'<testsuite name="suite{i // 1000}" tests="1000">\n')
                body = (f'<failure message="boom {i}">assert &lt;1&gt; == 2</failure>' if i % 97 == 0
                        else f"<system-out><![CDATA[{out}]]></system-out>")
                line = f'<testcase classname="pkg.C{i % 50}" name="t{i}" time="0.001">{body}</testcase>\n'
                f.write(line)
                size += len(line)
                i += 1
            f.write("</testsuite>\n</testsuites>\n")
        mib = os.path.getsize(path) / 2**20
        runs = []
        for _ in range(3):
            r = subprocess.run([_example("bench_junit"), d], check=True, capture_output=True, text=True)
            secs, hwm, cases, warnings = r.stdout.split()
            runs.append((float(secs), int(hwm)))
        base_script = (
            "import sys, time, xml.etree.ElementTree as ET\n"
            "t = time.perf_counter(); n = 0\n"
            "for ev, el in ET.iterparse(sys.argv[1]):\n"
            "    if el.tag == 'testcase': n += 1\n"
            "    if el.tag in ('testcase', 'testsuite'): el.clear()\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(time.perf_counter() - t, hwm, n)\n")
        base = []
        for _ in range(3):
            r = subprocess.run([sys.executable, "-c", base_script, path], check=True,
                               capture_output=True, text=True)
            bs, bh, bn = r.stdout.split()
            base.append((float(bs), int(bh)))
        t, hwm = statistics.median(x[0] for x in runs), max(x[1] for x in runs)
        bt, bhwm = statistics.median(x[0] for x in base), max(x[1] for x in base)
        row(f"(m) JUnit {mib:.0f} MB: parse time", t, "s", bt, "s", t / bt,
            f"(baseline: Python iterparse; {cases} cases kept, {warnings} warnings)")
        row("(m) JUnit parse: peak RSS", hwm / 1024, "MiB", bhwm / 1024, "MiB", hwm / bhwm, "(flat)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_cache_inputs():
    """(n) The cache-hit decision's work for a task whose inputs are 10,000 files (read, hash,
    digest); baseline: `git ls-files -z | xargs -0 sha256sum` over the same files."""
    d = tempfile.mkdtemp(prefix="baton-bench-cache-")
    try:
        rnd = random.Random(7)
        for i in range(10000):
            sub = os.path.join(d, "src", f"m{i % 100}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i}.c"), "wb") as f:
                f.write(rnd.randbytes(2048))
        subprocess.run(["git", "init", "-q", d], check=True)
        subprocess.run(["git", "-C", d, "add", "-A"], check=True)
        mine, base = [], []
        for _ in range(7):
            r = subprocess.run([_example("bench_cache"), d, "src/**"], check=True,
                               capture_output=True, text=True)
            secs, n, _digest = r.stdout.split()
            if int(n) != 10000:
                raise SystemExit(f"bench_cache saw {n} files, not 10000")
            mine.append(float(secs))
            t0 = time.perf_counter()
            subprocess.run(["bash", "-c", "git ls-files -z | xargs -0 sha256sum >/dev/null"],
                           cwd=d, check=True)
            base.append(time.perf_counter() - t0)
        m, b = statistics.median(mine) * 1000, statistics.median(base) * 1000
        row("(n) cache decision, 10,000 input files, p50", m, "ms", b, "ms", m / b,
            "(baseline: git ls-files | xargs sha256sum)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_tests_tab():
    """(o) The Tests tab of a run whose task has 10,000 runs of results (20 tests each, one
    failing, with its history strip), and a test's history through the API."""
    import sqlite3
    cfg = "server: {local_workers: 1}\ntasks:\n  t: {command: 'true'}\n"
    s = Server(cfg)
    s.proc.kill()
    s.proc.wait()
    db = sqlite3.connect(os.path.join(s.data, "baton.db"))
    now = int(time.time() * 1000)
    n_runs, n_tests = 10000, 20

    def tree(i):
        cases = [{"kind": "case", "name": f"t{k}", "classname": "pkg.C",
                  "status": "failed" if k == 0 and i % 2 else "passed", "duration": 0.01,
                  **({"message": "assert 1 == 2"} if k == 0 and i % 2 else {})}
                 for k in range(n_tests)]
        return json.dumps({"kind": "job", "name": "t", "job_id": i, "job_status": "failed",
                           "children": [{"kind": "suite", "name": "s", "children": cases}]})
    db.executemany(
        "INSERT INTO runs (id, kind, target, trigger, args, tags, definition, status, reason,"
        " priority, partition_key, enqueued_at, not_before, started_at, ended_at)"
        " VALUES (?, 'task', 't', 'api', '{}', '[]', '{}', 'failed', NULL, 0,"
        " NULL, ?, NULL, ?, ?)",
        ((i, now - (n_runs - i) * 1000, now - (n_runs - i) * 1000, now - (n_runs - i) * 1000 + 500)
         for i in range(1, n_runs + 1)))
    db.executemany(
        "INSERT INTO jobs (id, run_id, name, status, reason, attempt, worker, exit_code,"
        " queued_at, started_at, ended_at, ended_seq) VALUES (?, ?, 't', 'failed', NULL, 1,"
        " 'local-1', 1, ?, ?, ?, ?)",
        ((i, i, now, now, now, i) for i in range(1, n_runs + 1)))
    db.executemany(
        "INSERT INTO job_results (job_id, run_id, attempt, task, collected_at, passed, failed,"
        " errors, skipped, flaky, warnings, duration_ms, tree) VALUES (?, ?, 1, 't', ?, ?, ?, 0,"
        " 0, 0, 0, 200, ?)",
        ((i, i, now, n_tests - (i % 2), i % 2, tree(i)) for i in range(1, n_runs + 1)))
    db.executemany(
        "INSERT INTO test_results (task, test_id, run_id, job_id, status, duration_ms, code)"
        " VALUES ('t', ?, ?, ?, ?, 10, ?)",
        ((f"s > pkg.C > t{k}", i, i, "failed" if k == 0 and i % 2 else "passed", f"run:{i}")
         for i in range(1, n_runs + 1) for k in range(n_tests)))
    db.commit()
    db.close()
    s.spawn()
    s.wait_ready()

    def page(path):
        times = []
        for _ in range(21):
            t0 = time.perf_counter()
            s.conn.request("GET", path, headers={"Authorization": f"Bearer {s.token}",
                                                 "Accept": "text/html"})
            r = s.conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        return times[10], body
    try:
        tab, body = page(f"/runs/{n_runs - 1}/tests")
        if b"t0" not in body:
            raise SystemExit("the Tests tab does not show the failing test")
        results, _ = page(f"/api/v1/runs/{n_runs - 1}/results?status=failed")
    finally:
        s.stop()
    row("(o) Tests tab, 10,000 runs of history, p50", tab, "ms", 50.0, "ms", tab / 50.0,
        "(aim < 50 ms)")
    row("(o) API failed results of a run, p50", results, "ms", 50.0, "ms", results / 50.0, "")


SECTIONS = {"a": bench_throughput, "b": bench_latency, "c": bench_dag, "d": bench_idle,
            "e": bench_capture, "f": bench_executors, "g": bench_ui, "h": bench_loaded,
            "i": bench_viewers, "j": bench_login_flood,
            "k": bench_webhook, "l": bench_local_run, "m": bench_junit, "n": bench_cache_inputs,
            "o": bench_tests_tab, "p": bench_cluster,
            "q": bench_agents_sim, "r": bench_pool_docker}


if __name__ == "__main__":
    # bench/run.py BATON [--only LETTERS]: `--only f` runs section (f) alone; the default is all.
    only = "".join(SECTIONS)
    if "--only" in sys.argv[2:]:
        i = sys.argv.index("--only")
        only = sys.argv[i + 1] if i + 1 < len(sys.argv) else ""
        if not only or any(c not in SECTIONS for c in only):
            raise SystemExit(f"--only takes section letters from {''.join(SECTIONS)}, e.g. --only f")
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {os.uname().sysname} {os.uname().release}, load average {os.getloadavg()[0]:.1f}")
    for letter, b in SECTIONS.items():
        if letter in only:
            b()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
