#!/usr/bin/env python3
"""Experiment (not a ctest): fio 4 KiB random reads at QD 1 and 32 through
/dev/ublkb0 served by `dkq-nvme serve`, against fio on the same QEMU NVMe
controller bound to Linux's own nvme driver, in one boot of the Linux 6.12
guest, in interleaved rounds (the order alternates every round), plus
`dkq-nvme perf --irq` (the same device path without ublk) for the cost
breakdown. Prints the table of docs/benchmarks.md ("ublk: dkq-nvme serve
against Linux's nvme driver") and writes results.json.

  python3 tests/vm/experiments/ublk_perf.py --work-dir /tmp/ublk-perf \\
      --prog dkq_nvme=build/release/tests/vm/vm_dkq_nvme [--rounds 5] [--secs 5] [--modes irq,hybrid,poll]

The namespace is QEMU's null-co driver (reads return zeros without touching a
host file), so the emulated controller and the two driver stacks are what is
measured. A round where Linux's driver timed out (`I/O ... timeout` in the
kernel log) is counted as stalled and shown, never dropped silently.
"""
import json
import os
import re
import statistics
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
from dkqvm import ensure_kernel, log, main_guard  # noqa: E402
from ublk_checks import ublk_scenario  # noqa: E402


def parse(output):
    runs = {}
    for m in re.finditer(r"@@PERF-BEGIN (\S+) (\d+)\n(.*?)@@PERF-END \1 \2 rc=(\d+) stalls=(\d+)", output, re.S):
        name, rnd, text, rc, stalls = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
        start = text.find("{")
        try:
            data = json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            data = {}
        iops = p50 = p99 = None
        if name.startswith("dkq_direct"):
            iops = data.get("iops")
        elif data.get("jobs"):
            rd = data["jobs"][0]["read"]
            iops = rd.get("iops")
            # Total latency (submission + completion): at QD 1 the server may
            # finish a request before fio's submit call returns, so clat alone
            # would hide the round trip in slat.
            pct = rd.get("lat_ns", {}).get("percentile", {}) or rd.get("clat_ns", {}).get("percentile", {})
            p50 = pct.get("50.000000")
            p99 = pct.get("99.000000")
        runs.setdefault(name, {})[rnd] = dict(rc=rc, stalls=stalls, iops=iops, p50=p50, p99=p99)
    return runs


def main():
    argv = sys.argv[1:]
    rounds, secs, modes = 5, 5, "irq,hybrid"
    for flag in ("--rounds", "--secs", "--modes"):
        if flag in argv:
            i = argv.index(flag)
            v = argv[i + 1]
            del argv[i:i + 2]
            if flag == "--rounds":
                rounds = int(v)
            elif flag == "--secs":
                secs = int(v)
            else:
                modes = v
    sys.argv = [sys.argv[0]] + argv
    s, nvme, _, _, _ = ublk_scenario("ublk_perf", megasas=False)
    # The measured namespace: null-co instead of a file (replaces namespace 1's drive).
    nvme.qemu_args = [a for a in nvme.qemu_args]
    i = nvme.qemu_args.index("-drive")
    nvme.qemu_args[i + 1] = "driver=null-co,size=67108864,read-zeroes=on,if=none,id=ublk_perf_ns1"
    s.disks.clear()
    s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_dbbuf_config"]
    mods = ensure_kernel("6.12").resolve_modules(["nvme"])
    s.packed_modules += mods
    s.program("ublk_perf", os.path.join(here, "ublk_perf.sh"))
    s.timeout = max(s.timeout, 120 + rounds * (6 * secs + 200))
    s.timeout += rounds * len(modes.split(",")) * (2 * secs + 10)
    s.run("ublk_perf", nvme.bdf, secs, rounds, modes, *mods, label="perf", timeout=s.timeout - 30)
    r = s.boot()
    r.require_passed()
    p = r.program("perf")
    runs = parse(p.output if p else "")
    with open(os.path.join(s.work, "results.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print(f"\n{rounds} interleaved rounds of {secs} s, Linux 6.12 guest, TCG, 1 vCPU, QEMU NVMe (null-co, 4 KiB LBAs)\n")
    print("| QD | serve mode | dkq ublk IOPS (median) | Linux nvme IOPS (median) | ublk / Linux (median of per-round ratios, range) "
          "| dkq-nvme perf --irq IOPS (no ublk) | ublk p50 / p99 latency (us) | Linux p50 / p99 latency (us) | Linux stalled rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, qd in [(m, q) for q in (1, 32) for m in modes.split(",")]:
        u, k, d = runs.get(f"ublk_{mode}_qd{qd}", {}), runs.get(f"linux_qd{qd}", {}), runs.get(f"dkq_direct_qd{qd}", {})
        ratios = [u[i]["iops"] / k[i]["iops"] for i in u if i in k and u[i]["iops"] and k[i]["iops"]
                  and k[i]["stalls"] == 0]
        med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
        us = lambda v: v / 1000 if v else float("nan")  # noqa: E731
        stalled = sum(1 for i in k if k[i]["stalls"] or k[i]["rc"])
        print(f"| {qd} | {mode} | {med([x['iops'] for x in u.values() if x['iops']]):.0f} | "
              f"{med([x['iops'] for x in k.values() if x['iops']]):.0f} | "
              f"{med(ratios):.2f} ({min(ratios, default=float('nan')):.2f}-{max(ratios, default=float('nan')):.2f}) | "
              f"{med([x['iops'] for x in d.values() if x['iops']]):.0f} | "
              f"{us(med([x['p50'] for x in u.values() if x['p50']])):.0f} / {us(med([x['p99'] for x in u.values() if x['p99']])):.0f} | "
              f"{us(med([x['p50'] for x in k.values() if x['p50']])):.0f} / {us(med([x['p99'] for x in k.values() if x['p99']])):.0f} | "
              f"{stalled} of {len(k)} |")
    log(f"dbbuf config events (Linux configuring shadow doorbells): {r.trace.count('pci_nvme_dbbuf_config')}")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
