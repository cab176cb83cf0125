// block_translation.hpp built the way the dext builds it (see CMakeLists.txt):
// every member instantiated over the core's io_queue with a platform made of
// no std containers. Runs once: an uninitialised translator refuses cleanly.
#include <cstdint>
#include <cstdio>

#include "../../examples/nvme/driverkit/block_translation.hpp"
#include "../../examples/nvme/driverkit/dext_platform.hpp"
#include "../support/dext_like_nvme_platform.hpp"

namespace {
using dkq::test::dext_like_platform;
using queue_t = dkq::nvme_driver::io_queue<dext_like_platform>;
}  // namespace

template class dkq::nvme_driver::dext::block_translator<queue_t, 256>;

int main() {
  namespace dx = dkq::nvme_driver::dext;
  static dx::block_translator<queue_t, 256> t;
  dx::rw_request r;
  r.blocks = 1;
  r.size = 512;
  r.dma_addr = 0x1000;
  const dkq::status s = t.read_write(r);
  const dx::unmap_range u{0, 1};
  (void)t.unmap(1, {&u, 1});
  (void)t.synchronize(2);
  auto done = [](const dx::block_completion&) {};
  (void)t.poll(8, done);
  (void)t.check_timeouts(done);
  if (dx::to_io_return(s) != dx::io_return::not_ready) {
    std::printf("expected kIOReturnNotReady from an uninitialised translator, got %s\n",
                dx::io_return_name(dx::to_io_return(s)));
    return 1;
  }
  return 0;
}
