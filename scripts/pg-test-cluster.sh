#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` in a temporary directory,
# listening only on a unix socket there (no TCP), trust authentication for the user `baton`.
#
#   scripts/pg-test-cluster.sh start [DIR]   starts one and prints `export BATON_TEST_PG=...`
#   scripts/pg-test-cluster.sh stop DIR      stops it and removes DIR
#
# initdb refuses to run as root, so as root the cluster runs as `nobody` (setpriv).
# Needs Debian's `postgresql` package (server binaries under /usr/lib/postgresql/N/bin).
set -euo pipefail

bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "pg-test-cluster: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install Debian's postgresql package)" >&2
  exit 1
fi

as_owner=()
if [ "$(id -u)" = 0 ]; then
  as_owner=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
fi

case "${1:-}" in
  start)
    dir=${2:-$(mktemp -d /tmp/baton-pg.XXXXXX)}
    mkdir -p "$dir"
    chmod 0755 "$dir"
    [ "$(id -u)" = 0 ] && chown 65534:65534 "$dir"
    cd "$dir"
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U baton --auth=trust -E UTF8 --locale=C \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync and synchronous_commit stay on (the defaults): the tests see the durability the
    # server promises. Many connections: several servers and store tests run at once.
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c max_connections=400 -c shared_buffers=64MB" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "export BATON_TEST_PG='postgres://baton@localhost/postgres?host=$dir'"
    echo "export BATON_TEST_PG_DIR='$dir'"
    ;;
  stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    cd /
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
