// examples/scsi/driverkit/dext_platform.hpp - the MegaRAID core's platform
// concept (driver/platform.hpp) over the DriverKit backend, with no DriverKit
// header: it is a template over the PCI device, the DMA allocator and the
// clock, instantiated in DkqMegaRAID.cpp with
// dkq::driverkit::apple::{pci_device, dma_allocator} and unit-tested on Linux
// with fakes of the same shape (tests/scsi_dext/).
//
//   Pci    config_read16(off) -> uint16 (all ones on error), bars() -> const
//          bar_table&, window(bar) -> result<indexed_window<...>>,
//          enable_bus_master() -> status
//   Dma    alloc(bytes, address_bits, alignment) -> result<dma_region>,
//          free(region) -> status
//   Clock  now_ns() -> uint64, delay_us(us)
//
// What the adapter decides:
//  - BARs are named by number and resolved through the bar_table that
//    GetBARInfo filled: the core asks for "the first memory BAR" (BAR 1 on the
//    2108, behind I/O BAR 0) and gets an indexed_window on its memory index,
//    never "index = BAR number" (docs/porting-a-kext.md);
//  - the core's exclusive address limit becomes IODMACommand's maxAddressBits
//    (4 GiB -> 32 bits) and every region is page aligned (frames need 2 KiB
//    slots that never cross a page);
//  - irq_enable() grants no vector: the core polls its synchronous commands
//    (bring-up, flush, shutdown), and I/O completions are drained from
//    InterruptOccurred on the InterruptQueue (task_engine::service()), which
//    DriverKit delivers outside the core's wait loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/platform/driverkit/bar_table.hpp"
#include "examples/scsi/driver/platform.hpp"
#include "task_translation.hpp"

namespace dkq::examples::megaraid::dext {

inline constexpr std::size_t dma_alignment = 4096;

template <class Pci, class Dma, class Clock>
class dext_platform {
 public:
  using window = std::remove_cvref_t<decltype(std::declval<const Pci&>().window(0).value())>;

  dext_platform(Pci& pci, Dma& dma, Clock& clock) noexcept : pci_(pci), dma_(dma), clock_(clock) {}

  result<std::uint16_t> config_read16(std::uint32_t off) {
    const std::uint16_t v = pci_.config_read16(off);
    if (v == 0xffff && off == 0) return status{errc::removed, "PCI vendor ID reads all ones (device gone)"};
    return v;
  }

  bar_kind bar_type(int bar) {
    const driverkit::bar_kind k = pci_.bars().kind(bar);
    if (driverkit::is_memory(k)) return bar_kind::memory;
    if (k == driverkit::bar_kind::io) return bar_kind::io;
    return bar_kind::absent;
  }

  result<window> map_bar(int bar) { return pci_.window(bar); }

  status enable_bus_master() { return pci_.enable_bus_master(); }

  result<dma_region> dma_alloc(std::size_t n, std::uint64_t limit) {
    ++allocs;
    return dma_.alloc(n, address_bits_for_limit(limit), dma_alignment);
  }
  status dma_free(const dma_region& r) { return dma_.free(r); }

  result<std::uint32_t> irq_enable() { return std::uint32_t{0}; }
  std::uint32_t irq_wait(int ms) {
    clock_.delay_us(ms > 0 ? static_cast<std::uint32_t>(ms) * 1000u : 1u);
    return 0;
  }
  std::uint64_t now_ns() { return clock_.now_ns(); }
  void delay_us(std::uint32_t us) { clock_.delay_us(us); }

  std::uint64_t allocs = 0;

 private:
  Pci& pci_;
  Dma& dma_;
  Clock& clock_;
};

}  // namespace dkq::examples::megaraid::dext
