#!/usr/bin/env bash
# bench/rings/probe.sh FILTER ROUNDS OUTPREFIX [REPS]
# Runs the probe rows (DKQ_BENCH_PROBES=1) matching FILTER in ROUNDS separate
# processes, each with REPS randomly interleaved repetitions, and keeps every
# round's JSON as OUTPREFIX-<round>.json; bench/rings/probe_summary.py pools them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/build/h-bench/bench/rings/dkq_bench_rings}
filter=$1 rounds=$2 prefix=$3 reps=${4:-6}
for r in $(seq 1 "$rounds"); do
  echo "round $r load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  DKQ_BENCH_PROBES=1 "$bin" --benchmark_filter="$filter" --benchmark_min_time=0.1 \
    --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
    --benchmark_display_aggregates_only=true \
    --benchmark_out="$prefix-$r.json" --benchmark_out_format=json >/dev/null 2>&1 || true
done
