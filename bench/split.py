#!/usr/bin/env python3
"""Where trigger-to-start goes, from the job folder's own file times (no tracer): bench (b)'s
loop on BATON, then the median of each step. File times are the kernel's coarse clock (about
4 ms steps), so only medians of many jobs mean anything. Usage: bench/split.py BATON [N]"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
run.BATON = os.path.abspath(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
cfg = """server: {local_workers: 2}
tasks:
  l:
    command: date +%s%N > "$BATON_OUTPUT_DIR/t"
"""
s = run.Server(cfg)
rows = []
try:
    for _ in range(n):
        t0 = time.time_ns()
        r = s.req("POST", "/tasks/l/trigger")
        t1 = time.time_ns()
        r = s.wait(r["id"])
        t9 = time.time_ns()
        job = r["jobs"][0]
        d = os.path.join(s.data, "jobs", str(job["id"]), str(job["attempt"]))
        m = lambda f: os.stat(os.path.join(d, f)).st_mtime_ns
        date = int(open(os.path.join(d, "out", "t")).read())
        rows.append([t0, m("spec.json"), m("claim"), m("script.sh"), date, m("exit.json"), t1, t9])
finally:
    s.stop()
med = lambda k, j: statistics.median((r[j] - r[k]) / 1e6 for r in rows)
print(f"{run.BATON}: {n} jobs, medians")
print(f"  trigger sent -> job folder prepared (HTTP, batch commit, launch)   {med(0, 1):7.2f} ms")
print(f"  folder prepared -> supervisor took the job (spawn, exec, start)    {med(1, 2):7.2f} ms")
print(f"  supervisor took the job -> script written                          {med(2, 3):7.2f} ms")
print(f"  script written -> first command runs (bash in the job's cgroup)    {med(3, 4):7.2f} ms")
print(f"  trigger sent -> first command runs                                 {med(0, 4):7.2f} ms")
print(f"  first command -> exit.json written (command end, fsyncs)           {med(4, 5):7.2f} ms")
print(f"  exit.json -> run answered final (wait, end commit)                 {med(5, 7):7.2f} ms")
print(f"  (trigger answered after                                            {med(0, 6):7.2f} ms)")
