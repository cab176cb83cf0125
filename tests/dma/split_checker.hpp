// Independent checker for split_segments() output: re-derives, from the
// descriptors alone, every rule of dma_constraints and that the descriptors
// cover exactly the input bytes in order. Shares no code with the splitter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dkq/dma/constraints.hpp"
#include "dma/sg_testutil.hpp"

namespace dkq::test {

// Rules checked:
//  S1 every descriptor has nonzero length
//  S2 length <= max_segment_bytes
//  S3 address is a multiple of alignment
//  S4 length is a multiple of length_granularity
//  S5 no descriptor crosses a multiple of boundary
//  S6 the last byte of every descriptor is addressable (<= 2^bits - 1), no wrap
//  S7 descriptor count <= max_segments
//  S8 total bytes <= max_transfer
//  S9 the descriptors, in order, describe exactly the input byte stream
inline std::string check_split(const dma_constraints& c, const std::vector<dma_segment>& in,
                               const std::vector<dma_segment>& out) {
  const std::uint64_t limit =
      c.addressable_bits >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << c.addressable_bits) - 1;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::uint64_t a = out[i].addr.value(), l = out[i].len;
    const std::string at = " (descriptor " + std::to_string(i) + ")";
    if (l == 0) return "S1 zero-length descriptor" + at;
    if (l > c.max_segment_bytes) return "S2 descriptor longer than max_segment_bytes" + at;
    if (a % c.alignment != 0) return "S3 descriptor address not aligned" + at;
    if (l % c.length_granularity != 0) return "S4 descriptor length breaks granularity" + at;
    if (c.boundary != 0 && a / c.boundary != (a + (l - 1)) / c.boundary)
      return "S5 descriptor crosses the boundary" + at;
    if (a + (l - 1) < a || a + (l - 1) > limit) return "S6 descriptor beyond addressable bits" + at;
    total += l;
  }
  if (out.size() > c.max_segments) return "S7 more descriptors than max_segments";
  if (total > c.max_transfer) return "S8 transfer longer than max_transfer";
  if (normalize(out) != normalize(in))
    return "S9 descriptors do not cover the input bytes: in " + describe(in) + " out " + describe(out);
  return {};
}

}  // namespace dkq::test
