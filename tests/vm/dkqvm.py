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

Kernel 6.12 (ublk_drv) and Debian's own programs (docs/vm-tests.md, "Kernel
series, modules and Debian programs"):

    s = Scenario.from_args("ublk", kernel="6.12")  # default "6.1": linux-image-amd64
    s.extra_modules = ["ublk_drv", "ext4"]         # dependencies from each .modinfo
    s.host_program("mkfs.ext4")                    # packed with its libraries and ld.so
    s.script("fmt", "mkfs.ext4 -q /dev/ublkb0\\n")  # a busybox sh script in /progs
    s.run("fmt")
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

# Modules the guest needs for VFIO. Each name is resolved with its
# dependencies (each module's .modinfo depends= and softdep=, loaded first), so
# this works on every kernel series: 6.1 loads vfio, vfio_iommu_type1,
# vfio_virqfd, irqbypass, vfio-pci-core, vfio-pci; 6.12 has no vfio_virqfd
# (merged into vfio) and loads the others. vfio_iommu_type1 is named although
# vfio's softdep brings it too: it is the container backend our programs use.
VFIO_MODULES = ["vfio_iommu_type1", "vfio-pci"]
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

# Kernel series -> Debian metapackage whose Depends: names the versioned
# package. The default series is Debian 12's own kernel; bookworm's archive
# also carries 6.12 (e.g. for ublk_drv, which 6.1 does not have).
DEFAULT_KERNEL_SERIES = "6.1"
KERNEL_METAPACKAGES = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}


def kernel_metapackage(series):
    return KERNEL_METAPACKAGES.get(series, f"linux-image-{series}-amd64")


def kernel_pkg_env(series):
    """The environment variable that pins the versioned package of `series`:
    DKQ_VM_KERNEL_PKG for the default series, DKQ_VM_KERNEL_PKG_612 for 6.12."""
    if series == DEFAULT_KERNEL_SERIES:
        return "DKQ_VM_KERNEL_PKG"
    return "DKQ_VM_KERNEL_PKG_" + series.replace(".", "")


def package_series(pkg):
    """linux-image-6.1.0-57-amd64 -> "6.1"; linux-image-6.12.118+deb12-amd64 -> "6.12"."""
    m = re.match(r"linux-image-(\d+\.\d+)", pkg)
    return m.group(1) if m else None


def _version_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def kernel_package(series=DEFAULT_KERNEL_SERIES):
    forced = os.environ.get(kernel_pkg_env(series))
    if forced:
        return forced
    meta = kernel_metapackage(series)
    for attempt in range(2):
        try:
            out = subprocess.run(["apt-cache", "depends", meta], capture_output=True,
                                 text=True, check=True).stdout
            m = re.search(r"Depends:\s*(linux-image-\S+-amd64)", out)
            if m:
                return m.group(1)
        except (OSError, subprocess.CalledProcessError):
            pass
        # A fresh machine may have no package lists yet; as root, fetch them once.
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            log(f"no apt metadata for {meta}; running apt-get update")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        else:
            break
    # No apt metadata: use whatever kernel of this series is already cached.
    cached = sorted((d for d in os.listdir(cache_dir()) if d.startswith("linux-image-")
                     and package_series(d) == series
                     and os.path.exists(os.path.join(cache_dir(), d, ".complete"))), key=_version_key)
    if cached:
        return cached[-1]
    raise HarnessError(f"cannot find the kernel package: `apt-cache depends {meta}` failed "
                       f"(run `sudo apt-get update`) and no {series} kernel is cached in " + cache_dir())


def _elf_sections(data):
    """{name: bytes} of an ELF64 little-endian file's sections; {} if it is not one."""
    import struct
    if not data.startswith(b"\x7fELF") or data[4] != 2 or data[5] != 1:
        return {}
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
        hdrs = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names_off = hdrs[shstrndx][4]
        out = {}
        for name, stype, _, _, off, size in hdrs:
            end = data.index(b"\0", names_off + name)
            if stype != 8:  # SHT_NOBITS has no bytes in the file
                out[data[names_off + name:end].decode(errors="replace")] = data[off:off + size]
        return out
    except (struct.error, IndexError, ValueError):
        return {}


def parse_modinfo(data):
    """A module's .modinfo strings as {key: [values]} (a depends= value stays
    one comma-separated string). Reads the ELF .modinfo section; for anything else, the bytes are
    searched for NUL-separated key=value strings as `strings` would find them."""
    sec = _elf_sections(data).get(".modinfo")
    info = {}
    if sec is not None:
        items = sec.split(b"\0")
    else:
        items = re.findall(rb"(?:^|\0)((?:depends|softdep|alias|name)=[^\0]*)", data)
    for item in items:
        key, eq, value = item.decode(errors="replace").partition("=")
        if eq:
            info.setdefault(key, []).append(value)
    return info


def _modkey(name):
    return name.replace("-", "_")


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
        self._builtin = None
        self._aliases = None
        self._modinfo = {}
        # The ELF kernel, when it could be extracted: QEMU boots it through its
        # PVH entry point, skipping the in-guest decompression that takes most
        # of a TCG boot (xz under emulation: ~15 s of a ~25 s boot on a loaded host).
        elf = os.path.join(os.path.dirname(root), "vmlinux-" + self.version)
        self.boot_image = elf if os.path.exists(elf) else self.vmlinuz

    def _modules(self):
        if self._index is None:
            self._index = {}
            for dirpath, _, files in os.walk(os.path.join(self.moddir, "kernel")):
                for f in files:
                    for ext in (".ko", ".ko.xz", ".ko.zst"):
                        if f.endswith(ext):
                            self._index[_modkey(f[: -len(ext)])] = os.path.join(dirpath, f)
        return self._index

    def has_module(self, name):
        return _modkey(name) in self._modules()

    def module(self, name):
        """Path of module `name` (dashes and underscores are interchangeable, as in modprobe)."""
        key = _modkey(name)
        if key not in self._modules():
            if self.is_builtin(name):
                raise HarnessError(f"module {name} is built into kernel {self.version} (modules.builtin)")
            raise HarnessError(f"module {name} not found in {self.moddir}")
        return self._index[key]

    def module_file_name(self, name):
        """The module's own name as its file spells it: vfio_pci_core -> vfio-pci-core."""
        base = os.path.basename(self.module(name))
        return base[:base.index(".ko")]

    def is_builtin(self, name):
        """True when modules.builtin lists `name` (built in: nothing to load)."""
        if self._builtin is None:
            self._builtin = set()
            path = os.path.join(self.moddir, "modules.builtin")
            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        line = line.strip()
                        if line.endswith(".ko"):
                            self._builtin.add(_modkey(os.path.basename(line)[:-3]))
        return _modkey(name) in self._builtin

    def module_bytes(self, name):
        """The plain .ko of module `name` (busybox insmod cannot read .ko.xz or
        .ko.zst): xz is decompressed with Python's lzma, zstd with the zstd tool."""
        import lzma
        path = self.module(name)
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".ko.xz"):
            try:
                return lzma.decompress(data)
            except lzma.LZMAError as e:
                raise HarnessError(f"{path}: cannot decompress ({e})")
        if path.endswith(".ko.zst"):
            if shutil.which("zstd") is None:
                raise HarnessError(f"{path} is zstd-compressed and Python's standard library cannot "
                                   "decompress it: apt-get install zstd")
            r = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
            if r.returncode != 0:
                raise HarnessError(f"{path}: zstd -d failed: {r.stderr.decode(errors='replace').strip()}")
            return r.stdout
        return data

    def modinfo(self, name):
        key = _modkey(name)
        if key not in self._modinfo:
            self._modinfo[key] = parse_modinfo(self.module_bytes(name))
        return self._modinfo[key]

    def _alias(self, name):
        """The module providing alias `name` (softdeps name crypto algorithms,
        e.g. crypto-crc32c). Debian's package has no modules.alias, so the
        crypto modules' own alias= lines are read (once); a *_generic provider
        is preferred (pure C, no CPU feature needed)."""
        if self._aliases is None:
            self._aliases = {}
            dirs = [os.path.join(self.moddir, "kernel", "crypto"),
                    os.path.join(self.moddir, "kernel", "arch", "x86", "crypto")]
            for d in dirs:
                for dirpath, _, files in os.walk(d):
                    for f in sorted(files):
                        if ".ko" not in f:
                            continue
                        mod = f[:f.index(".ko")]
                        try:
                            info = self.modinfo(mod)
                        except HarnessError:
                            continue
                        for a in info.get("alias", []):
                            self._aliases.setdefault(a, []).append(mod)
        providers = self._aliases.get(name, [])
        generic = [m for m in providers if m.endswith("_generic")]
        return (generic or providers or [None])[0]

    def resolve_modules(self, names):
        """Module file names in load order: each of `names` after what it needs.
        Hard dependencies (depends=) must exist; softdep= pre/post names that
        are neither a module nor a known crypto alias are skipped, as modprobe
        does; built-in modules (modules.builtin) are skipped."""
        order, done = [], set()

        def visit(name, chain, required):
            key = _modkey(name)
            if key in done or key in chain:
                return
            if not self.has_module(name):
                if self.is_builtin(name):
                    return
                alias = None if required else self._alias(name)
                if alias is None:
                    if required:
                        self.module(name)  # raises: not found / built in
                    return
                return visit(alias, chain, False)
            info = self.modinfo(name)
            pre, post = _softdeps(info)
            chain = chain | {key}
            for s in pre:
                visit(s, chain, False)
            for dep in ",".join(info.get("depends", [])).split(","):
                if dep:
                    visit(dep, chain, True)
            done.add(key)
            order.append(self.module_file_name(name))
            for s in post:
                visit(s, chain - {key}, False)

        for n in names:
            visit(n, frozenset(), True)  # a name asked for must exist (or be built in)
        return order


def _softdeps(info):
    pre, post, where = [], [], None
    for line in info.get("softdep", []):
        for tok in line.split():
            if tok in ("pre:", "post:"):
                where = pre if tok == "pre:" else post
            elif where is not None:
                where.append(tok)
    return pre, post


def extract_vmlinux(root, base):
    """Unpacks the ELF vmlinux from bzImage when the kernel has a PVH entry note
    (CONFIG_PVH); keeps bzImage otherwise. xz (6.1) and gzip payloads use
    Python's stdlib, zstd (6.12) the zstd tool. Returns "no-tool" when the
    payload is zstd and the tool is missing (so a later run may retry)."""
    import gzip
    import lzma
    import struct
    boot = os.path.join(root, "boot")
    result = None
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
            elif payload.startswith(b"\x28\xb5\x2f\xfd"):
                if shutil.which("zstd") is None:
                    log(f"{name}: zstd-compressed kernel and no zstd tool (apt-get install zstd); "
                        "booting bzImage (slower)")
                    result = "no-tool"
                    continue
                # The payload ends with the 4-byte decompressed size the kernel's
                # build appends, which zstd would read as a broken frame.
                r = subprocess.run(["zstd", "-dcq"], input=payload[:-4], capture_output=True)
                if r.returncode != 0:
                    continue
                elf = r.stdout
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
    return result


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


def drop_superseded_kernels(pkg):
    """A new kernel ABI replaces the old one of the same series: drops the other
    cached kernels of `pkg`'s series (about 400 MB each). Other series stay (a
    6.1 and a 6.12 scenario share the cache)."""
    series = package_series(pkg)
    for old in sorted(os.listdir(cache_dir())):
        if old.startswith("linux-image-") and old != pkg and package_series(old) == series:
            log(f"removing superseded cached kernel {old}")
            shutil.rmtree(os.path.join(cache_dir(), old), ignore_errors=True)


def ensure_kernel(series=DEFAULT_KERNEL_SERIES):
    pkg = kernel_package(series)
    base = os.path.join(cache_dir(), pkg)
    done = os.path.join(base, ".complete")
    os.makedirs(base, exist_ok=True)
    # Several scenarios may start at once (ctest -j): one downloads, the others wait.
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tried, why = False, None
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
            why, tried = extract_vmlinux(root, base), True
            with open(done, "w") as f:
                f.write(pkg + "\n")
            if not os.environ.get(kernel_pkg_env(series)):
                drop_superseded_kernels(pkg)
        root = os.path.join(base, "root")
        if not any(f.startswith("vmlinux-") for f in os.listdir(base)) and not os.path.exists(os.path.join(base, ".no-pvh")):
            if not tried:
                why = extract_vmlinux(root, base)
            if not any(f.startswith("vmlinux-") for f in os.listdir(base)) and why != "no-tool":
                open(os.path.join(base, ".no-pvh"), "w").close()
    return Kernel(root)


# ---- initramfs (newc cpio written here, so no cpio tool is needed) -------------------

class Cpio:
    def __init__(self):
        self.parts = []
        self.ino = 1
        self.dirs = set()

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
        self.dirs.add(name)

    def dirs_for(self, name):
        """Creates each missing parent directory of `name` (e.g. usr, usr/sbin for usr/sbin/x)."""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dir(d)

    def file(self, name, data, mode=0o755):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def write(self, path):
        self._entry("TRAILER!!!", 0)
        with open(path, "wb") as f:
            for p in self.parts:
                f.write(p)


# ---- host programs: Debian's own binaries with their shared libraries ----------------

HOST_PROGRAM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
# Configuration files a host program reads, packed along with it (keyed by the
# real binary's name): without /etc/mke2fs.conf mke2fs falls back to built-in
# defaults that differ from Debian's (e.g. no 64bit/metadata_csum choices per type).
HOST_PROGRAM_FILES = {"mke2fs": ["/etc/mke2fs.conf"], "e2fsck": ["/etc/e2fsck.conf"]}


def find_host_program(name):
    """Absolute host path of program `name` (searched on PATH plus the sbin
    directories) or of the path given; the directory part is canonical (on a
    merged-/usr host /sbin/x is /usr/sbin/x), the file name is kept, since a
    symlink such as mkfs.ext4 -> mke2fs behaves by its name."""
    if "/" in name:
        path = os.path.abspath(name)
    else:
        dirs = os.environ.get("PATH", "").split(":") + HOST_PROGRAM_PATH
        path = next((os.path.join(d, name) for d in dirs if d and os.path.isfile(os.path.join(d, name))
                     and os.access(os.path.join(d, name), os.X_OK)), None)
        if path is None:
            raise HarnessError(f"host program {name} not found on PATH or in /usr/sbin, /sbin "
                               "(install its Debian package; scripts/deps.sh)")
    if not os.path.isfile(path):
        raise HarnessError(f"host program {path} does not exist")
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if path.startswith("/bin/"):
        # Only on a host without merged /usr: the guest's /bin is busybox's.
        raise HarnessError(f"host program {path}: /bin in the guest holds busybox's applets; "
                           "use a program from /usr/bin or /usr/sbin")
    return path


def library_closure(path):
    """Every shared library `path` needs, as the host's loader resolves them
    (`ldd`), and the loader itself (its PT_INTERP); [] for a static program or
    a script."""
    interp = elf_interpreter(path)
    if not interp:
        return []
    r = subprocess.run(["ldd", path], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    if r.returncode != 0:
        raise HarnessError(f"ldd {path} failed: {r.stderr.strip() or r.stdout.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) => not found", line)
        if m:
            raise HarnessError(f"{path} needs {m.group(1)}, which the host's loader cannot find")
        m = re.match(r"\s*\S+ => (/\S+) \(0x", line) or re.match(r"\s*(/\S+) \(0x", line)
        if m and m.group(1) not in libs:
            libs.append(m.group(1))
    if interp not in libs:
        libs.append(interp)
    return libs


def pack_host_path(cpio, path, packed):
    """Packs host file `path` at the same absolute path in the guest. A symlink
    stays a symlink (same target text) and its target is packed too, so the
    loader finds libc.so.6 -> ... and /lib64/ld-linux-x86-64.so.2 -> ... as on
    the host. Directories are created as real directories. `packed` (a set)
    de-duplicates across programs."""
    path = os.path.normpath(path)
    if path in packed:
        return
    packed.add(path)
    name = path.lstrip("/")
    cpio.dirs_for(name)
    if os.path.islink(path):
        target = os.readlink(path)
        cpio.symlink(name, target)
        pack_host_path(cpio, target if target.startswith("/") else os.path.join(os.path.dirname(path), target),
                       packed)
    else:
        with open(path, "rb") as f:
            cpio.file(name, f.read(), os.stat(path).st_mode & 0o777)


INIT_TEMPLATE = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
# busybox's applets first; Debian programs packed with host_program() after.
export PATH=/bin:/usr/sbin:/usr/bin:/sbin
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
timeout -s KILL {timeout} {path} {args} </dev/null 2>&1
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
    def __init__(self, name, work_dir, programs, timeout=240, memory_mib=512, numa_nodes=1,
                 kernel=DEFAULT_KERNEL_SERIES):
        self.name = name
        self.work = os.path.abspath(work_dir)
        self.programs = programs  # name -> host path of the static binary
        self.host_programs = {}   # name -> host path of a Debian program, packed at that path
        self.host_files = []      # further host files packed at the same path
        self.timeout = timeout
        # Guest RAM. The initramfs is uncompressed and unpacked into RAM, so a
        # boot raises it to 2 x its size + 256 MiB if it is lower (logged).
        self.memory_mib = memory_mib
        # Kernel series: "6.1" (Debian 12's linux-image-amd64) or "6.12"
        # (linux-image-6.12-amd64, which has ublk_drv); see kernel_package().
        self.kernel_series = kernel
        self.numa_nodes = numa_nodes  # >1: guest memory split evenly over that many nodes
        self.max_cpus = 1  # -smp 1,maxcpus=N when N > 1 (see qemu_command)
        self.devices = []
        self.disks = {}
        self.runs = []
        self.allows = []
        self.trace_patterns = list(DEFAULT_TRACE)
        self.extra_modules = []   # loaded (in this order) before devices are bound
        self.packed_modules = []  # shipped in /lib/modules/<name>.ko but not loaded
        self.extra_binds = []     # further BDFs (not scenario devices) to bind to vfio-pci
        self.packed_programs = [] # /progs/<name> packed but not run (pack())
        self.kernel_args = []
        self.qemu_args = []       # raw QEMU arguments, appended after the devices as given
        os.makedirs(self.work, exist_ok=True)

    @staticmethod
    def from_args(name, argv=None, kernel=DEFAULT_KERNEL_SERIES):
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
        s = Scenario(name, a.work_dir, progs, timeout=a.timeout, kernel=kernel)
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

    def host_program(self, name_or_path, name=None):
        """Registers a program installed on the host from a Debian package
        (mkfs.ext4, fsck.ext4, debugfs, fio, mount, ...): looked up on PATH
        and in /usr/sbin, /sbin unless a path is given. It is packed at the
        same absolute path with every shared library it needs and the dynamic
        loader (so it is exempt from the static-only rule), and is on the
        guest's PATH after busybox's /bin. Returns the guest path;
        `s.run(name, ...)` runs it (name defaults to the file name)."""
        path = find_host_program(name_or_path)
        name = name or os.path.basename(path)
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise HarnessError(f"program name {name!r}: use letters, digits and _.+- only")
        if name in self.programs:
            raise HarnessError(f"{name} is already a guest program (--prog/program()); pass name=")
        self.host_programs[name] = path
        return path

    def host_file(self, path):
        """Packs host file `path` (a symlink with its target) at the same path in the guest."""
        path = os.path.abspath(path)
        if not os.path.lexists(path):
            raise HarnessError(f"host file {path} does not exist")
        self.host_files.append(path)
        return path

    def pack(self, name, path):
        """Packs host file `path` as /progs/<name> without running it: a file
        the guest programs use (a shell library they source, a data file)."""
        self.program(name, path)
        self.packed_programs.append(name)

    def script(self, name, text):
        """A busybox sh script written by the scenario, packed as /progs/<name>
        and run with `s.run(name, ...)` like any program. "#!/bin/sh" is added
        when the text has no #! line."""
        if not text.startswith("#!"):
            text = "#!/bin/sh\n" + text
        d = os.path.join(self.work, "scripts")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        return self.program(name, path)

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
        """Runs guest program `prog` (from --prog, program(), script() or
        host_program()) with `args`; programs run in order."""
        if prog not in self.programs and prog not in self.host_programs:
            raise HarnessError(f"program {prog} not given with --prog {prog}=PATH "
                               "(nor registered with program(), script() or host_program())")
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
        for d in ("bin", "dev", "proc", "sys", "tmp", "run", "lib", "lib/modules", "progs", "etc"):
            c.dir(d)
        with open(busybox, "rb") as f:
            c.file("bin/busybox", f.read())
        # For Debian's programs: the mount table where util-linux and e2fsprogs
        # look for it, and a root entry for anything that looks up user names.
        c.symlink("etc/mtab", "/proc/self/mounts")
        c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        c.file("etc/group", b"root:x:0:\n", 0o644)
        # Each module after what it needs (depends=/softdep= in its .modinfo),
        # decompressed (busybox insmod reads plain .ko); built-in ones skipped.
        # A module the scenario names keeps its spelling in /lib/modules.
        spelled = {m.replace("-", "_"): m for m in list(self.packed_modules) + VFIO_MODULES + list(self.extra_modules)}
        modules = [spelled.get(m.replace("-", "_"), m)
                   for m in kernel.resolve_modules(VFIO_MODULES + list(self.extra_modules))]
        packed = [spelled.get(m.replace("-", "_"), m) for m in kernel.resolve_modules(self.packed_modules)]
        for m in modules + [m for m in packed if m not in modules]:
            c.file(f"lib/modules/{m}.ko", kernel.module_bytes(m), 0o644)
        # Host programs: at their own path, with their libraries and the loader.
        host_packed = set()
        extra = list(self.host_files)
        for prog in sorted(self.host_programs):
            host = self.host_programs[prog]
            real = os.path.basename(os.path.realpath(host))
            extra += [f for f in HOST_PROGRAM_FILES.get(real, []) if os.path.exists(f)]
            for p in [host] + library_closure(host):
                pack_host_path(c, p, host_packed)
        for p in extra:
            pack_host_path(c, p, host_packed)
        strip = shutil.which("strip")
        for prog in sorted({r[1] for r in self.runs if r[1] in self.programs} | set(self.packed_programs)):
            src = self.programs[prog]
            check_guest_program(prog, src)
            if strip:
                # Debug info is useless in the guest and costs unpack time under TCG.
                stripped = os.path.join(self.work, "prog-" + prog)
                if subprocess.run([strip, "--strip-debug", "-o", stripped, src], capture_output=True).returncode == 0:
                    src = stripped
            with open(src, "rb") as f:
                c.file(f"progs/{prog}", f.read())
        progs = "".join(PROGRAM_TEMPLATE.format(label=label, timeout=t,
                                                path=(f"/progs/{prog}" if prog in self.programs
                                                      else shell_quote(self.host_programs[prog])),
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
        # One vCPU. max_cpus > 1 (hot-pluggable CPUs nobody plugs) makes QEMU
        # 7.2's TCG translate in parallel mode, which keeps the guest's memory
        # barriers (it drops them with one possible vCPU; QEMU c914d46d0a64
        # "tcg: Do not elide memory barriers for !CF_PARALLEL in system mode",
        # v8.1, changed that): experiments use it to see what the barriers do.
        smp = "1" if self.max_cpus <= 1 else f"1,maxcpus={self.max_cpus}"
        cmd = [QEMU, "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-smp", smp,
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
        kernel = ensure_kernel(self.kernel_series)
        initrd = os.path.join(self.work, "initramfs.cpio")
        trace_path = os.path.join(self.work, "trace.log")
        console_path = os.path.join(self.work, "console.log")
        self._build_initramfs(kernel, busybox, initrd)
        need = 2 * (os.path.getsize(initrd) >> 20) + 256
        if self.memory_mib < need:
            log(f"{self.name}: initramfs is {os.path.getsize(initrd) >> 20} MiB (unpacked into RAM): "
                f"memory_mib {self.memory_mib} -> {need}")
            self.memory_mib = need
        self._make_disks()
        for p in (trace_path, console_path):
            if os.path.exists(p):
                os.unlink(p)
        cmd = self.qemu_command(kernel, initrd, trace_path)
        with open(os.path.join(self.work, "qemu-command.txt"), "w") as f:
            f.write(" ".join(shell_quote(c) for c in cmd) + "\n")
        log(f"{self.name}: booting {os.path.basename(kernel.boot_image)} ({self.kernel_series} series) with {len(self.devices)} device(s), "
            f"{len(self.runs)} program(s); console: {console_path}")
        t0 = time.monotonic()
        timed_out = False
        marks = {}  # host seconds since QEMU started when a marker line arrived
        host = {}   # label -> [host_sample at BEGIN, host_sample at END]
        with open(console_path, "wb") as con:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            # Read the console as it comes so the markers get host timestamps
            # (the guest clock under TCG is not a reliable stopwatch), and the
            # host's CPU accounting at each program's start and end (what else
            # ran on the host while it ran: host_load()).
            def pump():
                for line in iter(p.stdout.readline, b""):
                    con.write(line)
                    m = re.search(rb"@@DKQ-(READY|DONE)", line)
                    if m:
                        marks[m.group(1).decode().lower()] = time.monotonic() - t0
                    m = re.search(rb"@@DKQ-(BEGIN|END) (\S+)", line)
                    if m:
                        host.setdefault(m.group(2).decode(), []).append(host_sample(p.pid, t0))
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
        r.host_samples = host
        return r


def host_sample(qemu_pid, t0):
    """The host's CPU accounting now: (seconds since t0, /proc/stat cpu line
    [user nice system idle iowait irq softirq steal ...] in ticks, QEMU's own
    utime+stime in ticks, 1-minute load average)."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        with open(f"/proc/{qemu_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        qemu = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (time.monotonic() - t0, cpu, qemu, load)


def host_load(result, label):
    """What the host did while program `label` ran: wall seconds, steal %
    (of all host CPU time: time the host's own hypervisor gave to others),
    the CPUs' busy time outside this VM's QEMU in cores ("other": builds,
    other VMs), QEMU's own CPU in cores, and the 1-minute load average at the
    end. None if the samples are missing."""
    pair = getattr(result, "host_samples", {}).get(label)
    if not pair or len(pair) < 2 or pair[0] is None or pair[-1] is None:
        return None
    (t_a, c_a, q_a, _), (t_b, c_b, q_b, load) = pair[0], pair[-1]
    d = [b - a for a, b in zip(c_a, c_b)]
    total = sum(d[:8]) or 1
    hz = os.sysconf("SC_CLK_TCK")
    secs = t_b - t_a
    busy = total - d[3] - d[4] - d[7]  # not idle, iowait or steal
    qemu = q_b - q_a
    return {"seconds": round(secs, 2), "steal_pct": round(100.0 * d[7] / total, 1),
            "other_cores": round(max(0, busy - qemu) / hz / secs, 2) if secs > 0 else None,
            "qemu_cores": round(qemu / hz / secs, 2) if secs > 0 else None, "load1": load}


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
    fk = sub.add_parser("fetch-kernel", help="download and unpack the guest kernel into the cache")
    fk.add_argument("--kernel", default=DEFAULT_KERNEL_SERIES, metavar="SERIES",
                    help=f"kernel series ({', '.join(KERNEL_METAPACKAGES)}; default {DEFAULT_KERNEL_SERIES})")
    c = sub.add_parser("count", help="count events in a QEMU trace file")
    c.add_argument("trace")
    c.add_argument("event", help="event name (regex, matched whole)")
    c.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    a = ap.parse_args(argv)
    if a.cmd == "fetch-kernel":
        k = ensure_kernel(a.kernel)
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
