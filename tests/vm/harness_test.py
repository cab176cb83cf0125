#!/usr/bin/env python3
"""Unit tests of the VM harness's own logic, without QEMU: console parsing,
trace counting, guest-declared trace expectations, the protocol-error check
and its allow-list, the cpio writer, and that a user's own program (built
outside the tree) and raw QEMU device arguments reach the initramfs and the
QEMU command line. A harness that cannot fail would make
every VM test pass, so its failure paths are tested here."""
import os
import stat
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


def read_newc(path, modes=False):
    """{name: bytes} of a newc cpio archive (enough of the format to check
    ours); with modes=True, {name: (mode, bytes)}. A name packed twice shows
    up under "name#2"."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 110 <= len(data):
        hdr = data[pos:pos + 110]
        assert hdr[:6] == b"070701", hdr[:6]
        mode = int(hdr[14:22], 16)
        fsize = int(hdr[54:62], 16)
        nsize = int(hdr[94:102], 16)
        name = data[pos + 110:pos + 110 + nsize - 1].decode()
        pos = (pos + 110 + nsize + 3) & ~3
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name}#{n}"
        body = data[pos:pos + fsize]
        out[key] = (mode, body) if modes else body
        pos = (pos + fsize + 3) & ~3
        if name == "TRAILER!!!":
            break
    return out


def fake_ko(modinfo, elf=True):
    """A stand-in kernel module: an ELF64 relocatable with only a .modinfo
    section holding `modinfo` ({key: value or [values]}), or (elf=False) just
    the NUL-separated strings, as `strings` would see them in any file."""
    import struct
    items = []
    for k, v in modinfo.items():
        for x in (v if isinstance(v, list) else [v]):
            items.append(f"{k}={x}".encode())
    info = b"\0".join(items) + b"\0"
    if not elf:
        return b"junk\0" + info + b"more junk"
    shstr = b"\0.modinfo\0.shstrtab\0"
    info_off = 64
    shstr_off = info_off + len(info)
    shoff = (shstr_off + len(shstr) + 7) & ~7
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    out = bytearray(struct.pack("<16sHHIQQQIHHHHHH", ident, 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2))
    out += info + shstr
    out += b"\0" * (shoff - len(out))
    out += b"\0" * 64                                                          # SHN_UNDEF
    out += struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, info_off, len(info), 0, 0, 1, 0)    # .modinfo
    out += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)  # .shstrtab
    return bytes(out)


VFIO_LIKE = {  # the dependency shape of Linux 6.1's VFIO modules
    "drivers/vfio/vfio": {"depends": "", "softdep": "post: vfio_iommu_type1 vfio_iommu_spapr_tce"},
    "drivers/vfio/vfio_iommu_type1": {"depends": "vfio"},
    "drivers/vfio/vfio_virqfd": {"depends": ""},
    "virt/lib/irqbypass": {"depends": ""},
    "drivers/vfio/pci/vfio-pci-core": {"depends": "vfio,vfio_virqfd,irqbypass"},
    "drivers/vfio/pci/vfio-pci": {"depends": "vfio-pci-core,vfio"},
}


def fake_kernel(tmp, modules=None, builtin=(), compress=".ko"):
    """A dkqvm.Kernel over a fake package tree: each module is a fake_ko()
    (compressed with xz when compress=".ko.xz"), `builtin` are listed in
    modules.builtin."""
    import lzma
    root = os.path.join(tmp, "root")
    ver = "9.9.9-test"
    os.makedirs(os.path.join(root, "boot"), exist_ok=True)
    open(os.path.join(root, "boot", "vmlinuz-" + ver), "wb").close()
    moddir = os.path.join(root, "lib", "modules", ver)
    for rel, info in dict(VFIO_LIKE, **(modules or {})).items():
        path = os.path.join(moddir, "kernel", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = fake_ko(info, elf=not info.get("_raw"))
        ext = info.get("_ext", compress)
        if ext == ".ko.xz":
            data = lzma.compress(data, format=lzma.FORMAT_XZ)
        with open(path + ext, "wb") as f:
            f.write(data)
    with open(os.path.join(moddir, "modules.builtin"), "w") as f:
        f.write("".join(f"kernel/{b}.ko\n" for b in builtin))
    return dkqvm.Kernel(root)


class FakeKernel:
    """Stands in for dkqvm.Kernel in tests that only need an initramfs."""

    def __new__(cls, tmp):
        return fake_kernel(tempfile.mkdtemp(dir=tmp))


class ModuleResolutionTest(unittest.TestCase):
    """Modules come with what their .modinfo says they need, in load order."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=_TMP.name)

    def test_vfio_chain_in_load_order(self):
        k = fake_kernel(self.tmp)
        order = k.resolve_modules(dkqvm.VFIO_MODULES)
        self.assertEqual(sorted(order), sorted(["vfio", "vfio_iommu_type1", "vfio_virqfd", "irqbypass",
                                                "vfio-pci-core", "vfio-pci"]))
        for mod, info in VFIO_LIKE.items():
            name = os.path.basename(mod)
            for dep in filter(None, info["depends"].split(",")):
                self.assertLess(order.index(dep), order.index(name), (dep, name, order))
        # The absent softdep (vfio_iommu_spapr_tce, PowerPC only) is skipped.
        self.assertNotIn("vfio_iommu_spapr_tce", order)

    def test_xz_modules_builtins_aliases_and_missing(self):
        k = fake_kernel(self.tmp, compress=".ko.xz", builtin=["lib/crc-builtin"], modules={
            "fs/ext4/ext4": {"depends": "jbd2,crc16,mbcache", "softdep": "pre: crypto-crc32c"},
            "fs/jbd2/jbd2": {"depends": "", "softdep": "pre: crypto-crc32c"},
            "fs/mbcache": {"depends": "crc-builtin"},
            "lib/crc16": {"depends": "", "_raw": True},       # no ELF: found as strings
            "crypto/crc32c_generic": {"depends": "", "alias": ["crc32c", "crypto-crc32c"]},
            "arch/x86/crypto/crc32c-intel": {"depends": "", "alias": ["crc32c", "crypto-crc32c"]},
            "drivers/block/ublk_drv": {"depends": ""},
            "drivers/x/needs_gone": {"depends": "gone"},
        })
        self.assertEqual(k.resolve_modules(["ext4"]), ["crc32c_generic", "jbd2", "crc16", "mbcache", "ext4"])
        self.assertEqual(k.resolve_modules(["ublk_drv", "ublk-drv"]), ["ublk_drv"])
        self.assertEqual(k.resolve_modules(["crc-builtin"]), [])     # built in: nothing to load
        data = k.module_bytes("ext4")                                 # .ko.xz -> plain ELF
        self.assertTrue(data.startswith(b"\x7fELF"))
        self.assertEqual(dkqvm.parse_modinfo(data)["depends"], ["jbd2,crc16,mbcache"])
        with self.assertRaisesRegex(dkqvm.HarnessError, "module gone not found"):
            k.resolve_modules(["needs_gone"])
        with self.assertRaisesRegex(dkqvm.HarnessError, "module nope not found"):
            k.resolve_modules(["nope"])

    def test_zstd_module_without_the_tool_is_a_clear_error(self):
        k = fake_kernel(self.tmp, modules={"drivers/z/zmod": {"depends": "", "_ext": ".ko.zst"}})
        real_which = dkqvm.shutil.which
        dkqvm.shutil.which = lambda name: None if name == "zstd" else real_which(name)
        try:
            with self.assertRaisesRegex(dkqvm.HarnessError, "zstd-compressed.*apt-get install zstd"):
                k.resolve_modules(["zmod"])
        finally:
            dkqvm.shutil.which = real_which

    def test_initramfs_loads_resolved_modules_decompressed(self):
        k = fake_kernel(self.tmp, compress=".ko.xz", modules={
            "drivers/block/ublk_drv": {"depends": ""},
            "drivers/scsi/scsi_common": {"depends": ""},
            "drivers/scsi/scsi_mod": {"depends": "scsi_common"},
            "drivers/nvme/host/nvme-core": {"depends": ""},
            "drivers/nvme/host/nvme": {"depends": "nvme-core"}})
        s = dkqvm.Scenario("m", self.tmp, {})
        s.extra_modules = ["ublk_drv", "scsi_mod"]
        s.packed_modules = ["nvme"]
        bb = os.path.join(self.tmp, "bb")
        open(bb, "wb").close()
        s._build_initramfs(k, bb, os.path.join(self.tmp, "i.cpio"))
        files = read_newc(os.path.join(self.tmp, "i.cpio"))
        for m in ("vfio", "vfio-pci", "ublk_drv", "scsi_common", "scsi_mod", "nvme-core", "nvme"):
            self.assertTrue(files[f"lib/modules/{m}.ko"].startswith(b"\x7fELF"), m)
        loop = next(line for line in files["init"].decode().splitlines() if line.startswith("for m in"))
        loaded = loop.split(" in ", 1)[1].split(";")[0].split()
        self.assertEqual(loaded[-3:], ["ublk_drv", "scsi_common", "scsi_mod"])
        self.assertNotIn("nvme", loaded)                   # packed only


class KernelSeriesTest(unittest.TestCase):
    def setUp(self):
        self.saved = {k: os.environ.get(k) for k in ("DKQ_VM_CACHE", "DKQ_VM_KERNEL_PKG", "DKQ_VM_KERNEL_PKG_612")}

    def tearDown(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def test_series_names_and_overrides(self):
        self.assertEqual(dkqvm.package_series("linux-image-6.1.0-57-amd64"), "6.1")
        self.assertEqual(dkqvm.package_series("linux-image-6.12.118+deb12-amd64"), "6.12")
        self.assertEqual(dkqvm.kernel_metapackage("6.1"), "linux-image-amd64")
        self.assertEqual(dkqvm.kernel_metapackage("6.12"), "linux-image-6.12-amd64")
        os.environ["DKQ_VM_KERNEL_PKG"] = "linux-image-6.1.0-1-amd64"
        os.environ["DKQ_VM_KERNEL_PKG_612"] = "linux-image-6.12.1+deb12-amd64"
        self.assertEqual(dkqvm.kernel_package(), "linux-image-6.1.0-1-amd64")
        self.assertEqual(dkqvm.kernel_package("6.12"), "linux-image-6.12.1+deb12-amd64")
        s = dkqvm.Scenario("k", tempfile.mkdtemp(dir=_TMP.name), {}, kernel="6.12")
        self.assertEqual(s.kernel_series, "6.12")
        self.assertEqual(dkqvm.Scenario("k", s.work, {}).kernel_series, "6.1")

    def test_superseded_kernels_are_dropped_within_a_series_only(self):
        os.environ["DKQ_VM_CACHE"] = tempfile.mkdtemp(dir=_TMP.name)
        for d in ("linux-image-6.1.0-56-amd64", "linux-image-6.1.0-57-amd64",
                  "linux-image-6.12.117+deb12-amd64", "linux-image-6.12.118+deb12-amd64"):
            os.makedirs(os.path.join(os.environ["DKQ_VM_CACHE"], d))
        dkqvm.drop_superseded_kernels("linux-image-6.12.118+deb12-amd64")
        self.assertEqual(sorted(os.listdir(os.environ["DKQ_VM_CACHE"])),
                         ["linux-image-6.1.0-56-amd64", "linux-image-6.1.0-57-amd64",
                          "linux-image-6.12.118+deb12-amd64"])
        dkqvm.drop_superseded_kernels("linux-image-6.1.0-57-amd64")
        self.assertEqual(sorted(os.listdir(os.environ["DKQ_VM_CACHE"])),
                         ["linux-image-6.1.0-57-amd64", "linux-image-6.12.118+deb12-amd64"])


class HostProgramTest(unittest.TestCase):
    """Debian programs go in with their shared libraries and the loader."""

    MKFS = "/usr/sbin/mkfs.ext4"

    def setUp(self):
        if not os.path.exists(self.MKFS) or not dkqvm.shutil.which("ldd"):
            self.skipTest("needs e2fsprogs (mkfs.ext4) and ldd on the host")
        self.tmp = tempfile.mkdtemp(dir=_TMP.name)

    def test_library_closure(self):
        libs = dkqvm.library_closure(self.MKFS)
        names = [os.path.basename(p) for p in libs]
        for want in ("libext2fs.so.2", "libc.so.6", "ld-linux-x86-64.so.2"):
            self.assertIn(want, names)
        self.assertIn(dkqvm.elf_interpreter(self.MKFS), libs)
        self.assertFalse(any("vdso" in p for p in libs))
        self.assertEqual(dkqvm.library_closure(os.path.abspath(__file__)), [])   # a script

    def test_packed_with_libraries_loader_and_symlinks(self):
        s = dkqvm.Scenario("h", self.tmp, {})
        self.assertEqual(s.host_program("mkfs.ext4"), self.MKFS)
        s.host_program("fsck.ext4")
        s.script("fmt", "mkfs.ext4 -q /dev/ublkb0 && echo formatted\n")
        s.run("mkfs.ext4", "-V")
        s.run("fmt")
        with self.assertRaisesRegex(dkqvm.HarnessError, "not found on PATH"):
            s.host_program("no-such-program-dkq")
        bb = os.path.join(self.tmp, "bb")
        open(bb, "wb").close()
        with open(os.path.realpath(self.MKFS), "rb") as f:
            host_before = f.read()
        s._build_initramfs(FakeKernel(self.tmp), bb, os.path.join(self.tmp, "i.cpio"))
        with open(os.path.realpath(self.MKFS), "rb") as f:
            self.assertEqual(f.read(), host_before, "the host's program was modified")
        files = read_newc(os.path.join(self.tmp, "i.cpio"), modes=True)
        dup = [n for n in files if "#" in n]
        self.assertEqual(dup, [], "packed twice")   # libc etc. shared by both programs

        def resolve(name, depth=0):
            """Follows symlinks inside the archive, as the guest kernel would."""
            mode, body = files[name]
            if stat.S_ISLNK(mode):
                self.assertLess(depth, 10)
                t = body.decode()
                t = t.lstrip("/") if t.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(name), t))
                return resolve(t, depth + 1)
            return name, body

        # mkfs.ext4 stays a symlink to mke2fs (it behaves by its name).
        self.assertTrue(stat.S_ISLNK(files["usr/sbin/mkfs.ext4"][0]))
        self.assertEqual(files["usr/sbin/mkfs.ext4"][1], os.readlink(self.MKFS).encode())
        with open(os.path.realpath(self.MKFS), "rb") as f:
            self.assertEqual(resolve("usr/sbin/mkfs.ext4")[1], f.read())
        for prog in ("/usr/sbin/mkfs.ext4", "/usr/sbin/fsck.ext4"):
            for lib in dkqvm.library_closure(prog):
                name, body = resolve(lib.lstrip("/"))
                self.assertEqual(len(body), os.path.getsize(os.path.realpath(lib)), lib)
        # The loader named in PT_INTERP is there (a symlink on Debian) and leads to a file.
        interp = dkqvm.elf_interpreter(os.path.realpath(self.MKFS)).lstrip("/")
        self.assertTrue(resolve(interp)[1].startswith(b"\x7fELF"))
        self.assertEqual(stat.S_IMODE(files["etc/mtab"][0]) | stat.S_IFLNK, files["etc/mtab"][0])
        self.assertEqual(files["etc/mtab"][1], b"/proc/self/mounts")
        if os.path.exists("/etc/mke2fs.conf"):
            self.assertIn("etc/mke2fs.conf", files)
        init = files["init"][1].decode()
        self.assertIn("export PATH=/bin:/usr/sbin:/usr/bin:/sbin", init)
        self.assertIn(" /usr/sbin/mkfs.ext4 -V <", init)
        self.assertIn(" /progs/fmt ", init)
        self.assertTrue(files["progs/fmt"][1].startswith(b"#!/bin/sh\nmkfs.ext4"))


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
