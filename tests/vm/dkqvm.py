#!/usr/bin/env python3
"""dkq VM test harness: boot a small Linux guest in QEMU with a virtual IOMMU,
bind emulated storage controllers to vfio-pci, run our statically linked
programs, and check what the device models saw.

Python 3 standard library only. One boot per scenario (a TCG boot costs 7-8 s);
a scenario runs several guest programs in that boot. See docs/vm-tests.md.

    from dkqvm import Scenario
    s = Scenario.from_args("platform")            # --work-dir, --prog name=path
    nvme = s.nvme("nvme0", slot=4, namespaces=[s.disk("ns1", mib=16)])
    s.run("nvme_probe", nvme.bdf)                  # program registered with --prog
    r = s.boot()
    r.require_passed()                             # every program exited 0
    r.trace.count("pci_nvme_mmio_doorbell_sq", sqid="0")
    r.disk("ns1")                                  # raw image bytes after QEMU exited
    r.finish()                                     # protocol-error check, exit status

Any QEMU PCI device and any program built elsewhere work the same way (your
own driver against your own device model; docs/vm-tests.md, "Your own driver"):

    s.program("mydrv", "/path/to/mydrv")           # a static binary built outside the tree
    hba = s.device("pvscsi", "hba0", slot=7)       # -device pvscsi,id=hba0,bus=pcie.0,addr=0x7
    s.qemu_args += ["-drive", "file=...,if=none,id=d0", "-device", "scsi-hd,drive=d0,bus=hba0.0"]
    s.run("mydrv", hba.bdf)
"""

import argparse
import fcntl
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time

# ---- host prerequisites ------------------------------------------------------------

QEMU = os.environ.get("DKQ_VM_QEMU", "qemu-system-x86_64")
# qboot, not SeaBIOS: SeaBIOS has NVMe and MegaRAID boot drivers that drive the
# controllers before Linux starts (about 260 admin doorbell writes on an NVMe
# controller, counted in our traces), which would pollute every device-side
# count (SeaBIOS src/hw/nvme.c, src/hw/megasas.c; docs/vm-tests.md).
QBOOT = os.environ.get("DKQ_VM_BIOS", "/usr/share/qemu/qboot.rom")
BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"]
APT_HINT = ("sudo apt-get install qemu-system-x86 qemu-system-data busybox-static "
            "(the kernel comes from `apt-get download`, no install needed)")

# Modules the guest needs for VFIO, in load order (Debian's package has no
# modules.dep; the order follows each module's depends=).
VFIO_MODULES = ["irqbypass", "vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio-pci-core", "vfio-pci"]
# Linux's own drivers, for interoperability scenarios, in the order each module's
# depends= gives (checked: both drivers bind and read data back; docs/vm-tests.md).
NVME_MODULES = ["crct10dif_common", "crct10dif_generic", "crc-t10dif", "crc64", "crc64_rocksoft_generic",
                "crc64-rocksoft", "t10-pi", "nvme-core", "nvme"]
MEGARAID_MODULES = ["scsi_common", "scsi_mod", "sd_mod", "megaraid_sas"]

# Device-reported protocol errors: any of these in the trace fails a scenario
# unless the scenario allows that event by name and says why.
PROTOCOL_ERROR_PATTERNS = [
    r"pci_nvme_err_.*",
    r"megasas_.*invalid.*",
    r"megasas_.*overflow.*",
    r"megasas_.*underflow.*",
    r"megasas_unhandled_frame_cmd",
]
DEFAULT_TRACE = ["pci_nvme_*", "megasas_*", "scsi_req_parsed"]


class HarnessError(Exception):
    pass


def log(msg):
    print("[dkqvm] " + msg, flush=True)


def cache_dir():
    d = os.environ.get("DKQ_VM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dkq-vm")
    os.makedirs(d, exist_ok=True)
    return d


def check_host():
    if shutil.which(QEMU) is None:
        raise HarnessError(f"{QEMU} not found. Install: {APT_HINT}")
    if not os.path.exists(QBOOT):
        raise HarnessError(f"{QBOOT} not found (qboot firmware). Install: {APT_HINT}")
    bb = next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None)
    if bb is None:
        raise HarnessError(f"busybox not found. Install: {APT_HINT}")
    with open(bb, "rb") as f:
        head = f.read(1 << 16)
    # A dynamically linked busybox has a PT_INTERP naming the loader; the
    # initramfs has no libc, so only busybox-static works.
    if b"/lib64/ld-linux" in head or b"ld-linux-x86-64" in head:
        raise HarnessError(f"{bb} is dynamically linked; install busybox-static")
    return bb


def check_guest_program(name, path):
    """A program the guest can run: an existing file, not dynamically linked."""
    if not os.path.isfile(path):
        raise HarnessError(f"program {name}: {path} does not exist (not built?)")
    interp = elf_interpreter(path)
    if interp:
        raise HarnessError(f"program {name}: {path} is dynamically linked (needs {interp}); "
                           "the guest has no libc: link it with -static")


def elf_interpreter(path):
    """The PT_INTERP of an ELF file (the dynamic loader it needs), None for a
    static ELF or anything that is not ELF (e.g. a shell script)."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or not head.startswith(b"\x7fELF"):
            return None
        if head[4] != 2:  # ELFCLASS64 only; the guest is x86-64
            return "a 32-bit ELF loader"
        endian = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ph = f.read(56)
            if len(ph) < 56:
                break
            ptype, _, off, _, _, filesz = struct.unpack_from(endian + "IIQQQQ", ph)
            if ptype == 3:  # PT_INTERP
                f.seek(off)
                return f.read(filesz).rstrip(b"\0").decode(errors="replace") or "a loader"
    return None


# ---- kernel: apt-get download + dpkg -x, cached ------------------------------------

def kernel_package():
    forced = os.environ.get("DKQ_VM_KERNEL_PKG")
    if forced:
        return forced
    for attempt in range(2):
        try:
            out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                                 text=True, check=True).stdout
            m = re.search(r"Depends:\s*(linux-image-\S+-amd64)", out)
            if m:
                return m.group(1)
        except (OSError, subprocess.CalledProcessError):
            pass
        # A fresh machine may have no package lists yet; as root, fetch them once.
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            log("no apt metadata for linux-image-amd64; running apt-get update")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        else:
            break
    # No apt metadata: use whatever kernel is already cached.
    cached = sorted(d for d in os.listdir(cache_dir()) if d.startswith("linux-image-")
                    and os.path.exists(os.path.join(cache_dir(), d, ".complete")))
    if cached:
        return cached[-1]
    raise HarnessError("cannot find the kernel package: `apt-cache depends linux-image-amd64` failed "
                       "(run `sudo apt-get update`) and no kernel is cached in " + cache_dir())


class Kernel:
    def __init__(self, root):
        self.root = root
        boot = os.path.join(root, "boot")
        images = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))
        if not images:
            raise HarnessError(f"no vmlinuz in {boot}")
        self.vmlinuz = os.path.join(boot, images[-1])
        self.version = images[-1][len("vmlinuz-"):]
        self.moddir = os.path.join(root, "lib", "modules", self.version)
        self._index = None
        # The ELF kernel, when it could be extracted: QEMU boots it through its
        # PVH entry point, skipping the in-guest decompression that takes most
        # of a TCG boot (xz under emulation: ~15 s of a ~25 s boot on a loaded host).
        elf = os.path.join(os.path.dirname(root), "vmlinux-" + self.version)
        self.boot_image = elf if os.path.exists(elf) else self.vmlinuz

    def module(self, name):
        """Path of module `name` (dashes and underscores are interchangeable, as in modprobe)."""
        if self._index is None:
            self._index = {}
            for dirpath, _, files in os.walk(os.path.join(self.moddir, "kernel")):
                for f in files:
                    for ext in (".ko", ".ko.xz", ".ko.zst"):
                        if f.endswith(ext):
                            self._index[f[: -len(ext)].replace("-", "_")] = os.path.join(dirpath, f)
        key = name.replace("-", "_")
        if key not in self._index:
            raise HarnessError(f"module {name} not found in {self.moddir}")
        return self._index[key]


def extract_vmlinux(root, base):
    """Unpacks the ELF vmlinux from bzImage (xz or gzip payload, Python stdlib)
    when the kernel has a PVH entry note (CONFIG_PVH); keeps bzImage otherwise."""
    import gzip
    import lzma
    import struct
    boot = os.path.join(root, "boot")
    for name in os.listdir(boot):
        if not name.startswith("vmlinuz-"):
            continue
        with open(os.path.join(boot, name), "rb") as f:
            img = f.read()
        try:
            setup_sects = img[0x1f1] or 4
            start = (setup_sects + 1) * 512
            off, length = struct.unpack_from("<II", img, 0x248)  # boot protocol 2.08+
            payload = img[start + off:start + off + length]
            if payload.startswith(b"\xfd7zXZ\x00"):
                elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
            elif payload.startswith(b"\x1f\x8b"):
                elf = gzip.GzipFile(fileobj=__import__("io").BytesIO(payload)).read()
            else:
                continue
        except (lzma.LZMAError, OSError, struct.error, EOFError):
            continue
        # Xen ELF note type 18 (XEN_ELFNOTE_PHYS32_ENTRY) marks a PVH entry point.
        if not elf.startswith(b"\x7fELF") or not _has_pvh_note(elf):
            continue
        tmp = os.path.join(base, "vmlinux-" + name[len("vmlinuz-"):] + ".tmp")
        with open(tmp, "wb") as f:
            f.write(elf)
        os.replace(tmp, tmp[:-4])


def _has_pvh_note(elf):
    """True when the ELF has a Xen note of type 18 (PHYS32_ENTRY), i.e. QEMU can PVH-boot it."""
    import struct
    try:
        phoff, = struct.unpack_from("<Q", elf, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
        for i in range(phnum):
            ptype, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
            if ptype != 4:  # PT_NOTE
                continue
            pos, end = off, off + filesz
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
                name = elf[pos + 12:pos + 12 + namesz]
                if name.rstrip(b"\0") == b"Xen" and ntype == 18:
                    return True
                pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    except struct.error:
        return False
    return False


def ensure_kernel():
    pkg = kernel_package()
    base = os.path.join(cache_dir(), pkg)
    done = os.path.join(base, ".complete")
    os.makedirs(base, exist_ok=True)
    # Several scenarios may start at once (ctest -j): one downloads, the others wait.
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            log(f"fetching {pkg} into {base} (once; cached for later runs)")
            for f in os.listdir(base):
                if f.endswith(".deb"):
                    os.unlink(os.path.join(base, f))
            r = subprocess.run(["apt-get", "download", pkg], cwd=base, capture_output=True, text=True)
            debs = [f for f in os.listdir(base) if f.endswith(".deb")]
            if not debs:
                raise HarnessError(f"`apt-get download {pkg}` failed:\n{r.stdout}{r.stderr}\n"
                                   "(needs network access and `sudo apt-get update`)")
            root = os.path.join(base, "root")
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run(["dpkg", "-x", os.path.join(base, debs[0]), root], check=True)
            os.unlink(os.path.join(base, debs[0]))
            extract_vmlinux(root, base)
            with open(done, "w") as f:
                f.write(pkg + "\n")
            # A new kernel ABI replaces the old one: drop older cached kernels
            # (about 400 MB each) unless the user pinned one.
            if not os.environ.get("DKQ_VM_KERNEL_PKG"):
                for old in os.listdir(cache_dir()):
                    if old.startswith("linux-image-") and old != pkg:
                        log(f"removing superseded cached kernel {old}")
                        shutil.rmtree(os.path.join(cache_dir(), old), ignore_errors=True)
        root = os.path.join(base, "root")
        if not any(f.startswith("vmlinux-") for f in os.listdir(base)) and not os.path.exists(os.path.join(base, ".no-pvh")):
            extract_vmlinux(root, base)
            if not any(f.startswith("vmlinux-") for f in os.listdir(base)):
                open(os.path.join(base, ".no-pvh"), "w").close()
    return Kernel(root)


# ---- initramfs (newc cpio written here, so no cpio tool is needed) -------------------

class Cpio:
    def __init__(self):
        self.parts = []
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        hdr = "070701" + "".join("%08x" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        self.ino += 1
        blob = hdr.encode() + name.encode() + b"\0"
        blob += b"\0" * ((4 - len(blob) % 4) % 4)
        blob += data
        blob += b"\0" * ((4 - len(blob) % 4) % 4)
        self.parts.append(blob)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data, mode=0o755):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def write(self, path):
        self._entry("TRAILER!!!", 0)
        with open(path, "wb") as f:
            for p in self.parts:
                f.write(p)


INIT_TEMPLATE = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@@DKQ-BOOTED $(cut -d' ' -f1 /proc/uptime)"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "@@DKQ-ERROR insmod $m failed"
done
for bdf in {bind}; do
  echo vfio-pci > /sys/bus/pci/devices/$bdf/driver_override
  echo $bdf > /sys/bus/pci/drivers_probe
  [ -e /sys/bus/pci/devices/$bdf/driver ] && basename $(readlink /sys/bus/pci/devices/$bdf/driver) | grep -q vfio-pci \
    || echo "@@DKQ-ERROR $bdf did not bind to vfio-pci"
done
echo "@@DKQ-READY $(cut -d' ' -f1 /proc/uptime)"
{programs}
echo "@@DKQ-DONE $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
"""

PROGRAM_TEMPLATE = r"""echo "@@DKQ-BEGIN {label} t=$(cut -d' ' -f1 /proc/uptime)"
timeout -s KILL {timeout} /progs/{prog} {args} </dev/null 2>&1
echo "@@DKQ-END {label} rc=$? t=$(cut -d' ' -f1 /proc/uptime)"
"""


def shell_quote(s):
    s = str(s)
    if re.fullmatch(r"[A-Za-z0-9_./:=,+@%-]+", s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


# ---- trace ----------------------------------------------------------------------------

_TRACE_LINE = re.compile(r"^(?:\d+@\d+\.\d+:)?([a-z0-9_]+) ?(.*)$")


class Trace:
    """QEMU trace events written by the log backend (`-trace ... -D file`)."""

    def __init__(self, path):
        self.path = path
        self.events = []  # (name, text)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                for line in f:
                    m = _TRACE_LINE.match(line.rstrip("\n"))
                    if m:
                        self.events.append((m.group(1), m.group(2)))

    @staticmethod
    def _fields(text):
        # "sqid 0 new_tail 5" -> {sqid: 0, new_tail: 5}; "reg MFI_OSP0: 0x..." -> {reg: MFI_OSP0:}
        toks = text.replace(",", " ").split()
        return {toks[i]: toks[i + 1].rstrip(":") for i in range(0, len(toks) - 1)}

    def select(self, name, **fields):
        """Events named `name` (a regex, matched whole) whose fields equal `fields`."""
        rx = re.compile(name)
        out = []
        for n, text in self.events:
            if not rx.fullmatch(n):
                continue
            if fields:
                f = self._fields(text)
                if any(f.get(k) != str(v) for k, v in fields.items()):
                    continue
            out.append((n, text))
        return out

    def count(self, name, **fields):
        return len(self.select(name, **fields))


# ---- devices and scenario ---------------------------------------------------------------

class Disk:
    def __init__(self, name, path, size, fill=None):
        self.name, self.path, self.size, self.fill = name, path, size, fill


class Device:
    def __init__(self, kind, id, slot, bind):
        self.kind, self.id, self.slot, self.bind = kind, id, slot, bind
        self.qemu_args = []
        # Straight on the root complex: slot N is 0000:00:N.0. (A PCIe expander
        # bridge would give a device a NUMA node, but its buses are numbered by
        # SeaBIOS, not qboot, so the guest cannot see what is behind it.)
        self.bdf = "0000:00:%02x.0" % slot
        self.placement = f"bus=pcie.0,addr=0x{slot:x}"


class Allow:
    def __init__(self, event, why, max_count=None):
        if not why:
            raise HarnessError(f"allowing protocol-error event {event} needs a reason")
        self.event, self.why, self.max_count = event, why, max_count


class Scenario:
    def __init__(self, name, work_dir, programs, timeout=240, memory_mib=512, numa_nodes=1):
        self.name = name
        self.work = os.path.abspath(work_dir)
        self.programs = programs  # name -> host path of the static binary
        self.timeout = timeout
        self.memory_mib = memory_mib
        self.numa_nodes = numa_nodes  # >1: guest memory split evenly over that many nodes
        self.devices = []
        self.disks = {}
        self.runs = []
        self.allows = []
        self.trace_patterns = list(DEFAULT_TRACE)
        self.extra_modules = []   # loaded (in this order) before devices are bound
        self.packed_modules = []  # shipped in /lib/modules/<name>.ko but not loaded
        self.extra_binds = []     # further BDFs (not scenario devices) to bind to vfio-pci
        self.kernel_args = []
        self.qemu_args = []       # raw QEMU arguments, appended after the devices as given
        os.makedirs(self.work, exist_ok=True)

    @staticmethod
    def from_args(name, argv=None):
        ap = argparse.ArgumentParser(description=f"dkq VM scenario {name}")
        ap.add_argument("--work-dir", required=True)
        ap.add_argument("--prog", action="append", default=[], metavar="NAME=PATH")
        ap.add_argument("--timeout", type=int, default=int(os.environ.get("DKQ_VM_TIMEOUT", "240")))
        ap.add_argument("--qemu-args", action="append", default=[], metavar="'ARGS'",
                        help="extra QEMU arguments, split like a shell would (repeatable), "
                             "e.g. --qemu-args '-device pvscsi,id=hba0,bus=pcie.0,addr=0x7'")
        a = ap.parse_args(argv)
        progs = {}
        for p in a.prog:
            k, _, v = p.partition("=")
            if not k or not v:
                raise HarnessError(f"--prog {p}: expected NAME=PATH")
            progs[k] = os.path.abspath(v)  # checked when a run uses it (_build_initramfs)
        s = Scenario(name, a.work_dir, progs, timeout=a.timeout)
        for q in a.qemu_args:
            s.qemu_args += shlex.split(q)
        return s

    # -- building blocks --
    def program(self, name, path):
        """Registers guest program `name` from any host path (a binary built
        outside this tree works as well as ours). The guest has no libc or
        loader, so it must be statically linked (or a busybox sh script)."""
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise HarnessError(f"program name {name!r}: use letters, digits and _.+- only")
        path = os.path.abspath(path)
        check_guest_program(name, path)
        self.programs[name] = path
        return path

    def device(self, model, id, slot, props="", bind=True):
        """Any QEMU PCI device model (`-device <model>,id=<id>,bus=pcie.0,addr=<slot>[,<props>]`)
        at slot `slot`, i.e. 0000:00:<slot>.0 in the guest, bound to vfio-pci
        unless bind=False. Whatever hangs off it (disks, a SCSI bus's LUNs) goes
        in `qemu_args` or `dev.qemu_args`."""
        if any(d.slot == slot for d in self.devices):
            raise HarnessError(f"PCI slot {slot} is taken twice")
        dev = Device(model, id, slot, bind)
        extra = ("," + props) if props else ""
        dev.qemu_args += ["-device", f"{model},id={id},{dev.placement}{extra}"]
        self.devices.append(dev)
        return dev

    def disk(self, name, mib=16, fill=None):
        """A raw backing file created fresh for each boot; `fill(offset) -> bytes` or None (zeros)."""
        path = os.path.join(self.work, name + ".img")
        d = Disk(name, path, mib << 20, fill)
        self.disks[name] = d
        return d

    def nvme(self, id, slot, namespaces, serial=None, bind=True, props=""):
        """QEMU NVMe controller `id` in PCI slot `slot` with one namespace per disk (NSID 1, 2, ...)."""
        dev = Device("nvme", id, slot, bind)
        serial = serial or ("dkq-" + id)
        dev.serial = serial
        extra = ("," + props) if props else ""
        dev.qemu_args += ["-device", f"nvme,id={id},serial={serial},{dev.placement}{extra}"]
        for i, d in enumerate(namespaces, start=1):
            dev.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                              "-device", f"nvme-ns,drive={d.name},bus={id},nsid={i}"]
        self.devices.append(dev)
        return dev

    def megasas(self, id, slot, disks, bind=True, model="megasas-gen2", props=""):
        """MegaRAID controller `id` (megasas-gen2 by default) with one scsi-hd per disk (targets 0, 1, ...)."""
        dev = Device("megasas", id, slot, bind)
        extra = ("," + props) if props else ""
        dev.qemu_args += ["-device", f"{model},id={id},{dev.placement}{extra}"]
        for i, d in enumerate(disks):
            dev.qemu_args += ["-drive", f"file={d.path},if=none,id={d.name},format=raw,cache=writeback",
                              "-device", f"scsi-hd,drive={d.name},bus={id}.0,channel=0,scsi-id={i},lun=0"]
        self.devices.append(dev)
        return dev

    def run(self, prog, *args, label=None, timeout=60):
        """Runs guest program `prog` (from --prog) with `args`; programs run in order."""
        if prog not in self.programs:
            raise HarnessError(f"program {prog} not given with --prog {prog}=PATH")
        label = label or prog
        if any(r[0] == label for r in self.runs):
            raise HarnessError(f"two runs labelled {label}; pass label=")
        self.runs.append((label, prog, [str(a) for a in args], timeout))

    def allow(self, event, why, max_count=None):
        """Accept protocol-error event `event` (exact name): name it and say why it is unavoidable."""
        self.allows.append(Allow(event, why, max_count))

    # -- boot --
    def _build_initramfs(self, kernel, busybox, path):
        c = Cpio()
        for d in ("bin", "dev", "proc", "sys", "tmp", "run", "lib", "lib/modules", "progs"):
            c.dir(d)
        with open(busybox, "rb") as f:
            c.file("bin/busybox", f.read())
        modules = VFIO_MODULES + [m for m in self.extra_modules if m not in VFIO_MODULES]
        for m in modules + [m for m in self.packed_modules if m not in modules]:
            src = kernel.module(m)
            if not src.endswith(".ko"):
                raise HarnessError(f"{src} is compressed; busybox insmod needs plain .ko")
            with open(src, "rb") as f:
                c.file(f"lib/modules/{m}.ko", f.read(), 0o644)
        strip = shutil.which("strip")
        for prog in sorted({r[1] for r in self.runs}):
            src = self.programs[prog]
            check_guest_program(prog, src)
            if strip:
                # Debug info is useless in the guest and costs unpack time under TCG.
                stripped = os.path.join(self.work, "prog-" + prog)
                if subprocess.run([strip, "--strip-debug", "-o", stripped, src], capture_output=True).returncode == 0:
                    src = stripped
            with open(src, "rb") as f:
                c.file(f"progs/{prog}", f.read())
        progs = "".join(PROGRAM_TEMPLATE.format(label=label, prog=prog, timeout=t,
                                                args=" ".join(shell_quote(a) for a in args))
                        for label, prog, args, t in self.runs)
        init = INIT_TEMPLATE.format(modules=" ".join(modules),
                                    bind=" ".join([d.bdf for d in self.devices if d.bind] + self.extra_binds),
                                    programs=progs)
        c.file("init", init.encode())
        c.write(path)

    def _make_disks(self):
        for d in self.disks.values():
            with open(d.path, "wb") as f:
                if d.fill is None:
                    f.truncate(d.size)
                else:
                    chunk = 1 << 20
                    for off in range(0, d.size, chunk):
                        data = d.fill(off, min(chunk, d.size - off))
                        assert len(data) == min(chunk, d.size - off)
                        f.write(data)

    def qemu_command(self, kernel, initrd, trace_path):
        cmd = [QEMU, "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-smp", "1",
               "-m", str(self.memory_mib),
               "-device", "intel-iommu,caching-mode=on",
               "-bios", QBOOT, "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
               "-serial", "stdio", "-no-reboot",
               "-kernel", kernel.boot_image, "-initrd", initrd,
               # cryptomgr.notests: the kernel's boot-time crypto self-tests take
               # ~5 s of a TCG boot (initcall_debug: crypto_algapi_init) and test
               # nothing of ours.
               "-append", " ".join(["console=ttyS0", "intel_iommu=on", "iommu=pt", "quiet",
                                    "loglevel=4", "panic=-1", "rdinit=/init",
                                    "cryptomgr.notests"] + self.kernel_args),
               "-D", trace_path]
        if self.numa_nodes > 1:
            per = self.memory_mib // self.numa_nodes
            for n in range(self.numa_nodes):
                cmd += ["-object", f"memory-backend-ram,id=mem{n},size={per}M",
                        "-numa", f"node,nodeid={n},memdev=mem{n}" + (",cpus=0" if n == 0 else "")]
            cmd[cmd.index("-m") + 1] = str(per * self.numa_nodes)
        for p in self.trace_patterns:
            cmd += ["-trace", p]
        for d in self.devices:
            cmd += d.qemu_args
        cmd += [str(a) for a in self.qemu_args]
        return cmd

    def boot(self):
        busybox = check_host()
        kernel = ensure_kernel()
        initrd = os.path.join(self.work, "initramfs.cpio")
        trace_path = os.path.join(self.work, "trace.log")
        console_path = os.path.join(self.work, "console.log")
        self._build_initramfs(kernel, busybox, initrd)
        self._make_disks()
        for p in (trace_path, console_path):
            if os.path.exists(p):
                os.unlink(p)
        cmd = self.qemu_command(kernel, initrd, trace_path)
        with open(os.path.join(self.work, "qemu-command.txt"), "w") as f:
            f.write(" ".join(shell_quote(c) for c in cmd) + "\n")
        log(f"{self.name}: booting {os.path.basename(kernel.boot_image)} with {len(self.devices)} device(s), "
            f"{len(self.runs)} program(s); console: {console_path}")
        t0 = time.monotonic()
        timed_out = False
        marks = {}  # host seconds since QEMU started when a marker line arrived
        with open(console_path, "wb") as con:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            # Read the console as it comes so the markers get host timestamps
            # (the guest clock under TCG is not a reliable stopwatch).
            def pump():
                for line in iter(p.stdout.readline, b""):
                    con.write(line)
                    m = re.search(rb"@@DKQ-(READY|DONE)", line)
                    if m:
                        marks[m.group(1).decode().lower()] = time.monotonic() - t0
            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                p.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                p.kill()
                p.wait()
            reader.join(timeout=10)
        elapsed = time.monotonic() - t0
        with open(console_path, "rb") as f:
            console = f.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
        r = Result(self, console, Trace(trace_path), elapsed, timed_out, p.returncode)
        r.host_ready, r.host_done = marks.get("ready"), marks.get("done")
        return r


class ProgramResult:
    def __init__(self, label, rc, output, seconds=None):
        self.label, self.rc, self.output, self.seconds = label, rc, output, seconds

    def lines(self):
        return self.output.splitlines()


class Result:
    def __init__(self, scenario, console, trace, elapsed, timed_out, qemu_rc):
        self.scenario = scenario
        self.console = console
        self.trace = trace
        self.elapsed = elapsed
        self.timed_out = timed_out
        self.qemu_rc = qemu_rc
        self.failures = []
        self.programs = {}
        self.host_ready = None  # host seconds from QEMU start to devices bound (the boot cost)
        self.host_done = None   # host seconds from QEMU start to the last program's end
        self.boot_seconds = None  # guest uptime when devices were bound (boot + module load)
        self.done_seconds = None  # guest uptime when the last program ended
        self._parse()

    def _parse(self):
        current, buf, started = None, [], None
        for line in self.console.split("\n"):
            m = re.search(r"@@DKQ-BEGIN (\S+)(?: t=([\d.]+))?", line)
            if m:
                current, buf = m.group(1), []
                started = float(m.group(2)) if m.group(2) else None
                continue
            m = re.search(r"@@DKQ-END (\S+) rc=(\d+)(?: t=([\d.]+))?", line)
            if m and current == m.group(1):
                secs = float(m.group(3)) - started if m.group(3) and started is not None else None
                self.programs[current] = ProgramResult(current, int(m.group(2)), "\n".join(buf), secs)
                current = None
                continue
            m = re.search(r"@@DKQ-READY (\S+)", line)
            if m:
                self.boot_seconds = float(m.group(1))
            m = re.search(r"@@DKQ-DONE (\S+)", line)
            if m:
                self.done_seconds = float(m.group(1))
            if "@@DKQ-ERROR" in line:
                self.failures.append("guest: " + line.strip())
            if current is not None:
                buf.append(line)
        if current is not None:
            self.programs[current] = ProgramResult(current, None, "\n".join(buf))

    def fail(self, msg):
        self.failures.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond

    def program(self, label):
        return self.programs.get(label)

    def require_passed(self):
        for label, prog, args, t in self.scenario.runs:
            pr = self.programs.get(label)
            if pr is None:
                self.fail(f"{label}: never ran (guest stopped before it; see console)")
            elif pr.rc is None:
                self.fail(f"{label}: did not finish (killed or the VM stopped)")
            elif pr.rc == 137:
                self.fail(f"{label}: killed after its {t} s timeout")
            elif pr.rc != 0:
                self.fail(f"{label}: exit status {pr.rc}")

    def disk(self, name):
        with open(self.scenario.disks[name].path, "rb") as f:
            return f.read()

    def check_trace_expectations(self):
        """Guest programs declare what the device must have seen with lines
        `@@DKQ-EXPECT-TRACE <event> [field=value ...] count=<n>`; the counts
        of identical declarations add up across programs, and the total must
        equal what QEMU traced."""
        want = {}
        for pr in self.programs.values():
            for line in pr.lines():
                m = re.search(r"@@DKQ-EXPECT-TRACE (\S+)((?: \S+=\S+)*) count=(\d+)", line)
                if not m:
                    continue
                fields = tuple(sorted(tuple(kv.split("=", 1)) for kv in m.group(2).split()))
                key = (m.group(1), fields)
                want[key] = want.get(key, 0) + int(m.group(3))
        for (event, fields), n in sorted(want.items()):
            got = self.trace.count(event, **dict(fields))
            desc = event + "".join(f" {k}={v}" for k, v in fields)
            if self.check(got == n, f"trace: {desc}: device saw {got}, programs made {n}"):
                log(f"trace ok: {desc} x{n}")
        return want

    def check_protocol_errors(self):
        allowed = {a.event: a for a in self.scenario.allows}
        seen = {}
        for name, text in self.trace.events:
            if any(re.fullmatch(p, name) for p in PROTOCOL_ERROR_PATTERNS):
                seen.setdefault(name, []).append(text)
        for name, texts in sorted(seen.items()):
            a = allowed.get(name)
            if a is None:
                self.fail(f"device reported protocol error {name} x{len(texts)} (first: {texts[0]})")
            elif a.max_count is not None and len(texts) > a.max_count:
                self.fail(f"{name} allowed at most {a.max_count} times ({a.why}), seen {len(texts)}")
            else:
                log(f"allowed protocol event {name} x{len(texts)}: {a.why}")

    def finish(self):
        """Final checks, a summary, and the process exit status for ctest."""
        if self.timed_out:
            self.fail(f"VM did not power off within {self.scenario.timeout} s")
        elif "@@DKQ-DONE" not in self.console:
            self.fail("guest did not reach the end of its script (kernel panic or init failure?)")
        self.check_trace_expectations()
        self.check_protocol_errors()
        for label, pr in self.programs.items():
            took = f", {pr.seconds:.2f} s" if pr.seconds is not None else ""
            print(f"----- {label} (rc={pr.rc}{took}) -----")
            print(pr.output.rstrip())
        if self.host_ready is not None:
            boot = f"boot to ready {self.host_ready:.1f} s"
            if self.host_done is not None:
                boot += f", programs {self.host_done - self.host_ready:.1f} s, poweroff {self.elapsed - self.host_done:.1f} s"
        else:
            boot = "never ready"
        log(f"{self.scenario.name}: VM ran {self.elapsed:.1f} s wall ({boot}); "
            f"{len(self.trace.events)} trace events in {self.trace.path}")
        if self.failures:
            tail = "\n".join(self.console.splitlines()[-40:])
            print("----- console tail -----\n" + tail)
            for f in self.failures:
                print("FAIL: " + f)
            return 1
        log(f"{self.scenario.name}: PASS")
        return 0


def main_guard(fn):
    """Runs a scenario function; harness errors become a clear failure message."""
    try:
        sys.exit(fn())
    except HarnessError as e:
        print("FAIL (harness): " + str(e))
        sys.exit(1)


def _cli(argv):
    """Command line for people: fetch the kernel ahead of time, count trace events."""
    ap = argparse.ArgumentParser(prog="dkqvm.py", description="dkq VM harness helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch-kernel", help="download and unpack the guest kernel into the cache")
    c = sub.add_parser("count", help="count events in a QEMU trace file")
    c.add_argument("trace")
    c.add_argument("event", help="event name (regex, matched whole)")
    c.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    a = ap.parse_args(argv)
    if a.cmd == "fetch-kernel":
        k = ensure_kernel()
        print(f"{k.version}: {k.boot_image}")
        return 0
    fields = dict(f.split("=", 1) for f in a.fields)
    print(Trace(a.trace).count(a.event, **fields))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_cli(sys.argv[1:]))
    except HarnessError as e:
        print("error: " + str(e))
        sys.exit(1)
