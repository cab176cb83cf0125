// examples/scsi/driver/block_translation.hpp - block-layer requests (read,
// write with or without FUA, flush, discard, write zeroes) to MegaRAID
// requests on a logical drive. Portable: no Linux or DriverKit header; used
// by `dkq-scsi serve` (ublk) and unit-tested against the software MFI
// controller (tests/scsi_driver/block_translation_test.cpp).
//
//   read / write     LD READ / LD WRITE frames (the firmware builds the CDB);
//   write + FUA      an LD SCSI IO frame with WRITE (16), FUA bit set: the LD
//                    frames have no FUA flag, so a FUA write that went through
//                    them would be acknowledged from the cache;
//   flush            SYNCHRONIZE CACHE (10), IMMED clear, whole medium: it
//                    completes only when the drive says the cache is on media;
//   discard          UNMAP of one range (only where VPD B2 says LBPU and VPD
//                    B0 gives a maximum: `limits` has 0 otherwise);
//   write zeroes     WRITE SAME (16) of one zeroed block, UNMAP bit clear.
// Everything is checked before a request is built: zero or too many blocks,
// a range past the end, a buffer too small; a refusal is a status, nothing
// reaches the controller.
#pragma once

#include <cstdint>
#include <cstring>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/scsi/cdb.hpp"
#include "megaraid.hpp"

namespace dkq::examples::megaraid {

enum class block_kind : std::uint8_t { read, write, flush, discard, write_zeroes };

struct block_limits {
  std::uint32_t block_size = 0;
  std::uint64_t blocks = 0;            // capacity
  std::uint32_t max_transfer = 0;      // bytes per read/write command
  std::uint32_t max_unmap_blocks = 0;  // 0: no UNMAP
  std::uint32_t max_write_same_blocks = 0;  // 0: no WRITE SAME
};

// From READ CAPACITY, the controller's transfer limit and the VPD pages
// B0 (Block Limits) and B2 (Logical Block Provisioning) payloads (after the
// 4-byte header; empty spans when the drive has no such page).
inline result<block_limits> make_block_limits(std::uint32_t block_size, std::uint64_t blocks,
                                              std::uint32_t controller_max_transfer, std::span<const std::uint8_t> b0,
                                              std::span<const std::uint8_t> b2) noexcept {
  if (block_size < 512 || (block_size & (block_size - 1)) != 0)
    return status{errc::not_supported, "logical block size is not a power of two of at least 512", block_size};
  if (blocks == 0) return status{errc::protocol_error, "drive reports zero blocks"};
  if (controller_max_transfer < block_size)
    return status{errc::protocol_error, "controller transfer limit below one block", controller_max_transfer};
  block_limits l;
  l.block_size = block_size;
  l.blocks = blocks;
  l.max_transfer = controller_max_transfer - controller_max_transfer % block_size;
  // B0 payload offsets are the page's byte offsets less 4 (SBC-3 6.6.4).
  std::uint32_t max_unmap = 0, max_desc = 0;
  std::uint64_t max_ws = 0;
  if (b0.size() >= 24) {
    max_unmap = scsi::get_be32(&b0[16]);
    max_desc = scsi::get_be32(&b0[20]);
  }
  if (b0.size() >= 40) max_ws = scsi::get_be64(&b0[32]);
  // B2 byte 5 -> payload byte 1: LBPU (bit 7), LBPWS (bit 6).
  const bool lbpu = b2.size() >= 2 && (b2[1] & 0x80) != 0;
  if (lbpu && max_unmap != 0 && max_desc != 0) l.max_unmap_blocks = max_unmap == 0xffffffffu ? (1u << 22) : max_unmap;
  // WRITE SAME moves one block of data; bound it by what one command may cover.
  const std::uint64_t ws_cap = std::uint64_t{65536};
  l.max_write_same_blocks = static_cast<std::uint32_t>(max_ws == 0 ? ws_cap : (max_ws < ws_cap ? max_ws : ws_cap));
  return l;
}

// Builds the request for one block request on logical drive `target`. `buf`
// is the request's data buffer (DMA-mapped, at least one block; read/write
// move `blocks` blocks through it); discard and write zeroes write their
// parameter list / zero block into it. The caller sets done/user.
inline result<request> build_block_request(std::uint8_t target, const block_limits& l, block_kind k,
                                           std::uint64_t lba, std::uint64_t blocks, bool fua,
                                           const dma_region& buf) noexcept {
  request r;
  r.target = target;
  r.lun = 0;
  if (k == block_kind::flush) {
    r.kind = op::ld_scsi;
    auto n = scsi::synchronize_cache(r.cdb, false, 0, 0);
    if (!n) return n.error();
    r.cdb_len = *n;
    r.dir = dma_direction::from_device;  // no data: the core adds its dummy SGE
    return r;
  }
  if (l.block_size == 0) return status{errc::not_initialized, "block limits not set"};
  if (blocks == 0) return status{errc::invalid_argument, "request of 0 blocks"};
  if (lba >= l.blocks || l.blocks - lba < blocks)
    return status{errc::out_of_range, "request beyond the end of the logical drive", lba};
  switch (k) {
    case block_kind::read:
    case block_kind::write: {
      const std::uint64_t bytes = blocks * l.block_size;
      if (bytes > l.max_transfer) return status{errc::invalid_argument, "request above the transfer limit", bytes};
      if (bytes > buf.size) return status{errc::invalid_argument, "request larger than its buffer", bytes};
      auto data = buf.slice(0, bytes);
      if (!data) return data.error();
      r.data = *data;
      r.dir = k == block_kind::read ? dma_direction::from_device : dma_direction::to_device;
      if (k == block_kind::write && fua) {
        r.kind = op::ld_scsi;
        auto n = scsi::read_write(r.cdb, true, lba, static_cast<std::uint32_t>(blocks), true, true);
        if (!n) return n.error();
        r.cdb_len = *n;
      } else {
        r.kind = k == block_kind::read ? op::ld_read : op::ld_write;
        r.lba = lba;
        r.blocks = static_cast<std::uint32_t>(blocks);
      }
      return r;
    }
    case block_kind::discard: {
      if (l.max_unmap_blocks == 0) return status{errc::not_supported, "logical drive does not support UNMAP"};
      if (blocks > l.max_unmap_blocks) return status{errc::invalid_argument, "discard above the UNMAP limit", blocks};
      if (buf.size < scsi::unmap_one_range_bytes) return status{errc::invalid_argument, "buffer too small for UNMAP"};
      r.kind = op::ld_scsi;
      auto n = scsi::unmap_one_range(r.cdb, buf.cpu_at<std::uint8_t>(), lba, static_cast<std::uint32_t>(blocks));
      if (!n) return n.error();
      r.cdb_len = *n;
      r.data = *buf.slice(0, scsi::unmap_one_range_bytes);
      r.dir = dma_direction::to_device;
      return r;
    }
    case block_kind::write_zeroes: {
      if (l.max_write_same_blocks == 0) return status{errc::not_supported, "logical drive does not support WRITE SAME"};
      if (blocks > l.max_write_same_blocks)
        return status{errc::invalid_argument, "write zeroes above the WRITE SAME limit", blocks};
      if (buf.size < l.block_size) return status{errc::invalid_argument, "buffer smaller than one block"};
      std::memset(buf.cpu, 0, l.block_size);
      r.kind = op::ld_scsi;
      auto n = scsi::write_same_16(r.cdb, lba, static_cast<std::uint32_t>(blocks), false);
      if (!n) return n.error();
      r.cdb_len = *n;
      r.data = *buf.slice(0, l.block_size);
      r.dir = dma_direction::to_device;
      return r;
    }
    case block_kind::flush: break;
  }
  return status{errc::invalid_argument, "unknown block request kind"};
}

}  // namespace dkq::examples::megaraid
