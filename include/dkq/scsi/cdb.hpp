// dkq/scsi/cdb.hpp - SCSI command descriptor block builders (SPC-4, SBC-3).
//
// A CDB is built into a caller's 16-byte array; the builder returns its length
// (6, 10 or 16) or an error when an argument does not fit the chosen form
// (an LBA above 2^32 in a 10-byte READ, a transfer longer than 65535 blocks).
// Multi-byte fields are big-endian on the wire.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "dkq/base/status.hpp"

namespace dkq::scsi {

using cdb_bytes = std::array<std::uint8_t, 16>;

namespace op {
inline constexpr std::uint8_t test_unit_ready = 0x00;
inline constexpr std::uint8_t request_sense = 0x03;
inline constexpr std::uint8_t inquiry = 0x12;
inline constexpr std::uint8_t read_capacity_10 = 0x25;
inline constexpr std::uint8_t read_10 = 0x28;
inline constexpr std::uint8_t write_10 = 0x2a;
inline constexpr std::uint8_t synchronize_cache_10 = 0x35;
inline constexpr std::uint8_t unmap = 0x42;
inline constexpr std::uint8_t read_16 = 0x88;
inline constexpr std::uint8_t write_16 = 0x8a;
inline constexpr std::uint8_t synchronize_cache_16 = 0x91;
inline constexpr std::uint8_t write_same_16 = 0x93;
inline constexpr std::uint8_t service_action_in_16 = 0x9e;
inline constexpr std::uint8_t report_luns = 0xa0;
inline constexpr std::uint8_t sai_read_capacity_16 = 0x10;  // service action
}  // namespace op

namespace detail {
constexpr void put_be16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
constexpr void put_be32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
constexpr void put_be64(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
}  // namespace detail

constexpr std::uint16_t get_be16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
constexpr std::uint32_t get_be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
constexpr std::uint64_t get_be64(const std::uint8_t* p) noexcept {
  return (std::uint64_t{get_be32(p)} << 32) | get_be32(p + 4);
}

// TEST UNIT READY (SPC-4 6.47).
constexpr std::uint8_t test_unit_ready(cdb_bytes& c) noexcept {
  c = {};
  c[0] = op::test_unit_ready;
  return 6;
}

// REQUEST SENSE (SPC-4 6.39): allocation length in byte 4 (max 252 for the
// descriptor format, 255 in the CDB).
constexpr std::uint8_t request_sense(cdb_bytes& c, std::uint8_t alloc_len) noexcept {
  c = {};
  c[0] = op::request_sense;
  c[4] = alloc_len;
  return 6;
}

// INQUIRY (SPC-4 6.6): standard data, or a VPD page when evpd.
inline result<std::uint8_t> inquiry(cdb_bytes& c, bool evpd, std::uint8_t page,
                                    std::uint16_t alloc_len) noexcept {
  if (!evpd && page != 0)
    return status{errc::invalid_argument, "INQUIRY page code needs EVPD set", page};
  c = {};
  c[0] = op::inquiry;
  c[1] = evpd ? 1 : 0;
  c[2] = page;
  detail::put_be16(&c[3], alloc_len);
  return std::uint8_t{6};
}

// READ CAPACITY (10) (SBC-3 5.15) and (16) (SBC-3 5.16, SERVICE ACTION IN).
constexpr std::uint8_t read_capacity_10(cdb_bytes& c) noexcept {
  c = {};
  c[0] = op::read_capacity_10;
  return 10;
}
constexpr std::uint8_t read_capacity_16(cdb_bytes& c, std::uint32_t alloc_len = 32) noexcept {
  c = {};
  c[0] = op::service_action_in_16;
  c[1] = op::sai_read_capacity_16;
  detail::put_be32(&c[10], alloc_len);
  return 16;
}

// READ/WRITE (10) and (16) (SBC-3 5.11, 5.13, 5.35, 5.37). `use16` picks the
// 16-byte form; the 10-byte form is refused when LBA or length do not fit.
inline result<std::uint8_t> read_write(cdb_bytes& c, bool write, std::uint64_t lba,
                                       std::uint32_t blocks, bool use16, bool fua = false) noexcept {
  if (blocks == 0)
    return status{errc::invalid_argument, "a transfer length of 0 moves no data (and means 256 in 6-byte CDBs)"};
  if (lba + blocks < lba) return status{errc::out_of_range, "LBA range wraps", lba};
  c = {};
  if (!use16) {
    if (lba + blocks - 1 > 0xffffffffull)
      return status{errc::out_of_range, "LBA beyond 2^32 needs READ/WRITE (16)", lba};
    if (blocks > 0xffff)
      return status{errc::invalid_argument, "READ/WRITE (10) moves at most 65535 blocks", blocks};
    c[0] = write ? op::write_10 : op::read_10;
    c[1] = fua ? 0x08 : 0;
    detail::put_be32(&c[2], static_cast<std::uint32_t>(lba));
    detail::put_be16(&c[7], static_cast<std::uint16_t>(blocks));
    return std::uint8_t{10};
  }
  c[0] = write ? op::write_16 : op::read_16;
  c[1] = fua ? 0x08 : 0;
  detail::put_be64(&c[2], lba);
  detail::put_be32(&c[10], blocks);
  return std::uint8_t{16};
}

// SYNCHRONIZE CACHE (10)/(16) (SBC-3 5.22, 5.23). IMMED is never set: the
// command must complete only when the device has made the data durable, which
// is the whole point of sending it (a flush acknowledged locally loses data:
// docs/porting-a-kext.md, "Writes lost after fsync"). blocks = 0 means "from lba to the end of the medium".
inline result<std::uint8_t> synchronize_cache(cdb_bytes& c, bool use16, std::uint64_t lba = 0,
                                              std::uint32_t blocks = 0) noexcept {
  c = {};
  if (!use16) {
    if (lba > 0xffffffffull)
      return status{errc::out_of_range, "LBA beyond 2^32 needs SYNCHRONIZE CACHE (16)", lba};
    if (blocks > 0xffff)
      return status{errc::invalid_argument, "SYNCHRONIZE CACHE (10) covers at most 65535 blocks", blocks};
    c[0] = op::synchronize_cache_10;
    detail::put_be32(&c[2], static_cast<std::uint32_t>(lba));
    detail::put_be16(&c[7], static_cast<std::uint16_t>(blocks));
    return std::uint8_t{10};
  }
  c[0] = op::synchronize_cache_16;
  detail::put_be64(&c[2], lba);
  detail::put_be32(&c[10], blocks);
  return std::uint8_t{16};
}

// UNMAP (SBC-3 5.28) of one LBA range: the CDB and its 24-byte parameter
// list (8-byte header, one 16-byte block descriptor), written into `params`.
inline constexpr std::size_t unmap_one_range_bytes = 24;
inline result<std::uint8_t> unmap_one_range(cdb_bytes& c, std::uint8_t* params, std::uint64_t lba,
                                             std::uint32_t blocks) noexcept {
  if (blocks == 0) return status{errc::invalid_argument, "UNMAP of 0 blocks"};
  if (lba + blocks < lba) return status{errc::out_of_range, "LBA range wraps", lba};
  c = {};
  c[0] = op::unmap;
  detail::put_be16(&c[7], static_cast<std::uint16_t>(unmap_one_range_bytes));
  for (std::size_t i = 0; i < unmap_one_range_bytes; ++i) params[i] = 0;
  detail::put_be16(&params[0], static_cast<std::uint16_t>(unmap_one_range_bytes - 2));  // UNMAP DATA LENGTH
  detail::put_be16(&params[2], 16);                                                      // BLOCK DESCRIPTOR DATA LENGTH
  detail::put_be64(&params[8], lba);
  detail::put_be32(&params[16], blocks);
  return std::uint8_t{10};
}

// WRITE SAME (16) (SBC-3 5.45): the one block of data sent with it is
// written to every block of the range. unmap: the target may deallocate
// instead (UNMAP bit); never set by callers that must keep blocks allocated.
inline result<std::uint8_t> write_same_16(cdb_bytes& c, std::uint64_t lba, std::uint32_t blocks,
                                          bool unmap = false) noexcept {
  if (blocks == 0) return status{errc::invalid_argument, "WRITE SAME of 0 blocks (means to the end of the medium)"};
  if (lba + blocks < lba) return status{errc::out_of_range, "LBA range wraps", lba};
  c = {};
  c[0] = op::write_same_16;
  c[1] = unmap ? 0x08 : 0;
  detail::put_be64(&c[2], lba);
  detail::put_be32(&c[10], blocks);
  return std::uint8_t{16};
}

// SCSI status byte (SAM-5 5.3.1).
namespace scsi_status {
inline constexpr std::uint8_t good = 0x00;
inline constexpr std::uint8_t check_condition = 0x02;
inline constexpr std::uint8_t condition_met = 0x04;
inline constexpr std::uint8_t busy = 0x08;
inline constexpr std::uint8_t reservation_conflict = 0x18;
inline constexpr std::uint8_t task_set_full = 0x28;
inline constexpr std::uint8_t aca_active = 0x30;
inline constexpr std::uint8_t task_aborted = 0x40;
}  // namespace scsi_status

constexpr const char* status_name(std::uint8_t s) noexcept {
  switch (s) {
    case scsi_status::good: return "GOOD";
    case scsi_status::check_condition: return "CHECK CONDITION";
    case scsi_status::condition_met: return "CONDITION MET";
    case scsi_status::busy: return "BUSY";
    case scsi_status::reservation_conflict: return "RESERVATION CONFLICT";
    case scsi_status::task_set_full: return "TASK SET FULL";
    case scsi_status::aca_active: return "ACA ACTIVE";
    case scsi_status::task_aborted: return "TASK ABORTED";
    default: return "reserved SCSI status";
  }
}

}  // namespace dkq::scsi
