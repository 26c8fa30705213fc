#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then checks formatting, lints, and runs
# every test (unit, property, end-to-end against the real binary). `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The SSH worker tests (crates/baton/tests/ssh.rs) run real sshd hosts in network namespaces;
# the browser tests drive Debian's chromium through chromedriver; the single sign-on tests make
# their stand-in provider's RSA key with openssl; the kill matrix (bench/killmatrix) is Python.
for pkg_cmd in git:git make:make curl:curl procps:pkill openssh-server:/usr/sbin/sshd \
  openssh-client:ssh dtach:dtach iproute2:/usr/sbin/ip chromium:chromium \
  chromium-driver:chromedriver openssl:openssl python3:python3; do
  pkg=${pkg_cmd%%:*} cmd=${pkg_cmd#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || need+=("$pkg")
done
# The Docker executor's tests import a test image made from the static busybox (/bin/busybox)
# and run a Podman API service.
for pkg in busybox-static podman; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# The API check (scripts/api-check.sh) installs schemathesis into a venv: Debian's python3 needs
# python3-venv for that.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing test dependencies: ${need[*]}"
  $sudo apt-get update -qq
  $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
# A live server against its own OpenAPI document (schemathesis): no 5xx, every answer as declared.
echo "== API check"
scripts/api-check.sh
# SIGKILL the server (and a supervisor) at the worst moments; fails on anything lost or doubled.
# The debug binary `cargo test` just built: CI builds one profile only.
echo "== kill matrix (short)"
bench/killmatrix --short --binary target/debug/baton
# One closing line for the whole suite.
passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
passed_custom=$(grep -Eo '^[0-9]+ passed, 0 failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo "$((passed + passed_custom)) passed, 0 failed"
