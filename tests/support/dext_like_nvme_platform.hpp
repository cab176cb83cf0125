// A platform for the NVMe driver core made of no std containers, for the
// dext-style compile checks (tests/nvme_driver/dext_compile.cpp,
// tests/nvme_dext/dext_compile.cpp): every call fails or does nothing, and
// config space reads all ones, so init() must end in errc::removed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../examples/nvme/driver/platform.hpp"

namespace dkq::test {

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

}  // namespace dkq::test
