// examples/nvme/driverkit/dext_platform.hpp - the NVMe core's platform concept
// (examples/nvme/driver/platform.hpp) over the DriverKit backend's objects.
//
// Portable: templated on the three objects the dext owns, so DkqNVMe.cpp
// instantiates it with dkq::driverkit::apple::pci_device, dma_allocator and a
// clock, and tests/nvme_dext/ instantiates it with fakes and runs the whole
// core through it on Linux (bring-up, I/O, shutdown).
//
//   Pci   map(bar) -> result<mmio_window>   the BAR's CPU mapping (by BAR number;
//                                           the memory index is resolved inside)
//         config_read32(off) -> uint32_t    all ones when the device is gone
//         enable_bus_master() -> status
//   Dma   alloc(bytes, address_bits, alignment) -> result<dma_region>
//         free(region) -> status
//   Clock now_ns(), delay_us(us)
//
// NVMe control structures (queues, PRP list pages, Identify buffers) take
// 64-bit addresses, page-aligned: alloc(n, 64, 4096).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../driver/platform.hpp"
#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::nvme_driver::dext {

template <class Pci, class Dma, class Clock>
struct dext_platform {
  Pci* pci = nullptr;
  Dma* dma = nullptr;
  Clock* clock = nullptr;

  result<mmio_window> map_bar(int bar) { return pci->map(bar); }
  result<std::uint32_t> config_read32(std::uint32_t off) { return pci->config_read32(off); }
  status enable_bus_master() { return pci->enable_bus_master(); }
  result<dma_region> dma_alloc(std::size_t n) { return dma->alloc(n, 64, 4096); }
  status dma_free(const dma_region& r) { return dma->free(r); }
  std::uint64_t now_ns() const noexcept { return clock->now_ns(); }
  void delay_us(std::uint32_t us) noexcept { clock->delay_us(us); }
};

}  // namespace dkq::nvme_driver::dext
