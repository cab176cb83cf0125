// dkq/dma/constraints.hpp - device addressing constraints and the scatter-gather splitter.
//
// Every HBA and NVMe controller limits what one descriptor may describe: how
// long a segment may be, how many segments a command may carry, where a
// segment may start, which address bits the device drives, which boundary a
// segment must not cross (PCI's 4 GiB rule for 32-bit DMA engines, a 64 KiB
// window on some HBAs), and how long a whole transfer may be. DriverKit asks a
// SCSI dext for the same list (UserReportHBAConstraints: kIOMaximumSegmentCount*,
// kIOMaximumSegmentByteCount*, kIOMinimumSegmentAlignmentByteCountKey,
// kIOMaximumSegmentAddressableBitCountKey; Apple's documentation of
// IOUserSCSIParallelInterfaceController::UserReportHBAConstraints) and then hands the task one long segment (fBufferIOVMAddr) that the
// driver must split itself.
//
// split_segments() turns a list of device ranges (or that one long segment)
// into descriptors that obey every constraint, or says exactly which one cannot
// be met: errc::constraint with a message naming it and detail() holding the
// offending value (address, length or needed count). It writes into caller
// memory and never allocates, so it can run per I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq {

struct dma_constraints {
  // Longest single descriptor, in bytes.
  std::uint64_t max_segment_bytes = std::numeric_limits<std::uint64_t>::max();
  // Most descriptors one command may carry.
  std::uint32_t max_segments = std::numeric_limits<std::uint32_t>::max();
  // Every descriptor's address is a multiple of this (power of two). DriverKit's
  // kIOMinimumSegmentAlignmentByteCountKey; 4 for NVMe data (dword, PRP entry bits 1:0).
  std::uint64_t alignment = 1;
  // Every descriptor's length is a multiple of this (power of two): NVMe SGLs with
  // SGLS bits 1:0 = 10b need dword granularity as well as dword alignment.
  std::uint64_t length_granularity = 1;
  // No descriptor crosses a multiple of this (power of two; 0 = no boundary).
  std::uint64_t boundary = 0;
  // The device drives address bits [0, addressable_bits); 32 for a 32-bit HBA.
  unsigned addressable_bits = 64;
  // Longest whole transfer, in bytes (NVMe MDTS, an HBA's max I/O size).
  std::uint64_t max_transfer = std::numeric_limits<std::uint64_t>::max();

  // Highest device address the device can reach.
  constexpr std::uint64_t address_limit() const noexcept {
    return addressable_bits >= 64 ? std::numeric_limits<std::uint64_t>::max()
                                  : (std::uint64_t{1} << addressable_bits) - 1;
  }

  // A constraint set that cannot describe any byte is a setup error, reported
  // once here rather than as a confusing failure per I/O.
  constexpr status validate() const noexcept {
    if (max_segment_bytes == 0) return {errc::invalid_argument, "max_segment_bytes is zero"};
    if (max_segments == 0) return {errc::invalid_argument, "max_segments is zero"};
    if (!is_pow2(alignment)) return {errc::invalid_argument, "alignment is not a power of two", alignment};
    if (!is_pow2(length_granularity))
      return {errc::invalid_argument, "length_granularity is not a power of two", length_granularity};
    if (boundary != 0 && !is_pow2(boundary))
      return {errc::invalid_argument, "boundary is not a power of two", boundary};
    if (boundary != 0 && (boundary < alignment || boundary < length_granularity))
      return {errc::invalid_argument, "boundary smaller than the alignment or length granularity",
              boundary};
    if (addressable_bits == 0 || addressable_bits > 64)
      return {errc::invalid_argument, "addressable_bits outside 1..64", addressable_bits};
    if (max_transfer == 0) return {errc::invalid_argument, "max_transfer is zero"};
    // A cut at max_segment_bytes must leave the next piece aligned, so the
    // usable chunk is max_segment_bytes rounded down to the alignment.
    const std::uint64_t step = alignment > length_granularity ? alignment : length_granularity;
    if (max_segment_bytes < step)
      return {errc::invalid_argument, "max_segment_bytes smaller than the alignment", max_segment_bytes};
    return ok_status;
  }
};

struct split_result {
  std::uint32_t count = 0;  // descriptors written to the output
  std::uint64_t bytes = 0;  // total bytes they describe
};

struct split_options {
  // Merge input ranges that are adjacent in device address space before
  // splitting (IODMACommand and IOMMU mappings often return pieces that touch);
  // fewer descriptors, and a range whose length breaks the granularity may
  // become legal once joined with its neighbour.
  bool merge_adjacent = true;
};

namespace dma_detail {

inline std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  return add_checked(a, b, r) ? r : std::numeric_limits<std::uint64_t>::max();
}
inline std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

// Pieces the greedy split makes of [start, start+len): each boundary window is
// cut into ceil(window / chunk) pieces. Used to report the exact descriptor
// count once the output is full, in O(1) instead of walking a huge range.
inline std::uint64_t count_pieces(std::uint64_t start, std::uint64_t len, std::uint64_t chunk,
                                  std::uint64_t boundary) noexcept {
  if (boundary == 0) return ceil_div(len, chunk);
  const std::uint64_t to_boundary = boundary - (start & (boundary - 1));
  if (len <= to_boundary) return ceil_div(len, chunk);
  const std::uint64_t rest = len - to_boundary;
  std::uint64_t full_cost = 0;
  if (!mul_checked(rest / boundary, ceil_div(boundary, chunk), full_cost))
    full_cost = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t n = sat_add(ceil_div(to_boundary, chunk), full_cost);
  if (rest % boundary != 0) n = sat_add(n, ceil_div(rest % boundary, chunk));
  return n;
}

// Validates one input range: nonzero, and its exclusive end representable
// (a range touching 2^64 would make "adjacent" and "end" arithmetic wrap).
inline status check_input_segment(const dma_segment& s, std::size_t index) noexcept {
  if (s.len == 0) return {errc::invalid_argument, "zero-length segment", index};
  std::uint64_t end = 0;
  if (!add_checked(s.addr.value(), s.len, end))
    return {errc::out_of_range, "segment wraps the 64-bit device address space", index};
  return ok_status;
}

}  // namespace dma_detail

// Split `in` into descriptors in `out` that satisfy `c`.
//
// Errors (nothing is promised about `out` after a failure):
//   invalid_argument  empty input, a zero-length segment (detail = index), or
//                     an invalid constraint set (see validate())
//   out_of_range      a segment that wraps the address space (detail = index)
//   constraint        "transfer longer than max_transfer" (detail = bytes),
//                     "segment beyond the device's addressable bits" (detail = address),
//                     "segment address not aligned" (detail = address),
//                     "segment length not a multiple of the length granularity" (detail = length),
//                     "more segments than max_segments" (detail = descriptors needed)
//   no_space          `out` is smaller than the descriptors needed (detail = needed)
inline result<split_result> split_segments(const dma_constraints& c, std::span<const dma_segment> in,
                                           std::span<dma_segment> out,
                                           split_options opt = {}) noexcept {
  DKQ_TRY(c.validate());
  if (in.empty()) return status{errc::invalid_argument, "empty segment list"};

  const std::uint64_t limit = c.address_limit();
  const std::uint64_t step = c.alignment > c.length_granularity ? c.alignment : c.length_granularity;
  const std::uint64_t chunk = align_down(c.max_segment_bytes, step);
  const std::uint64_t bmask = c.boundary - 1;  // unused when boundary == 0

  std::uint64_t total = 0;
  std::uint64_t needed = 0;  // descriptors emitted so far, counted past out.size()
  const std::uint64_t cap = out.size();

  std::size_t i = 0;
  while (i < in.size()) {
    DKQ_TRY(dma_detail::check_input_segment(in[i], i));
    std::uint64_t start = in[i].addr.value();
    std::uint64_t len = in[i].len;
    ++i;
    while (opt.merge_adjacent && i < in.size() && in[i].addr.value() == start + len) {
      DKQ_TRY(dma_detail::check_input_segment(in[i], i));
      if (!add_checked(len, in[i].len, len))
        return status{errc::out_of_range, "segment wraps the 64-bit device address space", i};
      ++i;
    }
    if (!add_checked(total, len, total) || total > c.max_transfer)
      return status{errc::constraint, "transfer longer than max_transfer",
                    total < len ? std::numeric_limits<std::uint64_t>::max() : total};
    if (start + (len - 1) > limit)
      return status{errc::constraint, "segment beyond the device's addressable bits (bounce it)",
                    start};
    if (!is_aligned(start, c.alignment))
      return status{errc::constraint, "segment address not aligned to the required alignment", start};

    while (len != 0) {
      if (needed >= cap || needed > c.max_segments) {
        // Already failing: count the rest without walking it.
        needed = dma_detail::sat_add(needed, dma_detail::count_pieces(start, len, chunk, c.boundary));
        break;
      }
      std::uint64_t piece = len < chunk ? len : chunk;
      if (c.boundary != 0) {
        const std::uint64_t to_boundary = c.boundary - (start & bmask);
        if (piece > to_boundary) piece = to_boundary;
      }
      if (!is_aligned(piece, c.length_granularity))
        return status{errc::constraint, "segment length not a multiple of the length granularity",
                      piece};
      out[static_cast<std::size_t>(needed)] = dma_segment{dev_addr{start}, piece};
      ++needed;
      start += piece;
      len -= piece;
    }
  }
  if (needed > c.max_segments)
    return status{errc::constraint, "more segments than max_segments", needed};
  if (needed > cap) return status{errc::no_space, "descriptor array too small", needed};
  return split_result{static_cast<std::uint32_t>(needed), total};
}

// DriverKit form: one long segment (a SCSI task's fBufferIOVMAddr and length).
inline result<split_result> split_segment(const dma_constraints& c, dma_segment one,
                                          std::span<dma_segment> out) noexcept {
  return split_segments(c, std::span<const dma_segment>(&one, 1), out);
}

// True if any byte of `segs` lies beyond what the device can address: the
// transfer must go through a bounce buffer (dma/bounce.hpp).
inline bool needs_bounce(const dma_constraints& c, std::span<const dma_segment> segs) noexcept {
  const std::uint64_t limit = c.address_limit();
  for (const dma_segment& s : segs) {
    if (s.len == 0) continue;
    std::uint64_t last = 0;
    if (!add_checked(s.addr.value(), s.len - 1, last) || last > limit) return true;
  }
  return false;
}

}  // namespace dkq
