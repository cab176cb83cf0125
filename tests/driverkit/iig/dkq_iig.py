#!/usr/bin/env python3
"""dkq_iig: turn DriverKit .iig interface files into C++ headers, as far as a
syntax-level compile of a dext needs.

Apple's IIG tool (it ships only with Xcode) reads a class declared in an .iig
file and writes a C++ header in which every method becomes one of:

  - a local C++ method, for methods marked LOCALONLY: virtual ones stay virtual
    (pure ones move to the <Class>Interface base), the rest stay plain members;
  - a remote call, for the rest: a non-virtual wrapper
        ret Method(params..., OSDispatchMethod supermethod = NULL);
    declared once, in the class that introduces the method, and a
        ret Method_Impl(<Root>_Method_Args);
    declaration in every class that implements it (overrides included), where
    <Root> is the class that introduced it. IMPL(Class, Method) in OSObject.iig
    expands to Class::Method_Impl(Class_Method_Args), and Class_Method_Args is
    the parameter list as the subclass wrote it, so a subclass whose override
    does not have the base's parameter types fails to compile (the out-of-line
    definition matches no declaration);
  - for a method declared TYPE(Other::Method): the handler of an OSAction of
    that type. It gets an _Impl and a generated CreateAction<Method>(size_t
    referenceSize, OSAction ** action); its parameters must be those of
    Other::Method (checked with a static_assert in the header);
  - methods marked KERNEL, or declared in a class marked KERNEL without LOCAL,
    run in the kernel: the dext sees the wrapper (or, for TYPE methods, the
    CreateAction) but no _Impl.

The class gets `using super = Base;`, the `ivars` union (Class_IVars /
Class_LocalIVars, defined by the dext), a static _Dispatch (what SUPERDISPATCH
names) and an `extern OSMetaClass * g<Class>MetaClass;` (what OSTypeID and
OSDynamicCast use). A class declared `EXTENDS(Base) BasePrivate` is merged into
Base. QUEUENAME(...) changes where the kernel delivers a call, not the C++
declaration; it is kept as a comment. Everything outside class bodies is copied
as is, with `#include <X.iig>` turned into `#include <X.h>`.

The shape follows Apple's IIG documentation (the comments in OSObject.iig, the
DEFN/IMPL macros there, IOService.iig's SetDispatchQueue/QUEUENAME text and
OSAction.iig's TYPE discussion) and headers IIG generated that are published in
Apple's open-source releases. It is not IIG: it writes no dispatch tables, no
message IDs and no OSAction_<Class>_<Method> subclasses, and it checks only
what a compile needs. Besides the C++ checks above it refuses what IIG
refuses: `override` of a method no base class declares, and TYPE() naming an
unknown class or method; and (our rule) a class declared in an input given
with --user that leaves a base method `= 0` unimplemented (methods with a
TARGET parameter are sent to an action, not implemented, and are exempt).

Usage: dkq_iig.py --out DIR --map SRC.iig=REL/NAME.h ... [--user SRC.iig=REL/NAME.h ...]
Each --map or --user names one input and where its header goes under DIR
(--user marks a dext's own class); every input is parsed before any header is
written, so classes resolve across files. Exit status 1 and one line on
stderr for an input it refuses.
"""
import argparse
import os
import re
import sys


class IigError(Exception):
    pass


def mask_comments(text):
    """Comments and string literals replaced by spaces (newlines kept), so
    offsets and line numbers stay the same."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != "\n":
                    out[k] = " "
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def split_top(s, sep=","):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([<{":
            depth += 1
        elif ch in ")]>}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def strip_macro_calls(s, names):
    """Removes NAME(...) for NAME in names (balanced parentheses)."""
    for name in names:
        while True:
            m = re.search(r"\b%s\s*\(" % name, s)
            if not m:
                break
            depth, j = 0, m.end() - 1
            while j < len(s):
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            s = s[:m.start()] + s[j + 1:]
    return s


class Param:
    def __init__(self, raw, where):
        text = strip_macro_calls(raw, ["TYPE"])
        for a in ("TARGET", "PORTMAKESEND", "PORTCOPYSEND"):
            text = re.sub(r"\b%s\b" % a, "", text)
        self.target = re.search(r"\bTARGET\b", raw) is not None
        default = None
        parts = split_top(text, "=")
        if len(parts) > 1:
            text, default = parts[0], "=".join(parts[1:]).strip()
        text = " ".join(text.split())
        m = re.match(r"^(.*?)([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)$", text)
        if not m or not m.group(1).strip():
            raise IigError("%s: cannot read parameter '%s'" % (where, raw.strip()))
        self.type = m.group(1).strip()
        self.name = m.group(2)
        self.array = m.group(3).strip()
        self.default = default

    def decl(self, with_default=True):
        s = "%s %s%s" % (self.type, self.name, self.array)
        if with_default and self.default is not None:
            s += " = " + self.default
        return s

    def arg(self):
        """As a parameter of the _Args macro: arrays decay to pointers."""
        if self.array:
            return "%s * %s" % (self.type, self.name)
        return "%s %s" % (self.type, self.name)


class Method:
    def __init__(self, text, where):
        self.where = where
        t = " ".join(text.split())
        op = t.find("(")
        if op < 0:
            raise IigError("%s: not a method declaration: '%s'" % (where, t))
        depth, cp = 0, op
        while cp < len(t):
            if t[cp] == "(":
                depth += 1
            elif t[cp] == ")":
                depth -= 1
                if depth == 0:
                    break
            cp += 1
        head, params, tail = t[:op], t[op + 1:cp], t[cp + 1:]
        m = re.match(r"^(.*?)([A-Za-z_]\w*)\s*$", head)
        if not m:
            raise IigError("%s: cannot read method name in '%s'" % (where, t))
        self.name = m.group(2)
        prefix = m.group(1)
        self.virtual = re.search(r"\bvirtual\b", prefix) is not None
        self.static = re.search(r"\bstatic\b", prefix) is not None
        self.ret = " ".join(re.sub(r"\b(virtual|static)\b", "", prefix).split())
        if not self.ret:
            raise IigError("%s: method %s has no return type" % (where, self.name))
        tm = re.search(r"\bTYPE\s*\(\s*([\w:]+)\s*\)", tail)
        self.type_of = tm.group(1) if tm else None
        qm = re.search(r"\bQUEUENAME\s*\(\s*(\w+)\s*\)", tail)
        self.queue = qm.group(1) if qm else None
        words = set(re.findall(r"\b\w+\b", strip_macro_calls(tail, ["TYPE", "QUEUENAME", "__attribute__"])))
        self.localonly = "LOCALONLY" in words
        self.local = "LOCAL" in words
        self.kernel = "KERNEL" in words
        self.override = "override" in words
        self.const = "const" in words
        self.pure = re.search(r"=\s*0\s*$", tail.strip()) is not None
        am = re.search(r"__attribute__\s*\(\(.*\)\)", tail)
        self.attrs = am.group(0) if am else ""
        self.params = []
        if params.strip() and params.strip() != "void":
            self.params = [Param(p, "%s (%s)" % (where, self.name)) for p in split_top(params)]
        self.has_target = any(p.target for p in self.params)
        self.root = None  # class that introduced the method (set by resolve)

    def param_decls(self, with_default=True):
        return [p.decl(with_default) for p in self.params]


class Klass:
    def __init__(self, name, base, attrs, path, line, extends, conds_at):
        self.name = name
        self.base = base
        self.kernel = "KERNEL" in attrs
        self.path = path
        self.line = line
        self.extends = extends
        self.conds_at = conds_at  # file-level #if stack where the class starts
        self.members = []  # Method or ('#', directive line)
        self.user = False


class IigFile:
    def __init__(self, path, out_rel, user):
        self.path = path
        self.out_rel = out_rel
        self.user = user
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.masked = mask_comments(self.text)
        self.classes = []  # (start, end, Klass)


CLASS_RE = re.compile(r"\bclass\b")


def cond_stack_before(masked, pos):
    stack = []
    for m in re.finditer(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b(.*)$", masked[:pos], re.M):
        kw, rest = m.group(1), m.group(2).strip()
        if kw == "if":
            stack.append("#if " + rest)
        elif kw == "ifdef":
            stack.append("#if defined(%s)" % rest)
        elif kw == "ifndef":
            stack.append("#if !defined(%s)" % rest)
        elif kw in ("elif", "else") and stack:
            prev = stack.pop()[4:]
            stack.append("#if !(%s)%s" % (prev, " && (%s)" % rest if kw == "elif" else ""))
        elif kw == "endif" and stack:
            stack.pop()
    return stack


def parse_file(f):
    masked = f.masked
    pos = 0
    while True:
        m = CLASS_RE.search(masked, pos)
        if not m:
            break
        # only class declarations at file scope: the line must not be a directive
        ls = masked.rfind("\n", 0, m.start()) + 1
        if masked[ls:m.start()].strip().startswith("#"):
            pos = m.end()
            continue
        semi = masked.find(";", m.end())
        brace = masked.find("{", m.end())
        if brace < 0 or (0 <= semi < brace):
            pos = m.end()  # forward declaration
            continue
        header = " ".join(masked[m.end():brace].split())
        extends = None
        em = re.search(r"\bEXTENDS\s*\(\s*(\w+)\s*\)", header)
        if em:
            extends = em.group(1)
            header = header[:em.start()] + header[em.end():]
        hm = re.match(r"^((?:\w+\s+)*?)(\w+)\s*(?::\s*(?:public|protected|private)?\s*(\w+))?\s*$", header.strip())
        if not hm:
            raise IigError("%s:%d: cannot read class header '%s'" % (f.path, line_of(masked, m.start()), header))
        attrs = hm.group(1).split()
        k = Klass(hm.group(2), hm.group(3), attrs, f.path, line_of(masked, m.start()), extends,
                  cond_stack_before(masked, m.start()))
        k.user = f.user
        # body: to the matching brace
        depth, j = 0, brace
        while j < len(masked):
            if masked[j] == "{":
                depth += 1
            elif masked[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        end = masked.find(";", j) + 1
        parse_body(f, k, brace + 1, j)
        f.classes.append((m.start(), end, k))
        pos = end
    return f


def parse_body(f, k, start, stop):
    body = f.masked[start:stop]
    cur = []
    cur_start = start
    offset = start
    for line in body.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("#"):
            if re.sub(r"(public|protected|private)\s*:", "", "".join(cur)).strip():
                raise IigError("%s:%d: directive inside a declaration" % (f.path, line_of(f.masked, offset)))
            kw = s[1:].strip().split()[0] if s[1:].strip() else ""
            if kw in ("if", "ifdef", "ifndef", "elif", "else", "endif"):
                k.members.append(("#", s))  # repeated in every generated section
            offset += len(line)
            cur = []
            cur_start = offset
            continue
        for ch in line:
            cur.append(ch)
            offset += 1
            if ch == ";" and depth_ok(cur):
                text = "".join(cur)
                text = re.sub(r"^\s*(public|protected|private)\s*:", "", text.strip())
                text = re.sub(r"(public|protected|private)\s*:", "", text)
                decl = text.strip().rstrip(";").strip()
                if decl:
                    where = "%s:%d" % (f.path, line_of(f.masked, cur_start))
                    k.members.append(Method(decl, where))
                cur = []
                cur_start = offset
    rest = "".join(cur)
    rest = re.sub(r"(public|protected|private)\s*:", "", rest).strip()
    if rest:
        raise IigError("%s: unterminated declaration in class %s: '%s'" % (f.path, k.name, rest[:60]))


def depth_ok(chars):
    d = 0
    for ch in chars:
        if ch == "(":
            d += 1
        elif ch == ")":
            d -= 1
    return d == 0


class Model:
    def __init__(self, files):
        self.files = files
        self.classes = {}
        for f in files:
            for _, _, k in f.classes:
                if k.extends:
                    continue
                if k.name in self.classes:
                    raise IigError("%s:%d: class %s declared twice" % (k.path, k.line, k.name))
                self.classes[k.name] = k
        for f in files:
            for _, _, k in f.classes:
                if not k.extends:
                    continue
                tgt = self.classes.get(k.extends)
                if tgt is None:
                    raise IigError("%s:%d: EXTENDS(%s): unknown class" % (k.path, k.line, k.extends))
                extra = []
                if tgt.path == k.path:
                    common = 0
                    while (common < len(tgt.conds_at) and common < len(k.conds_at)
                           and tgt.conds_at[common] == k.conds_at[common]):
                        common += 1
                    extra = k.conds_at[common:]
                for c in extra:
                    tgt.members.append(("#", c))
                tgt.members.extend(k.members)
                for _ in extra:
                    tgt.members.append(("#", "#endif"))

    def methods(self, k):
        return [m for m in k.members if isinstance(m, Method)]

    def find(self, cls_name, meth_name, below=None):
        """The nearest declaration of meth_name in cls_name or its bases."""
        k = self.classes.get(cls_name)
        while k is not None:
            for m in self.methods(k):
                if m.name == meth_name and m is not below:
                    return k, m
            k = self.classes.get(k.base) if k.base else None
        return None, None

    def root_of(self, k, m):
        """(class, method) that first declared m, following overrides up."""
        if not m.override:
            return k, m
        if not k.base:
            raise IigError("%s: %s is marked override but %s has no base class" % (m.where, m.name, k.name))
        bk, bm = self.find(k.base, m.name)
        if bm is None:
            raise IigError("%s: %s::%s is marked override, but no base class of %s declares %s"
                           % (m.where, k.name, m.name, k.name, m.name))
        return self.root_of(bk, bm)

    def resolve(self):
        for k in self.classes.values():
            if k.base and k.base not in self.classes and k.base not in ("OSMetaClassBase",):
                raise IigError("%s:%d: base class %s of %s is not declared in any input"
                               % (k.path, k.line, k.base, k.name))
            for m in self.methods(k):
                rk, rm = self.root_of(k, m)
                m.root = (rk, rm)
                if rm.localonly:
                    m.localonly = True
                if rm.local:
                    m.local = True  # implemented in the dext process wherever it is overridden
                if rm.static:
                    m.static = True
                if m.type_of:
                    cls, _, meth = m.type_of.rpartition("::")
                    cls = cls or k.name
                    tk, tm = self.find(cls, meth)
                    if tm is None:
                        raise IigError("%s: TYPE(%s): no method %s in class %s or its bases"
                                       % (m.where, m.type_of, meth, cls))
                    m.type_target = (tk, tm)
        for k in self.classes.values():
            if k.user:
                self.check_pure(k)

    def check_pure(self, k):
        declared = {m.name for m in self.methods(k)}
        b = self.classes.get(k.base) if k.base else None
        missing = []
        while b is not None:
            for m in self.methods(b):
                if m.name in declared:
                    continue
                declared.add(m.name)
                if m.pure and not m.has_target and not m.kernel:
                    missing.append("%s::%s (%s)" % (b.name, m.name, m.where))
            b = self.classes.get(b.base) if b.base else None
        if missing:
            raise IigError("%s:%d: class %s leaves base methods declared '= 0' unimplemented: %s"
                           % (k.path, k.line, k.name, "; ".join(missing)))


def emit_class(model, k):
    args, iface, meths, impls, virts = [], [], [], [], []
    sections = (args, iface, meths, impls, virts)
    for item in k.members:
        if isinstance(item, tuple):
            for s in sections:
                s.append(item[1])
            continue
        m = item
        rk, rm = m.root
        q = "    /* QUEUENAME(%s) */\n" % m.queue if m.queue else ""
        if m.localonly:
            decl = "%s%s\n    %s(%s)%s%s" % ("static " if m.static else ("virtual " if m.virtual or rm.virtual else ""),
                                          m.ret, m.name, ", ".join(m.param_decls()), " const" if m.const else "",
                                          " " + m.attrs if m.attrs else "")
            if m.virtual or rm.virtual:
                if m.pure:
                    iface.append("    %s = 0;\n" % decl)
                else:
                    virts.append("    %s%s;\n" % (decl, " override" if rm is not m else ""))
            else:
                meths.append("    %s;\n" % decl)
            continue
        args.append("#define %s_%s_Args%s" % (k.name, m.name,
                    "".join(" \\\n        %s%s" % (p.arg(), "," if i + 1 < len(m.params) else "")
                            for i, p in enumerate(m.params))))
        if m.type_of:
            tk, tm = m.type_target
            meths.append("    kern_return_t\n    CreateAction%s(size_t referenceSize, OSAction ** action);\n" % m.name)
            iface_check = ("static_assert(__is_same(%s (*)(%s_%s_Args), %s (*)(%s_%s_Args)),\n"
                           "              \"%s::%s is declared TYPE(%s) but its signature differs from %s::%s\");"
                           % (m.ret, k.name, m.name, tm.ret, tk.name, tm.name, k.name, m.name, m.type_of, tk.name,
                              tm.name))
            args.append(iface_check)
            if not m.kernel:
                impls.append("%s    %s\n    %s_Impl(%s_%s_Args);\n" % (q, m.ret, m.name, k.name, m.name))
            continue
        if rm is m:
            if m.static:
                meths.append("%s    static %s\n    %s(%s)%s;\n" % (q, m.ret, m.name, ", ".join(m.param_decls()),
                                                               " " + m.attrs if m.attrs else ""))
            else:
                ps = m.param_decls() + ["OSDispatchMethod supermethod = NULL"]
                meths.append("%s    %s\n    %s(%s)%s;\n" % (q, m.ret, m.name, ", ".join(ps),
                                                        " " + m.attrs if m.attrs else ""))
        implemented = not m.pure and not m.kernel and (not k.kernel or m.local)
        if implemented:
            if m.static:
                impls.append("    static %s\n    %s_Call(%s_%s_Args);\n" % (m.ret, m.name, k.name, m.name))
            else:
                impls.append("    %s\n    %s_Impl(%s_%s_Args);\n" % (m.ret, m.name, rk.name, rm.name))
    out = []
    out.append("/* class %s, generated by dkq_iig from %s:%d */\n" % (k.name, os.path.basename(k.path), k.line))
    out.append("\n".join(args) + "\n\n")
    out.append("extern OSMetaClass * g%sMetaClass;\n\n" % k.name)
    out.append("class %sInterface : public OSInterface\n{\npublic:\n%s};\n\n" % (k.name, "".join(
        s if s.endswith("\n") else s + "\n" for s in iface)))
    out.append("struct %s_IVars;\nstruct %s_LocalIVars;\n\n" % (k.name, k.name))
    base = k.base or "OSMetaClassBase"
    out.append("class %s : public %s, public %sInterface\n{\npublic:\n" % (k.name, base, k.name))
    out.append("    union\n    {\n        %s_IVars * ivars;\n        %s_LocalIVars * lvars;\n    };\n\n" % (k.name, k.name))
    out.append("    using super = %s;\n\n" % base)
    out.append("    static kern_return_t\n    _Dispatch(%s * self, const IORPC rpc);\n\n" % k.name)
    out.extend(s if s.endswith("\n") else s + "\n" for s in meths)
    out.append("\nprotected:\n    /* _Impl methods */\n\n")
    out.extend(s if s.endswith("\n") else s + "\n" for s in impls)
    out.append("\npublic:\n    /* local virtual methods */\n\n")
    out.extend(s if s.endswith("\n") else s + "\n" for s in virts)
    out.append("};\n")
    return "".join(out)


def emit_file(model, f):
    pieces = []
    last = 0
    for start, end, k in f.classes:
        pieces.append(f.text[last:start])
        if k.extends:
            pieces.append("/* class %s: merged into %s by dkq_iig */\n" % (k.name, k.extends))
        else:
            pieces.append(emit_class(model, k))
        last = end
    pieces.append(f.text[last:])
    text = "".join(pieces)
    text = re.sub(r"(#\s*include\s*[<\"][^>\"]+)\.iig([>\"])", r"\1.h\2", text)
    return ("/* Generated by dkq_iig (tests/driverkit/iig/dkq_iig.py) from %s. Do not edit. */\n\n"
            % os.path.basename(f.path)) + text


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--map", action="append", default=[], help="SRC.iig=REL/OUT.h")
    ap.add_argument("--user", action="append", default=[], help="SRC.iig=REL/OUT.h of a dext's own class")
    a = ap.parse_args(argv)
    files = []
    try:
        for spec, user in [(s, False) for s in a.map] + [(s, True) for s in a.user]:
            src, _, rel = spec.partition("=")
            if not rel:
                raise IigError("--map/--user needs SRC=REL, got '%s'" % spec)
            files.append(parse_file(IigFile(src, rel, user)))
        model = Model(files)
        model.resolve()
        for f in files:
            dst = os.path.join(a.out, f.out_rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "w", encoding="utf-8") as o:
                o.write(emit_file(model, f))
    except IigError as e:
        print("dkq_iig: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
