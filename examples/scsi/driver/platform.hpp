// examples/scsi/driver/platform.hpp - what the MegaRAID driver core needs from
// its platform, as a concept.
//
// The core is written once and reused by the Linux VFIO program, the DriverKit
// dext and the unit tests (a software controller model). A platform is any type
// with these members; none of them is called on the I/O hot path except the
// register window's read32/write32 and, in interrupt mode, irq_wait.
//
//   window               register window type: read32(off), write32(off, v)
//   config_read16(off)   PCI config space (vendor/device identify the model)
//   bar_type(n)          what BAR n is: the driver picks the first memory BAR,
//                        because on the 2108 BAR 0 is an I/O BAR (registers in
//                        BAR 1) while on the 1078 they are in BAR 0
//   map_bar(n)           the register window of memory BAR n (by BAR number;
//                        DriverKit converts to a memory index underneath)
//   enable_bus_master()  without it every DMA is dropped silently
//   disable_bus_master() optional: when present, the core cuts the device off
//                        from memory after a reset that failed (firmware not
//                        back to READY) and at a stop() with frames still out
//   dma_alloc(bytes, limit)  zeroed DMA memory whose device addresses are all
//                        below `limit` (exclusive; ~0 = no limit)
//   dma_free(region)
//   irq_enable()         MSI-X, else MSI; how many vectors (0 = none: poll)
//   irq_wait(ms)         block until vector 0 fires or ms pass; returns the
//                        notification count (0 on timeout)
//   now_ns(), delay_us(us)  a monotonic clock and a short sleep for the
//                        firmware handshake (bounded waits)
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::examples::megaraid {

enum class bar_kind : std::uint8_t { absent, memory, io };

inline constexpr std::uint64_t no_address_limit = ~std::uint64_t{0};
inline constexpr std::uint64_t limit_4g = std::uint64_t{1} << 32;

template <class W>
concept register_window = requires(const W& w, std::size_t off, std::uint32_t v) {
  { w.read32(off) } -> std::same_as<std::uint32_t>;
  { w.write32(off, v) };
};

template <class P>
concept mfi_platform = requires(P& p, int bar, std::uint32_t off, std::size_t n, std::uint64_t limit,
                                const dma_region& r, std::uint32_t us, int ms) {
  requires register_window<typename P::window>;
  { p.config_read16(off) } -> std::same_as<result<std::uint16_t>>;
  { p.bar_type(bar) } -> std::same_as<bar_kind>;
  { p.map_bar(bar) } -> std::same_as<result<typename P::window>>;
  { p.enable_bus_master() } -> std::same_as<status>;
  { p.dma_alloc(n, limit) } -> std::same_as<result<dma_region>>;
  { p.dma_free(r) } -> std::same_as<status>;
  { p.irq_enable() } -> std::same_as<result<std::uint32_t>>;
  { p.irq_wait(ms) } -> std::same_as<std::uint32_t>;
  { p.now_ns() } -> std::same_as<std::uint64_t>;
  { p.delay_us(us) };
};

}  // namespace dkq::examples::megaraid
