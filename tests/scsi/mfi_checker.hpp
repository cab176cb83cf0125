// Independent MegaRAID SGL checkers: read MFI SGL32/SGL64/IEEE elements and
// MPI 2.5 IEEE chains back from raw bytes, as QEMU's megasas_map_sgl and a
// Fusion firmware would, and re-derive the data ranges. No builder code used.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dma/sg_testutil.hpp"

namespace dkq::test {

// Rules checked (MFI):
//  M1 sge_count is 1..max_sge
//  M2 header flags select exactly the format written (SGL32 0x0, SGL64 0x2, IEEE 0x20)
//  M3 no element has address 0 or length 0 (QEMU megasas fails those)
//  M4 SGL32 elements end at or below 4 GiB
//  M5 IEEE element flag word is zero
//  M6 data_xferlen equals the sum of element lengths
//  M7 the elements cover exactly `expected`, in order
// fmt: 0 = SGL32, 1 = SGL64, 2 = IEEE.
inline std::string check_mfi_sgl(const std::uint8_t* sgl, int fmt, unsigned sge_count, std::uint16_t flags,
                                  std::uint32_t data_len, unsigned max_sge,
                                  const std::vector<dma_segment>& expected) {
  if (sge_count == 0 || sge_count > max_sge) return "M1 sge_count outside 1..max_sge";
  const std::uint16_t want = fmt == 0 ? 0x0 : fmt == 1 ? 0x2 : 0x20;
  if ((flags & 0x22) != want) return "M2 frame flags do not match the SGL format";
  const std::size_t esz = fmt == 0 ? 8 : fmt == 1 ? 12 : 16;
  std::vector<dma_segment> ranges;
  std::uint64_t sum = 0;
  for (unsigned i = 0; i < sge_count; ++i) {
    const std::uint8_t* e = sgl + i * esz;
    std::uint64_t a = 0;
    std::uint32_t l = 0;
    if (fmt == 0) {
      std::uint32_t a32 = 0;
      std::memcpy(&a32, e, 4);
      a = a32;
      std::memcpy(&l, e + 4, 4);
      if (a + l > (std::uint64_t{1} << 32)) return "M4 SGL32 element beyond 4 GiB";
    } else {
      std::memcpy(&a, e, 8);
      std::memcpy(&l, e + 8, 4);
      if (fmt == 2) {
        std::uint32_t f = 0;
        std::memcpy(&f, e + 12, 4);
        if (f != 0) return "M5 IEEE element flag not zero";
      }
    }
    if (a == 0 || l == 0) return "M3 element with address 0 or length 0";
    ranges.push_back(dma_segment{dev_addr{a}, l});
    sum += l;
  }
  if (sum != data_len) return "M6 data_xferlen differs from the element lengths";
  if (normalize(ranges) != normalize(expected))
    return "M7 MFI SGL describes " + describe(normalize(ranges)) + " instead of " + describe(normalize(expected));
  return {};
}

// Rules checked (MPI 2.5 IEEE with chains):
//  I1 simple elements have Flags 0x00, or 0x40 (END_OF_LIST) on the final element only,
//     and the final element carries END_OF_LIST when end_of_list is set
//  I2 simple elements have nonzero length and zero Reserved1/NextChainOffset
//  I3 a chain element (Flags bit 7) is the last element read from its buffer, its
//     Address is qword aligned and mapped, its Length a nonzero multiple of 16
//  I4 a chain element's NextChainOffset is the index of the chain element in the
//     buffer it points at (length/16 - 1), or 0 when that buffer does not chain
//  I5 a chain element's address-type bits are SYSTEM (0) or IOCPLBNTA (3) as configured
//  I6 the reported main_chain_index is where the frame's chain element is
//  I7 the walk terminates; the elements cover exactly `expected`, in order
inline std::string check_ieee_sgl(const fake_dma_memory& mem, const std::uint8_t* main, unsigned main_slots,
                                  bool end_of_list, bool iocplbnta, int main_chain_index,
                                  const std::vector<dma_segment>& expected) {
  struct el {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t rsvd;
    std::uint8_t nco;
    std::uint8_t flags;
  };
  static_assert(sizeof(el) == 16);
  const std::uint64_t want_bytes = total_bytes(expected);
  std::vector<dma_segment> ranges;
  std::uint64_t got = 0;
  const std::uint8_t* buf = main;
  unsigned slots = main_slots;
  int expect_chain_at = -1;  // from the pointing chain's NextChainOffset, for chain buffers
  bool in_main = true;
  bool done = false;
  for (unsigned hops = 0; !done; ++hops) {
    if (hops > 100000) return "I7 chain walk does not terminate";
    for (unsigned k = 0; k < slots; ++k) {
      el e{};
      std::memcpy(&e, buf + 16 * k, 16);
      if (e.flags & 0x80) {
        if (in_main && static_cast<int>(k) != main_chain_index) return "I6 chain element not at main_chain_index";
        if (!in_main && expect_chain_at != static_cast<int>(k))
          return "I4 NextChainOffset does not point at the chain element";
        if ((e.flags & 0x3) != (iocplbnta ? 0x3 : 0x0) || (e.flags & 0x7C) != 0) return "I5 chain flags";
        if ((e.addr & 7) != 0 || e.len == 0 || e.len % 16 != 0) return "I3 chain address/length";
        const std::uint8_t* next = mem.translate(e.addr, e.len);
        if (next == nullptr) return "I3 chain buffer in unmapped memory";
        const unsigned n = e.len / 16;
        expect_chain_at = e.nco == 0 ? -1 : e.nco;
        if (e.nco != 0 && e.nco != n - 1) return "I4 NextChainOffset is not the last element of the buffer";
        buf = next;
        slots = n;
        in_main = false;
        goto next_buffer;
      }
      if (e.len == 0 || e.rsvd != 0 || e.nco != 0) return "I2 simple element length/reserved";
      if (e.flags != 0x00 && e.flags != 0x40) return "I1 simple element flags";
      ranges.push_back(dma_segment{dev_addr{e.addr}, e.len});
      got += e.len;
      const bool eol = e.flags == 0x40;
      const bool final_one = got >= want_bytes;
      if (eol && !end_of_list) return "I1 END_OF_LIST set although not configured";
      if (eol && !final_one) return "I1 END_OF_LIST before the final element";
      if (final_one && end_of_list && !eol) return "I1 final element lacks END_OF_LIST";
      if (final_one) {
        if (expect_chain_at >= 0 && !in_main) return "I4 NextChainOffset set but the buffer does not chain";
        if (in_main && main_chain_index >= 0) return "I6 main_chain_index reported but no chain used";
        done = true;
        break;
      }
    }
    if (!done) return "I7 SGL ends before the transfer does";
  next_buffer:;
  }
  if (normalize(ranges) != normalize(expected))
    return "I7 IEEE SGL describes " + describe(normalize(ranges)) + " instead of " + describe(normalize(expected));
  return {};
}

}  // namespace dkq::test
