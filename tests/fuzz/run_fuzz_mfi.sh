#!/bin/sh
# Build the MegaRAID device-side fuzz target (fuzz_mfi_device.cpp) with clang
# (libFuzzer + ASan + UBSan) and run it for a bounded time, starting from the
# committed seed corpus. Any crash, sanitizer report or invariant violation
# (__builtin_trap) makes libFuzzer exit nonzero and fails the test.
#   run_fuzz_mfi.sh <clang++> <source dir> <work dir> <seconds>
set -eu
CXX=$1 SRC=$2 WORK=$3 SECS=$4
mkdir -p "$WORK/corpus"
"$CXX" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I"$SRC/include" -I"$SRC/tests" -I"$SRC" \
  "$SRC/tests/fuzz/fuzz_mfi_device.cpp" -o "$WORK/fuzz_mfi_device"
# New inputs go to the work corpus (first directory); the committed seeds are
# read, never written. A fixed seed keeps a CI failure reproducible; rerun a
# crash with  $WORK/fuzz_mfi_device $WORK/crash-<sha1>
DKQ_FUZZ_STATS=1 exec "$WORK/fuzz_mfi_device" -seed=1 -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
  -max_len=4096 -artifact_prefix="$WORK/" -print_final_stats=1 "$WORK/corpus" "$SRC/tests/fuzz/corpus/mfi_device"
