#!/usr/bin/env bash
# Whole-command benchmarks of certification (docs/harness.md 11), build excluded:
#   1. `certify` of the Azure hour (two runs: the reference and its determinism replay),
#   2. `verify` of a bundle of more than 100,000 events (the hour played twice),
# each timed RUNS times (default 5); prints every wall time and the median.
#
#   bash benches/certify.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --config 'build.rustflags=["--cfg","madsim"]' --target-dir target/sim --bin seedcore
bin=target/sim/release/seedcore
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" keygen "$out/bench.key" > /dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
timed() { # prints the wall seconds of one run of "$@"
    local start end
    start=$(date +%s%N)
    "$@" > /dev/null 2>&1 || { local code=$?; [ "$code" = 1 ] || { echo "failed ($code): $*" >&2; exit 1; }; }
    end=$(date +%s%N)
    awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}'
}

echo "certify scenarios/azure-conv.toml (build excluded), $runs runs:"
times=()
for _ in $(seq "$runs"); do
    times+=("$(timed "$bin" certify scenarios/azure-conv.toml --key "$out/bench.key" --out "$out/azure-conv-7")")
done
printf '  %.3f s\n' "${times[@]}"
printf '  median %.3f s\n' "$(printf '%s\n' "${times[@]}" | median)"

"$bin" certify scenarios/azure-conv-2h.toml --key "$out/bench.key" --out "$out/azure-conv-2h-7" > /dev/null
events=$(wc -l < "$out/azure-conv-2h-7/events.jsonl")
echo "verify of a bundle with $events events, $runs runs:"
times=()
for _ in $(seq "$runs"); do
    times+=("$(timed "$bin" verify "$out/azure-conv-2h-7" --pubkey "$out/bench.pub")")
done
printf '  %.3f s\n' "${times[@]}"
printf '  median %.3f s\n' "$(printf '%s\n' "${times[@]}" | median)"
