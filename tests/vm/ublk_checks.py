"""Host-side checks shared by the ublk scenarios (tests/vm/scenarios/ublk_*.py).

The guest writes files whose bytes are a function of (tag, file, line), so the
host can rebuild them and compare them with what ended up in the disk image,
read with debugfs (e2fsprogs) without mounting anything. fio's JSON reports,
printed by the guest between markers, are parsed here too.
"""
import json
import re
import shutil
import subprocess

# The same list as TREE in scenarios/ublk_lib.sh: name -> lines.
TREE = {"d1/a": 10, "d1/b": 1000, "d2/c": 30000, "d2/d3/e": 1, "f": 60000}


def expected_file(tag, name, lines):
    return "".join("dkq %s %s %07d the quick brown fox jumps over the lazy dog\n" % (tag, name, j)
                   for j in range(lines)).encode()


def check_image_tree(r, image, tag, what):
    """Every file of the tree, read out of the ext4 image with debugfs, equals
    what the guest wrote; e2fsck -fn on the image is clean."""
    if shutil.which("debugfs") is None or shutil.which("e2fsck") is None:
        r.fail("host needs e2fsprogs (debugfs, e2fsck): apt-get install e2fsprogs")
        return
    fsck = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
    if not r.check(fsck.returncode == 0, f"{what}: e2fsck -fn on the host image: status {fsck.returncode}\n"
                                         f"{fsck.stdout.strip().splitlines()[0] if fsck.stdout.strip() else ''}"):
        return 0
    same = 0
    for name, lines in TREE.items():
        got = subprocess.run(["debugfs", "-R", "cat /" + name, image], capture_output=True).stdout
        if r.check(got == expected_file(tag, name, lines),
                   f"{what}: /{name} in the image: {len(got)} bytes, differs from the {len(expected_file(tag, name, lines))} written"):
            same += 1
    return same


def fio_reports(output):
    """{(tag, name): (rc, json)} from the guest's @@FIO-JSON markers."""
    out = {}
    for m in re.finditer(r"@@FIO-JSON-BEGIN (\S+) (\S+)\n(.*?)@@FIO-JSON-END \1 \2 rc=(\d+)", output, re.S):
        text = m.group(3)
        start = text.find("{")
        try:
            data = json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            data = None
        out[(m.group(1), m.group(2))] = (int(m.group(4)), data)
    return out


def fio_counts(report):
    """(writes, fsyncs, verify_errors) of one fio JSON report."""
    writes = fsyncs = 0
    for job in report.get("jobs", []):
        writes += job.get("write", {}).get("total_ios", 0)
        fsyncs += job.get("sync", {}).get("total_ios", 0)
    return writes, fsyncs


def server_stats(output, device=None):
    """The server's {"event":"stopped"} lines (one per disk), as dicts."""
    out = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and '"event":"stopped"' in line:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if device is None or d.get("device") == device:
                out.append(d)
    return out


def ublk_scenario(name, mib=64, megasas=True, second=False):
    """A 6.12 guest (ublk_drv is not in 6.1) with ublk_drv and ext4 loaded,
    the Debian programs, the guest scripts, one QEMU NVMe controller (slot 4,
    namespace 1 of `mib` MiB with 4 KiB logical blocks, so 512-byte sectors
    and LBAs differ) and, when `megasas`, one megasas-gen2 (slot 5, logical
    drive 0 of `mib` MiB, 512-byte blocks). `second`: also namespace 2 (8 MiB,
    512-byte blocks) and logical drive 1 (8 MiB), for `--ns all` / `--target
    all`. Returns (s, nvme, ns_disk, mfi, ld_disk)."""
    import os
    from dkqvm import Scenario
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
    s = Scenario.from_args(name, kernel="6.12")
    s.extra_modules = ["ublk_drv", "ext4"]
    for p in ("mkfs.ext4", "fsck.ext4", "fio"):
        s.host_program(p)
    s.pack("ublk_lib.sh", os.path.join(here, "ublk_lib.sh"))
    # The drivers are started by the guest scripts, not by the harness.
    for p in ("dkq_nvme", "dkq_scsi"):
        if p in s.programs:
            s.packed_programs.append(p)
    for sc in ("ublk_fs", "ublk_fio", "ublk_kill", "ublk_errors"):
        s.program(sc, os.path.join(here, sc + ".sh"))
    ns = s.disk(name + "_ns1", mib=mib)
    nvme = s.nvme("nvme0", slot=4, namespaces=[], serial="dkq-ublk")
    nvme.qemu_args += ["-drive", f"file={ns.path},if=none,id={ns.name},format=raw,cache=writeback",
                       "-device", f"nvme-ns,drive={ns.name},bus=nvme0,nsid=1,"
                                  "logical_block_size=4096,physical_block_size=4096"]
    if second:
        ns2 = s.disk(name + "_ns2", mib=8)
        nvme.qemu_args += ["-drive", f"file={ns2.path},if=none,id={ns2.name},format=raw,cache=writeback",
                           "-device", f"nvme-ns,drive={ns2.name},bus=nvme0,nsid=2,"
                                      "logical_block_size=512,physical_block_size=512"]
    mfi = ld = None
    if megasas:
        ld = s.disk(name + "_ld0", mib=mib)
        disks = [ld] + ([s.disk(name + "_ld1", mib=8)] if second else [])
        mfi = s.megasas("mfi0", slot=5, disks=disks)
    return s, nvme, ns, mfi, ld
