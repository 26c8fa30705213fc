#!/usr/bin/env bash
# Baton: what became of a job, read by `bash -s` behind a prelude that sets D (the job folder).
# Answers `running`, `gone` (no folder), `vanished` (no runner and no exit code) or
# `exit CODE`, then `canceled` and `timed_out` lines when those files are there.
: "${D:?the prelude sets D}"
cd -- "$D" 2>/dev/null || {
  echo gone
  exit 0
}
ended() {
  echo "exit $(cat exit)"
  if [ -e canceled ]; then echo canceled; fi
  if [ -e timed_out ]; then echo timed_out; fi
  exit 0
}
if [ -e exit ]; then ended; fi
p=$(cat runner.pid 2>/dev/null)
if [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
  { [ ! -r "/proc/$p/cmdline" ] || grep -q run.sh "/proc/$p/cmdline"; }; then
  echo running
  exit 0
fi
# The runner may have written its exit code since the first look.
if [ -e exit ]; then echo running; else echo vanished; fi
