#!/usr/bin/env python3
"""Experiment (not a ctest): Linux's nvme driver with io_uring and with AIO on
QEMU's NVMe controller, next to dkq-nvme, in one boot; the kernel-stall
question of docs/nvme.md ("Shadow doorbells and QEMU 7.2") and the quiet-host IOPS comparison of issue 6.

  python3 tests/vm/experiments/nvme_kernel_uring.py --work-dir /tmp/x \
      --prog dkq_nvme=build/debug/tests/vm/vm_dkq_nvme \
      --prog nvme_kbench=build/debug/tests/vm/vm_nvme_kbench \
      --prog nvme_handback=tests/vm/scenarios/nvme_handback.sh \
      --prog dkq_pci=build/debug/tests/vm/vm_dkq_pci [--rounds N] [--secs S]

Order per round: dkq-nvme polled, dkq-nvme interrupts, hand the controller
to Linux (shadow doorbells on: Linux configures them on QEMU), kernel
io_uring, kernel AIO, back to vfio-pci. Writes results.json (every run's JSON
report) and prints a table. The counts of QEMU's doorbell-buffer trace events
are printed too.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios"))
from dkqvm import log, main_guard  # noqa: E402
from nvme_driver import background, interop_scenario  # noqa: E402


def main():
    argv = sys.argv[1:]
    rounds, secs = 2, 5
    for flag in ("--rounds", "--secs"):
        if flag in argv:
            i = argv.index(flag)
            v = int(argv[i + 1])
            del argv[i:i + 2]
            if flag == "--rounds":
                rounds = v
            else:
                secs = v
    full = "--full-trace" in argv
    null = "--null" in argv
    argv = [a for a in argv if a not in ("--full-trace", "--null")]
    sys.argv = [sys.argv[0]] + argv
    s = interop_scenario("nvme_kernel_uring")
    # Tracing every NVMe event costs QEMU several microseconds per command in
    # the device's own thread (the log backend formats and writes each line):
    # with --full-trace the comparison runs with the ctest scenarios' trace set.
    if not full:
        s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_dbbuf_config"]
    s.timeout = max(s.timeout, 120 + rounds * (4 * secs + 40))
    ns1 = s.disk("nvme0n1", mib=16, fill=background(b"nvme0n1"))
    ns2 = s.disk("nvme0n2", mib=64, fill=background(b"nvme0n2"))
    nvme0 = s.nvme("nvme0", slot=4, namespaces=[], serial="dkq-uring")
    for i, (d, bs) in enumerate(((ns1, 512), (ns2, 4096)), start=1):
        nvme0.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                            "-device", f"nvme-ns,drive={d.name},bus=nvme0,nsid={i},"
                                       f"logical_block_size={bs},physical_block_size={bs}"]
    # --null: the perf namespace (nsid 3) is QEMU's null-co block driver
    # (reads return zeros, no host file I/O), so the emulated controller and
    # the two driver stacks are what is measured, not the host's page cache.
    ns_perf, kdev = 2, "/tmp/kns2"
    if null:
        nvme0.qemu_args += ["-drive", "driver=null-co,size=1073741824,read-zeroes=on,if=none,id=nullns",
                            "-device", "nvme-ns,drive=nullns,bus=nvme0,nsid=3,"
                                       "logical_block_size=4096,physical_block_size=4096"]
        ns_perf, kdev = 3, "/tmp/kns3"
    n0 = nvme0.bdf
    perf = ["perf", n0, "--ns", ns_perf, "--bs", 4096, "--qd", 32, "--time", secs, "--json"]
    kperf = ["perf", kdev, "--bs", 4096, "--qd", 32, "--time", secs, "--json"]
    labels = []
    for rnd in range(1, rounds + 1):
        for lab, args in ((f"dkq_polled_{rnd}", []), (f"dkq_irq_{rnd}", ["--irq"])):
            s.run("dkq_nvme", *perf, *args, label=lab, timeout=60 + secs)
            labels.append(lab)
        s.run("nvme_handback", n0, label=f"handback_{rnd}")
        for eng in ("uring", "aio"):
            lab = f"kernel_{eng}_{rnd}"
            s.run("nvme_kbench", *kperf, "--engine", eng, label=lab, timeout=90 + secs)
            labels.append(lab)
        s.run("dkq_pci", "bind", n0, label=f"rebind_{rnd}")
    r = s.boot()
    res = {}
    for label in labels:
        pr = r.program(label)
        m = re.search(r"^\{.*\}$", pr.output if pr else "", re.M)
        if m:
            res[label] = json.loads(m.group(0))
        else:
            log(f"{label}: no report; output: {(pr.output if pr else '')[-400:]}")
    meta = {"experiment": "tests/vm/experiments/nvme_kernel_uring.py",
            "backend": "null-co" if null else "file",
            "trace": "full (the ctest scenarios' set)" if full else "minimal (pci_nvme_err_*, pci_nvme_dbbuf_config)",
            "seconds_per_run": secs, "rounds": rounds,
            "qemu": "Debian 12 qemu-system-x86 (TCG, 1 vCPU, intel-iommu)"}
    with open(os.path.join(s.work, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": res}, f, indent=1)
    log(f"results: {os.path.join(s.work, 'results.json')} (copy it to bench/nvme/results/ and run "
        "scripts/nvme_perf_report.py)")
    for label in labels:
        x = res.get(label)
        if x:
            extra = f" stalled={x.get('stalled')} gap={x.get('longest_gap_ms')}ms" if "kernel" in label else ""
            log(f"{label:18s} {x['iops']:9.0f} IOPS p50 {x.get('lat_us', {}).get('p50', 0):8.1f} us{extra}")
    for ev in ("pci_nvme_dbbuf_config", "pci_nvme_shadow_doorbell_cq", "pci_nvme_shadow_doorbell_sq",
               "pci_nvme_eventidx_cq", "pci_nvme_eventidx_sq", "pci_nvme_mmio_doorbell_sq", "pci_nvme_mmio_doorbell_cq"):
        log(f"trace {ev}: {r.trace.count(ev)}")
    return 0


if __name__ == "__main__":
    main_guard(main)
