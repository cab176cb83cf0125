#!/usr/bin/env bash
# Coroutine vs callback on the same work (bench/queue/queue_bench.cpp,
# BM_queue_resubmit_*): time per I/O (Google Benchmark, interleaved
# repetitions) and driver instructions per I/O (callgrind, deterministic).
# Writes bench/queue/results/coro-<stamp>.json and bench/queue/CORO.md, which
# scripts/bench.sh appends to docs/benchmarks.md.
#   bench/queue/coro.sh [build dir, default build/release]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/release}
if [[ "$build" == "$root/build/release" ]]; then cmake --preset release -S "$root" >/dev/null; fi
cmake --build "$build" --target queue_bench -j "${JOBS:-2}" >/dev/null
bin=$build/bench/queue/queue_bench
stamp=$(date -u +%Y%m%d-%H%M)
json=$root/bench/queue/results/coro-$stamp.json
mkdir -p "$root/bench/queue/results"
"$bin" --benchmark_filter='resubmit' --benchmark_repetitions="${REPS:-9}" --benchmark_enable_random_interleaving=true \
  --benchmark_display_aggregates_only=true --benchmark_out="$json" --benchmark_out_format=json >/dev/null
icount=""
if command -v valgrind >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for c in callback fnptr coroutine; do
    for qd in 1 32; do
      for n in 1000 3000; do
        valgrind --tool=callgrind --callgrind-out-file="$tmp/$n" "$bin" --fixed=$n --only="$c:qd:$qd" >/dev/null 2>&1
      done
      # driver = everything but the device model (fake_nvme_device::*), per I/O
      t1=$(callgrind_annotate "$tmp/1000" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
      t2=$(callgrind_annotate "$tmp/3000" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
      m1=$(callgrind_annotate "$tmp/1000" | awk '/fake_nvme_device::/ {gsub(",","",$1); s+=$1} END {print s+0}')
      m2=$(callgrind_annotate "$tmp/3000" | awk '/fake_nvme_device::/ {gsub(",","",$1); s+=$1} END {print s+0}')
      icount+="$c $qd $(( ((t2 - t1) - (m2 - m1)) / (2000 * qd) ))"$'\n'
    done
  done
fi
python3 - "$json" "$root/bench/queue/CORO.md" "$icount" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
med = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") == "median":
        med[b["run_name"]] = b["time_per_io"] * 1e9 if b["time_per_io"] < 1e-3 else b["time_per_io"]
ic = {}
for line in sys.argv[3].strip().splitlines():
    k, qd, n = line.split()
    ic[(k, qd)] = int(n)
ctx = data["context"]
rows = []
for qd in ("1", "32"):
    cb = med.get(f"BM_queue_resubmit_callback/qd:{qd}")
    fp = med.get(f"BM_queue_resubmit_fnptr/qd:{qd}")
    co = med.get(f"BM_queue_resubmit_coroutine/qd:{qd}")
    def f(x): return f"{x:.1f}" if x is not None else "-"
    def i(k): return str(ic[(k, qd)]) if (k, qd) in ic else "-"
    rows.append(f"| {qd} | {f(cb)} | {f(fp)} | {f(co)} | **{co / fp:.2f}x** | {co / cb:.2f}x | "
                f"{i('callback')} / {i('fnptr')} / {i('coroutine')} |")
out = [
    "## Coroutine vs callback (device queue, same work)",
    "",
    "`BM_queue_resubmit_*` in `bench/queue/queue_bench.cpp`: `qd` commands stay in flight on a `queue_pair` against",
    "the in-memory NVMe device model; every completion is followed by the next submission. One round writes one SQ and",
    "one CQ doorbell (batched). Three forms of the same driver code: an inlined handler (a template lambda), a",
    "per-command function pointer and argument (the callback shape of SPDK's `spdk_nvme_cmd_cb` and libvfn), and `qd`",
    "coroutines each looping `co_await queue_command` with frames from a `frame_arena` (`docs/coroutines.md`).",
    f"Medians of {ctx.get('num_repetitions', data['benchmarks'][0].get('repetitions', '?'))} interleaved repetitions, "
    f"ns per I/O (`{('bench/' + sys.argv[1].split('/bench/')[-1]) if '/bench/' in sys.argv[1] else sys.argv[1]}`, "
    f"{ctx.get('date', '?')}, load average {ctx.get('load_avg', '?')}); instructions are the driver's per I/O under",
    "callgrind (device model excluded; deterministic). Regenerate with `bench/queue/coro.sh`.",
    "",
    "| QD | inlined handler ns | function pointer ns | coroutine ns | coroutine / function pointer | coroutine / inlined | instructions: inlined / fn ptr / coroutine |",
    "|---|---|---|---|---|---|---|",
    *rows,
    "",
    "The goal was the coroutine within 5 % of the callback path; it is not met on this in-memory benchmark. The",
    "coroutine path executes about 60 more instructions per I/O than the function-pointer callback: the result is",
    "stored in the command's completion sink and the frame resumed through its resume pointer (where the callback",
    "calls its function pointer), the coroutine copies the result out and builds the next command object in its",
    "frame, and the awaiter records the waiter and state. Time per I/O follows the instruction count. Against a",
    "device these are a few ns per command; dkq-nvme's `verify` (coroutines) and its callback-form commands run the",
    "same queue and doorbell policy (`docs/coroutines.md`).",
]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
