#!/usr/bin/env bash
# scripts/bench.sh - build the release preset and run the ring benchmarks.
#
#   scripts/bench.sh            full suite (6 interleaved repetitions, about
#                               6-8 minutes on 2 CPUs), regenerates
#                               docs/benchmarks.md and docs/bench-rings.png
#   scripts/bench.sh --short    a subset with 3 short repetitions (< 1 minute
#                               of running), prints the dkq-vs-best-peer table;
#                               writes its report under build/, not docs/
#   scripts/bench.sh --icount   instructions per element (valgrind callgrind),
#                               one thread, every SPSC/MP implementation
#
# Environment: BUILD_DIR (default build/release, the preset's directory),
# BENCH_NICE (nice level for the run, e.g. -10 as root),
# JOBS (default 2), PYTHON (default /usr/bin/python3, which has Debian's
# matplotlib for the chart; any python3 works without the chart).
#
# Debian packages: cmake ninja-build g++ libbenchmark-dev libdpdk-dev
# libboost-dev libreaderwriterqueue-dev libconcurrentqueue-dev
# libatomic-queue-dev libtbb-dev libnuma-dev python3 (python3-matplotlib for
# the chart, valgrind for --icount).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=full
case "${1:-}" in
  --short) mode=short ;;
  --icount) mode=icount ;;
  --full | "") mode=full ;;
  -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--short|--full|--icount]" >&2; exit 2 ;;
esac

build=${BUILD_DIR:-$root/build/release}
jobs=${JOBS:-2}
py=${PYTHON:-}
if [[ -z "$py" ]]; then
  if [[ -x /usr/bin/python3 ]]; then py=/usr/bin/python3; else py=python3; fi
fi

if [[ "$build" == "$root/build/release" ]]; then
  cmake --preset release -S "$root" >/dev/null
else
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target dkq_bench_rings dkq_icount_rings -j "$jobs"
bin=$build/bench/rings/dkq_bench_rings
# BENCH_NICE=-10 (as root) raises the benchmark's CPU share against other
# work on a shared machine; the report's load average says how busy it was.
runner=""
if [[ -n "${BENCH_NICE:-}" ]]; then runner="nice -n $BENCH_NICE"; fi

# Other processes disturb every number here (2 CPUs are shared by the two
# benchmark threads already); say how busy the machine was.
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $mode == icount ]]; then
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
  ic=$build/bench/rings/dkq_icount_rings
  n=262144
  count() {  # instructions (x10) per element between N=0 and N=n runs
    local a z
    a=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ic" "$1" "$2" 0 2>&1 |
        awk '/Collected/ {print $4}')
    z=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$ic" "$1" "$2" $n 2>&1 |
        awk '/Collected/ {print $4}')
    awk -v a="$a" -v z="$z" -v n=$n 'BEGIN { printf "%8.1f", (z - a) / n }'
  }
  printf "instructions per element (push + pop + check, one thread, capacity 1024)\n"
  printf "%-16s %8s %8s %8s %8s\n" impl b=1 b=8 b=32 b=256
  for impl in dkq rte_ring boost_spsc moodycamel_rwq atomic_queue dkq_mpsc rte_ring_mpsc \
              dkq_mpmc rte_ring_mpmc; do
    printf "%-16s" "$impl"
    for b in 1 8 32 256; do count "$impl" "$b"; done
    echo
  done
  exit 0
fi

if [[ $mode == short ]]; then
  out=$build/bench/rings/bench-rings-short.json
  # Capacity 1024, every batch, ping-pong and both multi-producer cases:
  # each implementation appears, in under a minute.
  $runner "$bin" --benchmark_filter='^(spsc_stream/cap:1024/|spsc_pingpong/|mpsc_stream/|mpmc_stream/)' \
    --benchmark_min_time=0.05 --benchmark_repetitions=3 \
    --benchmark_display_aggregates_only=true \
    --benchmark_out="$out" --benchmark_out_format=json >/dev/null
  "$py" "$root/scripts/bench_report.py" "$out" \
    --out "$build/bench/rings/benchmarks-short.md" --summary
  echo "short report: $build/bench/rings/benchmarks-short.md (full run: scripts/bench.sh)"
  exit 0
fi

out=$build/bench/rings/bench-rings.json
# Repetitions are randomly interleaved: on a shared machine a burst of
# someone else's load then hits one repetition of many implementations
# instead of every repetition of one, and the medians stay comparable.
$runner "$bin" --benchmark_min_time=0.1 --benchmark_repetitions=6 \
  --benchmark_enable_random_interleaving=true \
  --benchmark_display_aggregates_only=true \
  --benchmark_out="$out" --benchmark_out_format=json
mkdir -p "$root/bench/rings/results"
stamp=$(date -u +%Y%m%d-%H%M)
run_json="$root/bench/rings/results/run-$stamp.json"
cp "$out" "$run_json"
# The single-threaded families: descriptor build cost (DMA layer) and
# submit + doorbell + reap cost per I/O (queue layer).
cmake --build "$build" --target dkq_bench_dma queue_bench -j "$jobs"
mkdir -p "$root/bench/dma/results" "$root/bench/queue/results"
dma_json="$root/bench/dma/results/run-$stamp.json"
queue_json="$root/bench/queue/results/run-$stamp.json"
$runner "$build/bench/dma/dkq_bench_dma" --benchmark_repetitions=3 \
  --benchmark_display_aggregates_only=true --benchmark_out="$dma_json" --benchmark_out_format=json
$runner "$build/bench/queue/queue_bench" --benchmark_repetitions=3 \
  --benchmark_display_aggregates_only=true --benchmark_out="$queue_json" --benchmark_out_format=json
# The NVMe driver comparison (VM experiment, bench/nvme/) is appended as it
# was last measured; scripts/nvme_perf_report.py regenerates bench/nvme/REPORT.md.
append=()
[ -f "$root/bench/nvme/REPORT.md" ] && append=(--append "$root/bench/nvme/REPORT.md")
# dkq-nvme serve (ublk) against Linux's driver, as tests/vm/experiments/ublk_perf.py last measured it.
[ -f "$root/bench/nvme/UBLK.md" ] && append+=(--append "$root/bench/nvme/UBLK.md")
# Coroutine vs callback on the device queue, as bench/queue/coro.sh last measured it.
[ -f "$root/bench/queue/CORO.md" ] && append+=(--append "$root/bench/queue/CORO.md")
"$py" "$root/scripts/bench_report.py" "$run_json" "$dma_json" "$queue_json" \
  --out "$root/docs/benchmarks.md" --chart "$root/docs/bench-rings.png" \
  --notes "$root/bench/rings/NOTES.md" --summary "${append[@]}"
