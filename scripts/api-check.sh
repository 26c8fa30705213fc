#!/usr/bin/env bash
# Checks a live `baton serve` against its own OpenAPI document with schemathesis (from PyPI):
# no answer may be a 5xx, and every answer must match the schema declared for it. Fails on any
# violation. Uses the debug binary `cargo test` built (override with BATON_BIN) and a venv under
# target/. Bounded: a few examples per operation and a time budget.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BATON_BIN:-target/debug/baton}
venv=target/api-check-venv
version=4.32.5
[ -x "$bin" ] || { echo "api-check: no binary at $bin (run cargo build first)" >&2; exit 1; }

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$"; then
  echo "api-check: installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/config" "$tmp/data"
cat >"$tmp/config/baton.yaml" <<'YAML'
server:
  local_workers: 2
tasks:
  hello:
    command: echo "hello ${who:-world}"
  tagged:
    tags: [nightly]
    wait_list: {size: 1, strategy: append}
    command: echo tagged
pipelines:
  both:
    tasks:
      first:
        script: [echo first]
      second:
        script: [echo second]
        depends_on: [first]
YAML

# Port 0: the server picks a free port and names it in its ready line.
"$bin" serve --config "$tmp/config" --data "$tmp/data" --listen 127.0.0.1:0 \
  >"$tmp/stdout" 2>"$tmp/stderr" </dev/null &
server=$!
base=""
for _ in $(seq 200); do
  base=$(sed -n 's/^baton ready on \(http:\/\/[^ ]*\).*/\1/p' "$tmp/stdout" | head -n1)
  [ -n "$base" ] && break
  kill -0 "$server" 2>/dev/null || { echo "api-check: baton serve exited:" >&2; cat "$tmp/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "api-check: baton serve printed no ready line in 20 s" >&2; cat "$tmp/stderr" >&2; exit 1; }
echo "api-check: checking $base against $base/api/v1/openapi.json"
# The server made the data directory; token commands never create one.
token=$("$bin" token create --data "$tmp/data")

# A run exists, so run routes see real ids too.
curl -fsS -H "Authorization: Bearer $token" -X POST "$base/api/v1/tasks/hello/trigger" >/dev/null

status=0
"$venv/bin/schemathesis" --no-color run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${API_CHECK_EXAMPLES:-15}" --max-time "${API_CHECK_SECONDS:-120}" \
  --request-timeout 20 --seed 1 \
  --report-dir "$tmp/report" || status=$?

if grep -q "panicked" "$tmp/stderr"; then
  echo "api-check: the server panicked:" >&2
  grep -A3 "panicked" "$tmp/stderr" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  echo "api-check: FAILED (server log follows)" >&2
  tail -n 50 "$tmp/stderr" >&2
  exit 1
fi
echo "api-check: passed"
