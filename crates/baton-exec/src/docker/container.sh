#!/bin/sh
# Baton: the command of a job's container (`/bin/sh -c` of this text). The script runs under
# `sh -e`, with `pipefail` where the image's shell has it, and stderr joined to stdout: one
# stream keeps the order of the output (the engine copies two streams separately and may
# interleave them differently from how they were written). This shell is PID 1, which the kernel
# shields from signals it does not handle, so it traps SIGTERM and passes it on: `stop` (cancel,
# timeout) reaches the script without an init binary in the engine (Podman may lack one).
exec 2>&1
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
/bin/sh -ec '(set -o pipefail) 2>/dev/null && set -o pipefail; . /baton/job/script.sh' </dev/null &
child=$!
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done
exit "$status"
