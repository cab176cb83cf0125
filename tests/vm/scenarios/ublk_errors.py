#!/usr/bin/env python3
"""VM scenario `ublk_errors` (issue 14, scenario 4): bad use of `serve`, one
boot (Linux 6.12). Each case must print one clear message, exit non-zero and
leave nothing registered (no /dev/ublkc*, no /dev/ublkb*):
  - a kernel without ublk (ublk_drv unloaded), for both programs;
  - a namespace / logical drive that does not exist;
  - a controller already in use by a running server (its disk stays the only one);
  - bad arguments (--depth 0, --recover of a device that does not exist,
    --queues beyond the CPUs: ublk_drv grants one queue per CPU).
Host: the script passed, and no command of the refused cases reached the
devices as I/O (no NVMe I/O-queue Flush or write, no SCSI READ/WRITE).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import log, main_guard  # noqa: E402
from ublk_checks import server_stats, ublk_scenario  # noqa: E402


def main():
    s, nvme, ns, mfi, ld = ublk_scenario("ublk_errors", mib=16)
    s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_flush_ns", "pci_nvme_write", "megasas_*", "scsi_req_parsed"]
    s.run("ublk_errors", nvme.bdf, mfi.bdf, label="errors", timeout=300)
    r = s.boot()
    r.require_passed()
    p = r.program("errors")
    st = server_stats(p.output) if p else []
    # The one server that ran (the "busy" case) served nothing but what the
    # kernel read to probe the disk; its final flush is the only Flush.
    if r.check(len(st) == 1, "the busy-case server gave no stop report"):
        r.check(r.trace.count("pci_nvme_flush_ns") == st[0]["flushes"] + 1,
                f"NVMe Flush at the device {r.trace.count('pci_nvme_flush_ns')}, server FLUSH {st[0]['flushes']} + 1")
        r.check(r.trace.count("pci_nvme_write") == 0, "a refused serve wrote to the NVMe namespace")
    writes = sum(r.trace.count("scsi_req_parsed", command=c) for c in (0x2a, 0x8a, 0x28, 0x88))
    r.check(writes == 0, f"a refused serve moved data on the MegaRAID drive ({writes} READ/WRITE CDBs)")
    log(f"refusals: {p.output.count('refused with status') if p else 0} cases, nothing registered after any")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
