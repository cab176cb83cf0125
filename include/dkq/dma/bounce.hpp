// dkq/dma/bounce.hpp - bounce buffers for data a device cannot address.
//
// A 32-bit HBA cannot reach a buffer above 4 GiB, so data beyond the
// addressable bits goes through bounce buffers (docs/dma.md). MegaRAID MFI and
// pre-Ventura Fusion parts are 32-bit for some or all DMA (Linux
// drivers/scsi/megaraid/megaraid_sas_base.c, megasas_set_dma_mask). The
// transfer is staged in chunks of memory the device can reach:
//
//   write (to_device):   copy host -> chunks in map(), before the command is
//                        posted, so the device never reads stale chunk memory;
//   read  (from_device): copy chunks -> host in complete(), after the
//                        completion is observed, so the host never sees data
//                        the device has not finished writing;
//   bidirectional:       both.
//
// Chunks come from a dma_pool (fixed-size objects carved at setup from memory
// that satisfies the constraints); map() takes as many as the length needs and
// returns one dma_segment per chunk, ready for split_segments() or a builder.
// Nothing allocates per I/O. Not thread-safe (one per queue, like the pool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "dkq/base/status.hpp"
#include "dkq/dma/constraints.hpp"
#include "dkq/dma/pool.hpp"
#include "dkq/dma/region.hpp"

namespace dkq {

class bounce_buffer {
 public:
  // One staged transfer. The chunk handles live in caller storage (one array
  // per command, sized at setup), passed again to complete().
  struct mapping {
    void* host = nullptr;
    std::size_t len = 0;
    dma_direction dir = dma_direction::to_device;
    std::uint32_t chunks = 0;
  };

  bounce_buffer() noexcept = default;
  bounce_buffer(const bounce_buffer&) = delete;
  bounce_buffer& operator=(const bounce_buffer&) = delete;

  // Use `pool`'s objects as bounce chunks. Checks once that the whole pool is
  // inside what the device can address (otherwise bouncing would not help).
  status init(dma_pool& pool, const dma_constraints& c) noexcept {
    pool_ = nullptr;
    DKQ_TRY(c.validate());
    if (pool.capacity() == 0) return {errc::not_initialized, "bounce pool is not initialised"};
    const dma_region& b = pool.backing();
    if (b.device.value() + (b.size - 1) > c.address_limit())
      return {errc::constraint, "bounce pool memory beyond the device's addressable bits",
              b.device.value()};
    // Every chunk must start where the device may start a segment (setup
    // time, so checking each one is fine).
    for (std::uint32_t i = 0; i < pool.capacity(); ++i)
      if (!is_aligned(pool.at(i).device.value(), c.alignment))
        return {errc::constraint, "bounce chunk not aligned to the device's alignment",
                pool.at(i).device.value()};
    pool_ = &pool;
    return ok_status;
  }

  // Chunks needed to stage `len` bytes.
  std::uint32_t chunks_for(std::size_t len) const noexcept {
    if (pool_ == nullptr) return 0;
    const std::size_t cs = pool_->object_size();
    return static_cast<std::uint32_t>(len / cs + (len % cs != 0 ? 1 : 0));
  }

  // Stage `len` bytes at `host`. Fills chunk_slots[0..n) and segs[0..n).
  // Errors: invalid_argument (null host, zero length), no_space (slot arrays
  // too small; detail = chunks needed), empty (pool exhausted; nothing kept).
  result<mapping> map(void* host, std::size_t len, dma_direction dir,
                      std::span<dma_pool::object> chunk_slots, std::span<dma_segment> segs) noexcept {
    if (pool_ == nullptr) return status{errc::not_initialized, "bounce buffer used before init"};
    if (host == nullptr) return status{errc::invalid_argument, "bounce of a null host buffer"};
    if (len == 0) return status{errc::invalid_argument, "bounce of zero bytes"};
    const std::uint32_t n = chunks_for(len);
    if (chunk_slots.size() < n || segs.size() < n)
      return status{errc::no_space, "bounce slot arrays smaller than the chunks needed", n};
    if (pool_->available() < n)
      return status{errc::empty, "bounce pool has too few free chunks", n};
    const std::size_t cs = pool_->object_size();
    auto* src = static_cast<std::uint8_t*>(host);
    for (std::uint32_t i = 0; i < n; ++i) {
      auto obj = pool_->get();
      if (!obj) {  // unreachable after the available() check; keep the pool whole anyway
        (void)release(chunk_slots.first(i));  // the get() error is the one to report
        return obj.error();
      }
      chunk_slots[i] = *obj;
      const std::size_t off = static_cast<std::size_t>(i) * cs;
      const std::size_t piece = len - off < cs ? len - off : cs;
      if (dir != dma_direction::from_device) std::memcpy(obj->mem.cpu, src + off, piece);
      segs[i] = dma_segment{obj->mem.device, piece};
    }
    return mapping{host, len, dir, n};
  }

  // Finish a staged transfer after its completion: copy device data back to
  // the host for reads, then return the chunks to the pool.
  status complete(const mapping& m, std::span<const dma_pool::object> chunk_slots) noexcept {
    if (pool_ == nullptr) return {errc::not_initialized, "bounce buffer used before init"};
    if (chunk_slots.size() < m.chunks)
      return {errc::invalid_argument, "bounce complete: fewer chunk handles than the mapping has",
              m.chunks};
    if (m.dir != dma_direction::to_device) {
      const std::size_t cs = pool_->object_size();
      auto* dst = static_cast<std::uint8_t*>(m.host);
      for (std::uint32_t i = 0; i < m.chunks; ++i) {
        const std::size_t off = static_cast<std::size_t>(i) * cs;
        const std::size_t piece = m.len - off < cs ? m.len - off : cs;
        std::memcpy(dst + off, chunk_slots[i].mem.cpu, piece);
      }
    }
    return release(chunk_slots.first(m.chunks));
  }

 private:
  status release(std::span<const dma_pool::object> objs) noexcept {
    status first = ok_status;
    for (const dma_pool::object& o : objs) {
      status s = pool_->put(o);
      if (!s && first.ok()) first = s;
    }
    return first;
  }

  dma_pool* pool_ = nullptr;
};

}  // namespace dkq
