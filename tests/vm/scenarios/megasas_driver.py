#!/usr/bin/env python3
"""VM scenario `megasas_driver`: the MegaRAID example driver (dkq-scsi) against
QEMU's MegaRAID models, one boot.

Devices
  mr0 (slot 5, megasas-gen2, SAS2108): two 16 MiB scsi-hd disks (targets 0, 1).
  mr1 (slot 6, megasas-gen2, max_cmds=32): one 8 MiB disk - a small reply
       queue so sustained load wraps it many times.
  mr2 (slot 7, megasas, SAS1078, msix=off): one 8 MiB disk - the older model
       once, on plain MSI.
Guest programs, in order
  list (sysfs scan + every controller), verify mr0 all targets at once with LD
  read/write frames (+ SYNCHRONIZE CACHE per target), verify mr0 with
  READ/WRITE(16) pass-through CDBs, sync mr0, inquiry + capacity, perf on mr1
  (thousands of commands through a 32-entry reply queue), verify mr1 in forced
  32-bit mode (SGL32, data above 4 GiB bounced), verify mr2 (1078), perf mr0
  (hybrid interrupts, then polled), hand mr0 to Linux's megaraid_sas and read
  both targets' patterns back with it, kernel perf (O_DIRECT + AIO) for the
  comparison.
Host checks
  every program passed; the images hold exactly the written patterns over the
  background; SYNCHRONIZE CACHE counted from QEMU's side (scsi_req_parsed
  command 53 = SYNC CACHE(10), 145 = (16)) equals what dkq-scsi reported
  sending; zero MegaRAID error events (harness); reply-queue wraps reported.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import MEGARAID_MODULES, NVME_MODULES, Cpio, Scenario, log, main_guard  # noqa: E402

from datapattern import MASK, background, check_images, mix, pattern  # noqa: E402,F401


class MegasasScenario(Scenario):
    """Packs Linux's megaraid_sas modules without loading them at boot (the
    harness loads extra_modules before binding vfio-pci, and megaraid_sas
    would take the controllers first); a second newc archive appended to the
    first is merged by the kernel's initramfs unpacker."""

    def _build_initramfs(self, kernel, busybox, path):
        super()._build_initramfs(kernel, busybox, path)
        c = Cpio()
        c.dir("lib/modules/extra")
        # sd_mod depends on t10-pi (crc-t10dif, crc64-rocksoft): the first part
        # of the module chain the NVMe scenarios load.
        t10 = NVME_MODULES[:NVME_MODULES.index("t10-pi") + 1]
        for m in t10 + MEGARAID_MODULES:
            with open(kernel.module(m), "rb") as f:
                c.file(f"lib/modules/extra/{m}.ko", f.read(), 0o644)
        extra = path + ".extra"
        c.write(extra)
        with open(path, "ab") as out, open(extra, "rb") as f:
            out.write(f.read())
        os.unlink(extra)


def main():
    base = Scenario.from_args("megasas_driver")
    s = MegasasScenario(base.name, base.work, base.programs, timeout=base.timeout)
    s.qemu_args = list(base.qemu_args)  # --qemu-args from the command line
    s.memory_mib = 768

    d00 = s.disk("mr0d0", mib=16, fill=background(b"mr0d0"))
    d01 = s.disk("mr0d1", mib=16, fill=background(b"mr0d1"))
    d10 = s.disk("mr1d0", mib=8, fill=background(b"mr1d0"))
    d20 = s.disk("mr2d0", mib=8, fill=background(b"mr2d0"))
    mr0 = s.megasas("mr0", slot=5, disks=[d00, d01])
    mr1 = s.megasas("mr1", slot=6, disks=[d10], props="max_cmds=32")
    # Target 1 of mr1 sits on a throttled drive (8 IOPS): with a 300 ms
    # command timeout, queued reads time out for real, and the driver's
    # timeout -> ABORT path runs against QEMU's model (megasas_abort_frame,
    # the cancelled command completes with SCSI_IO_FAILED and is finished once
    # as a timeout).
    dthr = s.disk("mr1d1", mib=4, fill=background(b"mr1d1"))
    mr1.qemu_args += ["-drive", f"file={dthr.path},if=none,id={dthr.name},format=raw,cache=writeback,"
                                "throttling.iops-total=8",
                      "-device", f"scsi-hd,drive={dthr.name},bus=mr1.0,channel=0,scsi-id=1,lun=0"]
    # msix=off: the 1078 runs on plain MSI, the fallback the driver takes
    # when a controller has no MSI-X.
    mr2 = s.megasas("mr2", slot=7, disks=[d20], model="megasas", props="msix=off")

    # (disk, target, lba, blocks, seed) of every range written; 4 KiB aligned
    # so Linux's driver can read them back with O_DIRECT.
    V_LD = dict(lba=96, blocks=4000, seed=21)      # mr0, both targets, LD frames
    V_PASS = dict(lba=6000, blocks=2000, seed=31)  # mr0, both targets, pass-through (16)
    V_32 = dict(lba=48, blocks=3000, seed=41)      # mr1, forced 32-bit
    V_1078 = dict(lba=8, blocks=1000, seed=51)     # mr2
    V_RW = dict(lba=20000, blocks=64, seed=61)     # mr0 target 1, `dkq-scsi write` (one command)
    writes = []
    for t, d in ((0, d00), (1, d01)):
        writes.append((d, V_LD["lba"], V_LD["blocks"], V_LD["seed"] + t))
        writes.append((d, V_PASS["lba"], V_PASS["blocks"], V_PASS["seed"] + t))
    writes.append((d01, V_RW["lba"], V_RW["blocks"], V_RW["seed"]))
    writes.append((d10, V_32["lba"], V_32["blocks"], V_32["seed"]))
    writes.append((d20, V_1078["lba"], V_1078["blocks"], V_1078["seed"]))

    def rng(v):
        return ["--lba", v["lba"], "--blocks", v["blocks"], "--seed", v["seed"]]

    s.run("dkq_scsi", "list", label="list")
    s.run("dkq_scsi", "verify", mr0.bdf, "--target", "all", *rng(V_LD), "--qd", 16, label="verify_ld", timeout=120)
    s.run("dkq_scsi", "verify", mr0.bdf, "--target", "all", *rng(V_PASS), "--qd", 8, "--pass", "--cdb16",
          "--no-sync", label="verify_pass16", timeout=120)
    s.run("dkq_scsi", "sync", mr0.bdf, "--target", "all", label="sync")
    s.run("dkq_scsi", "write", mr0.bdf, "--target", 1, *rng(V_RW), label="write")
    s.run("dkq_scsi", "read", mr0.bdf, "--target", 1, "--lba", V_RW["lba"], "--blocks", V_RW["blocks"],
          "--pass", label="read")
    s.run("dkq_scsi", "inquiry", mr0.bdf, "--target", 1, label="inquiry")
    s.run("dkq_scsi", "inquiry", mr0.bdf, "--target", 1, "--pd", label="inquiry_pd")
    s.run("dkq_scsi", "capacity", mr0.bdf, "--target", 0, label="capacity")
    s.run("dkq_scsi", "perf", mr1.bdf, "--target", 0, "--bs", 4096, "--qd", 24, "--rw", "read", "--ios", 4000,
          "--json", label="wrap", timeout=120)
    s.run("dkq_scsi", "verify", mr1.bdf, "--target", 0, *rng(V_32), "--qd", 8, "--force-32bit",
          label="verify_32bit", timeout=120)
    s.run("dkq_scsi", "perf", mr1.bdf, "--target", 1, "--bs", 4096, "--qd", 4, "--rw", "read", "--ios", 12,
          "--timeout-ms", 300, "--allow-errors", "--json", label="timeouts", timeout=120)
    # The same with no grace after ABORT: the driver resets the controller
    # (abort-all + READY doorbell, firmware to READY, INIT again) and re-posts
    # what was in flight - the reset path against QEMU's model.
    s.run("dkq_scsi", "perf", mr1.bdf, "--target", 1, "--bs", 4096, "--qd", 4, "--rw", "read", "--ios", 12,
          "--timeout-ms", 300, "--abort-grace-ms", 0, "--allow-errors", "--json", label="resets", timeout=120)
    s.run("dkq_scsi", "list", mr2.bdf, label="list_1078")
    s.run("dkq_scsi", "verify", mr2.bdf, "--target", "all", *rng(V_1078), "--qd", 8, label="verify_1078", timeout=120)
    # Performance: dkq-scsi and megaraid_sas alternate twice on the same
    # controller (hand-back to Linux, then back to vfio-pci with dkq-pci), so
    # a burst of load on the shared host does not decide the ratio.
    perf = ["perf", mr0.bdf, "--target", 0, "--bs", 4096, "--rw", "read", "--time", 3, "--json"]
    for rnd in (1, 2):
        if rnd == 2:
            s.run("dkq_pci", "bind", mr0.bdf, label="rebind")
        s.run("dkq_scsi", *perf, "--qd", 32, "--irq", label=f"perf_irq_{rnd}", timeout=90)
        if rnd == 1:
            s.run("dkq_scsi", *perf, "--qd", 32, "--hybrid", label="perf_hybrid", timeout=90)
            s.run("dkq_scsi", *perf, "--qd", 32, "--poll", label="perf_polled", timeout=90)
        s.run("dkq_scsi", *perf, "--qd", 1, label=f"perf_qd1_{rnd}", timeout=90)
        s.run("megasas_handback", mr0.bdf, 2, label=f"handback_{rnd}", timeout=60)
        if rnd == 1:
            for t in (0, 1):
                s.run("scsi_kbench", "verify", f"/dev/mrt{t}", "--offset", V_LD["lba"] * 512,
                      "--bytes", V_LD["blocks"] * 512, "--seed", V_LD["seed"] + t, label=f"kernel_read_t{t}")
        s.run("scsi_kbench", "perf", "/dev/mrt0", "--bs", 4096, "--qd", 32, "--time", 3, "--json",
              label=f"kernel_perf_{rnd}", timeout=90)
        s.run("scsi_kbench", "perf", "/dev/mrt0", "--bs", 4096, "--qd", 1, "--time", 3, "--json",
              label=f"kernel_perf_qd1_{rnd}", timeout=90)
    # Linux's megaraid_sas, not dkq-scsi, makes QEMU log these during its own
    # initialisation (measured: 6 x megasas_iovec_sgl_overflow per disk, "iovec count
    # 0" for DCMDs without SGEs, 1 x megasas_iov_read_underflow). They come
    # after the handback; the check below proves none happened before it.
    s.allow("megasas_iovec_sgl_overflow", "Linux megaraid_sas init after each hand-back (6 per disk, measured)",
            max_count=32)
    s.allow("megasas_iov_read_underflow", "Linux megaraid_sas init after each hand-back (measured)", max_count=8)

    r = s.boot()
    r.require_passed()

    # verify is written as a coroutine (dkq/coro): every verify run says so.
    for label in ("verify_ld", "verify_pass16", "verify_32bit", "verify_1078"):
        pr = r.program(label)
        if r.check(pr is not None, f"{label}: no output"):
            r.check("coroutines:" in pr.output, f"{label}: verify did not run on the coroutine path")

    # ---- nothing before the handback made a MegaRAID error event ----------------------
    err_rx = re.compile(r"megasas_.*(invalid|overflow|underflow).*|megasas_unhandled_frame_cmd|"
                        r"megasas_scsi_target_not_present|megasas_io_target_not_present")
    # Sessions start with an MFI INIT. Linux's megaraid_sas sessions are the
    # ones that register for events (CTRL_EVENT_GETINFO / EVENT_WAIT), which
    # dkq-scsi never does. No error event may fall into any other session.
    ev = r.trace.events
    inits = [i for i, (n, t) in enumerate(ev) if n == "megasas_init_firmware"] + [len(ev)]
    ours_err, linux_sessions = [], 0
    first = [(n, t) for (n, t) in ev[:inits[0]] if err_rx.fullmatch(n)]
    ours_err += first
    for a, b in zip(inits, inits[1:]):
        window = ev[a:b]
        linux = any(n == "megasas_dcmd_enter" and "CTRL_EVENT" in t for (n, t) in window)
        linux_sessions += linux
        if not linux:
            ours_err += [(n, t) for (n, t) in window if err_rx.fullmatch(n)]
    r.check(linux_sessions == 2, f"expected 2 megaraid_sas sessions (hand-backs), found {linux_sessions}")
    r.check(not ours_err, f"MegaRAID error events in dkq-scsi sessions: {ours_err[:3]}")
    log(f"{len(inits) - 1} MFI INITs ({len(inits) - 1 - linux_sessions} dkq-scsi sessions, {linux_sessions} "
        f"megaraid_sas); {len(ours_err)} error events in dkq-scsi sessions")

    # ---- SYNCHRONIZE CACHE reaches the device, counted from QEMU's side ---------------
    sent10 = sent16 = 0
    for label in ("verify_ld", "sync", "verify_32bit", "verify_1078"):
        pr = r.program(label)
        m = re.search(r"@@SCSI-SYNC sync16=(\d+) sync10=(\d+)", pr.output if pr else "")
        if r.check(m, f"{label}: no sync summary"):
            sent16 += int(m.group(1))
            sent10 += int(m.group(2))
    parsed10 = r.trace.count("scsi_req_parsed", command=53)
    parsed16 = r.trace.count("scsi_req_parsed", command=145)
    log(f"SYNCHRONIZE CACHE: dkq-scsi sent {sent10} x (10) + {sent16} x (16); QEMU parsed {parsed10} x 0x35, "
        f"{parsed16} x 0x91")
    r.check(sent10 == 2 + 2 + 1 + 1, f"expected 6 SYNC CACHE(10) sent, program reports {sent10}")
    r.check(parsed10 == sent10, f"QEMU parsed {parsed10} SYNCHRONIZE CACHE(10), dkq-scsi sent {sent10}")
    r.check(parsed16 == sent16, f"QEMU parsed {parsed16} SYNCHRONIZE CACHE(16), dkq-scsi sent {sent16}")
    flush_dcmds = len([1 for n, t in r.trace.events if n == "megasas_dcmd_enter" and "CTRL_CACHE_FLUSH" in t])
    r.check(flush_dcmds >= 18, f"cache flush DCMD at every dkq-scsi shutdown: saw {flush_dcmds}")

    # ---- reply queue wraps -----------------------------------------------------------------
    res = {}
    labels = ["wrap", "timeouts", "resets", "perf_hybrid", "perf_polled"] + [f"{p}_{k}" for k in (1, 2) for p in
                                                        ("perf_irq", "perf_qd1", "kernel_perf", "kernel_perf_qd1")]
    for label in labels:
        pr = r.program(label)
        line = next((l for l in (pr.lines() if pr else []) if l.startswith("{")), None)
        if r.check(line, f"{label}: no JSON result"):
            res[label] = json.loads(line)
    if "wrap" in res:
        w = res["wrap"]
        r.check(w["ios"] == 4000 and w["errors"] == 0, f"wrap run lost or failed I/O: {w}")
        r.check(w["reply_wraps"] >= 4000 // 32 - 1, f"reply queue wrapped only {w['reply_wraps']} times")
        log(f"reply queue (32 entries, max_cmds=32): {w['ios']} commands, {w['reply_wraps']} wraps, "
            f"{w['ci_writes']} consumer-index writes")
    # `read` (a READ(10) pass-through) dumps the first 256 bytes it got back:
    # they must be the pattern `write` put there (an LD write frame).
    pr = r.program("read")
    want = pattern(V_RW["seed"], V_RW["lba"] * 512, 16)
    r.check(pr and ("%08x: " % (V_RW["lba"] * 512) + " ".join("%02x" % b for b in want)) in pr.output,
            "dkq-scsi read did not return what dkq-scsi write wrote")
    if "timeouts" in res:
        t = res["timeouts"]
        aborts_seen = r.trace.count("megasas_abort_frame")
        log(f"throttled target: {t['ios']} reads, {t['timed_out']} timed out, {t['aborts']} ABORT frames "
            f"(megasas_abort_frame in the whole trace: {aborts_seen}, with the resets run and megaraid_sas), {t['resets']} resets, {t['reissued']} re-issued, "
            f"{t['double_completions']} double completions")
        r.check(t["ios"] == 12 and t["double_completions"] == 0 and t["in_flight_after"] == 0,
                f"timeout run lost or doubled a command: {t}")
        r.check(t["timed_out"] >= 1 and t["aborts"] >= 1, f"no command timed out against the throttled drive: {t}")
        r.check(aborts_seen >= 1, "QEMU saw no ABORT frame")
    if "resets" in res:
        t = res["resets"]
        log(f"throttled target, no abort grace: {t['ios']} reads, {t['timed_out']} timed out, {t['aborts']} aborts, "
            f"{t['resets']} controller resets, {t['reissued']} re-issued, {t['double_completions']} double completions")
        r.check(t["ios"] == 12 and t["double_completions"] == 0 and t["in_flight_after"] == 0,
                f"reset run lost or doubled a command: {t}")
        r.check(t["resets"] >= 1, f"no controller reset happened: {t}")
    pr = r.program("inquiry_pd")
    r.check(pr and "physical drive 1 (PD frame): type 0x00 vendor 'QEMU'" in pr.output, "PD SCSI IO INQUIRY")
    pr = r.program("list_1078")
    r.check(pr and re.search(r"SGL64, .* MSI$", pr.output, re.M), "1078 with msix=off should run on MSI")
    pr = r.program("verify_32bit")
    r.check(pr and re.search(r"bounced [1-9]", pr.output), "forced 32-bit verify did not bounce")

    # ---- performance: dkq-scsi vs Linux megaraid_sas, same guest, same bs/QD ----------
    # Interrupts against interrupts is the like-for-like ratio at QD32
    # (megaraid_sas is interrupt-driven); hybrid and polled are shown beside it.
    ratios = {"QD32": [], "QD1": []}
    for k in (1, 2):
        for qd_label, dk, kb in (("QD32", f"perf_irq_{k}", f"kernel_perf_{k}"),
                                 ("QD1", f"perf_qd1_{k}", f"kernel_perf_qd1_{k}")):
            if dk in res and kb in res and res[kb]["iops"]:
                ratios[qd_label].append(res[dk]["iops"] / res[kb]["iops"])
                log(f"perf round {k}, 4 KiB random reads {qd_label}: dkq-scsi {res[dk]['iops']:.0f} IOPS "
                    f"({res[dk]['mode']}, p50 {res[dk]['lat_us']['p50']:.1f} us), megaraid_sas "
                    f"{res[kb]['iops']:.0f} IOPS (p50 {res[kb]['lat_us']['p50']:.1f} us), "
                    f"ratio {ratios[qd_label][-1]:.2f}")
    for k in ("perf_hybrid", "perf_polled"):
        if k in res:
            log(f"perf round 1, QD32 {res[k]['mode']}: {res[k]['iops']:.0f} IOPS, p50 {res[k]['lat_us']['p50']:.1f} us")
    for q, v in ratios.items():
        if v:
            log(f"perf ratio dkq-scsi / megaraid_sas {q}: " + ", ".join(f"{x:.2f}" for x in v) +
                f" (mean {sum(v) / len(v):.2f})")

    # ---- the images: patterns where written, background everywhere else ----------------
    check_images(r, (d00, d01, d10, dthr, d20), writes)
    return r.finish()


main_guard(main)
