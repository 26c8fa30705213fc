#!/usr/bin/env bash
# Baton job runner: uploaded as run.sh into its job folder on the worker and started there under
# dtach as `bash run.sh LIMIT GRACE`: LIMIT is the timeout in 0.2 s ticks (0 = none), GRACE the
# seconds between SIGTERM and SIGKILL. Every other value comes from files in the folder.
limit=$1 grace=$2
case $limit in '' | *[!0-9]*) limit=0 ;; esac
case $grace in '' | *[!0-9.]*) grace=5 ;; esac
cd "${0%/*}" || exit 1
set -m
(
  # A repository job first checks out its commit, fetched from the server with the job's token
  # (given to git as config in its environment, never in argv). With submodules or LFS files,
  # the files of the commit's flattened tree (the server's checkout with them) are laid over
  # it; HEAD and the index stay the commit's.
  if [ -s checkout.commit ]; then
    read -r commit <checkout.commit
    read -r repo <checkout.url
    IFS= read -r hdr <callback.hdr
    (
      export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader GIT_CONFIG_VALUE_0="$hdr"
      export GIT_TERMINAL_PROMPT=0
      cd work && git init -q . &&
        git fetch -q --no-tags -- "$repo" "$commit:refs/baton/checkout" &&
        git -c advice.detachedHead=false checkout -q --detach "$commit" -- &&
        git update-ref -d refs/baton/checkout || exit 1
      if [ -f .gitmodules ] || grep -qs 'filter=lfs' .gitattributes; then
        git fetch -q --no-tags -- "$repo" "refs/baton/flat/$commit:refs/baton/flat" &&
          git checkout -q refs/baton/flat -- . &&
          git reset -q &&
          git update-ref -d refs/baton/flat
      fi
    ) || {
      echo "baton: could not check out commit $commit from the server"
      exit 1
    }
  fi
  # shellcheck source=/dev/null
  . ./env.sh
  # secrets.sh (0600) stays until the server removes the folder: a server that re-attaches
  # after a restart reads its values back to mask them (a minted forge token is never stored).
  if [ -e secrets.sh ]; then
    # shellcheck source=/dev/null
    . ./secrets.sh
  fi
  BATON_OUTPUT_DIR="$PWD/out"
  export BATON_OUTPUT_DIR
  cd work && exec bash -eo pipefail ../script.sh
) </dev/null >>log 2>&1 &
job=$!
echo $$ >runner.pid.tmp && mv runner.pid.tmp runner.pid
echo "$job" >pgid.tmp && mv pgid.tmp pgid
# The watchdog: a cancel request (the file `cancel`) or the timeout stops the job's process
# group with SIGTERM, then SIGKILL after the grace.
(
  n=0
  while :; do
    if [ -e cancel ]; then
      : >canceled
      break
    fi
    if [ "$limit" -gt 0 ] && [ "$n" -ge "$limit" ]; then
      : >timed_out
      break
    fi
    sleep 0.2
    n=$((n + 1))
  done
  kill -TERM -- "-$job" 2>/dev/null
  sleep "$grace"
  kill -KILL -- "-$job" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
dog=$!
wait "$job"
code=$?
kill -KILL -- "-$dog" 2>/dev/null
kill -KILL -- "-$job" 2>/dev/null
# `artifacts:` (artifacts.globs, one glob a line): the regular files of work/ each glob matches,
# reached without a symlink at any component, are copied into out/ with their paths (a file the
# job put there itself is kept); a glob that matches nothing is said in the log and, when
# artifacts.required exists, listed in artifacts.missing (the job fails for it).
if [ -s artifacts.globs ]; then
  (
    shopt -s globstar nullglob dotglob
    D=$(pwd -P)
    top=$(cd work 2>/dev/null && pwd -P) && [ "$top" = "$D/work" ] || top=
    while IFS= read -r g; do
      n=0
      if [ -n "$top" ]; then
        cd "$top" || break
        IFS=
        # shellcheck disable=SC2086 # the glob is expanded on purpose (IFS is empty: no splitting)
        for f in $g; do
          if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
          case $f in */*) d=${f%/*} want=$top/${f%/*} ;; *) d=. want=$top ;; esac
          [ "$(cd -- "$d" 2>/dev/null && pwd -P)" = "$want" ] || continue
          n=$((n + 1))
          [ -e "$D/out/$f" ] || { mkdir -p -- "$D/out/$d" && cp -p -- "$f" "$D/out/$f"; } ||
            echo "baton: warning: artifact not kept: $f" >>"$D/log"
        done
        unset IFS
        cd "$D" || break
      fi
      [ "$n" -gt 0 ] && continue
      if [ -e artifacts.required ]; then
        printf '\nbaton: error: required artifacts glob "%s" matched no file in the job'"'"'s working directory; the job fails\n' "$g" >>log
        printf '%s\n' "$g" >>artifacts.missing
      else
        printf '\nbaton: warning: artifacts glob "%s" matched no file in the job'"'"'s working directory\n' "$g" >>log
      fi
    done <artifacts.globs
  )
fi
echo "$code" >exit.tmp && mv exit.tmp exit
# The callback: over bash's /dev/tcp when the server's URL is plain http (no process to start),
# else, or if that fails, with curl.
sent=
if [ -s callback.tcp ]; then
  { read -r host && read -r port; } <callback.tcp
  IFS= read -r -d '' req <callback.req
  {
    printf '%s' "$req" >&3 && read -r -t 10 line <&3 &&
      case $line in "HTTP/1."?" 2"*) sent=1 ;; esac
  } 2>/dev/null 3<>"/dev/tcp/$host/$port"
fi
[ -n "$sent" ] && exit 0
read -r url <callback.url
curl -fsS --max-time 10 --retry 3 --retry-delay 1 --retry-all-errors -X POST \
  -H @callback.hdr --data-binary @exit "$url" >/dev/null 2>&1 ||
  curl -fsS --max-time 10 -X POST \
    -H @callback.hdr --data-binary @exit "$url" >/dev/null 2>&1
exit 0
