#!/usr/bin/env bash
# Installs what dkq needs and runs every test: unit, concurrency, build checks
# (headers alone, dext-style compile, installed package), the aarch64 cross
# build under qemu-aarch64, fuzzing for a bounded time, and the QEMU VM tests
# against emulated NVMe and MegaRAID controllers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset debug
cmake --build --preset debug -j"$(nproc)"
ctest --preset debug -j1 "$@"
