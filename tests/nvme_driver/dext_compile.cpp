// The NVMe driver core compiled the way the DriverKit extension will compile
// it (clang, libc++, gnu++20, -fno-exceptions -fno-rtti; see tests/CMakeLists.txt
// dext_style_compile): a platform with no std containers, every member of
// controller<> and io_queue<> instantiated. It also runs: the platform's
// config space says "no device", so init() must fail cleanly, not crash.
#include <cstdint>
#include <cstdio>

#include "../../examples/nvme/driver/controller.hpp"
#include "../support/dext_like_nvme_platform.hpp"

namespace {
using dkq::test::dext_like_platform;
}  // namespace

template class dkq::nvme_driver::controller<dext_like_platform>;
template class dkq::nvme_driver::io_queue<dext_like_platform>;

int main() {
  dext_like_platform p;
  dkq::nvme_driver::controller<dext_like_platform> c;
  dkq::status s = c.init(p);
  dkq::nvme_driver::io_queue<dext_like_platform> q;
  auto h = [](const dkq::nvme_driver::io_completion&) {};
  (void)q.check_timeouts(h);
  (void)q.poll(1, h);
  (void)c.shutdown();
  if (s.code() != dkq::errc::removed) {
    std::printf("expected 'removed' for an all-ones config space, got %s\n", s.message());
    return 1;
  }
  return 0;
}
