#!/usr/bin/env python3
"""Turn Google Benchmark JSON into docs/benchmarks.md (and a chart).

Usage:
  bench_report.py RESULTS.json [MORE.json ...] [--out docs/benchmarks.md]
                  [--chart docs/bench-rings.png] [--notes NOTES.md] [--summary]

Input is what a benchmark binary writes with
  --benchmark_out=FILE --benchmark_out_format=json
preferably with --benchmark_repetitions=N (N >= 3): every number reported is
the median over repetitions, computed here from the individual runs (or taken
from the "median" aggregate when only aggregates were written).

How names are read (generic, so new benchmark families need no code here):
  * A name is split at '/'. Trailing Google Benchmark decorations
    (real_time, threads:N, repeats:N, min_time:X, ...) are dropped.
  * The first component is the family ("spsc_stream", "BM_prp", ...).
  * A component "impl:NAME" marks a comparison: all rows of a family that
    differ only in impl form one case, and the table shows the baseline
    implementation (--baseline, default dkq) against every other one as a
    throughput ratio baseline/peer (> 1 means the baseline is faster).
    Throughput is the items_per_second counter when present, else 1/time.
  * Families without impl: components ("BM_prp/4096/contiguous",
    "BM_queue_submit_reap/qd:32/batched:1") are listed as plain tables of
    median time per iteration and every user counter, under "Other
    benchmark families".

Only the Python standard library is needed. The chart needs matplotlib
(Debian python3-matplotlib) and is skipped, with a note, when it cannot be
imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
from collections import OrderedDict, defaultdict

# Google Benchmark's own name decorations, not part of what is measured.
DECORATION = re.compile(
    r"^(real_time|manual_time|process_time|threads:\d+|repeats:\d+|min_time:[\d.e+-]+s?|"
    r"min_warmup_time:[\d.e+-]+s?|iterations:\d+)$")

# Fields of a run entry that are not user counters.
STANDARD_FIELDS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type",
    "repetitions", "repetition_index", "threads", "iterations", "real_time",
    "cpu_time", "time_unit", "aggregate_name", "aggregate_unit", "error_occurred",
    "error_message", "label", "big_o", "rms", "complexity_n",
}

# Human titles for the ring families; anything else is titled by its name.
FAMILY_TITLES = {
    "spsc_stream": "SPSC streaming (1 producer -> 1 consumer)",
    "spsc_pingpong": "SPSC ping-pong (round trips/s; 2 rings, 1 element in flight)",
    "spsc_1thread": "SPSC single thread (push batch, pop batch; instruction cost, no coherence)",
    "mpsc_stream": "MPSC streaming (2 producers -> 1 consumer)",
    "mpmc_stream": "MPMC streaming (2 producers -> 2 consumers)",
}

# Targets from the issue. For each family: which peers the baseline must
# match ("best" = the fastest peer of that case; a list = each named peer)
# and the ratio required; `bulk` applies instead when batch > 1.
# Implementations listed in INFORMATIONAL are shown but never count as
# "peers" for targets (dkq's own alternative APIs).
TARGETS = {
    "spsc_stream": {"against": "best", "ratio": 1.0, "bulk": 1.2},
    "spsc_pingpong": {"against": "best", "ratio": 1.0},
    "mpsc_stream": {"against": ["rte_ring", "moodycamel_cq"], "ratio": 1.0},
    "mpmc_stream": {"against": ["rte_ring", "moodycamel_cq"], "ratio": 1.0},
}
INFORMATIONAL = {"dkq_zc", "dkq_spsc_per_producer"}

# Column order for known implementations; others follow in name order, and
# informational rows come last.
IMPL_ORDER = ["dkq", "rte_ring", "boost_spsc", "moodycamel_rwq", "atomic_queue", "moodycamel_cq",
              "boost_queue", "tbb_bounded"]


def impl_key(name):
    return (name in INFORMATIONAL,
            IMPL_ORDER.index(name) if name in IMPL_ORDER else len(IMPL_ORDER), name)


# ---------------------------------------------------------------------------
# Loading


def split_name(run_name: str):
    """Return (family, params [list of str], impl or None)."""
    parts = [p for p in run_name.split("/") if p]
    while parts and DECORATION.match(parts[-1]):
        parts.pop()
    parts = [p for p in parts if not DECORATION.match(p)]
    family = parts[0] if parts else run_name
    impl = None
    params = []
    for p in parts[1:]:
        if p.startswith("impl:"):
            impl = p[len("impl:"):]
        else:
            params.append(p)
    return family, params, impl


def counters_of(entry: dict) -> dict:
    return {k: v for k, v in entry.items()
            if k not in STANDARD_FIELDS and isinstance(v, (int, float))}


class Result:
    """Median view of one benchmark (all its repetitions)."""

    def __init__(self, run_name: str):
        self.run_name = run_name
        self.family, self.params, self.impl = split_name(run_name)
        self.reps: list[dict] = []
        self.median_aggregate: dict | None = None
        self.errors: list[str] = []
        self.had_raw = False  # individual repetitions were in the input
        self.time_unit = "ns"

    def _values(self, key):
        vals = [r[key] for r in self.reps if isinstance(r.get(key), (int, float))]
        if vals:
            return vals
        if (not self.had_raw and self.median_aggregate and
                isinstance(self.median_aggregate.get(key), (int, float))):
            return [self.median_aggregate[key]]
        return []

    def median(self, key):
        vals = self._values(key)
        return statistics.median(vals) if vals else None

    def spread(self, key):
        """(min, max) over repetitions, or None."""
        vals = self._values(key)
        return (min(vals), max(vals)) if len(vals) > 1 else None

    @property
    def error(self):
        """An error message when no repetition succeeded (else None)."""
        if self.errors and not self.reps and (self.had_raw or not self.median_aggregate):
            return self.errors[0]
        return None

    @property
    def repetitions(self):
        return len(self.reps) if self.reps else (1 if self.median_aggregate else 0)

    def counter_names(self):
        names = OrderedDict()
        for r in self.reps or ([self.median_aggregate] if self.median_aggregate else []):
            for k in counters_of(r):
                names[k] = True
        return list(names)

    def throughput(self):
        """Items per second (median), or 1/time if the benchmark has no counter."""
        ips = self.median("items_per_second")
        if ips:
            return ips
        t = self.median("real_time")
        if t:
            return 1.0 / (t * UNIT_SECONDS.get(self.time_unit, 1e-9))
        return None


# Comparison (impl:) repetitions with fewer iterations are discarded (see
# load()); plain families keep whatever they ran.
MIN_ITERATIONS = 100

UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def source_label(path):
    """`rings/run-0258.json` for bench/rings/results/run-0258.json: the DMA and
    queue families keep files of the same name in their own folders."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.basename(parent) == "results":
        return os.path.basename(os.path.dirname(parent)) + "/" + os.path.basename(path)
    return os.path.basename(path)


def load(paths):
    results: "OrderedDict[str, Result]" = OrderedDict()
    context = {}
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        ctx = data.get("context", {})
        if not context:
            context = dict(ctx)
        has_impl = any(split_name(b.get("run_name") or b.get("name", ""))[2] is not None
                       for b in data.get("benchmarks", []))
        runs.append((source_label(path), ctx.get("date", "?"), ctx.get("load_avg"),
                     ctx.get("dkq_nice"), has_impl))
        for b in data.get("benchmarks", []):
            run_name = b.get("run_name") or re.sub(r"_(mean|median|stddev|cv)$", "", b["name"])
            res = results.setdefault(run_name, Result(run_name))
            res.time_unit = b.get("time_unit", res.time_unit)
            raw = b.get("run_type") != "aggregate"
            res.had_raw = res.had_raw or raw
            if b.get("error_occurred"):
                res.errors.append(b.get("error_message", "error"))
            elif not raw:
                if b.get("aggregate_name") == "median":
                    res.median_aggregate = b
            elif res.impl is not None and b.get("iterations", MIN_ITERATIONS) < MIN_ITERATIONS:
                # Google Benchmark reuses the first repetition's iteration
                # count for the others; if that repetition was cut short
                # (aborted), all of them are too short to mean anything.
                res.errors.append(f"only {b.get('iterations')} iterations")
            else:
                res.reps.append(b)
    # Several files (runs of the same binary) are pooled: medians are taken
    # over all their repetitions. Each run's date and load are listed.
    context["dkq_runs"] = runs
    return context, results


# ---------------------------------------------------------------------------
# Formatting helpers


def fmt_rate(v):
    if v is None:
        return "-"
    if v >= 1e9:
        return f"{v / 1e9:.2f} G/s"
    if v >= 1e6:
        return f"{v / 1e6:.1f} M/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k/s"
    return f"{v:.0f} /s"


def fmt_num(v):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e9:
        return f"{v / 1e9:.2f}G"
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r, bold_below=None):
    if r is None:
        return "-"
    s = f"{r:.2f}x"
    if bold_below is not None and r < bold_below:
        s = f"**{s}**"
    return s


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def case_label(params):
    return " ".join(params) if params else "-"


# ---------------------------------------------------------------------------
# Comparison families


class Case:
    def __init__(self, family, params):
        self.family = family
        self.params = params
        self.impls: "OrderedDict[str, Result]" = OrderedDict()

    @property
    def batch(self):
        for p in self.params:
            if p.startswith("batch:"):
                try:
                    return int(p.split(":", 1)[1])
                except ValueError:
                    return None
        return None


def comparison_cases(results, baseline):
    fams: "OrderedDict[str, OrderedDict[tuple, Case]]" = OrderedDict()
    for r in results.values():
        if r.impl is None:
            continue
        cases = fams.setdefault(r.family, OrderedDict())
        key = tuple(r.params)
        case = cases.setdefault(key, Case(r.family, r.params))
        case.impls[r.impl] = r
    # Stable order whatever order the runs came in (random interleaving
    # shuffles them): known families first, then by name; cases by their
    # parameters with numbers compared as numbers.
    def natural(params):
        key = []
        for p in params:
            for part in re.split(r"(\d+)", p):
                key.append((0, int(part), "") if part.isdigit() else (1, 0, part))
        return key

    order = list(FAMILY_TITLES)
    fam_names = sorted(fams, key=lambda f: (order.index(f) if f in order else len(order), f))
    out = OrderedDict()
    for f in fam_names:
        cases = fams[f]
        if not any(baseline in cs.impls for cs in cases.values()):
            continue  # only families where the baseline takes part
        out[f] = OrderedDict(sorted(cases.items(), key=lambda kv: natural(kv[1].params)))
    return out


def peers_of(case, baseline):
    return [i for i in case.impls if i != baseline and i not in INFORMATIONAL]


def evaluate(case, baseline):
    """Ratio summary of one case: dict with best peer, ratio and target verdict."""
    base = case.impls.get(baseline)
    bt = base.throughput() if base and not base.error else None
    peer_tp = {}
    for p in peers_of(case, baseline):
        r = case.impls[p]
        if not r.error:
            t = r.throughput()
            if t:
                peer_tp[p] = t
    best = max(peer_tp, key=peer_tp.get) if peer_tp else None
    out = {"base": bt, "best": best, "best_tp": peer_tp.get(best),
           "ratio_best": (bt / peer_tp[best]) if (bt and best) else None,
           "target": None, "met": None, "target_text": ""}
    tgt = TARGETS.get(case.family)
    if tgt and bt:
        need = tgt["ratio"]
        if case.batch and case.batch > 1 and "bulk" in tgt:
            need = tgt["bulk"]
        if tgt["against"] == "best":
            against = [best] if best else []
            text = f">= {need:.1f}x best peer"
        else:
            against = [p for p in tgt["against"] if p in peer_tp]
            text = f">= {need:.1f}x " + ", ".join(tgt["against"])
        ratios = [bt / peer_tp[p] for p in against]
        out["target"] = need
        out["target_text"] = text
        out["worst_target_ratio"] = min(ratios) if ratios else None
        out["met"] = bool(ratios) and min(ratios) >= need
    return out


def comparison_section(family, cases, baseline):
    title = FAMILY_TITLES.get(family, family)
    lines = [f"### {title}", ""]
    all_impls = sorted({i for c in cases.values() for i in c.impls}, key=impl_key)
    peers = [i for i in all_impls if i != baseline]
    show_full = any("full_per_kitem" in (c.impls.get(baseline).counter_names()
                                          if c.impls.get(baseline) else [])
                    for c in cases.values())
    header = ["case", f"{baseline} items/s", f"{baseline} ns/item"]
    if show_full:
        header.append(f"{baseline} full/kitem")
    header += [f"vs {p}" for p in peers] + ["best peer", "vs best", "target"]
    rows = []
    for c in cases.values():
        ev = evaluate(c, baseline)
        base = c.impls.get(baseline)
        row = [case_label(c.params)]
        if base is None or base.error:
            row += ["error" if base else "-", "-"]
        else:
            row += [fmt_rate(ev["base"]), fmt_num(base.median("ns_per_item"))]
        if show_full:
            row.append(fmt_num(base.median("full_per_kitem")) if base and not base.error else "-")
        for p in peers:
            r = c.impls.get(p)
            if r is None:
                row.append("-")
            elif r.error:
                row.append("error")
            else:
                t = r.throughput()
                row.append(fmt_ratio(ev["base"] / t) if (ev["base"] and t) else "-")
        row.append(f"{ev['best']} ({fmt_rate(ev['best_tp'])})" if ev["best"] else "-")
        row.append(fmt_ratio(ev["ratio_best"], bold_below=1.0))
        if ev["target"] is None:
            row.append("-")
        else:
            row.append(("met" if ev["met"] else "**missed**") + f" ({ev['target_text']})")
        rows.append(row)
    lines.append(md_table(header, rows))
    lines.append("")
    # Absolute numbers for every implementation, so ratios can be checked.
    lines.append("<details><summary>absolute medians (items/s; ns/item; full and empty "
                 "events per 1000 items; min..max over repetitions)</summary>")
    lines.append("")
    h2 = ["case", "impl", "items/s", "ns/item", "full/kitem", "empty/kitem", "min..max items/s",
          "reps"]
    rows2 = []
    for c in cases.values():
        for name, r in sorted(c.impls.items(), key=lambda kv: impl_key(kv[0])):
            if r.error:
                rows2.append([case_label(c.params), name, "error: " + r.error, "", "", "", "", ""])
                continue
            sp = r.spread("items_per_second")
            rows2.append([case_label(c.params), name, fmt_rate(r.throughput()),
                          fmt_num(r.median("ns_per_item")), fmt_num(r.median("full_per_kitem")),
                          fmt_num(r.median("empty_per_kitem")),
                          f"{fmt_rate(sp[0])}..{fmt_rate(sp[1])}" if sp else "-",
                          f"{r.repetitions}" + (f" (+{len(r.errors)} failed: {r.errors[0]})"
                                                if r.errors else "")])
    lines.append(md_table(h2, rows2))
    lines.append("")
    lines.append("</details>")
    lines.append("")
    return lines


# ---------------------------------------------------------------------------
# Other families (plain tables)


def other_sections(results):
    fams: "OrderedDict[str, list[Result]]" = OrderedDict()
    for r in results.values():
        if r.impl is None:
            fams.setdefault(r.family, []).append(r)
    lines = []
    for fam, rs in fams.items():
        counters = []
        for r in rs:
            for k in r.counter_names():
                if k not in counters:
                    counters.append(k)
        unit = rs[0].time_unit
        header = ["benchmark", f"time ({unit})", f"cpu ({unit})"] + counters + ["reps"]
        rows = []
        for r in rs:
            if r.error:
                rows.append(["/".join(r.params) or "-", "error: " + r.error, ""] +
                            [""] * len(counters) + [""])
                continue
            rows.append(["/".join(r.params) or "-", fmt_num(r.median("real_time")),
                         fmt_num(r.median("cpu_time"))] +
                        [fmt_num(r.median(k)) for k in counters] + [r.repetitions])
        lines += [f"### {fam}", "", md_table(header, rows), ""]
    return lines


# ---------------------------------------------------------------------------
# Machine description


def read_cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_section(ctx):
    lines = ["## Machine", ""]
    cpu_model = ctx.get("dkq_cpu_model") or read_cpu_model()
    kernel = ctx.get("dkq_kernel") or platform.release()
    rows = [
        ["CPU", cpu_model],
        ["CPUs (benchmark context)", f"{ctx.get('num_cpus', '?')} x {ctx.get('mhz_per_cpu', '?')} MHz"],
        ["kernel", kernel],
    ]
    caches = ctx.get("caches") or []
    if caches:
        desc = []
        ncpu = int(ctx.get("num_cpus", 1) or 1)
        for c in caches:
            size = int(c.get("size", 0))
            size_s = f"{size // 1024} KiB" if size < (1 << 20) else f"{size // (1 << 20)} MiB"
            sharing = int(c.get("num_sharing", 1) or 1)
            desc.append(f"L{c.get('level')} {c.get('type', '')} {size_s} x{max(1, ncpu // sharing)}")
        rows.append(["caches", "; ".join(desc)])
    for key, label in [("dkq_allowed_cpus", "CPUs used"), ("dkq_pinning", "pinning"),
                       ("dkq_numa_nodes", "NUMA nodes"), ("dkq_numa_placement", "ring memory"),
                       ("dkq_element", "element"), ("dkq_compiler", "compiler"),
                       ("dkq_peers", "peers"), ("library_build_type", "libbenchmark build"),
                       ("load_avg", "load average at start"), ("dkq_nice", "nice level"), ("date", "date")]:
        if key in ctx:
            v = ctx[key]
            if isinstance(v, list):
                v = ", ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in v)
            rows.append([label, str(v).strip()])
    runs = ctx.get("dkq_runs") or []
    if len(runs) > 1:
        for name, date, load, nice, _ in runs:
            load_s = ", ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "?"
            rows.append([f"run {name}", f"{date}, load average {load_s}, nice {nice}"])
        rows = [r for r in rows if r[0] not in ("load average at start", "date", "nice level")]
    lines.append("| | |")
    lines.append("|---|---|")
    for k, v in rows:
        lines.append(f"| {k} | {v} |")
    lines.append("")
    return lines


# ---------------------------------------------------------------------------
# Chart


def make_chart(fams, baseline, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001 - any import problem means "no chart"
        return f"chart skipped: matplotlib not importable ({e.__class__.__name__})"
    n = len(fams)
    if n == 0:
        return "chart skipped: no comparison families"
    fig, axes = plt.subplots(n, 1, figsize=(13, 3.6 * n), squeeze=False)
    # One colour per implementation across all panels: baseline first, then
    # the others in name order.
    every = sorted({i for cases in fams.values() for c in cases.values() for i in c.impls},
                   key=lambda i: (i != baseline, impl_key(i)))
    palette = plt.get_cmap("tab10")
    colour = {impl: palette(k % 10) for k, impl in enumerate(every)}
    for ax, (fam, cases) in zip(axes[:, 0], fams.items()):
        present = {i for c in cases.values() for i in c.impls}
        impls = [i for i in every if i in present]
        labels = [case_label(c.params) for c in cases.values()]
        width = 0.8 / max(1, len(impls))
        for k, impl in enumerate(impls):
            xs, ys = [], []
            for j, c in enumerate(cases.values()):
                r = c.impls.get(impl)
                t = r.throughput() if (r and not r.error) else None
                if t:
                    xs.append(j + (k - (len(impls) - 1) / 2) * width)
                    ys.append(t / 1e6)
            style = {"edgecolor": "black", "linewidth": 1.2} if impl == baseline else {}
            ax.bar(xs, ys, width=width, label=impl, color=colour[impl], **style)
        ax.set_yscale("log")
        ax.set_ylabel("M items/s (log)")
        ax.set_title(FAMILY_TITLES.get(fam, fam), fontsize=10)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=min(len(impls), 7), loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------
# Summary (stdout) and report


def completed_note(cases, label, impl):
    """' (9 of 42 repetitions completed)' when some of impl's repetitions in
    this case failed: its median then describes only the runs that finished."""
    for c in cases.values():
        if case_label(c.params) != label:
            continue
        r = c.impls.get(impl)
        if r is not None and r.errors:
            total = r.repetitions + len(r.errors)
            return f" ({r.repetitions} of {total} repetitions completed)"
    return ""


def summary_rows(fams, baseline):
    rows = []
    for fam, cases in fams.items():
        for c in cases.values():
            ev = evaluate(c, baseline)
            rows.append((fam, case_label(c.params), ev))
    return rows


def print_summary(fams, baseline, out=sys.stdout):
    rows = summary_rows(fams, baseline)
    w = max([len(f"{f} {c}") for f, c, _ in rows] + [10])
    print(f"{'case':<{w}}  {baseline + ' items/s':>14}  {'best peer':<16} {'peer items/s':>12}  "
          f"{'ratio':>6}  target", file=out)
    for fam, case, ev in rows:
        target = "" if ev["met"] is None else ("met   " if ev["met"] else "MISSED") + " " + ev["target_text"]
        print(f"{fam + ' ' + case:<{w}}  {fmt_rate(ev['base']):>14}  {str(ev['best']):<16} "
              f"{fmt_rate(ev['best_tp']):>12}  {fmt_ratio(ev['ratio_best']):>6}  {target}", file=out)
    met = sum(1 for *_, ev in rows if ev["met"])
    judged = sum(1 for *_, ev in rows if ev["met"] is not None)
    print(f"targets met: {met}/{judged} (ratio = {baseline} throughput / peer throughput, "
          "median over repetitions; > 1 means dkq is faster)", file=out)


def write_report(path, ctx, results, fams, baseline, chart_rel, chart_note, notes_text, sources):
    lines = ["# Benchmarks", "",
             "<!-- Generated by scripts/bench_report.py from Google Benchmark JSON; "
             "edit the notes file, not this page. -->", ""]
    # Comparison runs (files with impl: rows) are what the ratios pool; files
    # of the plain families (DMA builders, device queues) are listed apart.
    runs = ctx.get("dkq_runs") or []
    compared = [r[0] for r in runs if r[4]] or [source_label(s) for s in sources]
    plain = [r[0] for r in runs if not r[4]]
    if len(compared) > 1:
        how = (f"the **median over all repetitions of the {len(compared)} runs** listed under "
               "Machine (within a run, every implementation was measured in the same binary, "
               "interleaved)")
    else:
        how = ("the **median over repetitions** of the same binary in the same run")
    lines += [f"Ratios are **{baseline} throughput / peer throughput** (> 1 means {baseline} is "
              f"faster), each side {how}. Source: " +
              ", ".join(f"`{s}`" for s in compared) + "." +
              (" Other benchmark families: " + ", ".join(f"`{s}`" for s in plain) + "."
               if plain else ""), ""]
    lines += machine_section(ctx)
    if fams:
        lines += ["## Summary: dkq against the best peer per case", ""]
        rows = []
        for fam, case, ev in summary_rows(fams, baseline):
            rows.append([FAMILY_TITLES.get(fam, fam).split(" (")[0], case, fmt_rate(ev["base"]),
                         str(ev["best"]) + completed_note(fams[fam], case, ev["best"]),
                         fmt_rate(ev["best_tp"]),
                         fmt_ratio(ev["ratio_best"], bold_below=1.0),
                         "-" if ev["met"] is None else
                         ("met" if ev["met"] else "**missed**") + f" ({ev['target_text']})"])
        lines.append(md_table(["family", "case", f"{baseline}", "best peer", "peer", "ratio",
                               "target"], rows))
        lines.append("")
        if chart_rel:
            lines += [f"![ring throughput, log scale]({chart_rel})", ""]
        elif chart_note:
            lines += [f"_({chart_note})_", ""]
    if notes_text:
        lines += [notes_text.rstrip(), ""]
    if fams:
        lines += ["## Results per case", ""]
        for fam, cases in fams.items():
            lines += comparison_section(fam, cases, baseline)
    other = other_sections(results)
    if other:
        lines += ["## Other benchmark families", "",
                  "Median over repetitions of the time per iteration and of every user counter.",
                  ""] + other
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+", help="Google Benchmark JSON output file(s)")
    ap.add_argument("--out", help="markdown report to write (e.g. docs/benchmarks.md)")
    ap.add_argument("--chart", help="PNG chart to write (e.g. docs/bench-rings.png)")
    ap.add_argument("--notes", help="markdown file inserted after the summary (analysis)")
    ap.add_argument("--append", action="append", default=[],
                    help="markdown file appended at the end (e.g. bench/nvme/REPORT.md); repeatable")
    ap.add_argument("--baseline", default="dkq", help="implementation the ratios are for")
    ap.add_argument("--summary", action="store_true", help="print a short ratio table to stdout")
    args = ap.parse_args(argv)

    ctx, results = load(args.json)
    fams = comparison_cases(results, args.baseline)
    if not results:
        print("no benchmark results found", file=sys.stderr)
        return 1

    chart_rel, chart_note = None, None
    if args.chart:
        chart_note = make_chart(fams, args.baseline, args.chart)
        if chart_note is None and args.out:
            chart_rel = os.path.relpath(os.path.abspath(args.chart),
                                        os.path.dirname(os.path.abspath(args.out)))
        elif chart_note:
            print(chart_note, file=sys.stderr)

    if args.out:
        notes = None
        if args.notes:
            with open(args.notes, encoding="utf-8") as f:
                notes = f.read()
        write_report(args.out, ctx, results, fams, args.baseline, chart_rel, chart_note, notes,
                     args.json)
        for extra in args.append:
            with open(extra, encoding="utf-8") as f:
                text = f.read().rstrip()
            with open(args.out, "a", encoding="utf-8") as f:
                f.write("\n" + text + "\n")
    if args.summary or not args.out:
        print_summary(fams, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
