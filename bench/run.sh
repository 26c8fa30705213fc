#!/usr/bin/env bash
# One command for every benchmark figure: builds the release binary, then runs bench/run.py,
# which measures Baton and its baselines (make -j2, plain processes) in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v make >/dev/null || { echo "bench needs make (apt-get install make)"; exit 1; }
cargo build --release --locked -p baton
# The result-tree benchmarks (m, n) time the library directly through its bench examples.
cargo build --release --locked -p baton-results --examples
exec python3 bench/run.py target/release/baton "$@"
