#!/bin/sh
# Makes the cluster on first start (user and database `baton`, local connections only), then
# runs PostgreSQL on the unix socket in /run/postgresql, with no TCP listener.
set -eu
bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort | tail -n 1)
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
  "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=reject >/dev/null
  printf 'CREATE USER baton;\nCREATE DATABASE baton OWNER baton;\n' |
    "$bin/postgres" --single -D "$data" postgres >/dev/null
fi
exec "$bin/postgres" -D "$data" -c listen_addresses= -c unix_socket_directories=/run/postgresql
