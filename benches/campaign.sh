#!/usr/bin/env bash
# Whole-command benchmark of chaos campaigns (docs/harness.md 7, 11), build excluded: swarm seeds of
# the Azure hour with 1 and with 2 jobs (the speed-up of a second thread), then SEEDS seeds
# (default 1,000) on 2 jobs; wall time and peak memory of each, and whether the 1- and
# 2-job campaigns agree line for line, wall times aside.
#
#   bash benches/campaign.sh [SEEDS] [SMALL]       # defaults: 1000 and 100
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1000}
small=${2:-100}
cargo build --release --config 'build.rustflags=["--cfg","madsim"]' --target-dir target/sim --bin seedcore
bin=target/sim/release/seedcore
scenario=scenarios/chaos-azure-swarm.toml
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # jobs seeds dir: prints "wall_s peak_kb"
    local code=0
    /usr/bin/time -f "%e %M" -o "$out/time" "$bin" campaign "$scenario" --seeds "1..$2" --jobs "$1" --out "$3" \
        > /dev/null 2>&1 || code=$?
    [ "$code" -le 1 ] || { echo "campaign failed ($code)" >&2; exit 1; }
    cat "$out/time"
}
strip() { sed 's/,"wall_ms":[0-9]*//' "$1/campaign.jsonl"; }

read -r one one_kb < <(run 1 "$small" "$out/one")
read -r two two_kb < <(run 2 "$small" "$out/two")
echo "$small seeds, 1 job:  $one s wall, $one_kb KB peak"
echo "$small seeds, 2 jobs: $two s wall, $two_kb KB peak"
awk -v a="$one" -v b="$two" 'BEGIN {printf "speed-up of the second job: %.2fx\n", a / b}'
if diff <(strip "$out/one") <(strip "$out/two") > /dev/null; then
    echo "1 and 2 jobs: the same $small lines, wall times aside"
else
    echo "1 and 2 jobs DISAGREE" >&2
    exit 1
fi
read -r all all_kb < <(run 2 "$seeds" "$out/all")
echo "$seeds seeds, 2 jobs: $all s wall, $all_kb KB peak"
grep -o '"outcome":"[A-Z ]*"' "$out/all/campaign.jsonl" | sort | uniq -c
