#!/usr/bin/env bash
# bench/rings/probe.sh FILTER ROUNDS OUTPREFIX [REPS]
# Runs the probe rows (DKQ_BENCH_PROBES=1) matching FILTER in ROUNDS separate
# processes, each with REPS randomly interleaved repetitions, and keeps every
# round's JSON as OUTPREFIX-<round>.json; bench/rings/probe_summary.py pools them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/build/h-bench/bench/rings/dkq_bench_rings}
filter=$1 rounds=$2 prefix=$3 reps=${4:-6}
# Steal time: the share of the round in which the hypervisor ran something
# else on our vCPUs (the "steal" column of /proc/stat, summed over CPUs).
steal() { awk '/^cpu / {print $9}' /proc/stat; }
for r in $(seq 1 "$rounds"); do
  s0=$(steal) t0=$(date +%s.%N)
  DKQ_BENCH_PROBES=1 "$bin" --benchmark_filter="$filter" --benchmark_min_time=0.1 \
    --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
    --benchmark_display_aggregates_only=true \
    --benchmark_out="$prefix-$r.json" --benchmark_out_format=json >/dev/null 2>&1 || true
  s1=$(steal) t1=$(date +%s.%N)
  awk -v r="$r" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v s="$((s1 - s0))" -v t0="$t0" -v t1="$t1" \
    -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { printf "round %s: load %s, steal %.1f%% of %d CPUs over %.0f s\n", r, l, 100 * s / hz / (t1 - t0) / n, n, t1 - t0 }' >&2
done
