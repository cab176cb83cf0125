// dkq/platform/driverkit/dma_book.hpp - DMA-region bookkeeping for the
// DriverKit backend: what IODMACommand::PrepareForDMA returned, checked, and
// the objects behind each region, kept so that freeing is exact.
//
// On DriverKit a DMA buffer is three objects: an IOBufferMemoryDescriptor (the
// memory), its IOMemoryMap (the CPU address) and an IODMACommand prepared on it
// (the device address, created with a maxAddressBits limit). The glue turns
// them into the same dkq::dma_region the Linux backend returns. Two things go
// wrong there and are checked here, without any DriverKit header:
//
//  - PrepareForDMA may answer with several segments (up to 32). Queue memory,
//    PRP list pages and MFI frames are programmed into the device as one base
//    address, so a buffer the driver allocates must come back as exactly one
//    segment covering the whole length, inside the address bits the command
//    was created with and at the alignment asked for. Anything else is an
//    error, not a truncated region (region_from_segments).
//  - The region must be freed with the objects that made it. dma_book maps
//    each live region to its handle; freeing a region it does not know (or
//    with a different size) is an error rather than a release of the wrong
//    object, and teardown hands back every region still live.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::driverkit {

// Checks PrepareForDMA's segments for a buffer of `length` bytes at `cpu` and
// returns the region. `address_bits` is the IODMACommandSpecification limit
// (64 = none); `alignment` the device's requirement for the base (power of two,
// 1 = none).
inline result<dma_region> region_from_segments(void* cpu, std::size_t length, std::span<const dma_segment> segs,
                                               unsigned address_bits, std::size_t alignment) noexcept {
  if (cpu == nullptr || length == 0) return status{errc::invalid_argument, "DMA buffer without memory or length"};
  if (address_bits == 0 || address_bits > 64)
    return status{errc::invalid_argument, "address bits must be 1..64", address_bits};
  if (alignment == 0 || !is_pow2(alignment))
    return status{errc::invalid_argument, "DMA alignment must be a power of two", alignment};
  if (segs.empty()) return status{errc::protocol_error, "PrepareForDMA returned no segments"};
  if (segs.size() != 1)
    return status{errc::constraint, "DMA buffer is not contiguous in device space (several segments)", segs.size()};
  const dma_segment s = segs[0];
  if (s.len < length) return status{errc::protocol_error, "DMA segment shorter than the buffer", s.len};
  const std::uint64_t a = s.addr.value();
  if (a % alignment != 0) return status{errc::constraint, "device address not aligned as required", a};
  if (address_bits < 64) {
    const std::uint64_t limit = std::uint64_t{1} << address_bits;
    if (a >= limit || limit - a < length)
      return status{errc::constraint, "device address beyond the command's address-bit limit", a};
  } else if (a + length < a) {
    return status{errc::protocol_error, "DMA segment wraps the address space", a};
  }
  return dma_region{cpu, s.addr, length};
}

// Live DMA regions and the platform objects behind each. Fixed capacity, set
// up once; no allocation. Not thread-safe: the glue calls it from setup and
// teardown on one queue.
template <class Handle, std::size_t N>
class dma_book {
 public:
  // Records a region. Overlap with a live region (in CPU or device space) means
  // the platform handed out the same memory twice: refused.
  status add(const dma_region& r, const Handle& h) noexcept {
    if (!r.valid()) return {errc::invalid_argument, "cannot record an empty DMA region"};
    std::size_t free_slot = N;
    for (std::size_t i = 0; i < N; ++i) {
      if (!used_[i]) {
        if (free_slot == N) free_slot = i;
        continue;
      }
      if (overlaps_cpu(entries_[i].region, r) || overlaps_dev(entries_[i].region, r))
        return {errc::protocol_error, "DMA region overlaps a live one", i};
    }
    if (free_slot == N) return {errc::no_space, "DMA bookkeeping table is full", N};
    used_[free_slot] = true;
    entries_[free_slot] = entry{r, h};
    ++live_;
    bytes_ += r.size;
    return ok_status;
  }

  // Takes a region out and returns its handle for release. The region must
  // match a live one exactly (cpu, device address and size).
  result<Handle> remove(const dma_region& r) noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      if (!used_[i] || entries_[i].region.cpu != r.cpu) continue;
      if (entries_[i].region.device != r.device || entries_[i].region.size != r.size)
        return status{errc::invalid_argument, "DMA region freed with a different address or size", r.size};
      used_[i] = false;
      --live_;
      bytes_ -= r.size;
      return entries_[i].handle;
    }
    return status{errc::invalid_argument, "free of a DMA region this platform did not allocate (or freed twice)"};
  }

  // The live region containing device address `a` (diagnostics: which buffer
  // did the device name?).
  result<dma_region> find_device(dev_addr a) const noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      if (!used_[i]) continue;
      const dma_region& e = entries_[i].region;
      if (a >= e.device && a - e.device < e.size) return e;
    }
    return status{errc::out_of_range, "device address is in no live DMA region", a.value()};
  }

  // Teardown: f(region, handle) for every live region, then empty.
  template <class F>
  std::size_t drain(F&& f) noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < N; ++i) {
      if (!used_[i]) continue;
      f(entries_[i].region, entries_[i].handle);
      used_[i] = false;
      ++n;
    }
    live_ = 0;
    bytes_ = 0;
    return n;
  }

  std::size_t live() const noexcept { return live_; }
  std::uint64_t bytes_live() const noexcept { return bytes_; }
  static constexpr std::size_t capacity() noexcept { return N; }

 private:
  struct entry {
    dma_region region{};
    Handle handle{};
  };
  static bool overlaps_cpu(const dma_region& a, const dma_region& b) noexcept {
    const auto a0 = reinterpret_cast<std::uintptr_t>(a.cpu), b0 = reinterpret_cast<std::uintptr_t>(b.cpu);
    return a0 < b0 + b.size && b0 < a0 + a.size;
  }
  static bool overlaps_dev(const dma_region& a, const dma_region& b) noexcept {
    const auto a0 = a.device.value(), b0 = b.device.value();
    return a0 < b0 + b.size && b0 < a0 + a.size;
  }

  entry entries_[N]{};
  bool used_[N]{};
  std::size_t live_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace dkq::driverkit
