#!/usr/bin/env python3
"""Unit tests of dkq_iig.py on small .iig files of our own (ctest dkq_iig_test).

They run without Apple's files, so the generator is checked on every machine;
driverkit_sdk_compile then runs it on Apple's real .iig files and compiles the
result. Run alone with `python3 tests/driverkit/iig/dkq_iig_test.py`.
"""
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dkq_iig  # noqa: E402

BASE = """\
#ifndef _BASE_H
#define _BASE_H
#include <DriverKit/OSObject.iig>

enum { kBaseValue = 1 };

class KERNEL Base : public OSObject
{
public:
    virtual bool init() override;
    virtual kern_return_t Start(Base * provider) LOCAL;
    virtual kern_return_t Remote(uint32_t a, uint64_t * b = 0);
    virtual kern_return_t MustDo(uint32_t id) = 0;
    virtual void Done(OSAction * action TARGET, uint32_t status) = 0;
    virtual void Fired(OSAction * action TARGET, uint64_t time) REPLY LOCAL;
    static kern_return_t Create(Base ** out) LOCAL;
    void Local(const uint16_t slots[32]) LOCALONLY;
    virtual kern_return_t Pure(uint32_t x) LOCALONLY = 0;
    virtual kern_return_t KernelOnly(uint32_t x) KERNEL;
};

#if BASE_PRIVATE
class EXTENDS (Base) BasePrivate
{
    virtual kern_return_t _Hidden(uint64_t v) final;
};
#endif

#endif
"""

OBJECT = """\
class OSObject : public OSMetaClassBase
{
public:
    virtual bool init() LOCALONLY;
    virtual void free() LOCALONLY;
};
"""

SUB = """\
#include <Base.iig>
class Sub : public Base
{
public:
    virtual bool init() override;
    virtual kern_return_t Start(Base * provider) override;
    virtual kern_return_t MustDo(uint32_t id) override;
    virtual kern_return_t Pure(uint32_t x) LOCALONLY override;
    virtual void Tick(OSAction * action, uint64_t time) TYPE(Base::Fired) QUEUENAME(Q);
};
"""


class Generator(unittest.TestCase):
    def run_iig(self, files, user=()):
        tmp = tempfile.mkdtemp(prefix="dkq_iig_test_")
        self.addCleanup(shutil.rmtree, tmp)
        args = ["--out", os.path.join(tmp, "out")]
        for name, text in files.items():
            p = os.path.join(tmp, name + ".iig")
            with open(p, "w") as f:
                f.write(text)
            args += ["--user" if name in user else "--map", "%s=%s.h" % (p, name)]
        rc = dkq_iig.main(args)
        out = {}
        if rc == 0:
            for name in files:
                with open(os.path.join(tmp, "out", name + ".h")) as f:
                    out[name] = f.read()
        return rc, out

    def generate(self, sub=SUB):
        rc, out = self.run_iig({"OSObject": OBJECT, "Base": BASE, "Sub": sub}, user={"Sub"})
        self.assertEqual(rc, 0)
        return out

    def test_text_outside_classes_is_kept_and_iig_includes_become_headers(self):
        out = self.generate()
        self.assertIn("enum { kBaseValue = 1 };", out["Base"])
        self.assertIn("#include <DriverKit/OSObject.h>", out["Base"])
        self.assertIn("#include <Base.h>", out["Sub"])
        self.assertNotIn(".iig>", out["Sub"])

    def test_remote_method_wrapper_in_introducing_class_only(self):
        out = self.generate()
        self.assertRegex(out["Base"], r"kern_return_t\s+Remote\(uint32_t a, uint64_t \* b = 0, "
                                      r"OSDispatchMethod supermethod = NULL\);")
        self.assertRegex(out["Base"], r"kern_return_t\s+Start\(Base \* provider, OSDispatchMethod supermethod = NULL\);")
        self.assertNotRegex(out["Sub"], r"\bStart\(Base \* provider, OSDispatchMethod")

    def test_override_impl_uses_root_args_and_subclass_args_exist(self):
        out = self.generate()
        self.assertRegex(out["Sub"], r"kern_return_t\s+Start_Impl\(Base_Start_Args\);")
        self.assertRegex(out["Sub"], r"#define Sub_Start_Args \\\n\s+Base \* provider")
        self.assertRegex(out["Sub"], r"kern_return_t\s+MustDo_Impl\(Base_MustDo_Args\);")

    def test_kernel_class_implements_only_local_methods(self):
        out = self.generate()
        self.assertIn("Start_Impl(Base_Start_Args)", out["Base"])
        self.assertNotIn("Remote_Impl", out["Base"])
        self.assertNotIn("KernelOnly_Impl", out["Base"])
        self.assertRegex(out["Base"], r"static kern_return_t\s+Create\(Base \*\* out\);")

    def test_local_is_inherited_by_overrides_in_kernel_classes(self):
        # IOUserBlockStorageDevice overrides IOService's LOCAL Start without
        # repeating LOCAL; Apple's IOUserBlockStorageDevice.cpp implements it.
        rc, o = self.run_iig({"OSObject": OBJECT, "Base": BASE,
                              "K": "class KERNEL K : public Base {\npublic:\n"
                                   "    virtual kern_return_t Start(Base * provider) override;\n};\n"})
        self.assertEqual(rc, 0)
        self.assertRegex(o["K"], r"kern_return_t\s+Start_Impl\(Base_Start_Args\);")

    def test_localonly_methods_are_cxx_members(self):
        out = self.generate()
        self.assertRegex(out["Base"], r"class BaseInterface : public OSInterface\n\{\npublic:\n"
                                      r"\s+virtual kern_return_t\s+Pure\(uint32_t x\) = 0;")
        self.assertRegex(out["Base"], r"void\s+Local\(const uint16_t slots\[32\]\);")
        self.assertRegex(out["Sub"], r"virtual bool\s+init\(\) override;")
        self.assertRegex(out["Sub"], r"virtual kern_return_t\s+Pure\(uint32_t x\) override;")

    def test_type_method_gets_create_action_impl_and_signature_check(self):
        out = self.generate()
        self.assertRegex(out["Sub"], r"kern_return_t\s+CreateActionTick\(size_t referenceSize, OSAction \*\* action\);")
        self.assertRegex(out["Sub"], r"void\s+Tick_Impl\(Sub_Tick_Args\);")
        self.assertIn("static_assert(__is_same(void (*)(Sub_Tick_Args), void (*)(Base_Fired_Args))", out["Sub"])
        self.assertIn("QUEUENAME(Q)", out["Sub"])

    def test_class_shape(self):
        out = self.generate()
        self.assertIn("class Sub : public Base, public SubInterface", out["Sub"])
        self.assertIn("using super = Base;", out["Sub"])
        self.assertRegex(out["Sub"], r"Sub_IVars \* ivars;\s+Sub_LocalIVars \* lvars;")
        self.assertRegex(out["Sub"], r"static kern_return_t\s+_Dispatch\(Sub \* self, const IORPC rpc\);")
        self.assertIn("extern OSMetaClass * gSubMetaClass;", out["Sub"])
        self.assertNotRegex(out["Sub"], r"\b(LOCAL|LOCALONLY|TYPE|TARGET|REPLY)\b(?!\()")

    def test_extension_is_merged_under_its_condition(self):
        out = self.generate()
        m = re.search(r"#if BASE_PRIVATE\n(?:.*\n)*?\s+kern_return_t\s+_Hidden\(uint64_t v, "
                      r"OSDispatchMethod supermethod = NULL\);\n(?:.*\n)*?#endif", out["Base"])
        self.assertIsNotNone(m, out["Base"])
        self.assertIn("merged into Base", out["Base"])

    def test_array_parameters_decay_in_args(self):
        out = self.generate()
        self.assertNotIn("Base_Local_Args", out["Base"])  # LOCALONLY: no message, no Args
        rc, o = self.run_iig({"OSObject": OBJECT, "A": "class A : public OSObject {\npublic:\n"
                              "    virtual void Bundle(const uint16_t slots[kMax], uint16_t n);\n};\n"})
        self.assertEqual(rc, 0)
        self.assertRegex(o["A"], r"#define A_Bundle_Args \\\n\s+const uint16_t \* slots, \\\n\s+uint16_t n")

    def test_override_of_unknown_method_is_refused(self):
        bad = SUB.replace("MustDo(uint32_t id) override", "MustDoo(uint32_t id) override")
        rc, _ = self.run_iig({"OSObject": OBJECT, "Base": BASE, "Sub": bad}, user={"Sub"})
        self.assertEqual(rc, 1)

    def test_unimplemented_pure_method_is_refused_for_user_classes(self):
        bad = SUB.replace("    virtual kern_return_t MustDo(uint32_t id) override;\n", "")
        rc, _ = self.run_iig({"OSObject": OBJECT, "Base": BASE, "Sub": bad}, user={"Sub"})
        self.assertEqual(rc, 1)
        # Methods with a TARGET parameter (Done) are sent to an action, not implemented.
        self.assertNotIn("Done", SUB)

    def test_type_of_unknown_method_is_refused(self):
        bad = SUB.replace("TYPE(Base::Fired)", "TYPE(Base::Fire)")
        rc, _ = self.run_iig({"OSObject": OBJECT, "Base": BASE, "Sub": bad}, user={"Sub"})
        self.assertEqual(rc, 1)


if __name__ == "__main__":
    unittest.main()
