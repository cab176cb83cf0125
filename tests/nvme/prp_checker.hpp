// Independent PRP checker: walks PRP1/PRP2 and the PRP lists the way a
// controller does (NVMe 1.4 4.3), reading list memory back through the fake
// device memory, and re-derives the byte ranges the command describes.
// Shares no code with nvme/prp.hpp.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dma/sg_testutil.hpp"

namespace dkq::test {

struct prp_walk_result {
  std::string error;                // empty when every rule holds
  std::vector<dma_segment> ranges;  // data ranges, in transfer order
  std::uint32_t list_pages = 0;     // list pages visited
};

// Rules checked:
//  P1 PRP1 bits 1:0 are zero (dword aligned)
//  P2 PRP2 is zero when the data ends in PRP1's page
//  P3 PRP2 as a data pointer (data ends in the second page) has page offset 0
//  P4 PRP2 as a list pointer is qword aligned
//  P5 every PRP list entry is readable (list memory is mapped)
//  P6 every data entry after PRP1 has page offset 0
//  P7 the last qword of a list page is a chain pointer iff more than one entry
//     remains (no chain when the list ends exactly at the page end)
//  P8 a chain pointer is qword aligned and does not revisit a list page (no loop)
//  P9 the ranges cover exactly `expected` (checked by the caller via compare)
inline prp_walk_result walk_prp(const fake_dma_memory& mem, std::uint64_t page_size, std::uint64_t prp1,
                                std::uint64_t prp2, std::uint64_t length) {
  prp_walk_result r;
  const std::uint64_t mask = page_size - 1;
  if ((prp1 & 3) != 0) {
    r.error = "P1 PRP1 not dword aligned";
    return r;
  }
  const std::uint64_t first = std::min<std::uint64_t>(length, page_size - (prp1 & mask));
  r.ranges.push_back(dma_segment{dev_addr{prp1}, first});
  std::uint64_t rem = length - first;
  if (rem == 0) {
    if (prp2 != 0) r.error = "P2 PRP2 not zero although unused";
    return r;
  }
  if (rem <= page_size) {
    if ((prp2 & mask) != 0) r.error = "P3 PRP2 data pointer not page aligned";
    r.ranges.push_back(dma_segment{dev_addr{prp2}, rem});
    return r;
  }
  if ((prp2 & 7) != 0) {
    r.error = "P4 PRP list pointer not qword aligned";
    return r;
  }
  std::uint64_t entries = (rem + page_size - 1) / page_size;
  std::uint64_t ptr = prp2;
  std::vector<std::uint64_t> pages_seen{prp2 & ~mask};
  r.list_pages = 1;
  while (entries != 0) {
    const std::uint8_t* p = mem.translate(ptr, 8);
    if (p == nullptr) {
      r.error = "P5 PRP list entry at unmapped device address";
      return r;
    }
    std::uint64_t e = 0;
    std::memcpy(&e, p, 8);
    const bool last_in_page = ((ptr + 8) & mask) == 0;
    if (last_in_page && entries > 1) {
      if ((e & 7) != 0) {
        r.error = "P8 PRP chain pointer not qword aligned";
        return r;
      }
      for (std::uint64_t seen : pages_seen)
        if (seen == (e & ~mask)) {
          r.error = "P8 PRP chain revisits a list page";
          return r;
        }
      pages_seen.push_back(e & ~mask);
      ++r.list_pages;
      ptr = e;
      continue;
    }
    if ((e & mask) != 0) {
      r.error = "P6 PRP list data entry not page aligned";
      return r;
    }
    const std::uint64_t len = std::min(rem, page_size);
    r.ranges.push_back(dma_segment{dev_addr{e}, len});
    rem -= len;
    --entries;
    ptr += 8;
  }
  return r;
}

// Walk and compare with the expected data ranges (rule P9).
inline std::string check_prp(const fake_dma_memory& mem, std::uint64_t page_size, std::uint64_t prp1,
                             std::uint64_t prp2, const std::vector<dma_segment>& expected) {
  prp_walk_result w = walk_prp(mem, page_size, prp1, prp2, total_bytes(expected));
  if (!w.error.empty()) return w.error;
  if (normalize(w.ranges) != normalize(expected))
    return "P9 PRPs describe " + describe(normalize(w.ranges)) + " instead of " +
           describe(normalize(expected));
  return {};
}

}  // namespace dkq::test
