"""(r) Autoscaling with the docker provider (docs/pools.md), in the same run:

- from a backlog appearing (the trigger of a run on a pool's queue; the pool has `min: 0` and
  no agent) until the job's first command runs on an agent the pool started in a new container
  (bash's `$EPOCHREALTIME`, the job's first line of log; the image's `date` is busybox's,
  which has no `%N`): the trigger, the scaler's next look (once a
  second), the container's create and start, `baton agent` joining, its long poll, the
  assignment, the job's supervisor and `bash`;
- against `docker run --rm` of the same command in the same image (the docker CLI, the
  engine's create, start and wait), in the same run.

Every sample starts cold: the agent of the previous one has left (idle timeout 1 s) and its
container is gone before the next trigger. The agent image is made here as the tests make it
(crates/baton/tests/pools_docker.rs): Debian's busybox-static, bash, the `baton` binary being
measured and the shared libraries `ldd` lists, `docker import`ed (no registry), and removed at
the end. Called by bench/run.py (`bench/run.sh --only r`).
"""
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

SAMPLES = 7
POOL = "rbench"
TAG = f"baton-bench-pool-agent:{os.getpid()}"


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def libraries(binary):
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        path = line.split("=>", 1)[1].strip().split(" ")[0] if "=>" in line else line.split(" ")[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def copy_in(root, path):
    to = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(to), exist_ok=True)
    shutil.copy(path, to)


def agent_image(baton):
    """An image with busybox, bash and `baton` (PATH /usr/local/bin:/bin); its tag."""
    if docker("info", check=False).returncode != 0:
        raise SystemExit("(r) needs a running Docker engine")
    if not os.path.exists("/bin/busybox"):
        raise SystemExit("(r) needs Debian's busybox-static (/bin/busybox)")
    d = tempfile.mkdtemp(prefix="baton-bench-pool-img-")
    root = os.path.join(d, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    for applet in subprocess.check_output(["/bin/busybox", "--list"], text=True).split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    shutil.copy("/bin/bash", os.path.join(root, "bin/bash"))
    os.makedirs(os.path.join(root, "usr/local/bin"))
    shutil.copy(baton, os.path.join(root, "usr/local/bin/baton"))
    for lib in sorted(set(libraries(baton) + libraries("/bin/bash"))):
        copy_in(root, lib)
    copy_in(root, "/etc/ssl/certs/ca-certificates.crt")
    for sub in ("tmp", "proc", "sys", "dev", "etc"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    tar = os.path.join(d, "rootfs.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    docker("import", "--change", "ENV PATH=/usr/local/bin:/bin", tar, TAG)
    shutil.rmtree(d, ignore_errors=True)
    return TAG


def pool_containers():
    out = docker("ps", "-aq", "--filter", f"label=baton.pool={POOL}").stdout
    return out.split()


def pool_view(s):
    for p in s.req("GET", "/pools")["pools"]:
        if p["name"] == POOL:
            return p
    return None


def wait_cold(s, limit=60):
    """Until the pool has no agent, none starting, and no container left."""
    deadline = time.time() + limit
    while time.time() < deadline:
        p = pool_view(s)
        if p and p["size"] == 0 and p["starting"] == 0 and not pool_containers():
            return
        time.sleep(0.1)
    raise SystemExit(f"(r) the pool did not go back to no agent: {pool_view(s)}")


def first_line_ns(s, run_id):
    """The job's first log line (`$EPOCHREALTIME` in microseconds), as nanoseconds."""
    s.conn.request("GET", f"/api/v1/runs/{run_id}/log",
                   headers={"Authorization": f"Bearer {s.token}"})
    r = s.conn.getresponse()
    text = r.read().decode()
    if r.status != 200:
        raise SystemExit(f"(r) log of run {run_id}: {r.status} {text[:200]}")
    return int(text.split("\n", 1)[0].strip()) * 1000


def run(m):
    image = agent_image(m.BATON)
    cfg = f"""server: {{local_workers: 1}}
pools:
  {POOL}:
    queues: [boxed]
    min: 0
    max: 1
    idle_timeout: 1s
    provider:
      docker:
        image: {image}
        network: host
tasks:
  first:
    queues: [boxed]
    command: echo "${{EPOCHREALTIME/./}}"
"""
    s = m.Server(cfg)
    pooled, direct = [], []
    try:
        # The pool shows up with its first look.
        deadline = time.time() + 30
        while pool_view(s) is None and time.time() < deadline:
            time.sleep(0.1)
        for _ in range(SAMPLES):
            wait_cold(s)
            t0 = time.time_ns()
            run_id = s.req("POST", "/tasks/first/trigger")["id"]
            done = s.wait(run_id)
            if done["status"] != "success":
                raise SystemExit(f"(r) run {run_id} ended {done['status']}: {json.dumps(done)[:400]}")
            pooled.append((first_line_ns(s, run_id) - t0) / 1e6)
            # The baseline, alternated with the samples so both see the same load.
            t0 = time.time_ns()
            out = subprocess.run(["docker", "run", "--rm", "--network", "host", image,
                                  "bash", "-c", 'echo "${EPOCHREALTIME/./}"'],
                                 check=True, capture_output=True, text=True).stdout
            direct.append((int(out.strip()) * 1000 - t0) / 1e6)
        wait_cold(s)
    finally:
        s.stop()
        for c in pool_containers():
            docker("rm", "-f", c, check=False)
        docker("rmi", "-f", image, check=False)
    p50, base = statistics.median(pooled), statistics.median(direct)
    m.row("(r) backlog -> first command, new docker agent", p50, "ms", base, "ms", p50 / base,
          f"(baseline: docker run --rm; p50 of {SAMPLES}, pool min 0)")
    m.row("(r) backlog -> first command, max", max(pooled), "ms", max(direct), "ms",
          max(pooled) / max(direct))
