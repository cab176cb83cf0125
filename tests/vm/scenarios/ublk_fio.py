#!/usr/bin/env python3
"""VM scenario `ublk_fio` (issue 14, scenario 2): fio, unmodified, through
dkq-served disks (Linux 6.12), one boot.

Guest, per disk (ublk_fio.sh): crc32c-verified random writes at 4 KiB and
128 KiB, queue depth 32, --fsync=32; O_DSYNC direct writes (FUA); 128 writes
each followed by its own fsync (psync, --fsync=1).
Host:
  - every fio run exited 0 with 0 verify errors;
  - flushes: QEMU saw exactly one device flush (NVMe Flush / SYNCHRONIZE
    CACHE (10)) per ublk FLUSH the server received, plus its final one, and
    at least one per fsync of the serial job. fio's QD 32 jobs keep several
    fsyncs pending at once and the block layer answers those with one flush
    that started after all of them (block/blk-flush.c), so there the device
    count is lower than fio's fsync count, by design of Linux, not ours;
  - FUA: the server received one FUA write per write of the O_DSYNC job;
    MegaRAID: QEMU's scsi-disk received exactly that many WRITE (16) CDBs with
    the FUA bit (scsi_disk_new_request shows the CDB); NVMe: the driver posted
    that many writes with FUA set. QEMU 7.2's NVMe model has no FUA trace and
    passes no FUA flag to its block layer (blk_co_pwritev showed flags 0x0 for
    every write), so for NVMe the bit itself is checked in the unit tests
    (tests/nvme_dext: the fake controller sees CDW12 bit 30).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import log, main_guard  # noqa: E402
from ublk_checks import fio_counts, fio_reports, server_stats, ublk_scenario  # noqa: E402

JOBS = ("verify4k", "verify128k", "fua", "fsync1")


def check_disk(r, label, tag):
    p = r.program(label)
    if p is None:
        return
    reps = fio_reports(p.output)
    counts = {}
    for name in JOBS:
        rc, data = reps.get((tag, name), (None, None))
        if not r.check(rc == 0 and data is not None, f"{tag} fio {name}: exit {rc}, report {'ok' if data else 'missing'}"):
            continue
        w, f = fio_counts(data)
        errs = sum(j.get("error", 0) for j in data.get("jobs", []))
        r.check(errs == 0, f"{tag} fio {name}: error {errs}")
        counts[name] = (w, f)
        log(f"{tag} fio {name}: {w} writes{' verified' if 'verify' in name else ''}, fio counts {f} syncs, error {errs}")
    st = server_stats(p.output)
    if not r.check(len(st) == 1, f"{label}: no stop report from the server"):
        return
    st = st[0]
    fua_writes = counts.get("fua", (0, 0))[0]
    serial = counts.get("fsync1", (0, 0))[0]
    r.check(st["failed"] == 0 and st["refused"] == 0, f"{tag}: server failed {st['failed']} / refused {st['refused']}")
    r.check(serial == 128 and st["flushes"] >= serial + 2,
            f"{tag}: the serial job wrote {serial} times with an fsync after each; the server received "
            f"{st['flushes']} FLUSH in all (want >= {serial} + one per QD 32 job)")
    r.check(st["fua_writes"] == fua_writes > 0,
            f"{tag}: fio's O_DSYNC job wrote {fua_writes} times, the server received {st['fua_writes']} FUA writes")
    if tag == "nvme":
        dev_flush = r.trace.count("pci_nvme_flush_ns")
        r.check(dev_flush == st["flushes"] + 1,
                f"nvme: the server received {st['flushes']} FLUSH, QEMU saw {dev_flush} Flush (want FLUSH + 1 final)")
        lines = [ln for ln in p.output.splitlines() if '"event":"nvme-commands"' in ln]
        posted = json.loads(lines[-1]) if lines else {}
        r.check(posted.get("fua_writes") == st["fua_writes"],
                f"nvme: {st['fua_writes']} FUA writes received, {posted.get('fua_writes')} posted with FUA")
        r.check(posted.get("flush") == dev_flush, f"nvme: {posted.get('flush')} Flush posted, QEMU saw {dev_flush}")
        log(f"nvme: {st['flushes']} ublk FLUSH (serial job: {serial} fsyncs) -> {dev_flush} NVMe Flush at the device "
            f"(incl. the final one); {fua_writes} O_DSYNC writes -> {st['fua_writes']} ublk FUA writes -> "
            f"{posted.get('fua_writes')} NVMe writes posted with FUA")
    else:
        sync10 = r.trace.count("scsi_req_parsed", command=0x35)
        fua16 = sum(1 for n, t in r.trace.events if n == "scsi_disk_new_request" and "data= 0x8a 0x08 " in t)
        r.check(sync10 == st["flushes"] + 1,
                f"mfi: the server received {st['flushes']} FLUSH, QEMU parsed {sync10} SYNCHRONIZE CACHE (10) "
                "(want FLUSH + 1 final)")
        r.check(fua16 == st["fua_writes"],
                f"mfi: {st['fua_writes']} FUA writes served, QEMU's disk got {fua16} WRITE (16) with FUA")
        log(f"mfi: {st['flushes']} ublk FLUSH (serial job: {serial} fsyncs) -> {sync10} SYNCHRONIZE CACHE (10); "
            f"{fua_writes} O_DSYNC writes -> {st['fua_writes']} FUA writes -> {fua16} WRITE (16) with the FUA bit "
            "at QEMU's scsi-disk")


def main():
    s, nvme, ns, mfi, ld = ublk_scenario("ublk_fio")
    # Only what is counted: per-command NVMe events would slow QEMU down.
    s.trace_patterns = ["pci_nvme_flush_ns", "pci_nvme_err_*", "megasas_*", "scsi_req_parsed", "scsi_disk_new_request"]
    s.run("ublk_fio", "nvme", "/progs/dkq_nvme", "serve", nvme.bdf, "--ns", 1, "--json", label="fio_nvme", timeout=400)
    s.run("ublk_fio", "mfi", "/progs/dkq_scsi", "serve", mfi.bdf, "--target", 0, "--json", label="fio_mfi", timeout=400)
    r = s.boot()
    r.require_passed()
    check_disk(r, "fio_nvme", "nvme")
    check_disk(r, "fio_mfi", "mfi")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
