#!/usr/bin/env python3
"""VM scenario `ublk_errors` (issue 14, scenario 4): bad use of `serve`, one
boot (Linux 6.12). Each case must print one clear message, exit non-zero and
leave nothing registered (no /dev/ublkc*, no /dev/ublkb*):
  - a kernel without ublk (ublk_drv unloaded), for both programs;
  - a namespace / logical drive that does not exist;
  - a controller already in use by a running server (its disk stays the only one);
  - and, as the good case beside them: --ns all / --target all serve every
    namespace / logical drive at once (two disks each, their own sizes and
    block sizes), and each is readable;
  - bad arguments (--depth 0, --recover of a device that does not exist,
    --queues beyond the CPUs: ublk_drv grants one queue per CPU).
Host: the script passed; nothing was written to any disk, and the devices
saw exactly one flush per disk served (its final one) and nothing else.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import log, main_guard  # noqa: E402
from ublk_checks import server_stats, ublk_scenario  # noqa: E402


def main():
    s, nvme, ns, mfi, ld = ublk_scenario("ublk_errors", mib=16, second=True)
    s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_flush_ns", "pci_nvme_write", "megasas_*", "scsi_req_parsed"]
    s.run("ublk_errors", nvme.bdf, mfi.bdf, label="errors", timeout=300)
    r = s.boot()
    r.require_passed()
    p = r.program("errors")
    st = server_stats(p.output) if p else []
    # The servers that ran (--ns all, --target all, the busy case) served the
    # kernel's probing reads; each disk's final flush is its only flush. The
    # refused ones sent nothing at all.
    nvme_st = [x for x in st if "ublkb" in x.get("device", "")]
    if r.check(len(nvme_st) == 5, f"stop reports: {len(nvme_st)}, want 2 (--ns all) + 2 (--target all) + 1 (busy)"):
        flushes = sum(x["flushes"] + 1 for x in nvme_st)
        dev = r.trace.count("pci_nvme_flush_ns") + r.trace.count("scsi_req_parsed", command=0x35)
        r.check(dev == flushes, f"device flushes {dev} (NVMe + SCSI), servers' FLUSH + final {flushes}")
        r.check(r.trace.count("pci_nvme_write") == 0, "a serve wrote to an NVMe namespace")
    writes = sum(r.trace.count("scsi_req_parsed", command=c) for c in (0x2a, 0x8a))
    r.check(writes == 0, f"a serve wrote to a MegaRAID drive ({writes} WRITE CDBs)")
    log(f"refusals: {p.output.count('refused with status') if p else 0} cases, nothing registered after any")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
