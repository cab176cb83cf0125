// The NVMe driver core compiled the way the DriverKit extension will compile
// it (clang, libc++, gnu++20, -fno-exceptions -fno-rtti; see tests/CMakeLists.txt
// dext_style_compile): a platform with no std containers, every member of
// controller<> and io_queue<> instantiated. It also runs: the platform's
// config space says "no device", so init() must fail cleanly, not crash.
#include <cstdint>
#include <cstdio>

#include "../../examples/nvme/driver/controller.hpp"

namespace {
struct dext_like_platform {
  dkq::result<dkq::mmio_window> map_bar(int) { return dkq::status{dkq::errc::not_supported, "no BAR"}; }
  dkq::result<std::uint32_t> config_read32(std::uint32_t) { return 0xffffffffu; }
  dkq::status enable_bus_master() { return dkq::ok_status; }
  dkq::result<dkq::dma_region> dma_alloc(std::size_t) { return dkq::status{dkq::errc::no_memory, "none"}; }
  dkq::status dma_free(const dkq::dma_region&) { return dkq::ok_status; }
  std::uint64_t now_ns() const noexcept { return 0; }
  void delay_us(std::uint32_t) noexcept {}
};
static_assert(dkq::nvme_driver::pci_platform<dext_like_platform>);
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
