// Minimal checks for guest programs. They run inside the VM's initramfs, are
// linked statically, and report over the serial console, so this is printf and
// an exit status rather than a test framework. The harness (dkqvm.py) reads:
//   - the exit status (0 = every check passed),
//   - lines "@@DKQ-EXPECT-TRACE <event> [field=value ...] count=<n>": what the
//     program did to the device, which the harness compares with QEMU's trace.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>
#include <string_view>

#include "dkq/base/status.hpp"

namespace vmcheck {

inline int failures = 0;

inline void fail(const char* file, int line, const char* what, const std::string& extra = {}) {
  ++failures;
  std::printf("CHECK FAILED %s:%d: %s%s%s\n", file, line, what, extra.empty() ? "" : " -- ", extra.c_str());
  std::fflush(stdout);
}

inline std::string describe(const dkq::status& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: %s (detail %llu)", dkq::errc_name(s.code()), s.message(),
                static_cast<unsigned long long>(s.detail()));
  return buf;
}

inline void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void note(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Declares that this program caused `count` events `event` with these fields.
inline void expect_trace(const char* event, const std::string& fields, unsigned count) {
  std::printf("@@DKQ-EXPECT-TRACE %s%s%s count=%u\n", event, fields.empty() ? "" : " ", fields.c_str(), count);
  std::fflush(stdout);
}

inline int finish(const char* name) {
  if (failures == 0) std::printf("%s: all checks passed\n", name);
  else std::printf("%s: %d check(s) failed\n", name, failures);
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace vmcheck

#define VM_CHECK(cond) ((cond) ? true : (vmcheck::fail(__FILE__, __LINE__, #cond), false))
#define VM_CHECK_MSG(cond, msg) ((cond) ? true : (vmcheck::fail(__FILE__, __LINE__, #cond, (msg)), false))
// A result/status that must be ok; on failure prints the error and returns false.
#define VM_CHECK_OK(expr) \
  ([&]() -> bool { auto&& vm_r_ = (expr); if (vm_r_.ok()) return true; \
     vmcheck::fail(__FILE__, __LINE__, #expr, vmcheck::describe(vmcheck_status_of(vm_r_))); return false; }())

template <class T>
dkq::status vmcheck_status_of(const dkq::result<T>& r) { return r.error(); }
inline dkq::status vmcheck_status_of(const dkq::status& s) { return s; }
