// dkq/platform/vfio/iova_space.hpp - the VFIO backend's own small IOVA allocator.
//
// With an IOMMU the driver chooses the device address of every buffer. This is
// a first-fit free list over the IOVA ranges the kernel says are usable
// (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: it leaves out the MSI window at
// 0xfee00000 on x86 and reserved regions), with neighbours merged on free.
// Allocation happens at setup time (queues, buffer pools), so a sorted vector
// is enough. It is deliberately internal to platform/vfio: the general IOVA
// allocator of the dma layer will replace it.
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
    if (end > start) free_.push_back({start, end});
  }

  // Removes [start, end) from the usable space (e.g. addresses below 64 KiB).
  void reserve(std::uint64_t start, std::uint64_t end) {
    std::vector<range> next;
    for (const range& r : free_) {
      if (r.end <= start || r.start >= end) {
        next.push_back(r);
        continue;
      }
      if (r.start < start) next.push_back({r.start, start});
      if (r.end > end) next.push_back({end, r.end});
    }
    free_ = std::move(next);
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

 private:
  std::vector<range> free_;
};

}  // namespace dkq::vfio
