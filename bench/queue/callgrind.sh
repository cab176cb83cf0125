#!/usr/bin/env bash
# Instructions per I/O for each queue_bench case, under callgrind.
#   bench/queue/callgrind.sh build/h-queue-rel/bench/queue/queue_bench
# Counts only inside fixed_rounds() (--toggle-collect); runs every case at two
# round counts and divides the difference by the extra I/Os, so warm-up and
# setup cancel out. "driver" is everything inlined into fixed_rounds (dkq's
# queue pair, tags, doorbells); "model" is the device model's step().
set -euo pipefail
bin=${1:?queue_bench binary}
r1=${R1:-1000}
r2=${R2:-3000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() {  # case rounds -> "driver model"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" --toggle-collect='*fixed_rounds*' \
    "$bin" --fixed="$2" --only="$1" >/dev/null 2>&1
  callgrind_annotate --inclusive=no "$tmp/out" 2>/dev/null | awk '
    /fixed_rounds/ { gsub(",", "", $1); d += $1 }
    /fake_nvme_device::/ { gsub(",", "", $1); m += $1 }
    END { printf "%d %d\n", d, m }'
}
printf "%-18s %14s %14s %14s\n" case driver_instr/io model_instr/io total_instr/io
for qd in 1 8 32 128; do
  for b in 0 1; do
    c="qd:$qd/batched:$b"
    read -r d1 m1 < <(count "$c" "$r1")
    read -r d2 m2 < <(count "$c" "$r2")
    ios=$(( (r2 - r1) * qd ))
    awk -v c="$c" -v d=$((d2 - d1)) -v m=$((m2 - m1)) -v n="$ios" \
      'BEGIN { printf "%-18s %14.1f %14.1f %14.1f\n", c, d / n, m / n, (d + m) / n }'
  done
done
