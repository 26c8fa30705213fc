#!/usr/bin/env bash
# Checks deploy/ as far as one machine can: the systemd unit passes `systemd-analyze verify`
# with nothing to remark and its user file passes `systemd-sysusers --dry-run`; the Docker image
# builds from Debian packages only (its base made here with mmdebstrap, every time, so this
# path cannot rot), starts, answers /healthz, refuses an unauthenticated API call, and stops
# cleanly on SIGTERM; compose.yaml starts PostgreSQL and two servers, one active and one
# standby, and the standby takes over when the active one is SIGKILLed. Usage: deploy/check.sh BINARY (e.g. target/debug/baton).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:?usage: deploy/check.sh BINARY}
[ -x "$binary" ] || { echo "deploy/check.sh: $binary is not an executable" >&2; exit 1; }
tmp=$(mktemp -d)
image=baton-deploy-check:latest
base=baton-debian:bookworm
container=""
cleanup() {
  [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "-- systemd-analyze verify deploy/baton.service"
sed "s#/usr/local/bin/baton#$PWD/$binary#" deploy/baton.service >"$tmp/baton.service"
out=$(systemd-analyze verify "$tmp/baton.service" 2>&1) || {
  echo "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "systemd-analyze verify has remarks on deploy/baton.service:" >&2
  echo "$out" >&2
  exit 1
fi
echo "-- systemd-sysusers --dry-run deploy/baton.sysusers"
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" --dry-run \
  --inline "$(grep -v '^#' deploy/baton.sysusers)" 2>&1 | tee "$tmp/sysusers"
grep -q "Creating user 'baton'" "$tmp/sysusers" || {
  echo "systemd-sysusers would not create the baton user" >&2
  exit 1
}

echo "-- base image $base from Debian's packages (mmdebstrap)"
mmdebstrap --quiet --variant=minbase bookworm - http://deb.debian.org/debian |
  docker import - "$base" >/dev/null
echo "-- docker build -f deploy/Dockerfile"
docker build --quiet -f deploy/Dockerfile --build-arg BASE="$base" \
  --build-arg BINARY="$binary" -t "$image" . >/dev/null
container=$(docker run -d -p 127.0.0.1::8700 "$image")
port=$(docker port "$container" 8700/tcp | head -n1 | sed 's/.*://')
url=http://127.0.0.1:$port
for _ in $(seq 120); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
if ! curl -fsS "$url/healthz" >/dev/null; then
  echo "the container did not answer $url/healthz within 60 s; its log:" >&2
  docker logs "$container" >&2
  exit 1
fi
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/api/v1/runs")
if [ "$code" != 401 ]; then
  echo "an unauthenticated GET /api/v1/runs answered $code, not 401" >&2
  exit 1
fi
user=$(docker exec "$container" id -un)
[ "$user" = baton ] || {
  echo "the server runs as $user, not baton" >&2
  exit 1
}
docker stop -t 30 "$container" >/dev/null
status=$(docker inspect -f '{{.State.ExitCode}}' "$container")
if [ "$status" != 0 ]; then
  echo "the server exited $status on SIGTERM, not 0; its log:" >&2
  docker logs "$container" >&2
  exit 1
fi

echo "-- docker-compose -f deploy/compose.yaml: PostgreSQL and two servers, one taking over"
pg_image=baton-postgres-check:latest
docker build --quiet -f deploy/postgres.Dockerfile --build-arg BASE="$base" -t "$pg_image" . \
  >/dev/null
project=batoncheck$$
compose=(docker-compose -p "$project" -f deploy/compose.yaml)
export BATON_IMAGE=$image BATON_PG_IMAGE=$pg_image BATON_A_PORT="" BATON_B_PORT=""
compose_down() { "${compose[@]}" down -v --timeout 5 >/dev/null 2>&1 || true; }
trap 'compose_down; cleanup' EXIT
"${compose[@]}" up -d --quiet-pull 2>"$tmp/compose.log" || {
  cat "$tmp/compose.log" >&2
  exit 1
}
port_of() { "${compose[@]}" port "$1" 8700 2>/dev/null | sed 's/.*://'; }
# Prints a server's /healthz role: active, standby, or nothing while it does not answer.
role_of() {
  local health
  health=$(curl -fsS "http://127.0.0.1:$(port_of "$1")/healthz" 2>/dev/null) || return 0
  sed -n 's/.*"role":"\([a-z]*\)".*/\1/p; s/.*"status":"standby".*/standby/p' <<<"$health"
}
wait_roles() {
  for _ in $(seq 240); do
    [ "$(role_of baton-a)" = "$1" ] && [ "$(role_of baton-b)" = "$2" ] && return 0
    sleep 0.5
  done
  echo "compose: expected baton-a $1 and baton-b $2; got '$(role_of baton-a)' and" \
    "'$(role_of baton-b)'; their logs:" >&2
  "${compose[@]}" logs --no-color >&2
  exit 1
}
# Whichever starts first is active; the other is its standby. Stop the active one (SIGKILL):
# the standby takes over once the lease lapses.
for _ in $(seq 240); do
  a=$(role_of baton-a)
  b=$(role_of baton-b)
  [ -n "$a" ] && [ -n "$b" ] && break
  sleep 0.5
done
if [ "$a" = active ]; then first=baton-a second=baton-b; else first=baton-b second=baton-a; fi
[ "$(role_of "$second")" = standby ] || wait_roles active standby
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(port_of "$second")/api/v1/runs")
if [ "$code" != 401 ]; then
  echo "an unauthenticated GET /api/v1/runs through the standby answered $code, not 401" >&2
  exit 1
fi
"${compose[@]}" kill -s SIGKILL "$first" >/dev/null 2>&1
for _ in $(seq 120); do
  [ "$(role_of "$second")" = active ] && break
  sleep 0.5
done
if [ "$(role_of "$second")" != active ]; then
  echo "compose: $second did not take over within 60 s of $first being killed; logs:" >&2
  "${compose[@]}" logs --no-color >&2
  exit 1
fi
echo "deploy: unit verified, image built, served, refused, stopped cleanly; compose: one" \
  "active server, one standby that took over"
