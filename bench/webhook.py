"""(k) Webhook received -> the job's first command running, in a checkout of a 10,000-file
repository with a warm mirror, against `git clone` of the same repository from the same local
bare repository in the same run; then the same for a push of 1,000 new commits.

Called by bench/run.py (`bench/run.sh --only k`), which hands in its own module for the server
helpers. Each sample commits to a working repository, pushes to the bare one the server's
`repos:` names, and delivers a signed GitHub push webhook; the job (`.baton/` in the repository,
default checkout) writes `date +%s%N` as its first command. The time is from just before the
webhook is sent to that timestamp.
"""
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time

FILES = 10_000
SAMPLES = 11
BIG_PUSH = 1_000
BIG_SAMPLES = 3
SECRET = "bench-hook-secret"
ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Bench",
       "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "Bench",
       "GIT_COMMITTER_EMAIL": "bench@example.com"}


def git(cwd, *args, stdin=None):
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, input=stdin, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode().strip()


def make_repo(root):
    """A working repository of FILES small files in 100 folders plus `.baton/`, pushed to a bare
    repository; both paths."""
    work, bare = os.path.join(root, "work"), os.path.join(root, "app.git")
    os.makedirs(os.path.join(work, ".baton"))
    for d in range(100):
        os.makedirs(os.path.join(work, "src", f"d{d:02}"))
        for i in range(FILES // 100):
            with open(os.path.join(work, "src", f"d{d:02}", f"f{i:03}.txt"), "w") as f:
                f.write(f"file {d}/{i}\n" * 8)
    with open(os.path.join(work, ".baton", "ci.yml"), "w") as f:
        f.write('tasks:\n  first:\n    command: date +%s%N > "$BATON_OUTPUT_DIR/t"\n')
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "10,000 files")
    git(root, "init", "-q", "--bare", "-b", "main", bare)
    git(work, "push", "-q", bare, "main")
    return work, bare


def commits(work, n):
    """`n` new commits on main, each changing one file (git fast-import: quick for 1,000)."""
    head = git(work, "rev-parse", "HEAD")
    stream = []
    for i in range(n):
        stamp = int(time.time())
        body = f"change {i} at {time.time_ns()}\n".encode()
        msg = f"commit {i}\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(f"committer Bench <bench@example.com> {stamp} +0000\n".encode())
        stream.append(b"data %d\n%s" % (len(msg), msg))
        if i == 0:
            stream.append(f"from {head}\n".encode())
        stream.append(b"M 100644 inline src/d00/f000.txt\n")
        stream.append(b"data %d\n%s\n" % (len(body), body))
    git(work, "fast-import", "--quiet", stdin=b"".join(stream))
    git(work, "reset", "-q", "--hard", "main")
    return head, git(work, "rev-parse", "HEAD")


def deliver(server, bare, before, after, delivery):
    body = json.dumps({
        "ref": "refs/heads/main", "before": before, "after": after, "created": False,
        "deleted": False,
        "repository": {"full_name": "bench/app", "clone_url": bare, "html_url": bare},
        "pusher": {"name": "bench"}, "sender": {"login": "bench"},
        "head_commit": {"id": after, "message": "change",
                        "author": {"name": "Bench", "email": "bench@example.com"}},
        "commits": [{"id": after, "message": "change", "added": [], "modified": [],
                     "removed": []}],
    }).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    t0 = time.time_ns()
    server.conn.request("POST", "/hooks/github", body=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig})
    r = server.conn.getresponse()
    answer = json.loads(r.read())
    if r.status != 200 or len(answer.get("runs", [])) != 1:
        raise RuntimeError(f"webhook {delivery}: {r.status} {answer}")
    return t0, answer["runs"][0]


def started_ms(server, t0, run_id):
    run = server.wait(run_id)
    if run["status"] != "success":
        raise RuntimeError(f"run {run_id}: {run['status']} {run.get('reason')}")
    job = run["jobs"][0]
    path = os.path.join(server.data, "jobs", str(job["id"]), str(job["attempt"]), "out", "t")
    with open(path) as f:
        return (int(f.read().strip()) - t0) / 1e6


def clone_ms(bare, into):
    t0 = time.perf_counter()
    git(os.path.dirname(into), "clone", "-q", bare, into)
    dt = (time.perf_counter() - t0) * 1000
    shutil.rmtree(into)
    return dt


def p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run(bench):
    root = tempfile.mkdtemp(prefix="baton-bench-hook-")
    os.environ["BENCH_HOOK_SECRET"] = SECRET
    server = None
    try:
        work, bare = make_repo(root)
        server = bench.Server(f"""server: {{local_workers: 2}}
repos:
  app:
    url: {bare}
    forge: github
    secret: env:BENCH_HOOK_SECRET
""")
        # Warm the mirror (the first fetch is a full clone into it), then measure.
        head = git(work, "rev-parse", "HEAD")
        started_ms(server, *deliver(server, bare, "0" * 40, head, "warm"))
        hook, clone = [], []
        for i in range(SAMPLES):
            before, after = commits(work, 1)
            git(work, "push", "-q", bare, "main")
            hook.append(started_ms(server, *deliver(server, bare, before, after, f"one-{i}")))
            clone.append(clone_ms(bare, os.path.join(root, "clone")))
        big_hook, big_clone = [], []
        for i in range(BIG_SAMPLES):
            before, after = commits(work, BIG_PUSH)
            git(work, "push", "-q", bare, "main")
            big_hook.append(started_ms(server, *deliver(server, bare, before, after, f"big-{i}")))
            big_clone.append(clone_ms(bare, os.path.join(root, "clone")))
    finally:
        if server:
            # Every job kept its 10,000-file checkout: `rm -rf` is quicker than rmtree.
            subprocess.run(["rm", "-rf", os.path.join(server.data, "jobs")], check=False)
            server.stop()
        subprocess.run(["rm", "-rf", root], check=False)
    a, b = p50(hook), p50(clone)
    bench.row("(k) webhook -> first command, 10k files, p50", a, "ms", b, "ms", a / b,
              "(baseline: git clone; aim p50 < 100 ms)")
    a, b = max(hook), max(clone)
    bench.row("(k) webhook -> first command, max", a, "ms", b, "ms", a / b)
    a, b = p50(big_hook), p50(big_clone)
    bench.row("(k) push of 1,000 commits, p50", a, "ms", b, "ms", a / b, "(baseline: git clone)")
