#!/usr/bin/env python3
"""VM scenario `platform`: the VFIO backend against QEMU's controllers, one boot.

The guest has two NUMA nodes. Devices:
  nvme0  slot 4, bound to vfio-pci, one 16 MiB namespace
  mr0    slot 5, megasas-gen2 (MSI-X), bound, one 8 MiB disk
  nvme1  slot 6, left unbound: target for error paths and dkq-pci bind/unbind
  mr1    slot 8, megasas-gen2 msix=off: the backend must fall back to MSI
  mr2    slot 9, megasas-gen2 msix=off,msi=off: falls back to INTx (+ re-arm)
Programs, in order:
  dkq_pci list          ids, classes, drivers and IOMMU groups as sysfs says
  nvme_probe            BARs, CAP/VS, DMA, admin queue, Identify via MSI-X,
                        DMA at a fixed IOVA (dma_map_at) and IOVA reservations
  megasas_probe x3      I/O BAR 0 refused, firmware state via BAR 1, MFI INIT
                        and CTRL_GET_INFO completing via MSI-X / MSI / INTx
  numa_probe[_libnuma]  DMA pages land on the requested node (both nodes)
  vfio_errors           not-bound, no-device, group-not-viable and
                        RLIMIT_MEMLOCK messages (the q35 SMBus function is
                        bound to vfio-pci while Linux's ahci owns the SATA
                        function in the same IOMMU group)
  dkq_pci bind/unbind   nvme1 to vfio-pci and back
Host side: every program exits 0; QEMU's trace holds exactly the doorbell
writes, frame posts and MSI-X messages the programs declared; no protocol
error event; the disk images are byte-for-byte unchanged (nothing here writes).
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import Scenario, main_guard  # noqa: E402


def pattern(tag):
    # Every 512-byte sector carries its own number and the disk's tag, so a
    # misplaced write would be visible as well as a changed byte.
    def fill(offset, length):
        out = bytearray()
        for sector in range(offset // 512, (offset + length) // 512):
            out += (b"%s sector %08d " % (tag, sector)).ljust(512, b".")
        return bytes(out)
    return fill


def main():
    s = Scenario.from_args("platform")
    s.numa_nodes = 2
    # A group that is not viable: q35's ICH9 functions 1f.0/1f.2/1f.3 share one
    # IOMMU group; ahci takes the SATA function, vfio-pci the SMBus function.
    s.extra_modules = ["scsi_common", "scsi_mod", "libata", "libahci", "ahci"]
    smbus, sata = "0000:00:1f.3", "0000:00:1f.2"
    s.extra_binds = [smbus]
    ns0 = s.disk("nvme0n1", mib=16, fill=pattern(b"nvme0n1"))
    nvme0 = s.nvme("nvme0", slot=4, namespaces=[ns0], serial="dkq-nvme0")
    mr0d0 = s.disk("mr0d0", mib=8, fill=pattern(b"mr0d0"))
    mr0 = s.megasas("mr0", slot=5, disks=[mr0d0])
    nvme1 = s.nvme("nvme1", slot=6, namespaces=[s.disk("nvme1n1", mib=4)], bind=False)
    mr1 = s.megasas("mr1", slot=8, disks=[s.disk("mr1d0", mib=4)], props="msix=off")
    mr2 = s.megasas("mr2", slot=9, disks=[s.disk("mr2d0", mib=4)], props="msix=off,msi=off")

    s.run("dkq_pci", "list", label="dkq_pci_list")
    s.run("nvme_probe", nvme0.bdf, "dkq-nvme0", ns0.size // 512)
    s.run("megasas_probe", mr0.bdf, 1, "msix")
    s.run("megasas_probe", mr1.bdf, 1, "msi", label="megasas_probe_msi")
    s.run("megasas_probe", mr2.bdf, 1, "intx", label="megasas_probe_intx")
    s.run("numa_probe", nvme0.bdf)
    if "numa_probe_libnuma" in s.programs:
        s.run("numa_probe_libnuma", nvme0.bdf)
    s.run("vfio_errors", nvme1.bdf, nvme0.bdf, "0000:00:1e.0", smbus, sata)
    s.run("dkq_pci", "bind", nvme1.bdf, label="dkq_pci_bind")
    s.run("dkq_pci", "list", label="dkq_pci_list_bound")
    s.run("dkq_pci", "unbind", nvme1.bdf, label="dkq_pci_unbind")

    r = s.boot()
    r.require_passed()

    # dkq-pci saw what QEMU was told to build.
    def row(label, bdf):
        pr = r.program(label)
        for line in (pr.lines() if pr else []):
            if line.startswith(bdf):
                return line.split()
        return None
    for label in ("dkq_pci_list", "dkq_pci_list_bound"):
        n0, m0, n1 = row(label, nvme0.bdf), row(label, mr0.bdf), row(label, nvme1.bdf)
        if r.check(n0 and m0 and n1, f"{label}: a controller is missing from the list"):
            r.check(n0[1] == "1b36:0010" and "vfio-pci" in n0 and re.fullmatch(r"\d+", n0[-2]),
                    f"{label}: nvme0 row {n0}")
            r.check(m0[1] == "1000:0079" and "RAID" in m0 and "vfio-pci" in m0, f"{label}: mr0 row {m0}")
            r.check(n0[-2] != m0[-2] != n1[-2], f"{label}: controllers share an IOMMU group")
            want = "vfio-pci" if label == "dkq_pci_list_bound" else "-"
            r.check(n1[1] == "1b36:0010" and want in n1, f"{label}: nvme1 row {n1}, want driver {want}")
    bound = r.program("dkq_pci_bind")
    r.check(bound is not None and "bound to vfio-pci (was unbound)" in bound.output, "dkq-pci bind output")

    # Nothing in this scenario writes to a disk; the images must be untouched.
    for d in (ns0, mr0d0):
        want = d.fill(0, d.size)
        got = r.disk(d.name)
        if not r.check(got == want, f"{d.name}: image changed"):
            first = next(i for i in range(len(want)) if got[i] != want[i])
            r.fail(f"{d.name}: first differing byte at offset {first}")

    # The device saw exactly the admin doorbells of nvme_probe (declared by the
    # program, compared in finish()); also no I/O queue doorbell at all.
    r.check(r.trace.count("pci_nvme_mmio_doorbell_sq", sqid="1") == 0, "an I/O SQ doorbell was written")
    return r.finish()


main_guard(main)
