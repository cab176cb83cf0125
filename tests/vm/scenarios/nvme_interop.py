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
from dkqvm import log, main_guard  # noqa: E402
from nvme_driver import background, interop_scenario, pattern  # noqa: E402


def main():
    s = interop_scenario("nvme_interop")
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
    # The host's cores are shared, so throughput drifts during a run: the two
    # drivers alternate (dkq, kernel, dkq, kernel), the controller moving
    # between vfio-pci and nvme in between, and each pair is compared.
    perf = ["perf", n0, "--ns", 2, "--bs", 4096, "--qd", 32, "--time", 3, "--json"]
    kperf = ["perf", "/tmp/kns2", "--bs", 4096, "--qd", 32, "--time", 3, "--json"]
    s.run("dkq_nvme", *perf, label="dkq_perf_polled", timeout=90)
    s.run("dkq_nvme", *perf, "--hybrid", label="dkq_perf_hybrid", timeout=90)
    for rnd in (1, 2):
        s.run("dkq_nvme", *perf, "--irq", label=f"dkq_perf_irq_{rnd}", timeout=90)
        s.run("nvme_handback", n0, label=f"handback_{rnd}")
        if rnd == 1:
            s.run("nvme_kbench", "verify", "/tmp/kns1", "--offset", V1["lba"] * 512, "--bytes", V1["blocks"] * 512,
                  "--seed", V1["seed"], label="kernel_read_ns1")
            s.run("nvme_kbench", "verify", "/tmp/kns2", "--offset", V2["lba"] * 4096, "--bytes", V2["blocks"] * 4096,
                  "--seed", V2["seed"], label="kernel_read_ns2")
        s.run("nvme_kbench", *kperf, label=f"kernel_perf_{rnd}", timeout=120)
        if rnd == 1:
            s.run("dkq_pci", "bind", n0, label="rebind_vfio")
    r = s.boot()
    r.require_passed()

    res = {}
    labels = ["dkq_perf_polled", "dkq_perf_hybrid"] + [f"{k}_{i}" for i in (1, 2) for k in ("dkq_perf_irq", "kernel_perf")]
    for label in labels:
        pr = r.program(label)
        m = re.search(r"^\{.*\}$", pr.output if pr else "", re.M)
        if r.check(m is not None, f"{label}: no JSON report"):
            res[label] = json.loads(m.group(0))
    if len(res) == len(labels):
        ratios = [res[f"dkq_perf_irq_{i}"]["iops"] / res[f"kernel_perf_{i}"]["iops"] for i in (1, 2)]
        res["ratios_irq_vs_kernel"] = ratios
        for i in (1, 2):
            k = res[f"kernel_perf_{i}"]
            log(f"round {i}: 4 KiB random reads QD32: dkq-nvme (interrupts) {res[f'dkq_perf_irq_{i}']['iops']:.0f} "
                f"IOPS, kernel nvme {k['iops']:.0f} IOPS (stalled: {k['stalled']}, longest gap "
                f"{k['longest_gap_ms']} ms): {ratios[i - 1]:.2f}x")
        log(f"dkq-nvme polled: {res['dkq_perf_polled']['iops']:.0f} IOPS, hybrid "
            f"{res['dkq_perf_hybrid']['iops']:.0f} IOPS")
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
