#!/usr/bin/env bash
# Cross-compile the core tests for aarch64 and run them under qemu-aarch64.
# usage: run.sh <dkq source dir> <work dir>
set -euo pipefail
src=$1
work=$2
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install g++-aarch64-linux-gnu qemu-user"; exit 1; }
done
cmake -S "$src/tests/cross" -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc >/dev/null
cmake --build "$work" -j2
# Check that what we run really is arm64 code.
aarch64-linux-gnu-readelf -h "$work/ring_test" | grep -q 'AArch64' || { echo "ring_test is not an aarch64 binary"; exit 1; }
export DKQ_STRESS_ITEMS=${DKQ_STRESS_ITEMS:-20000}
for t in base_test ring_test ring_stress_test queue_test; do
  echo "== qemu-aarch64 $t"
  # Death tests fork; under qemu-user they are slow and noisy, so they are
  # filtered out here (they run natively in the main suite).
  qemu-aarch64 "$work/$t" --gtest_brief=1 --gtest_filter='-*DeathTest*'
done
