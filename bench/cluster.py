"""(p) Several servers on one PostgreSQL (docs/cluster.md), in the same run:

- dispatch throughput of 200 trivial runs (`/bin/true`, 2 local workers) triggered round robin
  through 1, 2 and 3 servers sharing a PostgreSQL database and a data directory (standbys
  forward to the active server), against one server on SQLite;
- failover: the active server of two is SIGKILLed; the time until the standby answers as the
  active server and accepts a trigger, against the lease it waits out (`--lease-ttl`, 10 s).

Called by bench/run.py (`bench/run.sh --only p`), which hands in its own module for the helpers.
Starts a throwaway PostgreSQL cluster with scripts/pg-test-cluster.sh (Debian's `postgresql`).
"""
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time

RUNS = 200
CFG = """server: {local_workers: 2}
tasks:
  t:
    command: /bin/true
    concurrency: 2
    wait_list: {size: 1000}
"""
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def pg_cluster():
    out = subprocess.run([os.path.join(ROOT, "scripts/pg-test-cluster.sh"), "start"],
                         check=True, capture_output=True, text=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines()
               if line.startswith("export "))
    return env["BATON_TEST_PG"].strip("'"), env["BATON_TEST_PG_DIR"].strip("'")


def fresh_db(url, name):
    """A new database on the cluster at `url`; its URL."""
    base, _, query = url.partition("?")
    host = dict(p.split("=", 1) for p in query.split("&") if p)["host"]
    subprocess.run(["psql", "-h", host, "-U", "baton", "-d", "postgres", "-qc",
                    f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


class Node:
    """One `baton serve` of a cluster sharing `data` and database `db`."""

    def __init__(self, m, name, cfg, data, db, ttl="10s"):
        self.stderr = os.path.join(os.path.dirname(cfg), f"{name}.stderr")
        self.port = m.free_port()
        args = [m.BATON, "serve", "--config", cfg, "--data", data, "--listen",
                f"127.0.0.1:{self.port}", "--server-id", name, "--lease-ttl", ttl]
        if db:
            args += ["--db", db]
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line and "standby" not in line:
            raise SystemExit(f"server {name} did not start: {line!r}")
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port)

    def req(self, method, path, token, body=None):
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:200]!r}")
        return json.loads(raw) if raw else None

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def cluster(m, n, db, ttl="10s", cfg=CFG):
    d = tempfile.mkdtemp(prefix="baton-bench-cluster-")
    text, cfg, data = cfg, os.path.join(d, "baton.yaml"), os.path.join(d, "data")
    with open(cfg, "w") as f:
        f.write(text)
    nodes = [Node(m, chr(ord("a") + i), cfg, data, db, ttl) for i in range(n)]
    args = [m.BATON, "token", "create", "--data", data] + (["--db", db] if db else [])
    token = subprocess.check_output(args, text=True).strip()
    return d, nodes, token


def throughput(m, n, db):
    d, nodes, token = cluster(m, n, db)
    try:
        t0 = time.perf_counter()
        ids = [nodes[i % n].req("POST", "/api/v1/tasks/t/trigger", token, {})["id"]
               for i in range(RUNS)]
        for i, run in enumerate(ids):
            while True:
                r = nodes[i % n].req("GET", f"/api/v1/runs/{run}/wait?timeout=30", token)
                if r["status"] not in ("queued", "started", "running"):
                    assert r["status"] == "success", r
                    break
        return RUNS / (time.perf_counter() - t0)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(d, ignore_errors=True)


def failover(m, db):
    d, (a, b), token = cluster(m, 2, db)
    try:
        a.req("POST", "/api/v1/tasks/t/trigger", token, {})
        t0 = time.perf_counter()
        a.kill()
        while True:
            try:
                b.conn.close()
                if b.req("GET", "/healthz", token).get("role") == "active":
                    b.req("POST", "/api/v1/tasks/t/trigger", token, {})
                    return time.perf_counter() - t0
            except (RuntimeError, OSError):
                pass
            time.sleep(0.02)
    finally:
        b.kill()
        shutil.rmtree(d, ignore_errors=True)


def run(m):
    pg, pg_dir = pg_cluster()
    try:
        sqlite = throughput(m, 1, None)
        for n in (1, 2, 3):
            rate = throughput(m, n, fresh_db(pg, f"bench_tp_{n}"))
            m.row(f"(p) {n} server{'s' if n > 1 else ''} on PostgreSQL, {RUNS} runs", rate,
                  "run/s", sqlite, "run/s", rate / sqlite, "(baseline: 1 server on SQLite)")
        took = failover(m, fresh_db(pg, "bench_failover"))
        m.row("(p) failover after SIGKILL, lease 10 s", took, "s", 10.0, "s", took / 10.0,
              "(the lease it waits out)")
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/pg-test-cluster.sh"), "stop", pg_dir],
                       check=False, capture_output=True)
