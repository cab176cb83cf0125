// examples/nvme/driver/identify.hpp - Identify Controller / Namespace data as
// plain values, parsed from the 4 KiB pages with bounds the spec gives.
//
// The device can lie (docs/device-faults.md): a namespace whose FLBAS names a format
// beyond NLBAF, an LBA data size below 512 bytes or above what one memory
// page list can carry, a size of zero. Such a namespace is reported with
// usable = false and a reason, never used for I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/nvme/spec.hpp"

namespace dkq::nvme_driver {

namespace detail {
inline std::uint16_t get16(const std::uint8_t* p, std::size_t off) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
inline std::uint32_t get32(const std::uint8_t* p, std::size_t off) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
inline std::uint64_t get64(const std::uint8_t* p, std::size_t off) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
// ASCII field, space padded on the wire; NUL-terminated and trimmed here.
template <std::size_t N>
inline void get_text(char (&out)[N], const std::uint8_t* p, std::size_t off, std::size_t len) noexcept {
  std::size_t n = len < N - 1 ? len : N - 1;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[off + i]);
    if (c == '\0') {  // NUL-padded fields (SUBNQN) end at the first NUL
      n = i;
      break;
    }
    out[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0')) --n;
  out[n] = '\0';
}
}  // namespace detail

struct controller_info {
  std::uint16_t vid = 0, ssvid = 0;
  char sn[21]{}, mn[41]{}, fr[9]{};
  std::uint8_t mdts = 0;
  std::uint16_t cntlid = 0;
  std::uint32_t ver = 0;
  std::uint16_t oacs = 0;
  std::uint8_t acl = 0, aerl = 0;
  std::uint8_t sqes = 0, cqes = 0;
  std::uint32_t nn = 0;
  std::uint16_t oncs = 0;
  std::uint8_t vwc = 0;
  std::uint32_t sgls = 0;
  char subnqn[65]{};

  bool dbbuf_supported() const noexcept { return (oacs & nvme::id_ctrl::oacs_dbbuf) != 0; }
  bool write_zeroes_supported() const noexcept { return (oncs & nvme::id_ctrl::oncs_write_zeroes) != 0; }
  bool dsm_supported() const noexcept { return (oncs & nvme::id_ctrl::oncs_dsm) != 0; }
  bool volatile_write_cache() const noexcept { return (vwc & 1) != 0; }

  static controller_info parse(const std::uint8_t* p) noexcept {
    namespace o = nvme::id_ctrl;
    controller_info c;
    c.vid = detail::get16(p, o::vid);
    c.ssvid = detail::get16(p, o::ssvid);
    detail::get_text(c.sn, p, o::sn, 20);
    detail::get_text(c.mn, p, o::mn, 40);
    detail::get_text(c.fr, p, o::fr, 8);
    c.mdts = p[o::mdts];
    c.cntlid = detail::get16(p, o::cntlid);
    c.ver = detail::get32(p, o::ver);
    c.oacs = detail::get16(p, o::oacs);
    c.acl = p[o::acl];
    c.aerl = p[o::aerl];
    c.sqes = p[o::sqes];
    c.cqes = p[o::cqes];
    c.nn = detail::get32(p, o::nn);
    c.oncs = detail::get16(p, o::oncs);
    c.vwc = p[o::vwc];
    c.sgls = detail::get32(p, o::sgls);
    detail::get_text(c.subnqn, p, o::subnqn, 64);
    return c;
  }
};

struct lba_format {
  std::uint16_t ms = 0;     // metadata bytes per block
  std::uint8_t lbads = 0;   // log2 of the data size
  std::uint8_t rp = 0;      // relative performance
};

struct namespace_info {
  std::uint32_t nsid = 0;
  std::uint64_t nsze = 0, ncap = 0, nuse = 0;
  std::uint8_t nlbaf = 0;   // 0-based count
  std::uint8_t format = 0;  // FLBAS index in use
  lba_format formats[64]{};
  std::uint32_t block_size = 0;
  std::uint16_t metadata = 0;
  bool usable = false;
  const char* why_not = "not identified";

  std::uint64_t bytes() const noexcept { return nsze * block_size; }

  static namespace_info parse(std::uint32_t nsid, const std::uint8_t* p) noexcept {
    namespace o = nvme::id_ns;
    namespace_info n;
    n.nsid = nsid;
    n.nsze = detail::get64(p, o::nsze);
    n.ncap = detail::get64(p, o::ncap);
    n.nuse = detail::get64(p, o::nuse);
    n.nlbaf = p[o::nlbaf];
    const std::uint8_t flbas = p[o::flbas];
    // FLBAS bits 3:0 plus (NVMe 2.0, for more than 16 formats) bits 6:5 as 5:4.
    n.format = static_cast<std::uint8_t>((flbas & 0xf) | ((flbas >> 1) & 0x30));
    const unsigned count = n.nlbaf < 64 ? n.nlbaf + 1u : 64u;
    for (unsigned i = 0; i < count; ++i) {
      const std::uint32_t f = detail::get32(p, o::lbaf0 + 4 * i);
      n.formats[i] = lba_format{static_cast<std::uint16_t>(f & 0xffff), static_cast<std::uint8_t>((f >> 16) & 0xff),
                                static_cast<std::uint8_t>((f >> 24) & 0x3)};
    }
    if (n.nsze == 0) {
      n.why_not = "namespace size is 0 (inactive or not formatted)";
      return n;
    }
    if (n.format > n.nlbaf) {
      n.why_not = "FLBAS selects an LBA format beyond NLBAF";
      return n;
    }
    const lba_format& f = n.formats[n.format];
    if (f.lbads < 9 || f.lbads > 16) {
      n.why_not = "LBA data size outside 512 B .. 64 KiB";
      return n;
    }
    n.block_size = 1u << f.lbads;
    n.metadata = f.ms;
    if (f.ms != 0) {
      // Metadata needs its own buffer (MPTR) or extended LBAs; this example
      // driver moves data only, so it refuses rather than corrupting.
      n.why_not = "namespace is formatted with metadata; this driver does not handle it";
      return n;
    }
    n.usable = true;
    n.why_not = "";
    return n;
  }
};

}  // namespace dkq::nvme_driver
