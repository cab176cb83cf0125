// examples/nvme/driver/platform.hpp - what the portable NVMe driver core needs
// from a platform, as one small concept.
//
// The core is shared unchanged by the Linux VFIO program and the DriverKit
// extension, so it never names VFIO, IOPCIDevice or a clock API. A platform
// type gives it:
//
//   map_bar(n)            the register window of memory BAR *number* n; the
//                         platform resolves BAR number -> its own index
//                         (DriverKit's memory index differs: IOPCIDevice::GetBARInfo, docs/driverkit.md)
//   config_read32(off)    PCI configuration space (vendor/device id)
//   enable_bus_master()   without it every DMA reads zeros
//   dma_alloc(n)/dma_free zeroed DMA memory with cpu pointer + device address
//   now_ns()              a monotonic clock for deadlines (CAP.TO, commands)
//   delay_us(n)           a short sleep while a register transition settles
//
// Interrupt vectors are not in the concept: the core only programs vector
// numbers into Create I/O Completion Queue; waiting on them (an eventfd on
// Linux, InterruptOccurred on DriverKit) is the shell's business, the way the
// dispatch layer separates "which queues does this vector serve" from "how
// do I sleep until it fires".
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::nvme_driver {

template <class P>
concept pci_platform = requires(P& p, int bar, std::uint32_t off, std::size_t n, const dma_region& r,
                                std::uint32_t us) {
  { p.map_bar(bar) } -> std::same_as<result<mmio_window>>;
  { p.config_read32(off) } -> std::same_as<result<std::uint32_t>>;
  { p.enable_bus_master() } -> std::same_as<status>;
  { p.dma_alloc(n) } -> std::same_as<result<dma_region>>;
  { p.dma_free(r) } -> std::same_as<status>;
  { p.now_ns() } -> std::same_as<std::uint64_t>;
  { p.delay_us(us) };
};

}  // namespace dkq::nvme_driver
