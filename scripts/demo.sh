#!/usr/bin/env bash
# Installs what dkq needs and runs the main demonstration: the example drivers
# against QEMU's emulated controllers (when present) and a short benchmark
# summary of dkq's rings against established peers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [ -x scripts/demo-vm.sh ]; then
  bash scripts/demo-vm.sh
fi
if [ -f scripts/bench.sh ]; then
  bash scripts/bench.sh --short
else
  cmake --preset release
  cmake --build --preset release -j"$(nproc)"
fi
