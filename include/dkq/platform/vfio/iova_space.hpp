// dkq/platform/vfio/iova_space.hpp - the VFIO backend's own small IOVA allocator.
//
// With an IOMMU the driver chooses the device address of every buffer. This is
// a first-fit free list over the IOVA ranges the kernel says are usable
// (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: it leaves out the MSI window at
// 0xfee00000 on x86 and reserved regions), with neighbours merged on free.
// Allocation happens at setup time (queues, buffer pools), so a sorted vector
// is enough. It is deliberately internal to platform/vfio: the general IOVA
// allocator of the dma layer will replace it.
//
// Three kinds of address, all kept here so there is one bookkeeping:
//   - windows: what the IOMMU can translate (add(); from the kernel);
//   - reservations: ranges nothing is ever placed in (reserve(); e.g. the
//     first 64 KiB, or a window the device or its firmware owns);
//   - allocations: ranges handed out by alloc() (first fit) or taken at a
//     caller-chosen address by alloc_at() (a device that DMAs to fixed
//     addresses). Both are returned with free().
// alloc_at and reserve refuse, with a status naming the conflict, a range
// that would overlap another allocation or reservation.
#pragma once

#include <cstdint>
#include <vector>

#include "dkq/base/status.hpp"

namespace dkq::vfio {

class iova_space {
 public:
  struct range {
    std::uint64_t start;  // first byte
    std::uint64_t end;    // one past the last byte
  };

  // Default when the kernel reports nothing: from 64 KiB (so 0 is never a valid
  // device address) to 2^39 (what every VT-d / AMD-Vi implementation can
  // translate with 4-level tables), minus the x86 MSI window.
  static iova_space defaults() {
    iova_space s;
    s.add(0x10000, 0xfee00000);
    s.add(0xfef00000, std::uint64_t{1} << 39);
    return s;
  }

  // Adds a usable range [start, end). Ranges must be added in ascending order
  // and must not overlap (the kernel reports them that way).
  void add(std::uint64_t start, std::uint64_t end) {
    if (end <= start) return;
    windows_.push_back({start, end});
    free_.push_back({start, end});
  }

  // Reserves [start, start+size): alloc() never hands it out and alloc_at()
  // refuses it, until unreserve(). Parts outside the windows are recorded too
  // (nothing to take there). Refused: a range not aligned to `granule`, one
  // overlapping an earlier reservation (errc::busy) or an allocation
  // (errc::busy; value: the first conflicting address).
  status reserve(std::uint64_t start, std::uint64_t size, std::uint64_t granule = min_granule) {
    std::uint64_t end = 0;
    DKQ_TRY(check_range(start, size, granule, end));
    for (const range& r : reserved_)
      if (r.start < end && start < r.end)
        return {errc::busy, "IOVA range overlaps an existing reservation", r.start};
    // Every byte of it that lies in a window must be free.
    for (const range& w : windows_) {
      const std::uint64_t a = start > w.start ? start : w.start;
      const std::uint64_t b = end < w.end ? end : w.end;
      if (a >= b) continue;
      if (!is_free(a, b))
        return {errc::busy, "IOVA range overlaps an existing mapping", first_used(a, b)};
    }
    for (const range& w : windows_) {
      const std::uint64_t a = start > w.start ? start : w.start;
      const std::uint64_t b = end < w.end ? end : w.end;
      if (a < b) take(a, b);
    }
    std::size_t i = 0;
    while (i < reserved_.size() && reserved_[i].start < start) ++i;
    reserved_.insert(reserved_.begin() + static_cast<std::ptrdiff_t>(i), range{start, end});
    return ok_status;
  }

  // Ends the reservation [start, start+size) (exactly as it was made).
  status unreserve(std::uint64_t start, std::uint64_t size) {
    for (std::size_t i = 0; i < reserved_.size(); ++i) {
      const range r = reserved_[i];
      if (r.start != start || r.end - r.start != size) continue;
      reserved_.erase(reserved_.begin() + static_cast<std::ptrdiff_t>(i));
      for (const range& w : windows_) {
        const std::uint64_t a = r.start > w.start ? r.start : w.start;
        const std::uint64_t b = r.end < w.end ? r.end : w.end;
        if (a < b) DKQ_TRY(free(a, b - a));
      }
      return ok_status;
    }
    return {errc::invalid_argument, "no IOVA reservation starts at this address with this size", start};
  }

  // Takes exactly [start, start+size) for a mapping the caller places (a
  // device that DMAs to fixed addresses). Refused, before anything changes:
  //   invalid_argument  zero size, wrap-around, start or size not a multiple of `granule`
  //   out_of_range      not inside one window the IOMMU can translate
  //   busy              overlaps a reservation or an existing allocation
  //                     (value: the first conflicting address)
  result<std::uint64_t> alloc_at(std::uint64_t start, std::uint64_t size, std::uint64_t granule = min_granule) {
    std::uint64_t end = 0;
    DKQ_TRY(check_range(start, size, granule, end));
    for (const range& r : reserved_)
      if (r.start < end && start < r.end)
        return status{errc::busy, "IOVA range overlaps a reserved range", r.start < start ? start : r.start};
    bool inside = false;
    for (const range& w : windows_) inside = inside || (w.start <= start && end <= w.end);
    if (!inside)
      return status{errc::out_of_range, "IOVA range is not inside the IOMMU's usable ranges", start};
    if (!is_free(start, end))
      return status{errc::busy, "IOVA range overlaps an existing mapping", first_used(start, end)};
    take(start, end);
    return start;
  }

  // `size` bytes aligned to `align` (a power of two), ending at or below `limit`
  // (exclusive; ~0 for no limit). First fit from low addresses, so 32-bit
  // constrained requests and ordinary ones compete for the same low space; the
  // VT-d tables are cheaper when addresses stay dense.
  result<std::uint64_t> alloc(std::uint64_t size, std::uint64_t align, std::uint64_t limit) {
    if (size == 0 || align == 0 || (align & (align - 1)) != 0)
      return status{errc::invalid_argument, "IOVA size must be non-zero and alignment a power of two"};
    for (std::size_t i = 0; i < free_.size(); ++i) {
      range& r = free_[i];
      std::uint64_t base = (r.start + align - 1) & ~(align - 1);
      if (base < r.start || base >= r.end || r.end - base < size) continue;
      if (base + size > limit) break;  // ranges are sorted: nothing later fits either
      const range before{r.start, base};
      const range after{base + size, r.end};
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      if (after.end > after.start) free_.insert(free_.begin() + static_cast<std::ptrdiff_t>(i), after);
      if (before.end > before.start) free_.insert(free_.begin() + static_cast<std::ptrdiff_t>(i), before);
      return base;
    }
    return status{errc::constraint, "no free IOVA range fits this size under this address limit", size};
  }

  // Returns [start, start+size) to the free list, merging neighbours.
  status free(std::uint64_t start, std::uint64_t size) {
    if (size == 0) return {errc::invalid_argument, "free of an empty IOVA range"};
    const std::uint64_t end = start + size;
    std::size_t i = 0;
    while (i < free_.size() && free_[i].start < start) ++i;
    if ((i > 0 && free_[i - 1].end > start) || (i < free_.size() && free_[i].start < end))
      return {errc::invalid_argument, "IOVA range freed twice or never allocated", start};
    free_.insert(free_.begin() + static_cast<std::ptrdiff_t>(i), range{start, end});
    // Merge with the right neighbour, then the left. Ranges from different
    // kernel-reported windows never touch, so merging cannot bridge a hole.
    if (i + 1 < free_.size() && free_[i].end == free_[i + 1].start) {
      free_[i].end = free_[i + 1].end;
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i + 1));
    }
    if (i > 0 && free_[i - 1].end == free_[i].start) {
      free_[i - 1].end = free_[i].end;
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    return ok_status;
  }

  const std::vector<range>& free_ranges() const noexcept { return free_; }
  const std::vector<range>& windows() const noexcept { return windows_; }
  const std::vector<range>& reservations() const noexcept { return reserved_; }

  static constexpr std::uint64_t min_granule = 4096;

 private:
  static status check_range(std::uint64_t start, std::uint64_t size, std::uint64_t granule, std::uint64_t& end) {
    if (granule == 0 || (granule & (granule - 1)) != 0)
      return {errc::invalid_argument, "IOVA granule must be a power of two", granule};
    if (size == 0) return {errc::invalid_argument, "IOVA range of zero bytes"};
    if (start % granule != 0)
      return {errc::invalid_argument, "IOVA address is not aligned to the IOMMU page", start};
    if (size % granule != 0)
      return {errc::invalid_argument, "IOVA range size is not a whole number of IOMMU pages", size};
    end = start + size;
    if (end < start) return {errc::out_of_range, "IOVA range wraps around the 64-bit address space", start};
    return ok_status;
  }

  // Whether [a, b) lies inside one free range.
  bool is_free(std::uint64_t a, std::uint64_t b) const noexcept {
    for (const range& r : free_)
      if (r.start <= a && b <= r.end) return true;
    return false;
  }

  // The lowest address in [a, b) that is not free (for error values).
  std::uint64_t first_used(std::uint64_t a, std::uint64_t b) const noexcept {
    std::uint64_t at = a;
    for (const range& r : free_) {
      if (r.end <= at) continue;
      if (r.start > at || at >= b) break;
      at = r.end;
    }
    return at;
  }

  // Removes [a, b), known to lie inside one free range, from the free list.
  void take(std::uint64_t a, std::uint64_t b) {
    for (std::size_t i = 0; i < free_.size(); ++i) {
      const range r = free_[i];
      if (!(r.start <= a && b <= r.end)) continue;
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      if (b < r.end) free_.insert(free_.begin() + static_cast<std::ptrdiff_t>(i), range{b, r.end});
      if (r.start < a) free_.insert(free_.begin() + static_cast<std::ptrdiff_t>(i), range{r.start, a});
      return;
    }
  }

  std::vector<range> windows_;
  std::vector<range> free_;
  std::vector<range> reserved_;
};

}  // namespace dkq::vfio
