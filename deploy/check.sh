#!/usr/bin/env bash
# Checks deploy/ as far as one machine can: the systemd unit passes `systemd-analyze verify`
# with nothing to remark and its user file passes `systemd-sysusers --dry-run`; the Docker image
# builds from Debian packages only (its base made here with mmdebstrap, every time, so this
# path cannot rot), starts, answers /healthz, refuses an unauthenticated API call, and stops
# cleanly on SIGTERM. Usage: deploy/check.sh BINARY (e.g. target/debug/baton).
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
echo "deploy: unit verified, image built, served, refused, stopped cleanly"
