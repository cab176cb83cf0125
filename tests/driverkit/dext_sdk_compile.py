#!/usr/bin/env python3
"""Compiles every dext source that includes a DriverKit header against Apple's
published DriverKit interface declarations (ctest driverkit_sdk_compile), and
proves the check can fail (ctest driverkit_sdk_compile_selftest).

  dext_sdk_compile.py --interfaces DIR --source ROOT --clang CLANG --build DIR [--selftest]

DIR is a folder of Apple's open-source DriverKit interface files laid out as
their repositories are (xnu/iokit/DriverKit/*.iig, IOPCIFamily/PCIDriverKit/,
IOStorageFamily/BlockStorageDeviceDriverKit/,
IOSCSIParallelFamily/SCSIControllerDriverKit/). Their .iig files, the
stand-in IOTimerDispatchSource.iig and the dexts' own DkqNVMe.iig and
DkqMegaRAID.iig go through tests/driverkit/iig/dkq_iig.py; then clang compiles
(-fsyntax-only, the dext flags) each of:

  include/dkq/platform/driverkit/apple/*.hpp   (each header alone)
  examples/nvme/driverkit/DkqNVMe.cpp
  examples/scsi/driverkit/DkqMegaRAID.cpp

with Apple's headers and the generated ones first on the include path and
tests/driverkit/sdk_standins/ (what Apple does not publish) after them.

--selftest plants one mistake at a time in a temporary copy (a dext .iig or an
Apple .iig) and fails unless the generator or the compiler reports each one.

On a Mac, DIR may instead be a DriverKit SDK (`xcrun --sdk driverkit
--show-sdk-path`): Apple's generated headers are then the SDK's own, the two
dext .iig files go through Apple's iig (invoked as IOPCIFamily's
PCIDriverKit/iigFramework.sh invokes it) and no stand-in is used. That mode
follows Apple's script but has not been run by this project (no Mac).
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IIG = os.path.join(HERE, "iig", "dkq_iig.py")
STANDINS = os.path.join(HERE, "sdk_standins")

# The flags a dext is built with (docs/driverkit.md, "The Xcode project"):
# gnu++20, libc++, no exceptions, no RTTI, blocks on; warnings are errors.
DEXT_FLAGS = ["-fsyntax-only", "-std=gnu++20", "-stdlib=libc++", "-fno-exceptions", "-fno-rtti", "-fblocks",
              "-Wall", "-Wextra", "-Wshadow", "-Wconversion", "-Wno-sign-conversion", "-Werror", "-DPLATFORM_DriverKit=1", "-DXNU_PLATFORM_DriverKit=1"]


def is_sdk(root):
    return os.path.isdir(os.path.join(root, "System", "DriverKit", "System", "Library", "Frameworks",
                                      "DriverKit.framework"))


class SdkLayout:
    """A DriverKit SDK (macOS only; not run by this project)."""

    def __init__(self, root, iig=None):
        self.root = root
        dk = os.path.join(root, "System", "DriverKit")
        self.frameworks = os.path.join(dk, "System", "Library", "Frameworks")
        self.include_flags = ["-isysroot", root, "-iframework", self.frameworks,
                              "-idirafter", os.path.join(dk, "usr", "local", "include"),
                              "-idirafter", os.path.join(dk, "usr", "include")]
        self.iig = iig or subprocess.run(["xcrun", "-sdk", "driverkit", "-find", "iig"], stdout=subprocess.PIPE,
                                         text=True).stdout.strip()
        if not self.iig:
            raise SystemExit("no iig: pass --iig or install Xcode")


class Layout:
    """Where each published file sits in the interface folder, and the
    framework path the SDK installs it under."""

    def __init__(self, root):
        self.root = root
        x = os.path.join(root, "xnu", "iokit", "DriverKit")
        pci = os.path.join(root, "IOPCIFamily")
        blk = os.path.join(root, "IOStorageFamily", "BlockStorageDeviceDriverKit")
        scsi = os.path.join(root, "IOSCSIParallelFamily")
        for d in (x, pci, blk, scsi):
            if not os.path.isdir(d):
                raise SystemExit("%s: not Apple's DriverKit interface folder (missing %s)" % (root, d))
        self.iig = []  # (source .iig, framework-relative header)
        self.headers = []  # (published .h, framework-relative path)
        for n in sorted(os.listdir(x)):
            p = os.path.join(x, n)
            if n.endswith(".iig"):
                self.iig.append((p, "DriverKit/" + n[:-4] + ".h"))
            elif n.endswith(".h"):
                self.headers.append((p, "DriverKit/" + n))
        self.iig.append((os.path.join(STANDINS, "DriverKit", "IOTimerDispatchSource.iig"),
                         "DriverKit/IOTimerDispatchSource.h"))
        self.iig.append((os.path.join(pci, "PCIDriverKit", "IOPCIDevice.iig"), "PCIDriverKit/IOPCIDevice.h"))
        self.headers.append((os.path.join(pci, "PCIDriverKit", "PCIDriverKit.h"), "PCIDriverKit/PCIDriverKit.h"))
        self.headers.append((os.path.join(pci, "PCIDriverKit", "PCIDriverKitPrivate.h"),
                             "PCIDriverKit/PCIDriverKitPrivate.h"))
        self.headers.append((os.path.join(pci, "IOKit", "pci", "IOPCIFamilyDefinitions.h"),
                             "PCIDriverKit/IOPCIFamilyDefinitions.h"))
        self.iig.append((os.path.join(blk, "IOUserBlockStorageDevice.iig"),
                         "BlockStorageDeviceDriverKit/IOUserBlockStorageDevice.h"))
        self.iig.append((os.path.join(scsi, "SCSIControllerDriverKit", "IOUserSCSIParallelInterfaceController.iig"),
                         "SCSIControllerDriverKit/IOUserSCSIParallelInterfaceController.h"))
        self.headers.append((os.path.join(scsi, "SCSIControllerDriverKit", "SCSIDefinitions.h"),
                             "SCSIControllerDriverKit/SCSIDefinitions.h"))
        self.headers.append((os.path.join(scsi, "IOSCSIParallelControllerCharacteristics.h"),
                             "SCSIControllerDriverKit/IOSCSIParallelControllerCharacteristics.h"))
        # Apple's own implementations of two of the classes: compiled against
        # the generated headers, they check the generator's output shape
        # (IMPL, ivars, SUPERDISPATCH, merged EXTENDS methods) the way Apple's
        # code expects it, not just the way ours uses it.
        self.apple_impl = [
            (os.path.join(pci, "PCIDriverKit", "IOPCIDevice.cpp"), "PCIDriverKit"),
            (os.path.join(blk, "IOUserBlockStorageDevice.cpp"), "BlockStorageDeviceDriverKit"),
        ]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def generate_with_apple_iig(layout, src_root, out, overrides):
    """SDK mode: Apple's iig writes DkqNVMe.h and DkqMegaRAID.h (flags as in
    IOPCIFamily's PCIDriverKit/iigFramework.sh)."""
    cflags = layout.include_flags + ["-x", "c++", "-std=gnu++1z", "-fno-exceptions", "-fno-rtti", "-D__IIG=1",
                                     "-DPLATFORM_DriverKit=1"]
    text = ""
    for sub, name in (("nvme", "DkqNVMe"), ("scsi", "DkqMegaRAID")):
        src = os.path.join(src_root, "examples", sub, "driverkit", name + ".iig")
        dst = os.path.join(out, "dext", sub, name + ".h")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        rc, t = run([layout.iig, "--def", overrides.get(src, src), "--header", dst, "--impl", "/dev/null", "--"]
                    + cflags)
        text += t
        if rc != 0:
            return rc, text
    return 0, text


def generate(layout, src_root, out, overrides=None):
    """Headers for Apple's .iig files and the two dext classes under out/.
    overrides maps an input path to a replacement file (self-test plants)."""
    overrides = overrides or {}
    sdk = os.path.join(out, "sdk")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(sdk)
    if isinstance(layout, SdkLayout):
        return generate_with_apple_iig(layout, src_root, out, overrides)
    for src, rel in layout.headers:
        dst = os.path.join(sdk, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(overrides.get(src, src), dst)
    # IOPCIDevice.cpp spells one include <PCIDriverkit/...>: macOS file
    # systems ignore case, this one does not.
    os.symlink("PCIDriverKit", os.path.join(sdk, "PCIDriverkit"))
    cmd = [sys.executable, IIG, "--out", sdk]
    for src, rel in layout.iig:
        cmd += ["--map", "%s=%s" % (overrides.get(src, src), rel)]
    nvme = os.path.join(src_root, "examples", "nvme", "driverkit", "DkqNVMe.iig")
    scsi = os.path.join(src_root, "examples", "scsi", "driverkit", "DkqMegaRAID.iig")
    cmd += ["--user", "%s=../dext/nvme/DkqNVMe.h" % overrides.get(nvme, nvme)]
    cmd += ["--user", "%s=../dext/scsi/DkqMegaRAID.h" % overrides.get(scsi, scsi)]
    return run(cmd)


# Explicit instantiations for the glue headers' own units: a member of a class
# template is only checked against Apple's declarations once instantiated.
INSTANTIATE = {
    "interrupts.hpp": "template class dkq::driverkit::apple::interrupt_sources<4>;\n",
    "dma_allocator.hpp": "template class dkq::driverkit::apple::dma_allocator<64>;\n",
}


def units(src_root, out):
    inc = os.path.join(src_root, "include")
    apple = os.path.join(inc, "dkq", "platform", "driverkit", "apple")
    tus = []
    for n in sorted(os.listdir(apple)):
        if n.endswith(".hpp"):
            tu = os.path.join(out, "tu", n.replace(".hpp", ".cpp"))
            os.makedirs(os.path.dirname(tu), exist_ok=True)
            with open(tu, "w") as f:
                f.write('#include "dkq/platform/driverkit/apple/%s"\n' % n)
                f.write(INSTANTIATE.get(n, ""))
            tus.append(("apple/" + n, tu, ["-I", inc]))
    nv = os.path.join(src_root, "examples", "nvme", "driverkit")
    tus.append(("DkqNVMe.cpp", os.path.join(nv, "DkqNVMe.cpp"),
                ["-I", inc, "-I", nv, "-I", os.path.join(out, "dext", "nvme")]))
    sc = os.path.join(src_root, "examples", "scsi", "driverkit")
    tus.append(("DkqMegaRAID.cpp", os.path.join(sc, "DkqMegaRAID.cpp"),
                ["-I", inc, "-I", src_root, "-I", sc, "-I", os.path.join(out, "dext", "scsi")]))
    return tus


def compile_all(clang, src_root, out, only=None, layout=None):
    sysinc = ["-isystem", os.path.join(out, "sdk"), "-isystem", STANDINS]
    flags = DEXT_FLAGS
    if isinstance(layout, SdkLayout):
        arch = "arm64" if platform.machine() in ("arm64", "aarch64") else "x86_64"
        sysinc = layout.include_flags + ["-target", "%s-apple-driverkit22.0" % arch]
        flags = [f for f in DEXT_FLAGS if f != "-DXNU_PLATFORM_DriverKit=1"]
    failures = []
    for name, tu, inc in units(src_root, out):
        if only and name not in only:
            continue
        rc, text = run([clang] + flags + sysinc + inc + [tu])
        print("%-40s %s" % (name, "ok" if rc == 0 else "FAILED"))
        if rc != 0:
            failures.append((name, text))
    return failures


def make_layout(args):
    if is_sdk(args.interfaces):
        return SdkLayout(args.interfaces, args.iig)
    return Layout(args.interfaces)


def compile_generated(clang, layout, out):
    """Every header the generator wrote for Apple's .iig files, in one unit
    (most of them are not reached by the dexts' includes)."""
    tu = os.path.join(out, "tu", "all_generated.cpp")
    os.makedirs(os.path.dirname(tu), exist_ok=True)
    with open(tu, "w") as f:
        for _, rel in layout.iig:
            f.write("#include <%s>\n" % rel)
    rc, text = run([clang] + DEXT_FLAGS + ["-isystem", os.path.join(out, "sdk"), "-isystem", STANDINS, tu])
    name = "every generated Apple header"
    print("%-40s %s" % (name, "ok" if rc == 0 else "FAILED"))
    return [] if rc == 0 else [(name, text)]


def compile_apple_impl(clang, layout, out):
    """Apple's .cpp files against the generated headers; their own warnings
    are Apple's business, errors are the generator's."""
    failures = []
    for src, fw in layout.apple_impl:
        rc, text = run([clang] + [f for f in DEXT_FLAGS if not f.startswith("-W")] + ["-w"]
                       + ["-isystem", os.path.join(out, "sdk"), "-isystem", STANDINS,
                          "-I", os.path.join(out, "sdk", fw), src])
        name = "Apple's " + os.path.basename(src)
        print("%-40s %s" % (name, "ok" if rc == 0 else "FAILED"))
        if rc != 0:
            failures.append((name, text))
    return failures


def check(args):
    layout = make_layout(args)
    out = os.path.join(args.build, "driverkit_sdk")
    rc, text = generate(layout, args.source, out)
    if rc != 0:
        print(text)
        print("interface generation failed")
        return 1
    failures = compile_all(args.clang, args.source, out, layout=layout)
    if isinstance(layout, Layout):
        failures += compile_generated(args.clang, layout, out)
        failures += compile_apple_impl(args.clang, layout, out)
    for name, text in failures:
        print("==== %s\n%s" % (name, text))
    if failures:
        print("%d of the dext sources do not compile against Apple's declarations" % len(failures))
        return 1
    if isinstance(layout, SdkLayout):
        print("every dext source compiles against the DriverKit SDK at %s" % args.interfaces)
    else:
        print("every dext source compiles against Apple's DriverKit declarations "
              "(and the stand-ins in tests/driverkit/sdk_standins/)")
    return 0


def plant(path, tmp, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        raise SystemExit("selftest: '%s' not found in %s (update the plant)" % (old, path))
    dst = os.path.join(tmp, "planted_" + os.path.basename(path))
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
    return dst


def selftest(args):
    layout = make_layout(args)
    root = args.source
    nvme_iig = os.path.join(root, "examples", "nvme", "driverkit", "DkqNVMe.iig")
    scsi_iig = os.path.join(root, "examples", "scsi", "driverkit", "DkqMegaRAID.iig")
    pci_iig = os.path.join(args.interfaces, "IOPCIFamily", "PCIDriverKit", "IOPCIDevice.iig")
    ids_iig = os.path.join(args.interfaces, "xnu", "iokit", "DriverKit", "IOInterruptDispatchSource.iig")
    # (what, file, old, new, unit to compile or None for a generator error, expected text)
    plants = [
        ("override with a wrong parameter type", nvme_iig,
         "uint64_t lba, uint64_t numOfBlocks,\n", "uint32_t lba, uint64_t numOfBlocks,\n",
         "DkqNVMe.cpp", r"DoAsyncReadWrite_Impl"),
        ("TYPE() handler with the wrong signature", scsi_iig,
         "virtual void TimerOccurred(OSAction * action, uint64_t time)",
         "virtual void TimerOccurred(OSAction * action, uint32_t time)",
         "DkqMegaRAID.cpp", r"TimerOccurred is declared TYPE\(IOTimerDispatchSource::TimerOccurred\)"),
        ("override of a method no base class declares", scsi_iig,
         "UserReportHBAHighestLogicalUnitNumber(uint64_t * value) override",
         "UserReportHBAHighestLUN(uint64_t * value) override",
         None, r"no base class of DkqMegaRAID declares UserReportHBAHighestLUN"),
        ("a base method '= 0' left unimplemented", nvme_iig,
         "    virtual kern_return_t ReportWriteProtection(bool * value) override;\n", "",
         None, r"ReportWriteProtection"),
        ("Apple's GetBARInfo with another memoryIndex type", pci_iig,
         "uint8_t*  memoryIndex,", "uint16_t* memoryIndex,",
         "apple/pci_device.hpp", r"GetBARInfo"),
        ("Apple's IOInterruptDispatchSource::Create with another index type", ids_iig,
         "Create(IOService * provider,\n\t    uint32_t index,", "Create(IOService * provider,\n\t    uint32_t * index,",
         "apple/interrupts.hpp", r"Create"),
    ]
    if isinstance(layout, SdkLayout):
        # Apple's iig and the SDK's own headers: only the plants in our .iig
        # files that the compiler (not dkq_iig) reports apply.
        plants = [p for p in plants if p[1] in (nvme_iig, scsi_iig) and p[4] is not None]
    bad = 0
    tmp = tempfile.mkdtemp(prefix="dkq_iig_selftest_")
    try:
        for what, path, old, new, unit, expect in plants:
            planted = plant(path, tmp, old, new)
            out = os.path.join(args.build, "driverkit_sdk_selftest")
            rc, text = generate(layout, root, out, {path: planted})
            if unit is None:
                caught = rc != 0 and re.search(expect, text)
            else:
                if rc != 0:
                    print(text)
                    print("FAIL %s: the generator refused the planted copy instead of the compiler" % what)
                    bad += 1
                    continue
                failures = compile_all(args.clang, root, out, only={unit}, layout=layout)
                caught = bool(failures) and re.search(expect, failures[0][1])
                text = failures[0][1] if failures else ""
            if caught:
                first = next((ln for ln in text.splitlines() if "error" in ln), "")
                print("ok   %s: reported (%s)" % (what, first.strip()[:160]))
            else:
                print(text)
                print("FAIL %s: not reported" % what)
                bad += 1
    finally:
        shutil.rmtree(tmp)
    if bad:
        print("%d planted mistakes went unnoticed" % bad)
        return 1
    print("every planted mistake was reported")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interfaces", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--clang", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--iig", help="Apple's iig (SDK mode only; default: xcrun -sdk driverkit -find iig)")
    a = ap.parse_args()
    a.interfaces = os.path.abspath(a.interfaces)
    a.source = os.path.abspath(a.source)
    a.build = os.path.abspath(a.build)
    return selftest(a) if a.selftest else check(a)


if __name__ == "__main__":
    sys.exit(main())
