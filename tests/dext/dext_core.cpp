// Compiled with clang++ -stdlib=libc++ -std=gnu++20 -fno-exceptions -fno-rtti,
// the way Xcode compiles a DriverKit extension. Includes every core header
// (generated list) and instantiates the templates a driver would.
#include "all_core_headers.hpp"

#if defined(__cpp_exceptions) || defined(__cpp_rtti)
#error "this translation unit must be built with -fno-exceptions -fno-rtti"
#endif

namespace {
struct elem {
  unsigned long a;
  unsigned b;
};

template <class Ring>
bool exercise(Ring& r) {
  elem in[4] = {{1, 2}, {3, 4}, {5, 6}, {7, 8}}, out[4] = {};
  if (r.push_bulk(in, 4) != 4) return false;
  if (r.pop_burst(out, 4) != 4) return false;
  return out[3].a == 7 && out[3].b == 8;
}
}  // namespace

int main() {
  dkq::spsc_ring<elem> s;
  dkq::mpsc_ring<elem> m;
  dkq::mpmc_ring<elem, dkq::spin_wait> mm;
  if (!s.init(16u) || !m.init(16u) || !mm.init(16u)) return 1;
  if (!exercise(s) || !exercise(m) || !exercise(mm)) return 2;
  auto zc = s.reserve(3);
  if (zc.size() != 3 || !s.commit(3)) return 3;
  dkq::result<int> r = dkq::status{dkq::errc::timeout, "x"};
  if (r.ok() || r.error().code() != dkq::errc::timeout) return 4;
  return 0;
}
