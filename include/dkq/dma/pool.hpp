// dkq/dma/pool.hpp - fixed-size DMA object pools carved from one DMA region.
//
// Per-command device memory (NVMe PRP list pages and SGL segments, MegaRAID
// MFI frames and chain frames, sense buffers) is taken and returned on every
// I/O. Mapping memory per I/O is slow (an IOMMU update, or a DriverKit RPC in
// CreateMapping), so a driver maps one region at setup and carves it here.
//
//  - alignment: every object's device address is a multiple of it (MFI frames
//    need 32 bytes because the low 5 bits of the IQP write carry the frame
//    count; PRP lists need 8; a page-sized list wants a page).
//  - boundary: no object crosses a multiple of it. A PRP list must not cross a
//    memory page except through its chain entry (NVMe 1.4 4.3), and Linux's
//    dma_pool offers the same knob for the same reason.
//  - get()/put() are O(1) (a LIFO stack of indices, so the most recently used,
//    cache-warm object is reused first) and never allocate; all tables are
//    allocated in init().
//  - put() of an object the pool did not hand out, or a second put(), is a
//    clear error rather than a corrupted free list.
//
// Not thread-safe: one pool per queue (or per CPU), like the queue it feeds.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/bits.hpp"
#include "dkq/base/config.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/detail.hpp"
#include "dkq/dma/region.hpp"

namespace dkq {

class dma_pool {
 public:
  // One pool object: its memory and the index that returns it.
  struct object {
    dma_region mem{};
    std::uint32_t index = 0;
  };

  dma_pool() noexcept = default;
  dma_pool(const dma_pool&) = delete;
  dma_pool& operator=(const dma_pool&) = delete;

  // Carve `backing` into objects of `object_size` bytes. `alignment` and
  // `boundary` (0 = none) are powers of two and apply to device addresses;
  // `max_objects` caps the count (0 = as many as fit).
  status init(dma_region backing, std::size_t object_size, std::size_t alignment,
              std::size_t boundary = 0, std::uint32_t max_objects = 0) noexcept {
    count_ = 0;
    top_ = 0;
    if (!backing.valid()) return {errc::invalid_argument, "DMA pool backing region is empty"};
    if (object_size == 0) return {errc::invalid_argument, "DMA pool object size is zero"};
    if (!is_pow2(alignment))
      return {errc::invalid_argument, "DMA pool alignment is not a power of two", alignment};
    if (boundary != 0 && !is_pow2(boundary))
      return {errc::invalid_argument, "DMA pool boundary is not a power of two", boundary};
    if (boundary != 0 && object_size > boundary)
      return {errc::invalid_argument, "DMA pool object larger than its boundary", object_size};
    // The CPU writes entries through `cpu` while the device reads `device`; if
    // the two views are not congruent the CPU-side alignment the layout relies
    // on (8-byte PRP entries, 16-byte SGL descriptors) is not there.
    const std::uint64_t congruence = alignment < min_page_size ? alignment : min_page_size;
    const auto cpu_bits = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(backing.cpu));
    if (((cpu_bits - backing.device.value()) & (congruence - 1)) != 0)
      return {errc::invalid_argument, "DMA pool: CPU and device views of the backing are not congruent",
              alignment};

    // Lay out once to count, then again to fill the tables.
    const std::uint64_t n = layout(backing, object_size, alignment, boundary, max_objects, nullptr);
    if (n == 0) return {errc::invalid_argument, "DMA pool backing holds no object", backing.size};
    if (n > 0xFFFFFFFFull) return {errc::invalid_argument, "DMA pool holds more than 2^32-1 objects", n};
    DKQ_TRY(offset_.allocate(static_cast<std::size_t>(n)));
    DKQ_TRY(free_.allocate(static_cast<std::size_t>(n)));
    DKQ_TRY(taken_.allocate(static_cast<std::size_t>(n)));
    layout(backing, object_size, alignment, boundary, max_objects, offset_.data());
    backing_ = backing;
    object_size_ = object_size;
    count_ = static_cast<std::uint32_t>(n);
    // Stack order: index 0 on top, so a fresh pool hands out ascending addresses.
    for (std::uint32_t i = 0; i < count_; ++i) {
      free_[i] = count_ - 1 - i;
      taken_[i] = 0;
    }
    top_ = count_;
    return ok_status;
  }

  // Take an object; errc::empty when all are in use. O(1), no allocation.
  DKQ_ALWAYS_INLINE result<object> get() noexcept {
    if (DKQ_UNLIKELY(top_ == 0))
      return status{count_ == 0 ? errc::not_initialized : errc::empty,
                    count_ == 0 ? "DMA pool used before init" : "DMA pool exhausted", count_};
    const std::uint32_t idx = free_[--top_];
    taken_[idx] = 1;
    return object{at(idx), idx};
  }

  // Return an object. O(1). Rejects an index out of range, a handle whose
  // memory does not match the index, and a second put of the same object.
  DKQ_ALWAYS_INLINE status put(const object& o) noexcept {
    if (DKQ_UNLIKELY(o.index >= count_))
      return {errc::invalid_argument, "DMA pool put: index out of range", o.index};
    if (DKQ_UNLIKELY(o.mem.device != backing_.device_at(static_cast<std::size_t>(offset_[o.index]))))
      return {errc::invalid_argument, "DMA pool put: object memory does not match its index", o.index};
    if (DKQ_UNLIKELY(taken_[o.index] == 0))
      return {errc::invalid_argument, "DMA pool put: object is not taken (double put?)", o.index};
    taken_[o.index] = 0;
    free_[top_++] = o.index;
    return ok_status;
  }

  // The memory of object `idx` (idx < capacity(); unchecked).
  dma_region at(std::uint32_t idx) const noexcept {
    const auto off = static_cast<std::size_t>(offset_[idx]);
    return dma_region{backing_.cpu_at(off), backing_.device_at(off), object_size_};
  }

  std::uint32_t capacity() const noexcept { return count_; }
  std::uint32_t available() const noexcept { return top_; }
  std::size_t object_size() const noexcept { return object_size_; }
  const dma_region& backing() const noexcept { return backing_; }

 private:
  static std::uint64_t layout(const dma_region& b, std::size_t size, std::size_t align,
                              std::size_t boundary, std::uint32_t max_objects,
                              std::uint64_t* out) noexcept {
    const std::uint64_t base = b.device.value();
    std::uint64_t n = 0;
    std::uint64_t off = 0;
    for (;;) {
      if (max_objects != 0 && n == max_objects) break;
      std::uint64_t addr = 0;
      if (!add_checked<std::uint64_t>(base, off, addr) || !align_up_checked<std::uint64_t>(addr, align, addr))
        break;
      if (boundary != 0 && (addr & ~std::uint64_t{boundary - 1}) !=
                               ((addr + size - 1) & ~std::uint64_t{boundary - 1})) {
        if (!align_up_checked<std::uint64_t>(addr, boundary, addr)) break;
      }
      off = addr - base;
      if (off > b.size || size > b.size - off) break;
      if (out != nullptr) out[n] = off;
      ++n;
      off += size;
    }
    return n;
  }

  dma_region backing_{};
  std::size_t object_size_ = 0;
  std::uint32_t count_ = 0;
  std::uint32_t top_ = 0;
  dma_detail::setup_array<std::uint64_t> offset_;
  dma_detail::setup_array<std::uint32_t> free_;
  dma_detail::setup_array<std::uint8_t> taken_;
};

}  // namespace dkq
