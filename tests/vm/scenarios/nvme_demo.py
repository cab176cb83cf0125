#!/usr/bin/env python3
"""NVMe demonstration (scripts/demo-vm.sh): one boot, dkq-nvme identify, verify and a short perf
against QEMU's NVMe controller (two namespaces: 512-byte and 4 KiB blocks, MDTS 16 KiB so a
verify spans many commands). Not a ctest test; the same checks run in nvme_driver.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import Scenario, main_guard  # noqa: E402


def main():
    s = Scenario.from_args("nvme_demo")
    ns1 = s.disk("demo-n1", mib=16)
    ns2 = s.disk("demo-n2", mib=16)
    nvme0 = s.nvme("nvme0", slot=4, namespaces=[], serial="dkq-demo", props="mdts=2")
    for i, (d, bs) in enumerate(((ns1, 512), (ns2, 4096)), start=1):
        nvme0.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                            "-device", f"nvme-ns,drive={d.name},bus=nvme0,nsid={i},"
                                       f"logical_block_size={bs},physical_block_size={bs}"]
    n0 = nvme0.bdf
    s.run("dkq_nvme", "list", label="dkq-nvme_list")
    s.run("dkq_nvme", "identify", n0, label="dkq-nvme_identify")
    s.run("dkq_nvme", "verify", n0, "--ns", 1, "--lba", 0, "--blocks", 4096, label="dkq-nvme_verify_ns1")
    s.run("dkq_nvme", "verify", n0, "--ns", 2, "--lba", 0, "--blocks", 256, label="dkq-nvme_verify_ns2")
    s.run("dkq_nvme", "perf", n0, "--ns", 2, "--bs", 4096, "--qd", 32, "--time", 3, "--irq",
          label="dkq-nvme_perf", timeout=60)
    r = s.boot()
    r.require_passed()
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
