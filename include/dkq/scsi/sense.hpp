// dkq/scsi/sense.hpp - sense data decoding (SPC-4 4.5), fixed and descriptor
// formats, to a structure and to readable text.
//
// Sense bytes come from the device (auto-sense in a MegaRAID frame, or REQUEST
// SENSE data), so every length is checked against the buffer actually
// received: a short or inconsistent buffer is an error, never an over-read.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/status.hpp"
#include "dkq/scsi/cdb.hpp"

namespace dkq::scsi {

struct sense_data {
  bool descriptor_format = false;
  bool deferred = false;         // response code 0x71 / 0x73: an earlier command's error
  std::uint8_t key = 0;          // sense key (4 bits)
  std::uint8_t asc = 0;          // additional sense code
  std::uint8_t ascq = 0;         // additional sense code qualifier
  bool information_valid = false;
  std::uint64_t information = 0; // e.g. the failing LBA
};

namespace sense_key {
inline constexpr std::uint8_t no_sense = 0x0;
inline constexpr std::uint8_t recovered_error = 0x1;
inline constexpr std::uint8_t not_ready = 0x2;
inline constexpr std::uint8_t medium_error = 0x3;
inline constexpr std::uint8_t hardware_error = 0x4;
inline constexpr std::uint8_t illegal_request = 0x5;
inline constexpr std::uint8_t unit_attention = 0x6;
inline constexpr std::uint8_t data_protect = 0x7;
inline constexpr std::uint8_t aborted_command = 0xb;
inline constexpr std::uint8_t miscompare = 0xe;
}  // namespace sense_key

constexpr const char* sense_key_name(std::uint8_t key) noexcept {
  switch (key & 0xf) {
    case 0x0: return "NO SENSE";
    case 0x1: return "RECOVERED ERROR";
    case 0x2: return "NOT READY";
    case 0x3: return "MEDIUM ERROR";
    case 0x4: return "HARDWARE ERROR";
    case 0x5: return "ILLEGAL REQUEST";
    case 0x6: return "UNIT ATTENTION";
    case 0x7: return "DATA PROTECT";
    case 0x8: return "BLANK CHECK";
    case 0x9: return "VENDOR SPECIFIC";
    case 0xa: return "COPY ABORTED";
    case 0xb: return "ABORTED COMMAND";
    case 0xd: return "VOLUME OVERFLOW";
    case 0xe: return "MISCOMPARE";
    case 0xf: return "COMPLETED";
    default: return "RESERVED";
  }
}

// The additional sense codes a block driver meets (SPC-4 Annex D, Table D.1).
constexpr const char* asc_name(std::uint8_t asc, std::uint8_t ascq) noexcept {
  const unsigned code = (unsigned{asc} << 8) | ascq;
  switch (code) {
    case 0x0000: return "no additional sense information";
    case 0x0400: return "logical unit not ready, cause not reportable";
    case 0x0401: return "logical unit is in process of becoming ready";
    case 0x0402: return "logical unit not ready, initializing command required";
    case 0x0403: return "logical unit not ready, manual intervention required";
    case 0x0c00: return "write error";
    case 0x1100: return "unrecovered read error";
    case 0x1a00: return "parameter list length error";
    case 0x2000: return "invalid command operation code";
    case 0x2100: return "logical block address out of range";
    case 0x2400: return "invalid field in cdb";
    case 0x2500: return "logical unit not supported";
    case 0x2600: return "invalid field in parameter list";
    case 0x2700: return "write protected";
    case 0x2800: return "not ready to ready change, medium may have changed";
    case 0x2900: return "power on, reset, or bus device reset occurred";
    case 0x2a01: return "mode parameters changed";
    case 0x2a09: return "capacity data has changed";
    case 0x3a00: return "medium not present";
    case 0x3f0e: return "reported luns data has changed";
    case 0x4400: return "internal target failure";
    case 0x4700: return "scsi parity error";
    case 0x4e00: return "overlapped commands attempted";
    case 0x5d00: return "failure prediction threshold exceeded";
    default: break;
  }
  switch (asc) {  // families where the qualifier varies
    case 0x04: return "logical unit not ready";
    case 0x0c: return "write error";
    case 0x11: return "unrecovered read error";
    case 0x29: return "power on, reset, or bus device reset occurred";
    case 0x3a: return "medium not present";
    default: return "unknown additional sense code";
  }
}

// Parse sense bytes (len = bytes actually received).
inline result<sense_data> parse_sense(const std::uint8_t* p, std::size_t len) noexcept {
  if (p == nullptr || len == 0) return status{errc::protocol_error, "no sense data"};
  const std::uint8_t rc = p[0] & 0x7f;
  sense_data s;
  if (rc == 0x70 || rc == 0x71) {
    // Fixed format (SPC-4 4.5.3): key at byte 2, ASC/ASCQ at 12/13, needs 14 bytes
    // unless the additional length says the device sent fewer (then ASC is absent).
    if (len < 8) return status{errc::protocol_error, "fixed-format sense shorter than 8 bytes", len};
    s.deferred = rc == 0x71;
    s.key = p[2] & 0xf;
    s.information_valid = (p[0] & 0x80) != 0;
    s.information = get_be32(&p[3]);
    const std::size_t total = std::size_t{8} + p[7];
    const std::size_t have = total < len ? total : len;
    if (have >= 14) {
      s.asc = p[12];
      s.ascq = p[13];
    }
    return s;
  }
  if (rc == 0x72 || rc == 0x73) {
    // Descriptor format (SPC-4 4.5.2): key/ASC/ASCQ in bytes 1-3, descriptors after byte 8.
    if (len < 8) return status{errc::protocol_error, "descriptor-format sense shorter than 8 bytes", len};
    s.descriptor_format = true;
    s.deferred = rc == 0x73;
    s.key = p[1] & 0xf;
    s.asc = p[2];
    s.ascq = p[3];
    const std::size_t total = std::size_t{8} + p[7];
    const std::size_t end = total < len ? total : len;
    std::size_t off = 8;
    while (off + 2 <= end) {
      const std::uint8_t type = p[off];
      const std::size_t dlen = std::size_t{2} + p[off + 1];
      if (off + dlen > end)
        return status{errc::protocol_error, "sense descriptor runs past the sense data", off};
      if (type == 0x00 && dlen >= 12) {  // Information descriptor (SPC-4 4.5.2.2)
        s.information_valid = (p[off + 2] & 0x80) != 0;
        s.information = get_be64(&p[off + 4]);
      }
      off += dlen;
    }
    return s;
  }
  return status{errc::protocol_error, "unknown sense response code", p[0]};
}

// Sense data as a dkq status: the message names the sense key; callers that
// print use describe() for the whole text.
constexpr status to_status(const sense_data& s) noexcept {
  errc e = errc::device_error;
  switch (s.key) {
    case sense_key::no_sense:
    case sense_key::recovered_error: return ok_status;
    case sense_key::not_ready: e = errc::busy; break;
    case sense_key::medium_error: e = errc::io_error; break;
    case sense_key::illegal_request:
      e = (s.asc == 0x21) ? errc::out_of_range
          : (s.asc == 0x20) ? errc::not_supported : errc::invalid_argument;
      break;
    case sense_key::unit_attention: e = errc::busy; break;
    case sense_key::aborted_command: e = errc::timeout; break;
    default: break;
  }
  return status{e, sense_key_name(s.key), (std::uint64_t{s.key} << 16) | (unsigned{s.asc} << 8) | s.ascq};
}

// Readable one-line text: "ILLEGAL REQUEST: invalid command operation code
// (asc 0x20 ascq 0x00)". Writes at most n bytes including the terminator and
// returns the length it wanted (like snprintf, without needing stdio).
inline std::size_t describe(const sense_data& s, char* out, std::size_t n) noexcept {
  std::size_t pos = 0;
  auto put = [&](const char* str) {
    for (; *str; ++str, ++pos)
      if (pos + 1 < n) out[pos] = *str;
  };
  auto hex = [&](std::uint64_t v, int digits) {
    static constexpr char d[] = "0123456789abcdef";
    char b[17] = {};
    for (int i = digits - 1; i >= 0; --i, v >>= 4) b[i] = d[v & 0xf];
    put("0x");
    put(b);
  };
  if (s.deferred) put("deferred ");
  put(sense_key_name(s.key));
  put(": ");
  put(asc_name(s.asc, s.ascq));
  put(" (asc ");
  hex(s.asc, 2);
  put(" ascq ");
  hex(s.ascq, 2);
  put(")");
  if (s.information_valid) {
    put(" information ");
    hex(s.information, 16);
  }
  if (n != 0) out[pos < n ? pos : n - 1] = '\0';
  return pos;
}

}  // namespace dkq::scsi
