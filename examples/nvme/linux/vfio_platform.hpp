// examples/nvme/linux/vfio_platform.hpp - the driver core's platform concept
// (driver/platform.hpp) over dkq's VFIO backend. Thin on purpose: the VFIO
// device already speaks BAR numbers, config space, bus mastering and DMA; this
// adds the clock and the short sleep the core asks for (both from
// dkq/platform/vfio/clock.hpp).
#pragma once

#include <cstdint>

#include "../driver/platform.hpp"
#include "dkq/platform/vfio/clock.hpp"
#include "dkq/platform/vfio/device.hpp"

namespace dkq::nvme_linux {

class vfio_platform {
 public:
  explicit vfio_platform(vfio::device& d) noexcept : dev_(d) {}

  result<mmio_window> map_bar(int bar) { return dev_.map_bar(bar); }
  result<std::uint32_t> config_read32(std::uint32_t off) { return dev_.config_read32(off); }
  status enable_bus_master() { return dev_.enable_bus_master(); }
  // Queue memory and command pages live below 4 GiB only if the platform asks;
  // NVMe takes 64-bit addresses, so no constraint.
  result<dma_region> dma_alloc(std::size_t n) { return dev_.dma_alloc(n); }
  status dma_free(const dma_region& r) { return dev_.dma_free(r); }
  // CLOCK_MONOTONIC; why that clock: dkq/platform/vfio/clock.hpp.
  std::uint64_t now_ns() const noexcept { return vfio::monotonic_clock::now_ns(); }
  void delay_us(std::uint32_t us) const noexcept { vfio::monotonic_clock::sleep_us(us); }

  vfio::device& device() noexcept { return dev_; }

 private:
  vfio::device& dev_;
};

static_assert(nvme_driver::pci_platform<vfio_platform>);

}  // namespace dkq::nvme_linux
