// Independent NVMe SGL checker: starts at SGL1 (the command's DPTR), follows
// Segment / Last Segment descriptors through the fake device memory the way a
// controller does (NVMe 1.4 4.4), and re-derives the data ranges.
// Shares no code with nvme/sgl.hpp (only reads raw bytes).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dma/sg_testutil.hpp"

namespace dkq::test {

struct raw_sgl_desc {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint8_t rsvd[3];
  std::uint8_t id;
};
static_assert(sizeof(raw_sgl_desc) == 16);

// Rules checked:
//  G1 SGL1 is a Data Block (type 0), Segment (2) or Last Segment (3) descriptor
//  G2 every descriptor has subtype 0 (Address) and zero reserved bytes
//  G3 a (Last) Segment descriptor points at qword-aligned, mapped memory and its
//     length is a nonzero multiple of 16
//  G4 only the last descriptor of a segment may be a Segment/Last Segment descriptor
//  G5 the segment a Last Segment descriptor points at holds no Segment/Last Segment descriptor
//  G6 a segment reached through a Segment descriptor ends with a pointer onwards
//  G7 only Data Block descriptors describe data (no bit bucket, keyed, transport)
//  G8 Data Blocks have nonzero length; with dword_aligned, address and length
//     have bits 1:0 clear (SGLS bits 1:0 = 10b)
//  G9 the walk terminates (bounded number of segments)
//  G10 the Data Blocks cover exactly `expected`, in order
inline std::string check_sgl(const fake_dma_memory& mem, const void* sgl1_bytes, bool dword_aligned,
                             const std::vector<dma_segment>& expected,
                             std::uint32_t* segments_visited = nullptr) {
  raw_sgl_desc d{};
  std::memcpy(&d, sgl1_bytes, 16);
  std::vector<dma_segment> ranges;
  auto data_block = [&](const raw_sgl_desc& x) -> std::string {
    if ((x.id & 0xF) != 0 || x.rsvd[0] || x.rsvd[1] || x.rsvd[2]) return "G2 subtype or reserved bytes set";
    if (x.len == 0) return "G8 zero-length Data Block";
    if (dword_aligned && ((x.addr & 3) != 0 || (x.len & 3) != 0)) return "G8 Data Block not dword aligned";
    ranges.push_back(dma_segment{dev_addr{x.addr}, x.len});
    return {};
  };
  const unsigned t1 = d.id >> 4;
  std::uint32_t visited = 0;
  if (t1 == 0) {
    if (std::string e = data_block(d); !e.empty()) return e;
  } else if (t1 == 2 || t1 == 3) {
    for (;;) {
      if (++visited > 1'000'000) return "G9 SGL walk does not terminate";
      if ((d.id & 0xF) != 0 || d.rsvd[0] || d.rsvd[1] || d.rsvd[2]) return "G2 pointer subtype/reserved set";
      if ((d.addr & 7) != 0) return "G3 SGL segment not qword aligned";
      if (d.len == 0 || d.len % 16 != 0) return "G3 segment length not a nonzero multiple of 16";
      const std::uint8_t* seg = mem.translate(d.addr, d.len);
      if (seg == nullptr) return "G3 SGL segment in unmapped memory";
      const bool is_last_segment = (d.id >> 4) == 3;
      const std::uint32_t n = d.len / 16;
      bool moved = false;
      for (std::uint32_t k = 0; k < n; ++k) {
        raw_sgl_desc x{};
        std::memcpy(&x, seg + 16 * k, 16);
        const unsigned t = x.id >> 4;
        if (t == 0) {
          if (std::string e = data_block(x); !e.empty()) return e;
        } else if (t == 2 || t == 3) {
          if (k + 1 != n) return "G4 Segment descriptor not last in its segment";
          if (is_last_segment) return "G5 last segment holds a Segment descriptor";
          d = x;
          moved = true;
        } else {
          return "G7 unexpected descriptor type " + std::to_string(t);
        }
      }
      if (is_last_segment) break;
      if (!moved) return "G6 segment reached through a Segment descriptor has no pointer onwards";
    }
  } else {
    return "G1 SGL1 type " + std::to_string(t1) + " is not Data Block/Segment/Last Segment";
  }
  if (segments_visited != nullptr) *segments_visited = visited;
  if (normalize(ranges) != normalize(expected))
    return "G10 SGL describes " + describe(normalize(ranges)) + " instead of " + describe(normalize(expected));
  return {};
}

}  // namespace dkq::test
