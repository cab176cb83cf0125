#!/usr/bin/env python3
"""MegaRAID SAS demonstration (scripts/demo-vm.sh, section scsi): one boot,
dkq-scsi list, verify on both logical drives at once, and sync, against QEMU's
megasas-gen2 (SAS2108) with two scsi-hd disks. Not a ctest test; the full
checks (image bytes, SYNCHRONIZE CACHE counted from QEMU's trace, reply-queue
wraps, 32-bit mode, Linux interoperability, 1078) run in megasas_driver.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import Scenario, log, main_guard  # noqa: E402


def main():
    s = Scenario.from_args("megasas_demo")
    d0 = s.disk("demo-ld0", mib=16)
    d1 = s.disk("demo-ld1", mib=16)
    mr0 = s.megasas("mr0", slot=5, disks=[d0, d1])
    s.run("dkq_scsi", "list", label="dkq-scsi_list")
    s.run("dkq_scsi", "verify", mr0.bdf, "--target", "all", "--lba", 0, "--blocks", 8192, "--qd", 16,
          label="dkq-scsi_verify", timeout=120)
    s.run("dkq_scsi", "sync", mr0.bdf, "--target", "all", label="dkq-scsi_sync")
    r = s.boot()
    r.require_passed()
    n10 = r.trace.count("scsi_req_parsed", command=53)
    n16 = r.trace.count("scsi_req_parsed", command=145)
    log(f"QEMU saw {n10} SYNCHRONIZE CACHE(10) and {n16} SYNCHRONIZE CACHE(16) (rejected, retried as (10))")
    r.check(n10 == 4, f"expected 4 SYNCHRONIZE CACHE(10) at the device (verify + sync, 2 targets), saw {n10}")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
