#!/usr/bin/env bash
# Whole-command benchmark of the simulator (docs/harness.md 11): one run of a scenario (default the
# Azure conversation hour, no chaos), RUNS times (default 5), build excluded. Prints each
# run's simulated tasks per wall-second and time compression as `replay` measures them
# (the simulation alone, not the process start or the trace parse), then the best and the
# median, and the whole command's wall time and peak memory.
#
#   bash benches/replay.sh [RUNS] [SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
scenario=${2:-scenarios/azure-conv.toml}
cargo build --release --config 'build.rustflags=["--cfg","madsim"]' --target-dir target/sim --bin seedcore
bin=$PWD/target/sim/release/seedcore
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$tmp/time-$i" "$bin" replay "$scenario" --replays 1 --out "$tmp/run-$i" >"$tmp/log-$i"
    line=$(grep -o '[0-9]* simulated tasks per wall-second, time compression [0-9]*x' "$tmp/log-$i")
    read -r wall kb <"$tmp/time-$i"
    echo "run $i: $line; command ${wall} s, peak $((kb / 1024)) MB"
    echo "$line" | awk '{print $1, $NF}' | tr -d x >>"$tmp/figures"
done
# best and median of each column (tasks/s, compression)
for column in 1 2; do
    sort -n -k"$column" "$tmp/figures" | awk -v c="$column" '{v[NR]=$c} END {printf "%s %s\n", v[NR], v[int((NR+1)/2)]}'
done | {
    read -r tasks_best tasks_median
    read -r comp_best comp_median
    echo "tasks per wall-second: best $tasks_best, median $tasks_median (docs/harness.md 11: >= 50000)"
    echo "time compression:      best ${comp_best}x, median ${comp_median}x (docs/harness.md 11: >= 10000x)"
}
