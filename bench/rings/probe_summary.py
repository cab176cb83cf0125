#!/usr/bin/env python3
"""Pool probe JSON files (bench/rings/probe.sh): per benchmark, the median of
every repetition of every file for items/s and each counter, the number of
repetitions, and each file's median items/s (to show the run-to-run spread)."""
import json, statistics, sys
from collections import OrderedDict

rows = OrderedDict()
per_file = OrderedDict()
for path in sys.argv[1:]:
    with open(path) as f:
        data = json.load(f)
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            if b.get("error_occurred"):
                rows.setdefault(b["run_name"], {}).setdefault("_failed", []).append(1)
            continue
        r = rows.setdefault(b["run_name"], {})
        for k, v in b.items():
            if isinstance(v, (int, float)) and (k.endswith("_per_kitem") or k == "items_per_second"):
                r.setdefault(k, []).append(v)
        per_file.setdefault(b["run_name"], OrderedDict()).setdefault(path, []).append(b.get("items_per_second", 0))

for name, r in rows.items():
    ips = r.get("items_per_second", [])
    short = name.replace("/real_time", "")
    if not ips:
        print(f"{short}: all failed")
        continue
    parts = [f"{statistics.median(ips)/1e6:8.1f} M/s  reps {len(ips)}"]
    if r.get("_failed"):
        parts.append(f"(+{len(r['_failed'])} failed)")
    for k in sorted(r):
        if k.endswith("_per_kitem"):
            parts.append(f"{k.replace('_per_kitem','')}/k {statistics.median(r[k]):.2f}")
    runs = [statistics.median(v) / 1e6 for v in per_file[name].values()]
    parts.append("per-run " + " ".join(f"{x:.0f}" for x in runs))
    print(f"{short:70s} " + "  ".join(parts))
