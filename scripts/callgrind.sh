#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (stable across runs, unlike time on a
# shared machine). Runs the release gateway under valgrind behind `fast-upstream`, with key auth
# and the SQLite ledger, sends N1 and then N2 sequential requests in two runs, and prints the
# difference divided by N2 - N1 (start-up and warm-up cancel out).
#
# Usage: scripts/callgrind.sh [json|stream] [N1 N2]     (default: json 500 2500)
#        GATEWAY=path/to/switchyard scripts/callgrind.sh  (another build, e.g. another allocator)
#        BARE=1 scripts/callgrind.sh                       (the bare forwarder instead)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-json}; n1=${2:-500}; n2=${3:-2500}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
cargo build --release -q -p switchyard -p switchyard-tests --bins
gateway=${GATEWAY:-target/release/switchyard}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port_up=$((20000 + RANDOM % 10000)); port_gw=$((port_up + 1))
# The benchmark's own gateway config, so both measure the same setup.
target/release/switchyard-bench --print-config "127.0.0.1:$port_up" --db "$work/ledger.db" > "$work/cfg.toml"
cat > "$work/load.py" <<'EOF'
import http.client, json, sys
port, n, key, stream = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "stream"
body = json.dumps({"model": "bench", "stream": stream, "messages": [{"role": "user",
    "content": "Summarise the plot of a short story about a lighthouse keeper in two sentences."}]})
c = http.client.HTTPConnection("127.0.0.1", port)
headers = {"content-type": "application/json"}
if key != "-":
    headers["authorization"] = "Bearer " + key
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
EOF

# One run: prints the total instructions of the measured process for N requests.
run() {
  local n=$1 out="$work/cg.out"
  rm -f "$work"/ledger.db* "$out"*
  target/release/fast-upstream --listen "127.0.0.1:$port_up" > /dev/null &
  local up=$!
  local key="-"
  if [ -n "${BARE:-}" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" target/release/bare-forwarder \
      --listen "127.0.0.1:$port_gw" --upstream "http://127.0.0.1:$port_up/v1/chat/completions" > /dev/null 2>&1 &
  else
    SWITCHYARD_MASTER_KEY=callgrind-master-key-0123 RUST_LOG=warn valgrind --tool=callgrind \
      --callgrind-out-file="$out" "$gateway" serve --config "$work/cfg.toml" --listen "127.0.0.1:$port_gw" > /dev/null 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 240); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port_gw/v1/chat/completions" && break
    sleep 0.5
  done
  if [ -z "${BARE:-}" ]; then
    key=$(curl -s -X POST "http://127.0.0.1:$port_gw/admin/v1/keys" -H "Authorization: Bearer callgrind-master-key-0123" \
      -H 'content-type: application/json' -d '{"name":"cg","limits":{"budget":{"limit_usd":"1000000","period":"daily"}}}' \
      | python3 -c "import sys, json; print(json.load(sys.stdin)['key'])")
  fi
  python3 "$work/load.py" "$port_gw" 200 "$key" "$mode"
  python3 "$work/load.py" "$port_gw" "$n" "$key" "$mode"
  sleep 1
  callgrind_control -d "$pid" > /dev/null 2>&1
  sleep 1
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  kill "$up"; wait "$up" 2>/dev/null || true
  local f
  f=$(ls -t "$out"* | head -1)
  callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}'
}

a=$(run "$n1"); b=$(run "$n2")
echo "$mode: $(( (b - a) / (n2 - n1) )) instructions per request ($a for $n1, $b for $n2; $(basename "${GATEWAY:-${BARE:+bare-forwarder}}"))"
