#!/usr/bin/env python3
"""Unit tests of the VM harness's own logic, without QEMU: console parsing,
trace counting, guest-declared trace expectations, the protocol-error check
and its allow-list, the cpio writer, and that a user's own program (built
outside the tree) and raw QEMU device arguments reach the initramfs and the
QEMU command line. A harness that cannot fail would make
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


def read_newc(path):
    """{name: bytes} of a newc cpio archive (enough of the format to check ours)."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 110 <= len(data):
        hdr = data[pos:pos + 110]
        assert hdr[:6] == b"070701", hdr[:6]
        fsize = int(hdr[54:62], 16)
        nsize = int(hdr[94:102], 16)
        name = data[pos + 110:pos + 110 + nsize - 1].decode()
        pos = (pos + 110 + nsize + 3) & ~3
        out[name] = data[pos:pos + fsize]
        pos = (pos + fsize + 3) & ~3
        if name == "TRAILER!!!":
            break
    return out


class FakeKernel:
    """Stands in for dkqvm.Kernel: modules are empty files, no boot image."""

    def __init__(self, tmp):
        self.boot_image = os.path.join(tmp, "vmlinux-fake")
        self.tmp = tmp

    def module(self, name):
        path = os.path.join(self.tmp, name + ".ko")
        if not os.path.exists(path):
            open(path, "wb").close()
        return path


class UserScenarioTest(unittest.TestCase):
    """What docs/vm-tests.md ("Your own driver") promises, without booting."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=_TMP.name)
        self.outside = tempfile.mkdtemp(dir=_TMP.name)  # "built outside the tree"
        self.prog = os.path.join(self.outside, "my-driver")
        with open(self.prog, "w") as f:
            f.write("#!/bin/sh\necho my driver on $1\n")
        os.chmod(self.prog, 0o755)

    def scenario(self, argv=()):
        return dkqvm.Scenario.from_args("user", ["--work-dir", self.tmp] + list(argv))

    def test_external_program_and_device_args_reach_qemu_and_initramfs(self):
        s = self.scenario(["--qemu-args", "-device pvscsi,id=cli0,bus=pcie.0,addr=0x9 -global x.y=1"])
        s.program("mydrv", self.prog)
        hba = s.device("pvscsi", "hba0", slot=7, props="x-custom=on")
        disk = s.disk("lun0", mib=1)
        s.qemu_args += ["-drive", f"file={disk.path},if=none,id=lun0,format=raw",
                        "-device", "scsi-hd,drive=lun0,bus=hba0.0"]
        nvme2 = s.nvme("nvme2", slot=8, namespaces=[s.disk("n2", mib=1)], props="mdts=3,cmb_size_mb=1")
        s.run("mydrv", hba.bdf, "--queue-depth", 4, label="mydrv_hba")
        s.run("mydrv", nvme2.bdf, label="mydrv_nvme")
        self.assertEqual(hba.bdf, "0000:00:07.0")

        cmd = s.qemu_command(FakeKernel(self.tmp), "initrd", "trace")

        def has_seq(seq):
            return any(cmd[i:i + len(seq)] == seq for i in range(len(cmd)))
        self.assertTrue(has_seq(["-device", "pvscsi,id=hba0,bus=pcie.0,addr=0x7,x-custom=on"]), cmd)
        self.assertTrue(has_seq(["-device", "scsi-hd,drive=lun0,bus=hba0.0"]), cmd)
        self.assertTrue(has_seq(["-device", "nvme,id=nvme2,serial=dkq-nvme2,bus=pcie.0,addr=0x8,mdts=3,cmb_size_mb=1"]),
                        cmd)
        # --qemu-args are split like a shell would and kept in order.
        self.assertTrue(has_seq(["-device", "pvscsi,id=cli0,bus=pcie.0,addr=0x9", "-global", "x.y=1"]), cmd)
        # Raw arguments come after the devices they may refer to.
        self.assertGreater(cmd.index("scsi-hd,drive=lun0,bus=hba0.0"),
                           cmd.index("pvscsi,id=hba0,bus=pcie.0,addr=0x7,x-custom=on"))

        # The program file itself is packed and /init runs it with its arguments
        # after binding the user's device to vfio-pci.
        busybox = os.path.join(self.tmp, "busybox")
        with open(busybox, "wb") as f:
            f.write(b"not really busybox")
        s._build_initramfs(FakeKernel(self.tmp), busybox, os.path.join(self.tmp, "i.cpio"))
        files = read_newc(os.path.join(self.tmp, "i.cpio"))
        with open(self.prog, "rb") as f:
            self.assertEqual(files["progs/mydrv"], f.read())
        init = files["init"].decode()
        self.assertIn("/progs/mydrv 0000:00:07.0 --queue-depth 4", init)
        self.assertIn("/progs/mydrv 0000:00:08.0 <", init)
        self.assertIn("for bdf in 0000:00:07.0 0000:00:08.0;", init)
        self.assertLess(init.index("for bdf in"), init.index("/progs/mydrv"))

    def test_prog_option_takes_any_path(self):
        s = self.scenario(["--prog", f"mydrv={self.prog}"])
        self.assertEqual(s.programs["mydrv"], self.prog)
        s.run("mydrv", "0000:00:04.0")
        with self.assertRaises(dkqvm.HarnessError):
            self.scenario(["--prog", "nopath"])

    def test_unusable_programs_are_refused_with_a_reason(self):
        s = self.scenario()
        with self.assertRaisesRegex(dkqvm.HarnessError, "does not exist"):
            s.program("gone", os.path.join(self.outside, "nope"))
        with self.assertRaisesRegex(dkqvm.HarnessError, "letters, digits"):
            s.program("bad name", self.prog)
        dynamic = next((p for p in ("/bin/true", "/usr/bin/true") if os.path.exists(p)
                        and dkqvm.elf_interpreter(p)), None)
        if dynamic:
            with self.assertRaisesRegex(dkqvm.HarnessError, "dynamically linked.*-static"):
                s.program("dyn", dynamic)
        # The same check when a --prog path is first used by a run.
        s = self.scenario(["--prog", f"late={os.path.join(self.outside, 'later')}"])
        s.run("late")
        with self.assertRaisesRegex(dkqvm.HarnessError, "not built"):
            s._build_initramfs(FakeKernel(self.tmp), self.prog, os.path.join(self.tmp, "j.cpio"))

    def test_slot_taken_twice(self):
        s = self.scenario()
        s.device("pvscsi", "a", slot=7)
        with self.assertRaises(dkqvm.HarnessError):
            s.device("pvscsi", "b", slot=7)


if __name__ == "__main__":
    unittest.main()
