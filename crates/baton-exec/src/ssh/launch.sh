#!/usr/bin/env bash
# Baton, starting a job on an SSH worker (2 of 2): in the job folder D after the uploads, with
# LIMIT and GRACE (see runner.sh) from the prelude. Starts the runner detached under dtach, so it
# survives a dropped connection and a restarted server, and says `started`.
: "${D:?the prelude sets D}" "${LIMIT:?the prelude sets LIMIT}" "${GRACE:?the prelude sets GRACE}"
: >log
command -v dtach >/dev/null || {
  echo 'dtach: command not found' >&2
  exit 127
}
command -v curl >/dev/null || {
  echo 'curl: command not found' >&2
  exit 127
}
if [ -s checkout.commit ]; then
  command -v git >/dev/null || {
    echo 'git: command not found' >&2
    exit 127
  }
fi
dtach -n "$D/sock" -z bash "$D/run.sh" "$LIMIT" "$GRACE" </dev/null >/dev/null 2>&1
i=0
while [ ! -s runner.pid ] && [ $i -lt 2000 ]; do
  sleep 0.005
  i=$((i + 1))
done
[ -s runner.pid ] || {
  echo 'the runner did not start under dtach' >&2
  exit 18
}
echo started
