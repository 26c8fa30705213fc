#!/usr/bin/env bash
# Baton: the finishing session of a job, read by `bash -s` behind a prelude that sets D (the job
# folder); one `{ … }` group, so that bash has read all of it before its `read`s take the rest
# of stdin. It waits for `go HAVE NONCE`, then answers like probe.sh while the job runs; once it
# ended, it prints `exit CODE`, `canceled`, `timed_out`, `missing GLOB` (a required artifacts
# glob that matched nothing, one line each), `log N` and N bytes of the log from
# byte HAVE (0-based), then `empty` (nothing in `out/`), `tar` and `out/` as a tar stream, or
# `notar` (no tar here: the server fetches `out/` with scp), then the trailer
# `BATON-END-<NONCE> <tar exit code> <tar's message>`, which proves the answer complete. Then it
# waits for `ok`, removes the folder and says `removed`. While it waits for `go` it ends if the
# server goes away.
{
  : "${D:?the prelude sets D}"
  while :; do
    read -r go have nonce && break
    rc=$?
    if [ "$rc" -le 128 ] || [ ! -d "$D" ]; then exit 0; fi
  done
  [ "$go" = go ] || exit 0
  case $have in '' | *[!0-9]*) exit 0 ;; esac
  case $nonce in '' | *[!0-9a-f]*) exit 0 ;; esac
  cd -- "$D" 2>/dev/null || {
    echo gone
    exit 0
  }
  D=$PWD
  if [ ! -e exit ]; then
    p=$(cat runner.pid 2>/dev/null)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
      { [ ! -r "/proc/$p/cmdline" ] || grep -q run.sh "/proc/$p/cmdline"; }; then
      echo running
      exit 0
    fi
    [ -e exit ] || {
      echo vanished
      exit 0
    }
  fi
  read -r c <./exit || true
  echo "exit $c"
  if [ -e canceled ]; then echo canceled; fi
  if [ -e timed_out ]; then echo timed_out; fi
  if [ -s artifacts.missing ]; then
    while IFS= read -r g; do echo "missing $g"; done <artifacts.missing
  fi
  s=$(wc -c <log 2>/dev/null) || s=0
  n=$((${s:-0} - have))
  [ "$n" -gt 0 ] || n=0
  echo "log $n"
  [ "$n" -eq 0 ] || tail -c "+$((have + 1))" log </dev/null | head -c "$n"
  m=
  shopt -s nullglob dotglob
  a=(out/*)
  r=0
  if [ ${#a[@]} -eq 0 ]; then
    echo empty
  elif command -v tar >/dev/null 2>&1; then
    echo tar
    tar -C out -cf - . </dev/null 2>tar.err
    r=$?
    [ "$r" -eq 0 ] || m=$(head -c 500 tar.err | tr -c '[:print:]' ' ')
  else
    echo notar
  fi
  printf '\nBATON-END-%s %s %s\n' "$nonce" "$r" "$m"
  read -r -t 600 ack || exit 0
  [ "$ack" = ok ] || exit 0
  cd / && rm -rf -- "$D" && echo removed
}
