#!/usr/bin/env bash
# Baton: follows a job's log on the worker, read by `bash -s` behind a prelude that sets D (the
# job folder) and FROM (the first byte to send, 1-based), until the runner ends (`tail --pid`
# exits 0) or until the session's stdin closes (the server stopped following, or went away):
# then it stops `tail` at once, so that no session outlives its use (sshd keeps a session open
# while its command runs). One `{ … }` group: bash reads all of it before it runs any of it.
{
  set +e
  : "${D:?the prelude sets D}" "${FROM:?the prelude sets FROM}"
  cd -- "$D" || exit 1
  exec 3<&0
  tail -s 0.2 -c "+$FROM" --pid="$(cat runner.pid)" -F log </dev/null 2>/dev/null &
  t=$!
  {
    read -r _ <&3
    kill "$t"
  } </dev/null >/dev/null 2>&1 &
  r=$!
  wait "$t"
  s=$?
  kill "$r" 2>/dev/null
  exit "$s"
}
