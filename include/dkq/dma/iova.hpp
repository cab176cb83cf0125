// dkq/dma/iova.hpp - IO-virtual address allocator for user-space (VFIO) drivers.
//
// With an IOMMU the driver chooses the device address of every mapping
// (VFIO_IOMMU_MAP_DMA takes an iova); something must hand out non-overlapping
// ranges that honour the device's limits and take them back when a long-running
// process unmaps. libvfn does this with a fixed IOVA range list
// (SamsungDS/libvfn src/iommu/context.c and vfio.c: usable ranges from
// VFIO_IOMMU_GET_INFO, reused best-fit); here:
//
//  - the space is [base, base+size), handed out in multiples of `granule`
//    (the IOMMU page, 4 KiB by default);
//  - alloc(size, align, lo, hi) places the range inside [lo, hi): a 32-bit
//    HBA's control structures go below 4 GiB, everything else above, so the
//    scarce low space is not used up by data mappings;
//  - free ranges are kept as a sorted extent list, coalesced on free, allocated
//    first-fit from the lowest address (address-ordered first fit keeps
//    fragmentation low under churn: Wilson et al., "Dynamic Storage Allocation:
//    A Survey and Critical Review", 1995);
//  - alloc_at(addr, size) takes exactly [addr, addr+size) for a device that
//    DMAs to a fixed address, and reserve() keeps a range out of alloc() for
//    good (a reservation is a range taken and never freed; free() ends it);
//  - the extent table is allocated once in init(); alloc/free never allocate.
//    When churn fragments the space into more extents than the table holds,
//    alloc or free reports no_space instead of corrupting the list.
//
// alloc and free are O(extents) (a binary search plus a memmove); mapping is a
// setup or slow-path operation, never per I/O descriptor. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/detail.hpp"
#include "dkq/dma/region.hpp"

namespace dkq {

class iova_allocator {
 public:
  static constexpr std::uint64_t no_limit = std::numeric_limits<std::uint64_t>::max();

  iova_allocator() noexcept = default;
  iova_allocator(const iova_allocator&) = delete;
  iova_allocator& operator=(const iova_allocator&) = delete;

  // Manage [base, base+size). base and size are multiples of `granule` (a
  // power of two); `max_extents` bounds the free-extent table (fragmentation
  // headroom).
  status init(dev_addr base, std::uint64_t size, std::uint64_t granule = 4096,
              std::uint32_t max_extents = 1024) noexcept {
    n_ = 0;
    if (!is_pow2(granule)) return {errc::invalid_argument, "IOVA granule is not a power of two", granule};
    if (size == 0) return {errc::invalid_argument, "IOVA space is empty"};
    if (!is_aligned(base.value(), granule) || !is_aligned(size, granule))
      return {errc::invalid_argument, "IOVA space not granule-aligned", base.value()};
    std::uint64_t end = 0;
    // The exclusive end must be representable: extent ends are compared as base+len.
    if (!add_checked(base.value(), size, end))
      return {errc::out_of_range, "IOVA space reaches the end of the 64-bit address space", base.value()};
    if (max_extents == 0) return {errc::invalid_argument, "IOVA extent table of size zero"};
    DKQ_TRY(ext_.allocate(max_extents));
    granule_ = granule;
    base_ = base.value();
    size_ = size;
    ext_[0] = extent{base_, size_};
    n_ = 1;
    free_bytes_ = size_;
    return ok_status;
  }

  // Allocate `size` bytes (rounded up to the granule) at a multiple of `align`
  // (a power of two; at least the granule), entirely inside [lo, hi).
  result<dev_addr> alloc(std::uint64_t size, std::uint64_t align = 0, std::uint64_t lo = 0,
                         std::uint64_t hi = no_limit) noexcept {
    if (ext_.data() == nullptr) return status{errc::not_initialized, "IOVA allocator used before init"};
    if (size == 0) return status{errc::invalid_argument, "IOVA allocation of zero bytes"};
    if (align == 0) align = granule_;
    if (!is_pow2(align)) return status{errc::invalid_argument, "IOVA alignment is not a power of two", align};
    if (align < granule_) align = granule_;
    if (!align_up_checked(size, granule_, size))
      return status{errc::invalid_argument, "IOVA allocation size overflows", size};
    for (std::uint32_t i = 0; i < n_; ++i) {
      const extent e = ext_[i];
      std::uint64_t start = e.start > lo ? e.start : lo;
      if (!align_up_checked(start, align, start)) break;
      std::uint64_t end = 0;  // exclusive
      if (!add_checked(start, size, end)) break;
      const std::uint64_t e_end = e.start + e.len;
      if (end > e_end || end > hi || start < e.start) {
        if (e.start >= hi) break;  // extents are sorted: nothing further fits below hi
        continue;
      }
      DKQ_TRY(carve(i, start, end));
      return dev_addr{start};
    }
    return status{errc::no_space, "no free IOVA range of that size and alignment in the window", size};
  }

  // Take exactly [addr, addr+size) (size rounded up to the granule): for a
  // device that DMAs to an address fixed in advance. Refused, changing
  // nothing: an unaligned address or zero size (invalid_argument), a range
  // outside the managed space (out_of_range), a range not entirely free
  // (busy: it overlaps an allocation or a reservation).
  result<dev_addr> alloc_at(dev_addr addr, std::uint64_t size) noexcept {
    if (ext_.data() == nullptr) return status{errc::not_initialized, "IOVA allocator used before init"};
    if (size == 0) return status{errc::invalid_argument, "IOVA allocation of zero bytes"};
    if (!align_up_checked(size, granule_, size))
      return status{errc::invalid_argument, "IOVA allocation size overflows", size};
    const std::uint64_t start = addr.value();
    if (!is_aligned(start, granule_))
      return status{errc::invalid_argument, "fixed IOVA is not granule-aligned", start};
    if (start < base_ || start - base_ > size_ || size > size_ - (start - base_))
      return status{errc::out_of_range, "fixed IOVA range outside the managed space", start};
    const std::uint64_t end = start + size;
    // The only extent that can hold it is the last one starting at or below it.
    const std::uint32_t next = lower_bound(start + 1);
    if (next == 0 || ext_[next - 1].start + ext_[next - 1].len < end)
      return status{errc::busy, "fixed IOVA range overlaps an allocation or reservation", start};
    DKQ_TRY(carve(next - 1, start, end));
    return dev_addr{start};
  }

  // Keeps [addr, addr+size) out of every later alloc(); alloc_at refuses it
  // too. The same checks as alloc_at; free(addr, size) ends the reservation.
  status reserve(dev_addr addr, std::uint64_t size) noexcept {
    auto r = alloc_at(addr, size);
    return r ? ok_status : r.error();
  }

  // Allocate below 2^bits (for a device that drives only `bits` address bits).
  result<dev_addr> alloc_below_bits(std::uint64_t size, unsigned bits, std::uint64_t align = 0) noexcept {
    const std::uint64_t hi = bits >= 64 ? no_limit : (std::uint64_t{1} << bits);
    return alloc(size, align, 0, hi);
  }

  // Return [addr, addr+size) (size rounded up to the granule, as in alloc).
  // Detects a range outside the space and a range that is already free, in
  // whole or in part (a double free).
  status free(dev_addr addr, std::uint64_t size) noexcept {
    if (ext_.data() == nullptr) return {errc::not_initialized, "IOVA allocator used before init"};
    if (size == 0) return {errc::invalid_argument, "IOVA free of zero bytes"};
    if (!align_up_checked(size, granule_, size))
      return {errc::invalid_argument, "IOVA free size overflows", size};
    const std::uint64_t start = addr.value();
    if (!is_aligned(start, granule_)) return {errc::invalid_argument, "IOVA free of an unaligned address", start};
    if (start < base_ || start - base_ > size_ || size > size_ - (start - base_))
      return {errc::out_of_range, "IOVA free outside the managed space", start};
    const std::uint64_t end = start + size;
    // The freed range goes between the extents before and after it; it must
    // overlap neither.
    std::uint32_t pos = lower_bound(start);
    if (pos < n_ && ext_[pos].start < end)
      return {errc::invalid_argument, "IOVA free of a range that is already free", start};
    if (pos > 0 && ext_[pos - 1].start + ext_[pos - 1].len > start)
      return {errc::invalid_argument, "IOVA free of a range that is already free", start};
    const bool join_prev = pos > 0 && ext_[pos - 1].start + ext_[pos - 1].len == start;
    const bool join_next = pos < n_ && ext_[pos].start == end;
    if (join_prev && join_next) {
      ext_[pos - 1].len += size + ext_[pos].len;
      erase_at(pos);
    } else if (join_prev) {
      ext_[pos - 1].len += size;
    } else if (join_next) {
      ext_[pos].start = start;
      ext_[pos].len += size;
    } else {
      if (n_ == ext_.size())
        return {errc::no_space, "IOVA extent table full (space too fragmented)", n_};
      insert_at(pos, extent{start, size});
    }
    free_bytes_ += size;
    return ok_status;
  }

  std::uint64_t free_bytes() const noexcept { return free_bytes_; }
  std::uint64_t space_bytes() const noexcept { return size_; }
  std::uint64_t granule() const noexcept { return granule_; }
  // Number of free extents: 1 for an unfragmented space.
  std::uint32_t free_extents() const noexcept { return n_; }
  std::uint64_t largest_free() const noexcept {
    std::uint64_t m = 0;
    for (std::uint32_t i = 0; i < n_; ++i) m = ext_[i].len > m ? ext_[i].len : m;
    return m;
  }
  // Free extent i (sorted by address), for tests and diagnostics.
  dma_segment free_extent(std::uint32_t i) const noexcept {
    return i < n_ ? dma_segment{dev_addr{ext_[i].start}, ext_[i].len} : dma_segment{};
  }

 private:
  struct extent {
    std::uint64_t start;
    std::uint64_t len;
  };

  // Carves [start, end), which lies inside extent i, out of it: leaves a
  // head, a tail, both or neither.
  status carve(std::uint32_t i, std::uint64_t start, std::uint64_t end) noexcept {
    const extent e = ext_[i];
    const std::uint64_t e_end = e.start + e.len;
    const bool head = start > e.start;
    const bool tail = end < e_end;
    if (head && tail) {
      if (n_ == ext_.size()) return {errc::no_space, "IOVA extent table full (space too fragmented)", n_};
      insert_at(i + 1, extent{end, e_end - end});
      ext_[i].len = start - e.start;
    } else if (head) {
      ext_[i].len = start - e.start;
    } else if (tail) {
      ext_[i] = extent{end, e_end - end};
    } else {
      erase_at(i);
    }
    free_bytes_ -= end - start;
    return ok_status;
  }

  // First extent with start >= a.
  std::uint32_t lower_bound(std::uint64_t a) const noexcept {
    std::uint32_t lo = 0, hi = n_;
    while (lo < hi) {
      const std::uint32_t mid = lo + (hi - lo) / 2;
      if (ext_[mid].start < a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  void insert_at(std::uint32_t pos, extent e) noexcept {
    std::memmove(ext_.data() + pos + 1, ext_.data() + pos, (n_ - pos) * sizeof(extent));
    ext_[pos] = e;
    ++n_;
  }
  void erase_at(std::uint32_t pos) noexcept {
    std::memmove(ext_.data() + pos, ext_.data() + pos + 1, (n_ - pos - 1) * sizeof(extent));
    --n_;
  }

  dma_detail::setup_array<extent> ext_;
  std::uint32_t n_ = 0;
  std::uint64_t granule_ = 4096;
  std::uint64_t base_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t free_bytes_ = 0;
};

}  // namespace dkq
