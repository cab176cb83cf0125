#!/usr/bin/env python3
"""Packaging check of the example dexts (examples/*/driverkit/): Info.plist and
.entitlements parsed with plistlib and held to the rules of
docs/porting-a-kext.md and docs/driverkit.md ("Packaging").

  - every personality: IOProviderClass IOPCIDevice, an IOUserClass declared in
    the folder's .iig as a subclass of the family class that IOClass names,
    CFBundleIdentifierKernel matching IOClass, IOUserServerName and the
    personality's CFBundleIdentifier equal to the bundle identifier;
  - IOProbeScore present and well above the in-box drivers' 100 (a PCI class
    match ties with vendor/device matches otherwise and the system driver
    keeps the device);
  - no IOMatchCategory (it lets a system driver load beside the dext);
  - PCI match values well formed (0xDDDDVVVV[&0xMMMMMMMM], class 0xCCSSPPRR&mask);
  - entitlements: com.apple.developer.driverkit, a PCI transport entitlement
    that covers every match value of every personality (when it lists
    matches), the family entitlement IOClass needs, and no
    allow-any-userclient-access in a shipped dext;
  - a personality that can match a built-in device (any that does not require
    IOPCITunnelled) needs the string com.apple.developer.driverkit.builtin in
    the transport.pci array: IOPCIFamily's IOPCIDevice::matchPropertyTable
    refuses a device with the "built-in" property otherwise;
  - OSMinimumDriverKitVersion present and at least MIN_DRIVERKIT (the newest
    API the dexts call, IOPCIDevice::ConfigureInterrupts, first appears in
    IOPCIFamily-583.40.1, DriverKit 22.0; docs/driverkit.md).

Run with --selftest to check that each rule fires on a mutated copy.
Exit status 0 when everything holds; each violation is printed.
"""
import copy
import glob
import os
import plistlib
import re
import sys

FAMILY = {
    # IOClass: (CFBundleIdentifierKernel, family entitlement, C++ base class in the .iig)
    "IOUserSCSIParallelInterfaceController": (
        "com.apple.iokit.IOSCSIParallelFamily",
        "com.apple.developer.driverkit.family.scsicontroller",
        "IOUserSCSIParallelInterfaceController",
    ),
    "IOUserBlockStorageDevice": (
        "com.apple.iokit.IOStorageFamily",
        "com.apple.developer.driverkit.family.block-storage-device",
        "IOUserBlockStorageDevice",
    ),
    "IOUserService": ("com.apple.kpi.iokit", None, "IOService"),
}
MIN_PROBE_SCORE = 1000
MIN_DRIVERKIT = (22, 0)
BUILTIN = "com.apple.developer.driverkit.builtin"
MATCH_KEYS = ("IOPCIMatch", "IOPCIPrimaryMatch", "IOPCISecondaryMatch")
ID_RE = re.compile(r"^0x[0-9a-fA-F]{8}(&0x[0-9a-fA-F]{8})?$")
CLASS_RE = re.compile(r"^0x[0-9a-fA-F]{8}&0x[0-9a-fA-F]{8}$")


def match_tokens(d):
    """Every PCI match value a dictionary names, as (kind, token)."""
    out = set()
    for k in MATCH_KEYS:
        if k in d:
            for t in str(d[k]).split():
                out.add(("id", t.lower()))
    if "IOPCIClassMatch" in d:
        for t in str(d["IOPCIClassMatch"]).split():
            out.add(("class", t.lower()))
    return out


def check(info, ents, iig_text, where):
    errs = []

    def err(msg):
        errs.append(f"{where}: {msg}")

    bundle = info.get("CFBundleIdentifier")
    if not bundle or "$(" in str(bundle):
        err("CFBundleIdentifier must be a literal bundle identifier")
    if info.get("CFBundlePackageType") != "DEXT":
        err("CFBundlePackageType must be DEXT")
    mv = info.get("OSMinimumDriverKitVersion")
    m = re.match(r"^(\d+)\.(\d+)(\.\d+)?$", str(mv)) if isinstance(mv, str) else None
    if not m:
        err("OSMinimumDriverKitVersion missing or not a literal version (NN.N)")
    elif (int(m.group(1)), int(m.group(2))) < MIN_DRIVERKIT:
        err(f"OSMinimumDriverKitVersion {mv} is older than the APIs used need ({MIN_DRIVERKIT[0]}.{MIN_DRIVERKIT[1]})")
    pers = info.get("IOKitPersonalities")
    if not isinstance(pers, dict) or not pers:
        err("no IOKitPersonalities")
        pers = {}
    all_tokens = set()
    families = set()
    builtin_possible = False
    for name, p in pers.items():
        w = f"personality {name}"
        if "IOMatchCategory" in p:
            err(f"{w}: IOMatchCategory present (a system driver could load beside the dext and take the device)")
        if p.get("IOProviderClass") != "IOPCIDevice":
            err(f"{w}: IOProviderClass must be IOPCIDevice")
        cls = p.get("IOClass")
        if cls not in FAMILY:
            err(f"{w}: IOClass {cls!r} is not one of {sorted(FAMILY)}")
        else:
            kernel, fam_ent, base = FAMILY[cls]
            families.add(cls)
            if p.get("CFBundleIdentifierKernel") != kernel:
                err(f"{w}: CFBundleIdentifierKernel must be {kernel} for IOClass {cls}")
            uc = p.get("IOUserClass")
            if not uc:
                err(f"{w}: IOUserClass missing")
            elif not re.search(r"\bclass\s+" + re.escape(uc) + r"\s*:\s*public\s+" + re.escape(base) + r"\b", iig_text):
                err(f"{w}: no 'class {uc} : public {base}' in the folder's .iig")
        if p.get("IOUserServerName") != bundle:
            err(f"{w}: IOUserServerName {p.get('IOUserServerName')!r} differs from CFBundleIdentifier {bundle!r}")
        if p.get("CFBundleIdentifier") != bundle:
            err(f"{w}: personality CFBundleIdentifier differs from the bundle's")
        score = p.get("IOProbeScore")
        if not isinstance(score, int) or isinstance(score, bool):
            err(f"{w}: IOProbeScore missing or not an integer")
        elif not MIN_PROBE_SCORE <= score <= 0xFFFFFFFF:
            err(f"{w}: IOProbeScore {score} is not well above the in-box drivers' (>= {MIN_PROBE_SCORE})")
        toks = match_tokens(p)
        if not toks:
            err(f"{w}: no PCI match key ({', '.join(MATCH_KEYS)} or IOPCIClassMatch)")
        for kind, t in toks:
            if kind == "id" and not ID_RE.match(t):
                err(f"{w}: PCI match value {t!r} is not 0xDDDDVVVV[&0xMMMMMMMM]")
            if kind == "class" and not CLASS_RE.match(t):
                err(f"{w}: IOPCIClassMatch {t!r} is not 0xCCSSPPRR&0xMMMMMMMM")
        all_tokens |= toks
        if p.get("IOPCITunnelled") is not True:
            builtin_possible = True

    # Entitlements
    if ents.get("com.apple.developer.driverkit") is not True:
        err("entitlements: com.apple.developer.driverkit must be true")
    pci = ents.get("com.apple.developer.driverkit.transport.pci")
    if pci is None:
        err("entitlements: com.apple.developer.driverkit.transport.pci missing")
    elif isinstance(pci, list):
        granted = set()
        builtin = False
        for d in pci:
            if d == BUILTIN:
                builtin = True
                continue
            if not isinstance(d, dict):
                err(f"entitlements: transport.pci array entries must be match dictionaries or {BUILTIN!r}")
                continue
            granted |= match_tokens(d)
        if builtin_possible and not builtin:
            err(f"entitlements: a personality can match a built-in device but transport.pci lacks {BUILTIN!r} "
                "(IOPCIDevice::matchPropertyTable refuses \"built-in\" devices without it)")
        missing = all_tokens - granted
        if missing:
            err(f"entitlements: transport.pci does not cover {sorted(t for _, t in missing)} "
                "(provider entitlements check would fail)")
    elif pci is not True:
        err("entitlements: transport.pci must be true or an array of match dictionaries")
    for cls in families:
        fam_ent = FAMILY[cls][1]
        if fam_ent and ents.get(fam_ent) is not True:
            err(f"entitlements: {fam_ent} must be true for IOClass {cls}")
    if ents.get("com.apple.developer.driverkit.allow-any-userclient-access"):
        err("entitlements: allow-any-userclient-access in a shipped dext")
    return errs


def load_dext(folder):
    infos = glob.glob(os.path.join(folder, "Info.plist"))
    ents = glob.glob(os.path.join(folder, "*.entitlements"))
    iigs = glob.glob(os.path.join(folder, "*.iig"))
    problems = []
    if len(infos) != 1:
        problems.append(f"{folder}: expected one Info.plist")
    if len(ents) != 1:
        problems.append(f"{folder}: expected one .entitlements file, found {len(ents)}")
    if not iigs:
        problems.append(f"{folder}: no .iig")
    if problems:
        return None, problems
    with open(infos[0], "rb") as f:
        info = plistlib.load(f)
    with open(ents[0], "rb") as f:
        ent = plistlib.load(f)
    text = "".join(open(p, encoding="utf-8").read() for p in iigs)
    return (info, ent, text), []


def selftest(info, ents, text, where):
    """Each rule must fire on a copy broken in one way."""
    name = next(iter(info["IOKitPersonalities"]))

    def mut(fn):
        i, e = copy.deepcopy(info), copy.deepcopy(ents)
        fn(i["IOKitPersonalities"][name], i, e)
        return check(i, e, text, where)

    cases = {
        "IOMatchCategory": lambda p, i, e: p.__setitem__("IOMatchCategory", "IODefaultMatchCategory"),
        "IOProbeScore": lambda p, i, e: p.__setitem__("IOProbeScore", 100),
        "IOProbeScore missing": lambda p, i, e: p.pop("IOProbeScore"),
        "IOUserServerName": lambda p, i, e: p.__setitem__("IOUserServerName", "com.example.other"),
        "IOProviderClass": lambda p, i, e: p.__setitem__("IOProviderClass", "IOResources"),
        "CFBundleIdentifierKernel": lambda p, i, e: p.__setitem__("CFBundleIdentifierKernel", "com.apple.kpi.iokit"),
        "IOClass": lambda p, i, e: p.__setitem__("IOClass", "IOUserService"),
        "IOUserClass": lambda p, i, e: p.__setitem__("IOUserClass", "NotDeclared"),
        "match value": lambda p, i, e: p.__setitem__("IOPCIMatch", "0x1234"),
        "no match": lambda p, i, e: [p.pop(k, None) for k in MATCH_KEYS + ("IOPCIClassMatch",)],
        "driverkit": lambda p, i, e: e.pop("com.apple.developer.driverkit"),
        "transport.pci": lambda p, i, e: e.pop("com.apple.developer.driverkit.transport.pci"),
        "transport coverage": lambda p, i, e: e.__setitem__(
            "com.apple.developer.driverkit.transport.pci", [{"IOPCIPrimaryMatch": "0xffffffff"}]),
        "family": lambda p, i, e: [e.pop(f[1], None) for f in FAMILY.values() if f[1]],
        "userclient": lambda p, i, e: e.__setitem__("com.apple.developer.driverkit.allow-any-userclient-access", True),
        "builtin": lambda p, i, e: e.__setitem__("com.apple.developer.driverkit.transport.pci", [
            x for x in e["com.apple.developer.driverkit.transport.pci"] if x != BUILTIN]),
        "OSMinimumDriverKitVersion missing": lambda p, i, e: i.pop("OSMinimumDriverKitVersion"),
        "OSMinimumDriverKitVersion too old": lambda p, i, e: i.__setitem__("OSMinimumDriverKitVersion", "21.0"),
    }
    failures = []
    for label, fn in cases.items():
        if not mut(fn):
            failures.append(f"{where}: self-test: breaking {label!r} was not detected")
    return failures


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else
                           os.path.join(os.path.dirname(__file__), "..", ".."))
    folders = sorted(glob.glob(os.path.join(root, "examples", "*", "driverkit")))
    if not folders:
        print("no examples/*/driverkit folders found")
        return 1
    errors = []
    checked = 0
    for folder in folders:
        where = os.path.relpath(folder, root)
        loaded, problems = load_dext(folder)
        errors += problems
        if loaded is None:
            continue
        info, ent, text = loaded
        errs = check(info, ent, text, where)
        errors += errs
        if not errs:
            errors += selftest(info, ent, text, where)
        pers = info.get("IOKitPersonalities", {})
        for n, p in pers.items():
            print(f"{where}: {n}: IOClass {p.get('IOClass')}, score {p.get('IOProbeScore')}, "
                  f"match {sorted(t for _, t in match_tokens(p))}")
        checked += 1
    for e in errors:
        print("FAIL", e)
    print(f"{checked} dext(s) checked, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
