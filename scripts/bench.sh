#!/usr/bin/env bash
# Builds the release binaries and runs the overhead benchmark (direct to the mock vs through Switchyard).
# Arguments go to the benchmark: --seconds N per scenario, --streams N concurrent slow streams.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -p switchyard -p switchyard-tests --bins
exec target/release/switchyard-bench "$@"
