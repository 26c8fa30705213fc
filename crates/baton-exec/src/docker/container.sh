#!/bin/sh
# Baton: the command of a job's container (`/bin/sh -c` of this text). The script runs under
# `sh -e`, with `pipefail` where the image's shell has it. stdout and stderr stay apart, so the
# log can mark stderr lines (the engine timestamps each line of either stream as it reads it;
# writes to the two streams microseconds apart may be logged either way round, as with the
# local supervisor's two pipes). This shell is PID 1, which the kernel
# shields from signals it does not handle, so it traps SIGTERM and passes it on: `stop` (cancel,
# timeout) reaches the script without an init binary in the engine (Podman may lack one).
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
