#!/usr/bin/env python3
"""Experiment (not a ctest): dkq-nvme against libvfn and Linux's nvme driver,
side by side in one boot, on one QEMU NVMe controller (issue 17).

  python3 tests/vm/experiments/nvme_peers.py --work-dir /tmp/peers \
      --prog dkq_nvme=build/demo-vm/tests/vm/vm_dkq_nvme \
      --prog nvme_kbench=build/demo-vm/tests/vm/vm_nvme_kbench \
      --prog nvme_handback=tests/vm/scenarios/nvme_handback.sh \
      --prog dkq_pci=build/demo-vm/tests/vm/vm_dkq_pci \
      --libvfn /tmp/libvfn-out/libvfn-perf \
      [--rounds 15] [--secs 5] [--qds 1,32] [--modes polled,interrupts,hybrid]
      [--dkq-shadow on] [--file]
  python3 tests/vm/experiments/nvme_peers.py --report RESULTS.json [RESULTS.json ...] \
      [--markdown bench/nvme/PEERS.md] [--svg docs/nvme-peers.svg]

tests/vm/experiments/nvme_peers.sh does both, building every peer first.

One guest (TCG, 1 vCPU, virtual IOMMU, Linux 6.1), one controller whose
namespace 3 has 4 KiB blocks (QEMU's null-co driver by default: reads return
zeros without host I/O, so the drivers and the emulated controller are what is
measured; --file uses a raw image file). Every round runs, at each queue
depth (the order of the depths alternates between rounds):
  dkq-nvme perf in each --modes mode, libvfn's examples/perf (polled: it has
  no other mode), then the controller goes to Linux's nvme driver and
  dkq-nvme-kbench reads it with io_uring (O_DIRECT, batched submit), and the
  controller goes back to vfio-pci.
4 KiB random reads for --secs seconds each. Shadow doorbells: libvfn turns
them on whenever the controller offers them (its perf has no switch), Linux
does too; dkq-nvme runs with --dkq-shadow (default `on`, the same
configuration). What the host did during each run (steal, CPU used outside
this VM's QEMU, load average; dkqvm.host_load) is recorded per run. A run
that produced no result, errors, or a stall (a second or more without a
completion; Linux's I/O timeouts on the console) is kept, counted and shown.
"""
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "scenarios"))

LV_RE = re.compile(r"iops\s+mbps\s+lavg\s+lmin\s+lmax\s*\n\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")


def take(argv, flag, default, conv=str):
    if flag in argv:
        i = argv.index(flag)
        v = conv(argv[i + 1])
        del argv[i:i + 2]
        return v
    return default


def run_experiment(argv):
    from dkqvm import host_load, log  # noqa: E402
    from nvme_driver import interop_scenario  # noqa: E402

    rounds = take(argv, "--rounds", 15, int)
    secs = take(argv, "--secs", 5, int)
    qds = [int(q) for q in take(argv, "--qds", "1,32").split(",")]
    modes = take(argv, "--modes", "polled,interrupts,hybrid").split(",")
    shadow = take(argv, "--dkq-shadow", "on")
    libvfn = take(argv, "--libvfn", None)
    max_cpus = take(argv, "--maxcpus", 1, int)
    use_file = "--file" in argv
    argv = [a for a in argv if a != "--file"]
    if libvfn is None or not os.path.isfile(libvfn):
        raise SystemExit("--libvfn PATH: libvfn's perf, built static by tests/vm/experiments/build_libvfn.sh")
    sys.argv = [sys.argv[0]] + argv
    s = interop_scenario("nvme_peers")
    s.max_cpus = max_cpus
    # Tracing every NVMe event costs QEMU microseconds per command in the
    # device's own thread; only errors and the doorbell-buffer setup here.
    s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_dbbuf_config"]
    per_round = len(qds) * (len(modes) + 2) * (secs + 25) + 60
    s.timeout = max(s.timeout, 180 + rounds * per_round)
    ns1 = s.disk("nvme0n1", mib=4)
    ns2 = s.disk("nvme0n2", mib=4)
    nvme0 = s.nvme("nvme0", slot=4, namespaces=[], serial="dkq-peers")
    # Namespaces 1 and 2 exist for nvme_handback.sh (it waits for n1 and n2).
    for i, d in enumerate((ns1, ns2), start=1):
        nvme0.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                            "-device", f"nvme-ns,drive={d.name},bus=nvme0,nsid={i},"
                                       "logical_block_size=4096,physical_block_size=4096"]
    if use_file:
        perf_disk = s.disk("nvme0n3", mib=256)
        backend = ["-drive", f"file={perf_disk.path},if=none,id=perfns,format=raw,cache=writeback"]
    else:
        backend = ["-drive", "driver=null-co,size=1073741824,read-zeroes=on,if=none,id=perfns"]
    nvme0.qemu_args += backend + ["-device", "nvme-ns,drive=perfns,bus=nvme0,nsid=3,"
                                             "logical_block_size=4096,physical_block_size=4096"]
    n0 = nvme0.bdf
    s.pack("libvfn_perf", libvfn)
    # perf prints a progress line with \r when stdout is a terminal (the
    # console is); through a file it prints only the result.
    s.script("libvfn", '/progs/libvfn_perf "$@" > /tmp/libvfn.out 2>&1\nrc=$?\ncat /tmp/libvfn.out\nexit $rc\n')
    s.script("kns3", "ctrl=$(ls /sys/bus/pci/devices/$1/nvme | head -n 1)\nln -sf /dev/${ctrl}n3 /tmp/kns3\n"
                     "ls -l /tmp/kns3\n[ -b /dev/${ctrl}n3 ]\n")
    mode_args = {"polled": [], "interrupts": ["--irq"], "hybrid": ["--hybrid"]}
    plan = []  # (label, round, qd, driver)
    for rnd in range(1, rounds + 1):
        order = qds if rnd % 2 else list(reversed(qds))
        for qd in order:
            for m in modes:
                lab = f"dkq_{m}_qd{qd}_r{rnd}"
                s.run("dkq_nvme", "perf", n0, "--ns", 3, "--bs", 4096, "--qd", qd, "--time", secs, "--json",
                      "--shadow", shadow, *mode_args[m], label=lab, timeout=60 + secs)
                plan.append((lab, rnd, qd, "dkq_" + m))
            lab = f"libvfn_qd{qd}_r{rnd}"
            s.run("libvfn", "-d", n0, "-N", 3, "-q", qd, "-p", "randread", "-t", secs, label=lab, timeout=60 + secs)
            plan.append((lab, rnd, qd, "libvfn"))
        s.run("nvme_handback", n0, label=f"handback_{rnd}")
        s.run("kns3", n0, label=f"kns3_{rnd}")
        for qd in order:
            lab = f"linux_qd{qd}_r{rnd}"
            # A stall is a 30 s I/O timeout, an abort and a reset: room for two.
            s.run("nvme_kbench", "perf", "/tmp/kns3", "--bs", 4096, "--qd", qd, "--time", secs, "--json",
                  "--engine", "uring", label=lab, timeout=90 + secs)
            plan.append((lab, rnd, qd, "linux_uring"))
        s.run("dkq_pci", "bind", n0, label=f"rebind_{rnd}")
    r = s.boot()
    runs = []
    for lab, rnd, qd, drv in plan:
        pr = r.program(lab)
        out = pr.output if pr else ""
        rec = {"label": lab, "round": rnd, "qd": qd, "driver": drv, "rc": pr.rc if pr else None,
               "host": host_load(r, lab), "iops": None, "lat_us": None, "stalled": False, "errors": None}
        if drv == "libvfn":
            m = LV_RE.search(out.replace("\r", "\n"))
            if m and m.group(1) != "nan":
                rec["iops"] = float(m.group(1))
                rec["lat_us"] = {"mean": float(m.group(3)), "max": float(m.group(5))}
                rec["errors"] = 0 if pr.rc == 0 else None
        else:
            m = re.search(r"^\{.*\}$", out, re.M)
            if m:
                x = json.loads(m.group(0))
                rec["iops"] = x.get("iops")
                rec["lat_us"] = x.get("lat_us")
                rec["errors"] = x.get("errors")
                rec["stalled"] = bool(x.get("stalled"))
                rec["report"] = x
        if drv.startswith("linux"):
            # Linux reports its timeouts on the console (nvme_timeout: "I/O ... timeout, aborting").
            rec["console_timeouts"] = len(re.findall(r"timeout, (?:aborting|reset controller)", out))
            rec["stalled"] = rec["stalled"] or rec["console_timeouts"] > 0
        if rec["iops"] is None:
            rec["output_tail"] = out[-600:]
            log(f"{lab}: no result (rc {rec['rc']}); output: {out[-300:]}")
        runs.append(rec)
    meta = {"experiment": "tests/vm/experiments/nvme_peers.py", "rounds": rounds, "seconds_per_run": secs,
            "qds": qds, "modes": modes, "dkq_shadow": shadow,
            "backend": "file (raw, cache=writeback)" if use_file else "null-co (read-zeroes)",
            "libvfn": os.path.basename(libvfn), "kernel": s.kernel_series,
            "qemu": "Debian 12 qemu-system-x86 7.2 (TCG, 1 vCPU, intel-iommu)" +
                    (f", -smp 1,maxcpus={max_cpus}" if max_cpus > 1 else ""), "max_cpus": max_cpus,
            "dbbuf_config_events": r.trace.count("pci_nvme_dbbuf_config"),
            "nvme_error_events": sum(1 for line in open(r.trace.path, errors="replace") if "pci_nvme_err_" in line)
            if os.path.exists(r.trace.path) else None}
    path = os.path.join(s.work, "results.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "runs": runs}, f, indent=1)
    log(f"results: {path}")
    print(report([path])[0])
    return 0


# ---- report -----------------------------------------------------------------

PAIRS = [("dkq_polled", "libvfn"), ("dkq_interrupts", "libvfn"), ("dkq_hybrid", "libvfn"),
         ("dkq_polled", "linux_uring"), ("dkq_interrupts", "linux_uring"), ("dkq_hybrid", "linux_uring")]
NAMES = {"dkq_polled": "dkq polled", "dkq_interrupts": "dkq interrupts", "dkq_hybrid": "dkq hybrid",
         "libvfn": "libvfn perf", "linux_uring": "Linux io_uring"}
GOALS = {"libvfn": 1.25, "linux_uring": 1.5}


def fmt_k(v):
    return "-" if v is None else f"{v / 1000:.1f} K"


def med_range(xs):
    if not xs:
        return "-"
    return f"**{statistics.median(xs):.2f}x** ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def report(paths, svg_rel=None):
    runs, metas = [], []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        metas.append((os.path.basename(p), d["meta"]))
        for x in d["runs"]:
            x["file"] = os.path.basename(p)
            runs.append(x)
    qds = sorted({x["qd"] for x in runs})
    drivers = [d for d in NAMES if any(x["driver"] == d for x in runs)]
    by = {}
    for x in runs:
        by[(x["file"], x["round"], x["qd"], x["driver"])] = x
    rounds = sorted({(x["file"], x["round"]) for x in runs})
    lines = []
    lines.append("## dkq-nvme, libvfn and Linux side by side (QEMU NVMe, same guest)")
    lines.append("")
    lines.append("<!-- Generated by tests/vm/experiments/nvme_peers.py --report from bench/nvme/results/peers-*.json. -->")
    lines.append("")
    m0 = metas[0][1]
    lines.append(
        f"4 KiB random reads on one QEMU NVMe namespace with 4 KiB blocks ({m0['backend']}), one guest "
        f"({m0['qemu']}, Linux {m0['kernel']}), {m0['seconds_per_run']} s per run, rounds interleaved: in each round, "
        "at each queue depth, `dkq-nvme perf` in polled, interrupt and hybrid mode, libvfn's `examples/perf` "
        "(polled; built from its source by `tests/vm/experiments/build_libvfn.sh`), then Linux's `nvme` driver "
        "read with io_uring by `dkq-nvme-kbench` (O_DIRECT, batched submit). Shadow doorbells: on for all three "
        f"(libvfn and Linux turn them on when QEMU offers them; dkq-nvme ran with `--shadow {m0['dkq_shadow']}`). "
        "Ratios are taken within a round (same host conditions), then the median over rounds, with the range. "
        "`tests/vm/experiments/nvme_peers.py` (`nvme_peers.sh` builds every peer and runs it).")
    lines.append("")
    stalled = [x for x in runs if x["stalled"]]
    missing = [x for x in runs if x["iops"] is None]
    lines.append(f"Runs: {len(runs)}; stalled: {len(stalled)} "
                 f"({', '.join(sorted({NAMES[x['driver']] for x in stalled})) or 'none'}); "
                 f"without a result: {len(missing)}. Stalled runs stay in the tables (marked) and in the ratios; "
                 "the medians without them are given too.")
    lines.append("")
    lines.append("| ratio (median of per-round ratios) | goal | " + " | ".join(f"QD {q}" for q in qds) + " |")
    lines.append("|---|---|" + "---|" * len(qds))
    summary = {}
    for a, b in PAIRS:
        if a not in drivers or b not in drivers:
            continue
        cells = []
        for q in qds:
            xs, clean = [], []
            for f, rnd in rounds:
                ra, rb = by.get((f, rnd, q, a)), by.get((f, rnd, q, b))
                if ra and rb and ra["iops"] and rb["iops"]:
                    v = ra["iops"] / rb["iops"]
                    xs.append(v)
                    if not (ra["stalled"] or rb["stalled"]):
                        clean.append(v)
            summary[(a, b, q)] = xs
            cell = med_range(xs)
            if len(clean) != len(xs) and clean:
                cell += f"; without stalled rounds {statistics.median(clean):.2f}x"
            cells.append(cell)
        lines.append(f"| {NAMES[a]} / {NAMES[b]} | >= {GOALS[b]}x | " + " | ".join(cells) + " |")
    lines.append("")
    if svg_rel:
        lines.append(f"![IOPS per run, dkq-nvme, libvfn and Linux, per round]({svg_rel})")
        lines.append("")
    lines.append("Median IOPS per driver (all rounds), and mean latency:")
    lines.append("")
    lines.append("| driver | " + " | ".join(f"QD {q} IOPS | QD {q} mean latency" for q in qds) + " |")
    lines.append("|---|" + "---|---|" * len(qds))
    for d in drivers:
        cells = []
        for q in qds:
            xs = [x for x in runs if x["driver"] == d and x["qd"] == q and x["iops"]]
            ios = [x["iops"] for x in xs]
            lat = [x["lat_us"]["mean"] for x in xs if x.get("lat_us") and x["lat_us"].get("mean")]
            cells.append(fmt_k(statistics.median(ios)) if ios else "-")
            cells.append(f"{statistics.median(lat):.0f} us" if lat else "-")
        lines.append(f"| {NAMES[d]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Every run (IOPS; `S` = stalled, `-` = no result), with what the host did during the round's "
                 "runs: steal % and CPU busy outside this VM's QEMU, in cores (median over the round's runs):")
    lines.append("")
    head = "| file | round | host steal % | host other cores | " + " | ".join(
        f"{NAMES[d]} QD {q}" for q in qds for d in drivers) + " |"
    lines.append(head)
    lines.append("|---|---|---|---|" + "---|" * (len(qds) * len(drivers)))
    for f, rnd in rounds:
        rr = [x for x in runs if x["file"] == f and x["round"] == rnd]
        hs = [x["host"] for x in rr if x.get("host")]
        steal = statistics.median([h["steal_pct"] for h in hs]) if hs else None
        other = statistics.median([h["other_cores"] for h in hs if h["other_cores"] is not None]) if hs else None
        cells = []
        for q in qds:
            for d in drivers:
                x = by.get((f, rnd, q, d))
                if not x or x["iops"] is None:
                    cells.append("-")
                else:
                    cells.append(fmt_k(x["iops"]) + (" S" if x["stalled"] else ""))
        lines.append(f"| {f} | {rnd} | {'-' if steal is None else f'{steal:.1f}'} | "
                     f"{'-' if other is None else f'{other:.2f}'} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, m in metas:
        lines.append(f"Source `{name}`: {m['rounds']} rounds, {m['seconds_per_run']} s per run, backend {m['backend']}, "
                     f"dkq-nvme `--shadow {m['dkq_shadow']}`, QEMU doorbell-buffer configs seen "
                     f"{m.get('dbbuf_config_events')}, NVMe error trace events {m.get('nvme_error_events')}.")
    lines.append("")
    return "\n".join(lines), runs, summary, drivers, qds, rounds


def svg_chart(runs, drivers, qds, rounds):
    """IOPS of every run, one panel per queue depth, one line per driver over
    the rounds (stalled runs as hollow markers)."""
    colors = {"dkq_polled": "#1f77b4", "dkq_interrupts": "#2ca02c", "dkq_hybrid": "#17becf",
              "libvfn": "#d62728", "linux_uring": "#7f7f7f"}
    W, H, pad_l, pad_b, pad_t = 460, 260, 56, 34, 28
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(qds)}" height="{H + 40}" '
           'font-family="sans-serif" font-size="11">']
    idx = {k: i for i, k in enumerate(rounds)}
    for pi, q in enumerate(qds):
        x0 = pi * W
        xs = [x for x in runs if x["qd"] == q and x["iops"]]
        top = max([x["iops"] for x in xs] or [1]) * 1.1
        pw, ph = W - pad_l - 12, H - pad_b - pad_t
        out.append(f'<text x="{x0 + W / 2}" y="16" text-anchor="middle" font-weight="bold">QD {q}: IOPS per run</text>')
        out.append(f'<line x1="{x0 + pad_l}" y1="{pad_t + ph}" x2="{x0 + pad_l + pw}" y2="{pad_t + ph}" stroke="#000"/>')
        out.append(f'<line x1="{x0 + pad_l}" y1="{pad_t}" x2="{x0 + pad_l}" y2="{pad_t + ph}" stroke="#000"/>')
        for k in range(5):
            v = top * k / 4
            y = pad_t + ph - ph * k / 4
            out.append(f'<text x="{x0 + pad_l - 4}" y="{y + 4:.0f}" text-anchor="end">{v / 1000:.0f}K</text>')
            out.append(f'<line x1="{x0 + pad_l}" y1="{y:.0f}" x2="{x0 + pad_l + pw}" y2="{y:.0f}" stroke="#ddd"/>')
        n = max(1, len(rounds) - 1)
        out.append(f'<text x="{x0 + pad_l + pw / 2}" y="{H - 6}" text-anchor="middle">round</text>')
        for d in drivers:
            pts = []
            for x in xs:
                if x["driver"] != d:
                    continue
                i = idx[(x["file"], x["round"])]
                px = x0 + pad_l + pw * i / n
                py = pad_t + ph - ph * x["iops"] / top
                pts.append((px, py, x["stalled"]))
            if pts:
                out.append('<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>'.format(
                    colors[d], " ".join(f"{a:.1f},{b:.1f}" for a, b, _ in pts)))
                for a, b, st in pts:
                    fill = "#fff" if st else colors[d]
                    out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{fill}" stroke="{colors[d]}"/>')
    for i, d in enumerate(drivers):
        lx = 10 + i * 130
        out.append(f'<rect x="{lx}" y="{H + 18}" width="10" height="10" fill="{colors[d]}"/>')
        out.append(f'<text x="{lx + 14}" y="{H + 27}">{NAMES[d]}</text>')
    out.append(f'<text x="{10 + len(drivers) * 130}" y="{H + 27}">hollow: stalled run</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def run_report(argv):
    md = take(argv, "--markdown", None)
    svg = take(argv, "--svg", None)
    paths = [a for a in argv if a != "--report"]
    svg_rel = os.path.relpath(svg, "docs") if svg else None
    text, runs, _, drivers, qds, rounds = report(paths, svg_rel)
    if svg:
        with open(svg, "w") as f:
            f.write(svg_chart(runs, drivers, qds, rounds))
    if md:
        with open(md, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--report" in args:
        sys.exit(run_report(args))
    from dkqvm import main_guard  # noqa: E402
    main_guard(lambda: run_experiment(args))
