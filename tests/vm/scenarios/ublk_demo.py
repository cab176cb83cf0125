#!/usr/bin/env python3
"""ublk demonstration (scripts/demo-vm.sh): one boot of a Linux 6.12 guest;
dkq-nvme serves QEMU's NVMe namespace as /dev/ublkb0 and unmodified Debian
programs use it (mkfs.ext4, mount, fio, fsck). Not a ctest test; the checks
are in ublk_fs.py, ublk_fio.py, ublk_kill.py and ublk_errors.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dkqvm import main_guard  # noqa: E402
from ublk_checks import ublk_scenario  # noqa: E402


def main():
    s, nvme, ns, _, _ = ublk_scenario("ublk_demo", megasas=False)
    s.program("ublk_demo", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ublk_demo.sh"))
    s.trace_patterns = ["pci_nvme_err_*"]
    s.run("ublk_demo", nvme.bdf, label="serve_mkfs_fio", timeout=240)
    r = s.boot()
    r.require_passed()
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
