#!/usr/bin/env python3
"""Unit tests of the VM harness's own logic, without QEMU: console parsing,
trace counting, guest-declared trace expectations, the protocol-error check
and its allow-list, and the cpio writer. A harness that cannot fail would make
every VM test pass, so its failure paths are tested here."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dkqvm  # noqa: E402


# Everything the tests write lives under one directory removed at exit.
_TMP = tempfile.TemporaryDirectory(prefix="dkqvm-test-")


def fake_result(console, trace_lines, runs=(("p1", "p1", [], 60),), allows=()):
    tmp = tempfile.mkdtemp(dir=_TMP.name)
    s = dkqvm.Scenario("t", tmp, {r[1]: "/bin/true" for r in runs})
    s.runs = list(runs)
    for a in allows:
        s.allow(*a)
    path = os.path.join(tmp, "trace.log")
    with open(path, "w") as f:
        f.write("\n".join(trace_lines) + "\n")
    return dkqvm.Result(s, console, dkqvm.Trace(path), 1.0, False, 0)


CONSOLE_OK = """[ 1.0] kernel noise
@@DKQ-READY 3.50
@@DKQ-BEGIN p1
hello
@@DKQ-EXPECT-TRACE pci_nvme_mmio_doorbell_sq sqid=0 new_tail=1 count=1
@@DKQ-EXPECT-TRACE pci_nvme_irq_msix vector=0 count=1
@@DKQ-END p1 rc=0
@@DKQ-DONE 3.60
"""
TRACE_OK = ["pci_nvme_mmio_doorbell_sq sqid 0 new_tail 1",
            "1234@1700000000.000001:pci_nvme_irq_msix raising MSI-X IRQ vector 0",
            "megasas_mmio_readl reg MFI_OSP0: 0xb45003f0"]


class HarnessTest(unittest.TestCase):
    def test_console_parsing(self):
        r = fake_result(CONSOLE_OK, TRACE_OK)
        self.assertEqual(r.programs["p1"].rc, 0)
        self.assertIn("hello", r.programs["p1"].output)
        self.assertEqual(r.boot_seconds, 3.5)
        r.require_passed()
        self.assertEqual(r.failures, [])

    def test_program_failure_and_missing_end(self):
        r = fake_result("@@DKQ-BEGIN p1\nboom\n@@DKQ-END p1 rc=3\n", [])
        r.require_passed()
        self.assertTrue(any("exit status 3" in f for f in r.failures))
        r = fake_result("@@DKQ-BEGIN p1\nhang...\n", [])
        r.require_passed()
        self.assertTrue(any("did not finish" in f for f in r.failures))
        r = fake_result("", [], runs=(("p1", "p1", [], 60), ("p2", "p1", [], 60)))
        r.require_passed()
        self.assertEqual(len([f for f in r.failures if "never ran" in f]), 2)

    def test_trace_counting(self):
        t = fake_result("", TRACE_OK).trace
        self.assertEqual(t.count("pci_nvme_mmio_doorbell_sq", sqid="0"), 1)
        self.assertEqual(t.count("pci_nvme_mmio_doorbell_sq", sqid="1"), 0)
        self.assertEqual(t.count("pci_nvme_irq_msix", vector="0"), 1)  # timestamped line
        self.assertEqual(t.count("megasas_mmio_readl", reg="MFI_OSP0"), 1)
        self.assertEqual(t.count("pci_nvme_.*"), 2)

    def test_expectations_match_and_mismatch(self):
        r = fake_result(CONSOLE_OK, TRACE_OK)
        r.check_trace_expectations()
        self.assertEqual(r.failures, [])
        r = fake_result(CONSOLE_OK, TRACE_OK + ["pci_nvme_mmio_doorbell_sq sqid 0 new_tail 1"])
        r.check_trace_expectations()
        self.assertTrue(any("device saw 2, programs made 1" in f for f in r.failures), r.failures)

    def test_expectations_add_up_across_programs(self):
        console = ("@@DKQ-BEGIN a\n@@DKQ-EXPECT-TRACE ev x=1 count=2\n@@DKQ-END a rc=0\n"
                   "@@DKQ-BEGIN b\n@@DKQ-EXPECT-TRACE ev x=1 count=1\n@@DKQ-END b rc=0\n")
        r = fake_result(console, ["ev x 1"] * 3, runs=(("a", "a", [], 60), ("b", "b", [], 60)))
        r.check_trace_expectations()
        self.assertEqual(r.failures, [])

    def test_protocol_errors_fail_unless_allowed(self):
        bad = ["pci_nvme_err_invalid_prp2_align invalid PRP2", "megasas_iovec_sgl_overflow iovec count 0",
               "megasas_unhandled_frame_cmd frame 1 cmd 9"]
        r = fake_result(CONSOLE_OK, TRACE_OK + bad)
        r.check_protocol_errors()
        self.assertEqual(len(r.failures), 3, r.failures)
        r = fake_result(CONSOLE_OK, TRACE_OK + bad[1:2] * 2,
                        allows=[("megasas_iovec_sgl_overflow", "QEMU treats a zero-SGE frame as an error", 1)])
        r.check_protocol_errors()
        self.assertTrue(any("allowed at most 1" in f for f in r.failures), r.failures)
        r = fake_result(CONSOLE_OK, TRACE_OK + bad[1:2],
                        allows=[("megasas_iovec_sgl_overflow", "QEMU treats a zero-SGE frame as an error")])
        r.check_protocol_errors()
        self.assertEqual(r.failures, [])
        with self.assertRaises(dkqvm.HarnessError):
            dkqvm.Allow("megasas_iovec_sgl_overflow", "")

    def test_finish_fails_without_done_marker(self):
        r = fake_result("@@DKQ-BEGIN p1\n@@DKQ-END p1 rc=0\n", [])
        self.assertEqual(r.finish(), 1)
        r = fake_result(CONSOLE_OK, TRACE_OK)
        self.assertEqual(r.finish(), 0)

    def test_cpio_is_readable_by_cpio(self):
        if not os.path.exists("/usr/bin/cpio"):
            self.skipTest("cpio not installed")
        tmp = tempfile.mkdtemp(dir=_TMP.name)
        c = dkqvm.Cpio()
        c.dir("bin")
        c.file("bin/hello", b"#!/bin/sh\necho hi\n")
        c.file("odd", b"x" * 5, 0o644)
        c.symlink("bin/link", "hello")
        c.write(os.path.join(tmp, "a.cpio"))
        out = subprocess.run(["cpio", "-t", "-F", os.path.join(tmp, "a.cpio")],
                             capture_output=True, text=True)
        self.assertEqual(out.stdout.split(), ["bin", "bin/hello", "odd", "bin/link"])
        subprocess.run(["cpio", "-id", "-F", os.path.join(tmp, "a.cpio")], cwd=tmp, capture_output=True)
        with open(os.path.join(tmp, "odd"), "rb") as f:
            self.assertEqual(f.read(), b"xxxxx")
        self.assertEqual(os.readlink(os.path.join(tmp, "bin", "link")), "hello")


if __name__ == "__main__":
    unittest.main()
