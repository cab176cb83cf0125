#!/usr/bin/env bash
# The example drivers against QEMU's emulated controllers, in a small Linux
# guest (the VM-test harness, tests/vm/dkqvm.py; docs/vm-tests.md). Called by
# scripts/demo.sh when executable. One section per example driver; each
# section builds its static guest programs and boots the guest once.
#
#   bash scripts/demo-vm.sh            # every section
#   bash scripts/demo-vm.sh nvme       # only the NVMe driver
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${DKQ_DEMO_BUILD:-build/demo-vm}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDKQ_VM_TESTS=ON >/dev/null

# ---- NVMe: dkq-nvme identify, verify (512 B and 4 KiB namespaces), perf --------
section_nvme() {
  echo "=== NVMe example driver (examples/nvme, docs/nvme.md) against QEMU's NVMe controller ==="
  cmake --build "$BUILD" --target vm_dkq_nvme -j"$(nproc)"
  python3 tests/vm/scenarios/nvme_demo.py --work-dir "$BUILD/demo/nvme" --timeout 240 \
    --prog dkq_nvme="$BUILD/tests/vm/vm_dkq_nvme"
}

# ---- MegaRAID SAS: dkq-scsi list, verify (both logical drives at once), sync ----
section_scsi() {
  echo "=== MegaRAID SAS example driver (examples/scsi, docs/scsi.md) against QEMU's megasas-gen2 ==="
  cmake --build "$BUILD" --target vm_dkq_scsi -j"$(nproc)"
  python3 tests/vm/scenarios/megasas_demo.py --work-dir "$BUILD/demo/scsi" --timeout 240 \
    --prog dkq_scsi="$BUILD/tests/vm/vm_dkq_scsi"
}

# ---- ublk: dkq-nvme serve, then mkfs.ext4 + mount + fio on /dev/ublkb0 -------
section_ublk() {
  echo "=== dkq-nvme serve: the namespace as a Linux block device (ublk, docs/ublk.md): mkfs + fio ==="
  cmake --build "$BUILD" --target vm_dkq_nvme -j"$(nproc)"
  python3 tests/vm/scenarios/ublk_demo.py --work-dir "$BUILD/demo/ublk" --timeout 300 \
    --prog dkq_nvme="$BUILD/tests/vm/vm_dkq_nvme"
}

# ---- further sections (e.g. the MegaRAID SAS driver) go here as section_<name> ----

sections=("$@")
if [ ${#sections[@]} -eq 0 ]; then
  sections=()
  for f in $(declare -F | awk '{print $3}' | grep '^section_'); do sections+=("${f#section_}"); done
fi
for s in "${sections[@]}"; do
  "section_$s"
done
