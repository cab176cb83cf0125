// dkq/dma/region.hpp - DMA regions: a CPU pointer and a device address, never confused.
//
// A device is programmed with device (bus/IO-virtual) addresses only. Putting a
// CPU pointer into a PRP entry or an SGL is the classic "DMA reads back zeros"
// bug (docs/porting-a-kext.md, "DMA reads back zeros"), so device addresses have their own type that does not
// convert to or from integers or pointers implicitly.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"

namespace dkq {

// An address as the device sees it (an IOVA behind an IOMMU, or a bus address).
class dev_addr {
 public:
  constexpr dev_addr() noexcept = default;
  constexpr explicit dev_addr(std::uint64_t v) noexcept : v_(v) {}
  constexpr std::uint64_t value() const noexcept { return v_; }
  constexpr dev_addr operator+(std::uint64_t off) const noexcept { return dev_addr{v_ + off}; }
  constexpr std::uint64_t operator-(dev_addr o) const noexcept { return v_ - o.v_; }
  constexpr auto operator<=>(const dev_addr&) const noexcept = default;

 private:
  std::uint64_t v_ = 0;
};

// A piece of memory both the CPU and the device can reach. The platform that
// allocated it owns its lifetime; a region is a plain view.
struct dma_region {
  void* cpu = nullptr;   // where the CPU reads and writes it
  dev_addr device{};     // what the device is programmed with
  std::size_t size = 0;  // bytes

  constexpr bool valid() const noexcept { return cpu != nullptr && size != 0; }

  // CPU pointer / device address of byte `off` (off <= size; unchecked hot path).
  template <class T = std::uint8_t>
  T* cpu_at(std::size_t off = 0) const noexcept {
    return reinterpret_cast<T*>(static_cast<std::uint8_t*>(cpu) + off);
  }
  constexpr dev_addr device_at(std::size_t off) const noexcept { return device + off; }

  // The sub-region [off, off+len), checked.
  result<dma_region> slice(std::size_t off, std::size_t len) const noexcept {
    if (!valid()) return status{errc::not_initialized, "slice of an empty DMA region"};
    if (off > size || len > size - off)
      return status{errc::out_of_range, "DMA sub-region outside its parent", off};
    return dma_region{cpu_at(off), device + off, len};
  }
};

// One device-visible byte range of a transfer: what an IOMMU mapping, an
// IODMACommand segment or a scatterlist entry hands a driver. Builders and the
// splitter consume spans of these; a segment never owns memory.
struct dma_segment {
  dev_addr addr{};
  std::uint64_t len = 0;

  friend constexpr bool operator==(const dma_segment&, const dma_segment&) noexcept = default;
};

// Which way data moves, seen from the host. Bounce buffers copy in before a
// transfer to the device and copy out after a transfer from it.
enum class dma_direction : std::uint8_t {
  to_device,      // a write: the device reads host memory
  from_device,    // a read: the device writes host memory
  bidirectional,  // both (rare: vendor commands that update a buffer in place)
};

}  // namespace dkq
