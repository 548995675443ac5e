#!/usr/bin/env bash
# Whole-command benchmark of the live gateway on loopback (docs/live.md 4.11, docs/harness.md 11), build excluded,
# with the client (`seedcore load`) beside the server on the same machine, as a deployment
# runs it: bearer tokens at the gateway (a `submit` token) and mutual TLS between the roles
# (`seedcore certs`):
# - POST /ocps/route (routing only) at RATE requests a second (default 22,000) for 10 s,
#   32 requests outstanding: throughput and latency percentiles;
# - POST /v1/tasks with the simulated backend at TASKS_RATE a second (default 800) for
#   8 s, once with the ledger synced per signed cycle and once per receipt (--fsync).
# The workload is the Azure hour played 24 times back to back (464,784 rows: enough for
# 10 s at 46,000 a second), enriched as in scenarios/azure-conv.toml. Rate limits are off.
#
#   bash benches/gateway.sh [RATE] [TASKS_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-22000}
tasks_rate=${2:-800}
cargo build --release --bin seedcore
bin=$PWD/target/release/seedcore
tmp=$(mktemp -d)
pid=
stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
trap 'stop; rm -rf "$tmp"' EXIT
"$bin" certs "$tmp/tls" >/dev/null
SEEDCORE_TOKEN=$("$bin" token create --tokens "$tmp/tokens" --name bench --scope submit | tail -n1)
export SEEDCORE_TOKEN
cat > "$tmp/azure-24h.toml" <<TOML
name = "azure-conv-24h"
seed = 7
[workload]
source = "trace"
trace = "$PWD/scenarios/traces/azure-llm-conv-2023-11-16-1h.csv"
format = "azure"
loops = 24
TOML

serve() { # data-dir extra-args...: starts serve, sets pid and url
    local dir=$1
    shift
    "$bin" serve --port 0 --data-dir "$tmp/$dir" --rate-limit route=off --rate-limit tasks=off \
        --tokens "$tmp/tokens" --tls-dir "$tmp/tls" "$@" \
        >"$tmp/$dir.out" 2>"$tmp/$dir.err" &
    pid=$!
    url=
    for _ in $(seq 300); do
        url=$(grep -o 'http://[0-9.:]*' "$tmp/$dir.out" | head -n1 || true)
        [ -z "$url" ] || break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "serve did not start" >&2; cat "$tmp/$dir.err" >&2; exit 1; }
}

serve route
echo "== /ocps/route at $rate/s, 32 outstanding, 10 s, token authentication on"
"$bin" load --scenario "$tmp/azure-24h.toml" --url "$url" --endpoint route --rate "$rate" \
    --max-seconds 10 --concurrency 32 2>/dev/null
stop
for fsync in cycle receipt; do
    serve "tasks-$fsync" --fsync "$fsync"
    echo "== /v1/tasks at $tasks_rate/s, simulated backend, mutual TLS between roles, --fsync $fsync, 8 s"
    "$bin" load --scenario "$tmp/azure-24h.toml" --url "$url" --rate "$tasks_rate" --max-seconds 8 \
        --concurrency 1024 2>/dev/null
    stop
done
