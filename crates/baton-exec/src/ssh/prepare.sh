#!/usr/bin/env bash
# Baton, starting a job on an SSH worker (1 of 2): read by `bash -s` behind a prelude that sets
# D (the job folder). Makes the folder afresh and enters it; the server's uploads (one `printf`
# of a quoted value per file) follow, then launch.sh.
: "${D:?the prelude sets D}"
set -e
umask 077
if [ -e "$D/runner.pid" ] || [ -e "$D/exit" ]; then
  echo "job folder $D was already started on this worker" >&2
  exit 17
fi
if [ -e "$D" ]; then rm -rf -- "$D"; fi
mkdir -p -- "$D/work" "$D/out"
cd -- "$D"
D=$PWD
