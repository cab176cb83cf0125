#!/usr/bin/env bash
# The side-by-side comparison of issue 17 in one command: builds dkq-nvme,
# dkq-nvme-kbench and dkq-pci for the guest (Release, build/demo-vm), builds
# libvfn's perf static from a libvfn checkout you point to
# (build_libvfn.sh), boots one guest and runs nvme_peers.py, then writes the
# report: bench/nvme/PEERS.md and docs/nvme-peers.svg (scripts/bench.sh
# appends PEERS.md to docs/benchmarks.md).
#
#   bash tests/vm/experiments/nvme_peers.sh <libvfn-source-dir> [nvme_peers.py options]
#   e.g. git clone https://github.com/SamsungDS/libvfn /tmp/libvfn
#        bash tests/vm/experiments/nvme_peers.sh /tmp/libvfn --rounds 15 --secs 5
#
# Run it on a quiet host: the table records host steal and other load per
# round, but cannot undo them. The results file is copied to
# bench/nvme/results/peers-<date>[-tag].json (DKQ_PEERS_TAG=tag).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash $0 <libvfn-source-dir> [nvme_peers.py options]" >&2; exit 2; }
src=$1
shift
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
BUILD=${DKQ_DEMO_BUILD:-build/demo-vm}
work=${DKQ_PEERS_WORK:-/tmp/dkq-nvme-peers}
mkdir -p "$work"
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDKQ_VM_TESTS=ON >/dev/null
cmake --build "$BUILD" --target vm_dkq_nvme vm_nvme_kbench vm_dkq_pci -j"$(nproc)"
bash tests/vm/experiments/build_libvfn.sh "$src" "$work/libvfn"
python3 tests/vm/experiments/nvme_peers.py --work-dir "$work/vm" \
  --prog dkq_nvme="$BUILD/tests/vm/vm_dkq_nvme" --prog nvme_kbench="$BUILD/tests/vm/vm_nvme_kbench" \
  --prog nvme_handback=tests/vm/scenarios/nvme_handback.sh --prog dkq_pci="$BUILD/tests/vm/vm_dkq_pci" \
  --libvfn "$work/libvfn/libvfn-perf" "$@"
out=bench/nvme/results/peers-$(date +%Y%m%d)${DKQ_PEERS_TAG:+-$DKQ_PEERS_TAG}.json
cp "$work/vm/results.json" "$out"
python3 tests/vm/experiments/nvme_peers.py --report "$out" \
  --markdown bench/nvme/PEERS.md --svg docs/nvme-peers.svg > /dev/null
echo "results: $out; report: bench/nvme/PEERS.md, docs/nvme-peers.svg"
