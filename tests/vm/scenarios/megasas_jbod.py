#!/usr/bin/env python3
"""VM scenario `megasas_jbod`: dkq-scsi against QEMU's MegaRAID in JBOD mode
(megasas-gen2 use_jbod=on: no logical drives, every disk a SYSTEM physical
drive - hw/scsi/megasas.c megasas_is_jbod), one boot.

Devices
  mrj (slot 5, megasas-gen2, use_jbod=on): two 8 MiB scsi-hd disks (SCSI ids 0, 1).
Guest programs, in order
  list; the refusals (jbod_errors: LD commands on JBOD disks, an unlisted PD,
  sizes above the driver's limit - each refused before anything is sent);
  write + read back one range on PD 1; verify both PDs at QD 8 (each ends with
  SYNCHRONIZE CACHE); sync both; perf on PD 0 with --qd above the queue depth
  (one notice); SIGTERM in the middle of perf; verify PD 0 again after it.
Host checks
  every program passed; list shows 0 LDs and 2 system drives; QEMU saw PD
  SCSI IO frames only (no LD frame, no "target not present": refusals never
  reached the device); SYNCHRONIZE CACHE counted from QEMU's side equals what
  dkq-scsi reported; the images hold exactly the written patterns.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import Scenario, log, main_guard  # noqa: E402

from datapattern import background, check_images, pattern  # noqa: E402


def main():
    s = Scenario.from_args("megasas_jbod")
    d0 = s.disk("mrjd0", mib=8, fill=background(b"mrjd0"))
    d1 = s.disk("mrjd1", mib=8, fill=background(b"mrjd1"))
    mrj = s.megasas("mrj", slot=5, disks=[d0, d1], props="use_jbod=on")

    RW = dict(lba=100, blocks=64, seed=61)       # PD 1, write + read
    V = dict(lba=1000, blocks=3000, seed=71)     # both PDs, verify (seed + target)
    V2 = dict(lba=6000, blocks=500, seed=81)     # PD 0, verify after SIGTERM
    writes = [(d1, RW["lba"], RW["blocks"], RW["seed"]),
              (d0, V["lba"], V["blocks"], V["seed"] + 0), (d1, V["lba"], V["blocks"], V["seed"] + 1),
              (d0, V2["lba"], V2["blocks"], V2["seed"])]

    def rng(v):
        return ["--lba", v["lba"], "--blocks", v["blocks"], "--seed", v["seed"]]

    s.run("dkq_scsi", "list", mrj.bdf, label="list")
    s.run("jbod_errors", mrj.bdf, label="errors", timeout=120)
    s.run("dkq_scsi", "write", mrj.bdf, "--pd", "--target", 1, *rng(RW), label="write")
    s.run("dkq_scsi", "read", mrj.bdf, "--pd", "--target", 1, "--lba", RW["lba"], "--blocks", RW["blocks"],
          label="read")
    s.run("dkq_scsi", "verify", mrj.bdf, "--pd", "--target", "all", *rng(V), "--qd", 8, label="verify",
          timeout=120)
    s.run("dkq_scsi", "sync", mrj.bdf, "--pd", "--target", "all", label="sync")
    s.run("dkq_scsi", "perf", mrj.bdf, "--pd", "--target", 0, "--bs", 4096, "--qd", 5000, "--rw", "read",
          "--ios", 3000, "--json", label="perf", timeout=90)
    s.run("scsi_sigterm", mrj.bdf, "--pd", "--target", 0, "--bs", 4096, "--qd", 32, "--rw", "read",
          label="sigterm", timeout=60)
    s.run("dkq_scsi", "verify", mrj.bdf, "--pd", "--target", 0, *rng(V2), "--qd", 8, label="verify_after",
          timeout=120)

    r = s.boot()
    r.require_passed()

    pr = r.program("list")
    out = pr.output if pr else ""
    r.check("logical drives: 0  physical drives: 2" in out, "list: expected 0 logical and 2 physical drives")
    r.check(out.count("state system (JBOD)") == 2, "list: expected two system (JBOD) drives")
    pr = r.program("errors")
    n_ok = (pr.output if pr else "").count("ok: dkq-scsi")
    r.check(n_ok == 10, f"expected 10 refusals, saw {n_ok}")

    ev = r.trace.events
    pd_frames = sum(1 for n, t in ev if n == "megasas_handle_scsi" and "PD" in t)
    ld_frames = sum(1 for n, t in ev if n == "megasas_handle_scsi" and "LD" in t) + \
        sum(1 for n, t in ev if n == "megasas_handle_io")
    not_present = sum(1 for n, t in ev if n in ("megasas_scsi_target_not_present", "megasas_io_target_not_present"))
    log(f"QEMU: {pd_frames} PD SCSI IO frames, {ld_frames} LD frames, {not_present} 'target not present'")
    r.check(pd_frames > 3000, f"expected the I/O in PD SCSI IO frames, QEMU saw {pd_frames}")
    r.check(ld_frames == 0, f"an LD frame reached the JBOD controller ({ld_frames})")
    r.check(not_present == 0, f"a refused command reached the device ({not_present} target-not-present events)")

    sent10 = sent16 = 0
    for label in ("verify", "sync", "verify_after"):
        pr = r.program(label)
        m = re.search(r"@@SCSI-SYNC sync16=(\d+) sync10=(\d+)", pr.output if pr else "")
        if r.check(m, f"{label}: no sync summary"):
            sent16 += int(m.group(1))
            sent10 += int(m.group(2))
    parsed10 = r.trace.count("scsi_req_parsed", command=53)
    parsed16 = r.trace.count("scsi_req_parsed", command=145)
    log(f"SYNCHRONIZE CACHE to physical drives: dkq-scsi sent {sent10} x (10) + {sent16} x (16); "
        f"QEMU parsed {parsed10} x 0x35, {parsed16} x 0x91")
    r.check(sent10 == 2 + 2 + 1, f"expected 5 SYNC CACHE(10), program reports {sent10}")
    r.check(parsed10 == sent10 and parsed16 == sent16, "QEMU's SYNCHRONIZE CACHE count differs from dkq-scsi's")

    pr = r.program("perf")
    out = pr.output if pr else ""
    r.check(out.count("notice: --qd 5000 capped to") == 1, "perf: expected one queue-depth notice")
    pr = r.program("read")
    want = pattern(RW["seed"], RW["lba"] * 512, 16)
    r.check(pr and ("%08x: " % (RW["lba"] * 512) + " ".join("%02x" % b for b in want)) in pr.output,
            "read --pd did not return what write --pd wrote")
    pr = r.program("sigterm")
    r.check(pr and "stopped by a signal" in pr.output, "perf did not report the signal")

    check_images(r, (d0, d1), writes)
    return r.finish()


main_guard(main)
