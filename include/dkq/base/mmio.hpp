// dkq/base/mmio.hpp - memory-mapped register access with explicit ordering.
//
// A register window is validated once (offset and width inside the mapped BAR,
// naturally aligned) and then accessed without checks on the hot path. The
// default accessors are *ordered* the way drivers need them:
//
//   write32/write64: every earlier CPU store to DMA memory is visible to the
//                    device before the register write lands (dma_wmb first).
//                    This is what a doorbell needs.
//   read32/read64:   later CPU loads from DMA memory are not satisfied before
//                    the register read returns (dma_rmb after). This is what
//                    reading a status register and then a buffer needs.
//
// The *_relaxed forms carry no barrier, for runs of configuration writes where
// no DMA memory is involved. Accesses are single volatile loads/stores of the
// exact width, so the compiler never splits, merges or elides them. A 64-bit
// register on a device that cannot take 64-bit accesses is written with
// write64_lo_hi (two 32-bit writes, low first), as NVMe 1.x permits for CAP,
// ASQ and ACQ.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"

namespace dkq {

namespace detail {
DKQ_ALWAYS_INLINE std::uint32_t raw_read32(const volatile void* a) noexcept {
  return *static_cast<const volatile std::uint32_t*>(a);
}
DKQ_ALWAYS_INLINE std::uint64_t raw_read64(const volatile void* a) noexcept {
  return *static_cast<const volatile std::uint64_t*>(a);
}
DKQ_ALWAYS_INLINE void raw_write32(volatile void* a, std::uint32_t v) noexcept {
  *static_cast<volatile std::uint32_t*>(a) = v;
}
DKQ_ALWAYS_INLINE void raw_write64(volatile void* a, std::uint64_t v) noexcept {
  *static_cast<volatile std::uint64_t*>(a) = v;
}
}  // namespace detail

// One mapped register window (a memory BAR, or a part of one).
class mmio_window {
 public:
  constexpr mmio_window() noexcept = default;
  constexpr mmio_window(volatile void* base, std::size_t size) noexcept
      : base_(static_cast<volatile std::uint8_t*>(base)), size_(size) {}

  constexpr bool valid() const noexcept { return base_ != nullptr && size_ != 0; }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr volatile std::uint8_t* base() const noexcept { return base_; }

  // Checks that [offset, offset+width) lies inside the window and is naturally
  // aligned. Use once when computing register addresses, not per access.
  constexpr status check(std::size_t offset, std::size_t width) const noexcept {
    if (!valid()) return {errc::not_initialized, "register window is not mapped"};
    if (width != 4 && width != 8) return {errc::invalid_argument, "register width must be 4 or 8 bytes", width};
    if (offset % width != 0) return {errc::invalid_argument, "register offset is not naturally aligned", offset};
    if (offset > size_ || size_ - offset < width)
      return {errc::out_of_range, "register offset lies outside the mapped BAR", offset};
    return ok_status;
  }

  // Checked accessors: a bad offset is an error value, not a stray access.
  result<std::uint32_t> read32_checked(std::size_t off) const noexcept {
    if (status s = check(off, 4); !s) return s;
    return read32(off);
  }
  status write32_checked(std::size_t off, std::uint32_t v) const noexcept {
    DKQ_TRY(check(off, 4));
    write32(off, v);
    return ok_status;
  }
  result<std::uint64_t> read64_checked(std::size_t off) const noexcept {
    if (status s = check(off, 8); !s) return s;
    return read64(off);
  }
  status write64_checked(std::size_t off, std::uint64_t v) const noexcept {
    DKQ_TRY(check(off, 8));
    write64(off, v);
    return ok_status;
  }

  // Ordered accessors (see the header comment). Offsets must have passed check().
  DKQ_ALWAYS_INLINE std::uint32_t read32(std::size_t off) const noexcept {
    std::uint32_t v = detail::raw_read32(base_ + off);
    dma_rmb();
    return v;
  }
  DKQ_ALWAYS_INLINE std::uint64_t read64(std::size_t off) const noexcept {
    std::uint64_t v = detail::raw_read64(base_ + off);
    dma_rmb();
    return v;
  }
  DKQ_ALWAYS_INLINE void write32(std::size_t off, std::uint32_t v) const noexcept {
    dma_wmb();
    detail::raw_write32(base_ + off, v);
  }
  DKQ_ALWAYS_INLINE void write64(std::size_t off, std::uint64_t v) const noexcept {
    dma_wmb();
    detail::raw_write64(base_ + off, v);
  }
  DKQ_ALWAYS_INLINE void write64_lo_hi(std::size_t off, std::uint64_t v) const noexcept {
    dma_wmb();
    detail::raw_write32(base_ + off, static_cast<std::uint32_t>(v));
    detail::raw_write32(base_ + off + 4, static_cast<std::uint32_t>(v >> 32));
  }

  // Relaxed accessors: no DMA ordering (still single, exact-width accesses).
  DKQ_ALWAYS_INLINE std::uint32_t read32_relaxed(std::size_t off) const noexcept {
    return detail::raw_read32(base_ + off);
  }
  DKQ_ALWAYS_INLINE void write32_relaxed(std::size_t off, std::uint32_t v) const noexcept {
    detail::raw_write32(base_ + off, v);
  }

 private:
  volatile std::uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
};

// A device that was surprise-removed answers every read with all ones. A
// driver checks register reads that must have some zero bit with this.
constexpr bool looks_removed(std::uint32_t v) noexcept { return v == 0xffffffffu; }
constexpr bool looks_removed(std::uint64_t v) noexcept { return v == ~std::uint64_t{0}; }

}  // namespace dkq
