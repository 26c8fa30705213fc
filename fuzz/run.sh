#!/usr/bin/env bash
# Fuzzes Baton's input parsers for a bounded time each (default 20 s; `fuzz/run.sh 300` for
# longer). First every saved crash in fuzz/regressions/<target>/ is replayed: a fixed crash stays
# fixed. Then each target runs from the repository's own fixtures as seeds. On a crash libFuzzer
# prints the input's path (under target/fuzz-artifacts/<target>/): copy it into
# fuzz/regressions/<target>/, fix the code, and it is a test from then on.
# Needs the nightly toolchain and cargo-fuzz, both installed here (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
# The nightly toolchain already here is used as it is (no update on every run); a machine
# without one gets today's.
cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
cargo install cargo-fuzz --version 0.13.2 --locked --quiet
seeds() {
  case $1 in
  config) echo ../examples ../tests/fixtures/configs ;;
  webhook) echo ../tests/fixtures/webhooks ;;
  junit) echo ../tests/fixtures/junit ;;
  ansi) echo ../tests/fixtures/logs ;;
  esac
}
targets=(config webhook junit ansi)
# No sanitizer: the targets are safe Rust (the build is much shorter, and the bundled SQLite in
# baton-web is not on any target's path).
cargo +nightly fuzz build --sanitizer none
for t in "${targets[@]}"; do
  mapfile -t saved < <(find "regressions/$t" -type f ! -name .keep | sort)
  if [ ${#saved[@]} -gt 0 ]; then
    echo "== $t: replaying ${#saved[@]} saved crash input(s)"
    cargo +nightly fuzz run --sanitizer none "$t" "${saved[@]}" -- -runs=1
  fi
  corpus=../target/fuzz-corpus/$t
  artifacts=../target/fuzz-artifacts/$t/
  mkdir -p "$corpus" "$artifacts"
  echo "== $t: fuzzing for $secs s"
  # shellcheck disable=SC2046 # the seed folders are fixed words
  cargo +nightly fuzz run --sanitizer none "$t" "$corpus" $(seeds "$t") -- \
    -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 | tail -n 12
done
echo "fuzz: every target ran $secs s with no crash"
