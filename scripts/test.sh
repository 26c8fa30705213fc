#!/usr/bin/env bash
# The whole test suite: installs what the build and the tests need, starts a Docker engine when
# none answers, checks the shell scripts, formatting and lints, then runs every test (unit,
# property, end-to-end against the real binary). `.ci/run` runs exactly this.
#
# Runs as root, or as a user with sudo: then the packages, the Docker engine and the tests run
# through sudo (the tests need root: network namespaces, rootful Podman, the Docker socket),
# while formatting, lints and the build run as the user so target/ stays theirs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=()
# The S3 server the artifact storage tests run (see the install below).
S3S_FS_VERSION=0.14.1
[ "$(id -u)" = 0 ] || as_root=(sudo)

# Every run installs the full list (apt-get is idempotent), so this step runs in CI and cannot
# rot. build-essential: the C compiler and linker (bundled SQLite, aws-lc, and cargo's linker);
# ca-certificates: cargo fetching crates; docker.io: the Docker executor's tests; podman: the
# same executor on Podman's API; busybox-static: the test image; openssh-*, dtach, iproute2,
# curl: the SSH worker tests (real sshd hosts in network namespaces); chromium and
# chromium-driver: the browser tests; fish: `fish -n` on the fish completion script; openssl:
# the single sign-on stand-in's RSA key; python3: the kill matrix (bench/killmatrix);
# python3-venv: the API check's schemathesis venv; sqlite3: the webhook crash test, which puts a
# delivery back to pending by hand; git-lfs: checkouts of LFS files; and the shell script
# checker run below; systemd (systemd-analyze, systemd-sysusers) and mmdebstrap: deploy/check.sh
# verifies the unit and builds the image's Debian base; postgresql: the store's tests and the
# end-to-end pass on PostgreSQL (a throwaway cluster, started below); docker-compose:
# deploy/check.sh starts deploy/compose.yaml (PostgreSQL and two servers).
packages=(build-essential ca-certificates git git-lfs make curl procps openssh-server
  openssh-client dtach iproute2 chromium chromium-driver openssl busybox-static docker.io podman
  shellcheck python3 python3-venv sqlite3 systemd mmdebstrap postgresql docker-compose fish)
echo "== apt-get install ${packages[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${packages[@]}"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# s3s-fs: a real S3-compatible server for the artifact storage tests (crates/baton/tests/s3.rs
# runs it on loopback and finds it in target/tools/bin). `cargo install` is idempotent: it
# returns at once when that version is already there.
echo "== cargo install s3s-fs"
cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --root target/tools \
  --quiet

# A Docker engine for the Docker executor's tests: start one when none answers.
if ! "${as_root[@]}" docker info >/dev/null 2>&1; then
  mkdir -p target
  log=$PWD/target/dockerd.log
  if [ -d /run/systemd/system ]; then
    echo "== starting the Docker engine (systemctl start docker)"
    "${as_root[@]}" systemctl start docker
    log="journalctl -u docker"
  else
    echo "== starting the Docker engine (dockerd, log in target/dockerd.log)"
    # The log is opened by this shell, so it stays the user's file under sudo.
    "${as_root[@]}" nohup dockerd >>"$log" 2>&1 &
  fi
  for _ in $(seq 120); do
    "${as_root[@]}" docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! "${as_root[@]}" docker info >/dev/null 2>&1; then
    echo "the Docker engine did not answer \`docker info\` within 60 s of being started;" \
      "see its log ($log)" >&2
    [ -f "$log" ] && tail -n 20 "$log" >&2
    exit 1
  fi
fi

echo "== shellcheck"
# Every shell script in the tree, found by its first line.
mapfile -t scripts < <(find . \( -path ./target -o -path ./.git \) -prune -o -type f \
  -exec awk 'FNR == 1 && /^#!.*[/ ](ba)?sh( |$)/ { print FILENAME } { nextfile }' {} + | sort)
echo "${scripts[*]}"
shellcheck "${scripts[@]}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# Licenses, duplicate crate versions and crate sources (deny.toml says why each duplicate is
# tolerated). Advisories need the RustSec database on GitHub, which test machines cannot reach.
echo "== cargo deny"
cargo install cargo-deny --version 0.20.2 --locked --quiet
cargo deny --locked check licenses bans sources
# A throwaway PostgreSQL cluster (initdb + pg_ctl in a temporary directory, unix socket only)
# for the tests that run on PostgreSQL; BATON_TEST_PG names it. Stopped and removed on exit.
echo "== PostgreSQL test cluster"
pg_env=$(scripts/pg-test-cluster.sh start)
eval "$pg_env"
echo "BATON_TEST_PG=$BATON_TEST_PG"
cleanup() {
  scripts/pg-test-cluster.sh stop "$BATON_TEST_PG_DIR" || true
  [ ${#as_root[@]} -eq 0 ] || sudo chown -R "$(id -u):$(id -g)" target
}
trap cleanup EXIT
# The end-to-end tests run a second time with every server on PostgreSQL (BATON_TEST_DB): the
# ones that exercise the store's main paths (runs, crash recovery, pipelines, users and
# tokens, notifications and their outbox, secrets kept out of the database, retention, forge
# webhooks, pull requests and commit statuses). The store's own tests run on both databases in
# the first pass, and tests/database.rs puts servers on PostgreSQL there too.
pg_e2e=(--test runs --test crash --test pipelines --test cli --test notify --test notify_mail
  --test secrets --test retention --test forge --test forge_pr --test statuses)
echo "== cargo test"
if [ ${#as_root[@]} -eq 0 ]; then
  cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt
  echo "== cargo test on PostgreSQL (BATON_TEST_DB=postgres)"
  BATON_TEST_DB=postgres cargo test -p baton --locked --no-fail-fast "${pg_e2e[@]}" 2>&1 |
    tee -a target/test-output.txt
else
  cargo test --workspace --locked --no-run
  # sudo resets PATH and HOME: name the user's toolchain explicitly.
  sudo env PATH="$PATH" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTFLAGS="${RUSTFLAGS:-}" \
    BATON_TEST_PG="$BATON_TEST_PG" \
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt
  echo "== cargo test on PostgreSQL (BATON_TEST_DB=postgres)"
  sudo env PATH="$PATH" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTFLAGS="${RUSTFLAGS:-}" \
    BATON_TEST_PG="$BATON_TEST_PG" BATON_TEST_DB=postgres \
    cargo test -p baton --locked --no-fail-fast "${pg_e2e[@]}" 2>&1 | tee -a target/test-output.txt
fi
# A live server against its own OpenAPI document (schemathesis): no 5xx, every answer as declared.
echo "== API check"
scripts/api-check.sh
# SIGKILL the server (and a supervisor) at the worst moments; fails on anything lost or doubled.
# The debug binary `cargo test` just built: CI builds one profile only.
echo "== kill matrix (short)"
"${as_root[@]}" bench/killmatrix --short --binary target/debug/baton
# The input parsers fuzzed for a bounded time each (cargo-fuzz on the nightly toolchain); saved
# crash inputs in fuzz/regressions/ are replayed first.
echo "== fuzz (20 s a target)"
fuzz/run.sh 20
# deploy/: the systemd unit verifies, the image builds from Debian packages, serves and stops.
echo "== deploy check"
"${as_root[@]}" deploy/check.sh target/debug/baton
# One closing line for the whole suite (--no-fail-fast above: every failure shows, not the first).
passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
passed_custom=$(grep -Eo '^[0-9]+ passed, 0 failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo "$((passed + passed_custom)) passed, 0 failed"
