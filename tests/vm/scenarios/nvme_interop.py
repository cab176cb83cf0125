#!/usr/bin/env python3
"""VM scenario `nvme_interop`: dkq-nvme and Linux's own nvme driver on the same controller, one boot.

dkq-nvme writes a pattern to both namespaces (512-byte and 4096-byte blocks)
and measures 4 KiB random reads at QD32 (interrupts and polled); then the
controller is handed to Linux's nvme driver (nvme_handback.sh), which reads
both patterns back, and the kernel baseline (dkq-nvme-kbench: O_DIRECT +
native AIO, 4 KiB QD32) runs on the same namespace. Host side: the images
hold the patterns byte for byte; the IOPS ratio and whether the kernel run
stalled are written to perf-summary.json (docs/nvme.md records them).
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dkqvm import Scenario, log, main_guard  # noqa: E402
from nvme_driver import NvmeScenario, background, pattern  # noqa: E402


def main():
    base = Scenario.from_args("nvme_interop")
    s = NvmeScenario(base.name, base.work, base.programs, timeout=base.timeout)
    s.memory_mib = 768
    ns1 = s.disk("nvme0n1", mib=16, fill=background(b"nvme0n1"))
    ns2 = s.disk("nvme0n2", mib=16, fill=background(b"nvme0n2"))
    nvme0 = s.nvme("nvme0", slot=4, namespaces=[], serial="dkq-interop")
    for i, (d, bs) in enumerate(((ns1, 512), (ns2, 4096)), start=1):
        nvme0.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                            "-device", f"nvme-ns,drive={d.name},bus=nvme0,nsid={i},"
                                       f"logical_block_size={bs},physical_block_size={bs}"]
    n0 = nvme0.bdf
    V1 = dict(lba=8, blocks=4096, seed=21, bs=512)
    V2 = dict(lba=3, blocks=512, seed=22, bs=4096)
    s.run("dkq_nvme", "verify", n0, "--ns", 1, "--lba", V1["lba"], "--blocks", V1["blocks"], "--seed", V1["seed"],
          label="dkq_write_ns1")
    s.run("dkq_nvme", "verify", n0, "--ns", 2, "--lba", V2["lba"], "--blocks", V2["blocks"], "--seed", V2["seed"],
          label="dkq_write_ns2")
    perf = ["perf", n0, "--ns", 2, "--bs", 4096, "--qd", 32, "--time", 4, "--json"]
    s.run("dkq_nvme", *perf, "--irq", label="dkq_perf_irq", timeout=90)
    s.run("dkq_nvme", *perf, label="dkq_perf_polled", timeout=90)
    s.run("nvme_handback", n0, label="handback")
    s.run("nvme_kbench", "verify", "/dev/nvme0n1", "--offset", V1["lba"] * 512, "--bytes", V1["blocks"] * 512,
          "--seed", V1["seed"], label="kernel_read_ns1")
    s.run("nvme_kbench", "verify", "/dev/nvme0n2", "--offset", V2["lba"] * 4096, "--bytes", V2["blocks"] * 4096,
          "--seed", V2["seed"], label="kernel_read_ns2")
    s.run("nvme_kbench", "perf", "/dev/nvme0n2", "--bs", 4096, "--qd", 32, "--time", 4, "--json",
          label="kernel_perf", timeout=120)
    r = s.boot()
    r.require_passed()

    res = {}
    for label in ("dkq_perf_irq", "dkq_perf_polled", "kernel_perf"):
        pr = r.program(label)
        m = re.search(r"^\{.*\}$", pr.output if pr else "", re.M)
        if r.check(m is not None, f"{label}: no JSON report"):
            res[label] = json.loads(m.group(0))
    if len(res) == 3:
        k = res["kernel_perf"]
        best = max(res["dkq_perf_irq"]["iops"], res["dkq_perf_polled"]["iops"])
        ratio = best / k["iops"] if k["iops"] else float("inf")
        res["ratio_best_dkq_vs_kernel"] = ratio
        log(f"4 KiB random reads QD32: dkq-nvme irq {res['dkq_perf_irq']['iops']:.0f} IOPS, polled "
            f"{res['dkq_perf_polled']['iops']:.0f} IOPS; kernel nvme {k['iops']:.0f} IOPS "
            f"(stalled: {k['stalled']}, longest gap {k['longest_gap_ms']} ms); ratio {ratio:.2f}x")
        with open(os.path.join(s.work, "perf-summary.json"), "w") as f:
            json.dump(res, f, indent=1)

    for d, v in ((ns1, V1), (ns2, V2)):
        got = r.disk(d.name)
        want = bytearray(d.fill(0, d.size))
        off, ln = v["lba"] * v["bs"], v["blocks"] * v["bs"]
        want[off:off + ln] = pattern(v["seed"], off, ln)
        r.check(got == bytes(want), f"{d.name}: image differs from the expected bytes")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
