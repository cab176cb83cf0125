#!/bin/sh
# Build the scatter-gather fuzz target with clang (libFuzzer + ASan + UBSan)
# and run it for a bounded time. Any crash, sanitizer report or checker
# violation (__builtin_trap) makes libFuzzer exit nonzero and fails the test.
#   run_fuzz.sh <clang++> <source dir> <work dir> <seconds>
set -eu
CXX=$1 SRC=$2 WORK=$3 SECS=$4
mkdir -p "$WORK/corpus"
"$CXX" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I"$SRC/include" -I"$SRC/tests" \
  "$SRC/tests/fuzz/fuzz_sg.cpp" -o "$WORK/fuzz_sg"
# A fixed seed keeps a CI failure reproducible; the corpus is kept between runs
# in the build tree so coverage grows on a developer machine.
# Crash inputs land in the work dir (not the caller's cwd); rerun one with
#   $WORK/fuzz_sg $WORK/crash-<sha1>
exec "$WORK/fuzz_sg" -seed=1 -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$WORK/" -print_final_stats=1 "$WORK/corpus"
