// dkq/scsi/data.hpp - parsing the data-in of INQUIRY and READ CAPACITY.
//
// Device data: every length is checked against what was received.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dkq/base/status.hpp"
#include "dkq/scsi/cdb.hpp"

namespace dkq::scsi {

// Standard INQUIRY data (SPC-4 6.6.2): the first 36 bytes.
struct inquiry_data {
  std::uint8_t qualifier = 0;    // peripheral qualifier: 0 = connected, 3 = no LU
  std::uint8_t device_type = 0;  // 0x00 = direct access block device
  bool removable = false;
  std::uint8_t version = 0;
  char vendor[9] = {};    // T10 vendor identification, trailing spaces removed
  char product[17] = {};
  char revision[5] = {};
};

namespace detail {
inline void copy_ascii(char* dst, const std::uint8_t* src, std::size_t n) noexcept {
  std::size_t end = n;
  while (end > 0 && (src[end - 1] == ' ' || src[end - 1] == 0)) --end;
  for (std::size_t i = 0; i < end; ++i) {
    const std::uint8_t c = src[i];
    dst[i] = (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';  // SPC: printable ASCII only
  }
  dst[end] = '\0';
}
}  // namespace detail

inline result<inquiry_data> parse_inquiry(const std::uint8_t* p, std::size_t len) noexcept {
  if (p == nullptr || len < 36)
    return status{errc::protocol_error, "standard INQUIRY data shorter than 36 bytes", len};
  inquiry_data d;
  d.qualifier = static_cast<std::uint8_t>(p[0] >> 5);
  d.device_type = p[0] & 0x1f;
  d.removable = (p[1] & 0x80) != 0;
  d.version = p[2];
  detail::copy_ascii(d.vendor, p + 8, 8);
  detail::copy_ascii(d.product, p + 16, 16);
  detail::copy_ascii(d.revision, p + 32, 4);
  return d;
}

// A VPD page (SPC-4 7.8): header checked, payload as a span inside `p`.
struct vpd_page {
  std::uint8_t page_code = 0;
  std::span<const std::uint8_t> payload;
};

inline result<vpd_page> parse_vpd(const std::uint8_t* p, std::size_t len,
                                  std::uint8_t expected_page) noexcept {
  if (p == nullptr || len < 4) return status{errc::protocol_error, "VPD page shorter than its header", len};
  if (p[1] != expected_page)
    return status{errc::protocol_error, "device returned a different VPD page", p[1]};
  const std::size_t plen = get_be16(p + 2);
  if (plen > len - 4)
    return status{errc::protocol_error, "VPD page length exceeds the data received", plen};
  return vpd_page{p[1], std::span<const std::uint8_t>(p + 4, plen)};
}

struct capacity {
  std::uint64_t blocks = 0;      // number of logical blocks (last LBA + 1)
  std::uint32_t block_size = 0;  // bytes per logical block
  bool needs_16 = false;         // READ CAPACITY (10) said "too big, ask (16)"
  bool protection = false;       // PROT_EN (16 only)
  std::uint8_t lbppbe = 0;       // log2 logical blocks per physical block (16 only)
};

namespace detail {
inline status check_block_size(std::uint32_t bs) noexcept {
  // A zero block size would divide by zero in every caller; sizes above 1 MiB
  // are not real disks.
  if (bs == 0 || bs > (1u << 20))
    return status{errc::protocol_error, "implausible logical block size", bs};
  return ok_status;
}
}  // namespace detail

// READ CAPACITY (10) data (SBC-3 5.15.2): last LBA, block length, 8 bytes.
inline result<capacity> parse_read_capacity_10(const std::uint8_t* p, std::size_t len) noexcept {
  if (p == nullptr || len < 8) return status{errc::protocol_error, "READ CAPACITY (10) data shorter than 8 bytes", len};
  capacity c;
  const std::uint32_t last = get_be32(p);
  c.block_size = get_be32(p + 4);
  DKQ_TRY(detail::check_block_size(c.block_size));
  if (last == 0xffffffffu) {
    c.needs_16 = true;  // SBC-3: capacity exceeds what (10) can report
    return c;
  }
  c.blocks = std::uint64_t{last} + 1;
  return c;
}

// READ CAPACITY (16) data (SBC-3 5.16.2): at least 12 bytes are meaningful,
// 32 are normally returned.
inline result<capacity> parse_read_capacity_16(const std::uint8_t* p, std::size_t len) noexcept {
  if (p == nullptr || len < 12) return status{errc::protocol_error, "READ CAPACITY (16) data shorter than 12 bytes", len};
  capacity c;
  const std::uint64_t last = get_be64(p);
  if (last == ~std::uint64_t{0}) return status{errc::protocol_error, "READ CAPACITY (16) last LBA is all ones"};
  c.blocks = last + 1;
  c.block_size = get_be32(p + 8);
  DKQ_TRY(detail::check_block_size(c.block_size));
  if (len >= 14) {
    c.protection = (p[12] & 1) != 0;
    c.lbppbe = p[13] & 0xf;
  }
  return c;
}

}  // namespace dkq::scsi
