#!/bin/sh
# Build one libFuzzer target with clang (libFuzzer + ASan + UBSan) and run it
# for a bounded time. Any crash, sanitizer report, leak or invariant
# violation (__builtin_trap) makes libFuzzer exit nonzero and fails the test.
#   run_fuzz.sh <clang++> <source dir> <work dir> <seconds> [target [seed corpus dir]]
# target defaults to fuzz_sg (tests/fuzz/<target>.cpp).
set -eu
CXX=$1 SRC=$2 WORK=$3 SECS=$4 TARGET=${5:-fuzz_sg} SEEDS=${6:-}
mkdir -p "$WORK/corpus"
"$CXX" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I"$SRC/include" -I"$SRC/tests" -I"$SRC" \
  "$SRC/tests/fuzz/$TARGET.cpp" -o "$WORK/$TARGET"
# A fixed seed keeps a CI failure reproducible; the corpus is kept between runs
# in the build tree so coverage grows on a developer machine, and the seed
# corpus committed in the repository (if any) is read as well.
# Crash inputs land in the work dir (not the caller's cwd); rerun one with
#   $WORK/<target> $WORK/crash-<sha1>
DKQ_FUZZ_STATS=1 exec "$WORK/$TARGET" -seed=1 -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$WORK/" -print_final_stats=1 "$WORK/corpus" ${SEEDS:+"$SEEDS"}
