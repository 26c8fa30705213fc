"""(q) A large installation on loopback: 1,000 simulated agents (long-polling clients that "run"
each job at once and report its end) against 3 servers on one PostgreSQL, fed at about 12 runs a
second (1 million a day) with a burst of 200 in one second every 20 seconds, for 60 seconds.

Reports dispatch latency (trigger sent -> the assignment in an agent's hands) p50 and p99
against the aim (p99 < 50 ms), the servers' CPU time and RSS, and the database's growth per
100,000 runs. Called by bench/run.py (`bench/run.sh --only q`).
"""
import concurrent.futures
import http.client
import json
import os
import shutil
import statistics
import subprocess
import threading
import time

import cluster  # bench/cluster.py: the PostgreSQL cluster and server helpers

AGENTS = 1000
FEED_S = 60
RATE = 12
BURST = 200
BURST_EVERY = 20
CFG = """server:
  agent_queues: [sim]
tasks:
  sim:
    queues: [sim]
    command: "true"
    concurrency: 1000
    wait_list: {size: 100000}
"""


def post(conn, path, token, body):
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    if r.status >= 400:
        raise RuntimeError(f"POST {path}: {r.status} {raw[:200]!r}")
    return json.loads(raw) if raw else None


def agent(i, port, join, stop, got, errors):
    """One simulated agent: joins, then long-polls; ends each job it gets at once."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        cred = post(conn, "/api/v1/agents/join", join,
                    {"name": f"sim{i}", "queues": ["sim"], "slots": 1})["credential"]
        info = {"queues": ["sim"], "slots": 1}
        while not stop.is_set():
            work = post(conn, "/api/v1/agents/poll?wait=5", cred, {**info, "holds": []})
            for a in work.get("jobs", []):
                got[a["spec"]["run_id"]] = time.time()
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                post(conn, f"/api/v1/agents/jobs/{a['job_id']}/{a['attempt']}/exit", cred,
                     {"exit_code": 0, "signal": None, "timed_out": False, "canceled": False,
                      "error": None, "started_at": now, "ended_at": now, "log_bytes": 0,
                      "max_rss_kb": None, "missing_artifacts": []})
    except Exception as e:  # noqa: BLE001 - reported as a figure's failure below
        if not stop.is_set():
            errors.append(f"agent {i}: {e}")


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def psql(db, sql):
    base, _, query = db.partition("?")
    host = dict(p.split("=", 1) for p in query.split("&") if p)["host"]
    name = base.rsplit("/", 1)[1]
    return subprocess.run(["psql", "-h", host, "-U", "baton", "-d", name, "-Atc", sql],
                          check=True, capture_output=True, text=True).stdout


def db_bytes(db):
    return int(psql(db, "SELECT pg_database_size(current_database())").strip())


def scheduler_ms(db, run_ids):
    """Per run, from the store: the scheduler taking the trigger (the run's `enqueued_at`) to
    its job handed to an agent (the job's `started_at`), in ms (the store keeps milliseconds)."""
    ids = ",".join(str(r) for r in run_ids)
    out = psql(db, "SELECT j.started_at - r.enqueued_at FROM jobs j JOIN runs r ON r.id = "
                   f"j.run_id WHERE r.id IN ({ids}) AND j.started_at IS NOT NULL")
    return sorted(int(x) for x in out.split())


def run(m):
    pg, pg_dir = cluster.pg_cluster()
    d = None
    nodes = []
    try:
        db = cluster.fresh_db(pg, "bench_sim")
        d, nodes, token = cluster.cluster(m, 3, db, cfg=CFG)
        args = [m.BATON, "token", "create", "--name", "agent-join", "--data",
                os.path.join(d, "data"), "--db", db]
        join = subprocess.check_output(args, text=True).strip()
        stop = threading.Event()
        got, errors = {}, []
        threads = [threading.Thread(target=agent, daemon=True,
                                    args=(i, nodes[i % 3].port, join, stop, got, errors))
                   for i in range(AGENTS)]
        for t in threads:
            t.start()
        time.sleep(10)  # every agent joined and polling
        size0 = db_bytes(db)
        cpu0 = [proc_cpu_s(n.proc.pid) for n in nodes]
        sent, answered = {}, {}
        local = threading.local()

        def trigger(k):
            if not hasattr(local, "conns"):
                local.conns = [http.client.HTTPConnection("127.0.0.1", n.port) for n in nodes]
            t = time.time()
            run_id = post(local.conns[k % 3], "/api/v1/tasks/sim/trigger", token, {})["id"]
            answered[run_id] = time.time()
            sent[run_id] = t

        # When each trigger is due: RATE a second, and a burst of BURST within a second every
        # BURST_EVERY seconds; sent by a pool so that a slow answer does not slow the feed.
        due = [i / RATE for i in range(FEED_S * RATE)]
        for b in range(BURST_EVERY // 2, FEED_S, BURST_EVERY):
            due += [b + j / BURST for j in range(BURST)]
        due.sort()
        t_start = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            futures = []
            for k, at in enumerate(due):
                time.sleep(max(0.0, t_start + at - time.time()))
                futures.append(pool.submit(trigger, k))
            for f in futures:
                f.result()
        deadline = time.time() + 60
        while len([r for r in sent if r in got]) < len(sent) and time.time() < deadline:
            time.sleep(0.2)
        cpu = sum(proc_cpu_s(n.proc.pid) - c for n, c in zip(nodes, cpu0))
        wall = time.time() - t_start
        rss = [proc_kib(n.proc.pid, "VmHWM") / 1024 for n in nodes]
        time.sleep(2)
        grown = db_bytes(db) - size0
        stop.set()
        lat = sorted((got[r] - sent[r]) * 1000 for r in sent if r in got)
        missing = len(sent) - len(lat)
        if errors or missing:
            print(f"(q) {len(errors)} agent errors (first: {errors[:1]}), {missing} runs never "
                  f"dispatched of {len(sent)}")
        if not lat:
            return
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        m.row(f"(q) dispatch latency p50, {AGENTS} agents, 3 servers", p50, "ms", 50.0, "ms",
              p50 / 50.0, f"({len(lat)} runs in {FEED_S}s)")
        m.row("(q) dispatch latency p99", p99, "ms", 50.0, "ms", p99 / 50.0, "(aim p99 < 50 ms)")
        # Where the time goes: the trigger's answer, the scheduler's part of it, and from the
        # answer until the agent's thread has the job (the long poll's answer, and the 1,000
        # simulated agents' threads taking their turn in this one Python process).
        def pct(xs, q):
            return xs[min(len(xs) - 1, int(len(xs) * q))]
        trig = sorted((answered[r] - sent[r]) * 1000 for r in sent)
        after = sorted(max(0.0, got[r] - answered[r]) * 1000 for r in sent if r in got)
        sched = scheduler_ms(db, sent)
        for name, xs in [("trigger answered", trig), ("scheduler: taken -> handed", sched),
                         ("answer -> agent's thread", after)]:
            if xs:
                print(f"    of which {name}: p50 {statistics.median(xs):.1f} ms, "
                      f"p99 {pct(xs, 0.99):.1f} ms")
        m.row("(q) servers' CPU, all three", cpu / wall * 100, "%", 200.0, "%",
              cpu / wall / 2, "(of 2 cores)")
        m.row("(q) peak RSS, active server", max(rss), "MiB", 64.0, "MiB", max(rss) / 64.0,
              f"(standbys {sorted(rss)[0]:.0f}, {sorted(rss)[1]:.0f} MiB)")
        per = grown / max(1, len(sent)) * 100_000 / 2**20
        m.row("(q) database growth per 100,000 runs", per, "MiB", 1024.0, "MiB", per / 1024.0,
              "")
    except Exception:
        for n in nodes:
            with open(n.stderr) as f:
                print(f"--- {n.stderr} (last lines)\n" + "".join(f.readlines()[-15:]))
        raise
    finally:
        for n in nodes:
            n.kill()
        if d:
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run([os.path.join(cluster.ROOT, "scripts/pg-test-cluster.sh"), "stop", pg_dir],
                       check=False, capture_output=True)
