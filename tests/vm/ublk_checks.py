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
    r.check(fsck.returncode == 0, f"{what}: e2fsck -fn on the host image: status {fsck.returncode}\n{fsck.stdout}")
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
