#!/usr/bin/env python3
"""VM scenario `ublk_kill` (issue 14, scenario 3): dkq-nvme serve killed with
SIGKILL under fio load, one boot (Linux 6.12).

Guest (ublk_kill.sh):
  1. serve; mkfs.ext4; mount; tree A written and synced; fio writing into a
     file of that filesystem; SIGKILL the server. fio must end by itself with
     I/O errors (no hang), the disk must go away, the kernel log must hold no
     warning; a fresh serve of the same namespace: tree A intact.
  2. serve --recoverable; tree B written and synced with the filesystem
     mounted; SIGKILL; the disk stays (quiesced); serve --recover re-attaches
     it under the mounted filesystem; tree B reads back after the page cache
     is dropped, new files are written and synced, clean stop.
Host: the script passed; e2fsck -fn clean on the image; tree B and the files
written after the recovery read back byte-exact with debugfs.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import main_guard  # noqa: E402
from ublk_checks import check_image_tree, ublk_scenario, TREE  # noqa: E402


def main():
    s, nvme, ns, _, _ = ublk_scenario("ublk_kill", megasas=False)
    s.trace_patterns = ["pci_nvme_err_*", "pci_nvme_flush_ns"]
    s.run("ublk_kill", nvme.bdf, label="kill", timeout=400)
    r = s.boot()
    r.require_passed()
    n = check_image_tree(r, ns.path, "B", "NVMe namespace 1 after the recovery")
    r.check(n == len(TREE), f"tree B: {n} of {len(TREE)} files byte-exact in the image")
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
