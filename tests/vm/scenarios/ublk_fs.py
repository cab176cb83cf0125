#!/usr/bin/env python3
"""VM scenario `ublk_fs` (issue 14, scenario 1): a filesystem on dkq-driven
disks through ublk, with unmodified Debian programs, one boot (Linux 6.12).

Devices: QEMU NVMe (namespace 1, 64 MiB, 4 KiB blocks) and megasas-gen2
(logical drive 0, 64 MiB, 512-byte blocks).
Guest, per disk (ublk_fs.sh): `serve --json`; mkfs.ext4 (discards the whole
disk); mount; a tree of files with known contents; sync; umount; fsck.ext4 -fn
clean; remount and compare every file; SIGTERM (device flush, device removed).
Host: e2fsck -fn on each image and every file read out of it with debugfs
equals what was written; QEMU saw exactly one device flush per ublk FLUSH the
server received plus its final one (NVMe Flush / SYNCHRONIZE CACHE (10)), and
the discards as Dataset Management / UNMAP.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import log, main_guard  # noqa: E402
from ublk_checks import check_image_tree, server_stats, ublk_scenario, TREE  # noqa: E402


def main():
    s, nvme, ns, mfi, ld = ublk_scenario("ublk_fs")
    s.run("ublk_fs", "nvme", "/progs/dkq_nvme", "serve", nvme.bdf, "--ns", 1, "--json", label="fs_nvme", timeout=300)
    s.run("ublk_fs", "mfi", "/progs/dkq_scsi", "serve", mfi.bdf, "--target", 0, "--json", label="fs_mfi", timeout=300)
    r = s.boot()
    r.require_passed()
    for label, tag, img, what in (("fs_nvme", "nvme", ns.path, "NVMe namespace 1"),
                                  ("fs_mfi", "mfi", ld.path, "MegaRAID logical drive 0")):
        n = check_image_tree(r, img, tag, what)
        if n == len(TREE):
            log(f"{what}: e2fsck clean on the host image, all {n} files byte-exact")
    # Device-side counts against what the servers received.
    pn = r.program("fs_nvme")
    st = server_stats(pn.output) if pn else []
    if r.check(len(st) == 1, "fs_nvme: no stop report from dkq-nvme serve"):
        flushes = r.trace.count("pci_nvme_flush_ns")
        r.check(flushes == st[0]["flushes"] + 1,
                f"NVMe: QEMU saw {flushes} Flush commands, the server received {st[0]['flushes']} FLUSH + 1 final")
        r.check(st[0]["discards"] >= 1 and r.trace.count("pci_nvme_dsm") >= st[0]["discards"],
                f"NVMe: {st[0]['discards']} discards served, QEMU saw {r.trace.count('pci_nvme_dsm')} Dataset Management")
        log(f"NVMe: {flushes} Flush at the device = {st[0]['flushes']} ublk FLUSH + 1 final; "
            f"{st[0]['discards']} discards -> {r.trace.count('pci_nvme_dsm')} DSM; {st[0]['write_zeroes']} write-zeroes; "
            f"{st[0]['requests']} requests")
    pm = r.program("fs_mfi")
    st = server_stats(pm.output) if pm else []
    if r.check(len(st) == 1, "fs_mfi: no stop report from dkq-scsi serve"):
        sync10 = r.trace.count("scsi_req_parsed", command=0x35)
        unmap = r.trace.count("scsi_req_parsed", command=0x42)
        r.check(sync10 == st[0]["flushes"] + 1,
                f"MegaRAID: QEMU parsed {sync10} SYNCHRONIZE CACHE (10), the server received {st[0]['flushes']} FLUSH + 1 final")
        r.check(unmap >= st[0]["discards"] >= 1, f"MegaRAID: {st[0]['discards']} discards served, QEMU parsed {unmap} UNMAP")
        log(f"MegaRAID: {sync10} SYNCHRONIZE CACHE (10) at the device = {st[0]['flushes']} ublk FLUSH + 1 final; "
            f"{st[0]['discards']} discards -> {unmap} UNMAP; {st[0]['requests']} requests")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
