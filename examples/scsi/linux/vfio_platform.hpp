// examples/scsi/linux/vfio_platform.hpp - the MegaRAID core's platform concept
// (driver/platform.hpp) over dkq's VFIO backend. Thin on purpose: the VFIO
// device already speaks BAR numbers, config space, bus mastering, constrained
// DMA and MSI-X/MSI eventfds; this adapts names and adds a clock and a sleep.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../driver/platform.hpp"
#include "dkq/platform/vfio/clock.hpp"
#include "dkq/platform/vfio/device.hpp"

// The backend's placement type was renamed (vfio::dma_constraints ->
// vfio::dma_placement) while this example was written; accept either, so the
// example builds on both sides of that change.
namespace dkq::vfio {
struct dma_placement;
struct dma_constraints;
}  // namespace dkq::vfio

namespace dkq::scsi_linux {

namespace mr = dkq::examples::megaraid;

template <class T, class = void>
struct is_complete : std::false_type {};
template <class T>
struct is_complete<T, std::void_t<decltype(sizeof(T))>> : std::true_type {};

// A VFIO placement: device addresses below `limit`, aligned to `align`.
template <class New = vfio::dma_placement, class Old = vfio::dma_constraints>
auto placement(std::uint64_t limit, std::uint64_t align = 4096) {
  if constexpr (is_complete<New>::value) {
    New p;
    p.limit = limit;
    p.align = align;
    return p;
  } else {
    Old p;
    p.limit = limit;
    p.align = align;
    return p;
  }
}

class vfio_platform {
 public:
  using window = mmio_window;

  explicit vfio_platform(vfio::device& d) noexcept : dev_(d) {}

  result<std::uint16_t> config_read16(std::uint32_t off) { return dev_.config_read16(off); }
  mr::bar_kind bar_type(int bar) {
    auto b = dev_.bar(bar);
    if (!b) return mr::bar_kind::absent;
    if (b->kind == vfio::bar_kind::memory) return mr::bar_kind::memory;
    if (b->kind == vfio::bar_kind::io) return mr::bar_kind::io;
    return mr::bar_kind::absent;
  }
  result<window> map_bar(int bar) { return dev_.map_bar(bar); }
  status enable_bus_master() { return dev_.enable_bus_master(); }
  // PCI command register bit 2 off: the device can no longer reach memory.
  status disable_bus_master() {
    auto cmd = dev_.config_read16(0x04);
    if (!cmd) return cmd.error();
    const auto v = static_cast<std::uint16_t>(*cmd & ~0x0004u);
    return v == *cmd ? ok_status : dev_.config_write16(0x04, v);
  }
  result<dma_region> dma_alloc(std::size_t n, std::uint64_t limit) {
    return dev_.dma_alloc(n, placement(limit));
  }
  status dma_free(const dma_region& r) { return dev_.dma_free(r); }

  // MSI-X, else MSI. INTx is not offered to the core: it is level-triggered
  // (VFIO masks it until re-armed) and a dext cannot use it at all, so without
  // MSI the driver polls.
  result<std::uint32_t> irq_enable() {
    if (dev_.irq().available(vfio::irq_kind::msix) == 0 && dev_.irq().available(vfio::irq_kind::msi) == 0)
      return std::uint32_t{0};
    DKQ_TRY(dev_.irq().enable(1, vfio::irq_kind::msix));
    if (dev_.irq().kind() == vfio::irq_kind::intx) {
      (void)dev_.irq().disable();
      return std::uint32_t{0};
    }
    return dev_.irq().count();
  }
  std::uint32_t irq_wait(int ms) {
    std::uint32_t fired[4];
    auto n = dev_.irq().wait(fired, ms);
    ++irq_waits;
    return n ? *n : 0;
  }
  std::uint64_t now_ns() const noexcept { return vfio::monotonic_clock::now_ns(); }
  void delay_us(std::uint32_t us) const noexcept { vfio::monotonic_clock::sleep_us(us); }

  vfio::device& device() noexcept { return dev_; }
  std::uint64_t irq_waits = 0;

 private:
  vfio::device& dev_;
};

static_assert(mr::mfi_platform<vfio_platform>);

}  // namespace dkq::scsi_linux
