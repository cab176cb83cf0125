// dkq/nvme/prp.hpp - NVMe Physical Region Page (PRP) entries and lists.
//
// Wire rules (NVM Express Base Specification 1.4, 4.3 "Physical Region Page
// Entry and List"; 2.0 keeps them in "PRP Entry and List" of the data
// structures chapter):
//
//  - A PRP entry is a 64-bit address; bits 1:0 are zero (dword aligned).
//  - Only the first entry (PRP1) may have a nonzero offset inside a memory
//    page; every later entry points at the start of a memory page.
//  - Memory page size = 2^(12 + CC.MPS).
//  - PRP2 is unused (zero) when the data ends in PRP1's page; the second page
//    when it ends in the next one; otherwise a PRP List pointer.
//  - A PRP List pointer is qword aligned (bits 2:0 zero) and may start inside
//    a page. When the list does not fit in the rest of its memory page, the
//    last entry of that page points to the next list page (a chain). When the
//    remaining entries exactly fill the page, the last slot is a data entry,
//    not a chain: libvfn PR #67 fixed a builder that chained one page too many.
//  - A command moves at most MDTS: 2^MDTS units of the minimum memory page
//    size (CAP.MPSMIN), 0 = no limit (Identify Controller byte 77).
//
// Buffers the rules cannot describe (a segment that starts mid-page after the
// first, or ends mid-page before the last) are what Linux calls "page gaps"
// and forces onto SGLs (drivers/nvme/host/pci.c, nvme_pci_use_sgls);
// prp_check() reports them
// and nvme/sgl.hpp's policy picks SGLs for them.
//
// The builders write only into caller memory (list pages from a dma_pool) and
// never allocate. This header holds only what PRPs need; the SQE layout lives
// in nvme/spec.hpp.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::nvme {

static_assert(std::endian::native == std::endian::little,
              "NVMe data structures are little-endian; a big-endian host needs byte swaps here");

inline constexpr std::uint64_t prp_entry_bytes = 8;

struct prp_config {
  // Memory page size from CC.MPS: 2^(12 + MPS) bytes.
  std::uint32_t page_size = 4096;
  // Largest transfer per command from MDTS, in bytes; 0 = no limit.
  std::uint64_t max_transfer = 0;

  // From the registers and Identify data: CC.MPS (bits 10:7), CAP.MPSMIN
  // (bits 51:48) and Identify Controller MDTS (byte 77).
  static result<prp_config> from_registers(std::uint32_t cc_mps, std::uint32_t cap_mpsmin,
                                           std::uint8_t mdts) noexcept {
    if (cc_mps > 15) return status{errc::invalid_argument, "CC.MPS above 15", cc_mps};
    if (cap_mpsmin > 15) return status{errc::invalid_argument, "CAP.MPSMIN above 15", cap_mpsmin};
    prp_config c;
    c.page_size = std::uint32_t{1} << (12 + cc_mps);
    const unsigned shift = mdts + 12u + cap_mpsmin;
    c.max_transfer = (mdts == 0 || shift >= 64) ? 0 : (std::uint64_t{1} << shift);
    return c;
  }

  constexpr status validate() const noexcept {
    if (page_size < 4096 || page_size > (1u << 27) || !is_pow2(page_size))
      return {errc::invalid_argument, "memory page size is not 2^(12+MPS) with MPS 0..15", page_size};
    if (max_transfer != 0 && max_transfer < page_size)
      return {errc::invalid_argument, "MDTS smaller than one memory page", max_transfer};
    return ok_status;
  }
};

struct prp_result {
  std::uint64_t prp1 = 0;
  std::uint64_t prp2 = 0;
  std::uint32_t entries = 0;     // PRP entries for data (memory pages touched)
  std::uint32_t list_pages = 0;  // list regions written (0 when PRP2 is unused or data)
};

namespace prp_detail {

inline constexpr std::uint64_t all = std::numeric_limits<std::uint64_t>::max();

// The part of segment `s` (which starts at transfer byte `seg_off`) that falls
// inside the window [win_lo, win_hi); returns false if none does.
inline bool clip(const dma_segment& s, std::uint64_t seg_off, std::uint64_t win_lo,
                 std::uint64_t win_hi, std::uint64_t& a, std::uint64_t& l) noexcept {
  const std::uint64_t lo = seg_off > win_lo ? seg_off : win_lo;
  const std::uint64_t seg_end = seg_off + s.len;
  const std::uint64_t hi = seg_end < win_hi ? seg_end : win_hi;
  if (lo >= hi) return false;
  a = s.addr.value() + (lo - seg_off);
  l = hi - lo;
  return true;
}

// Total length with input checks (nonzero segments, no wrap).
inline result<std::uint64_t> total_length(std::span<const dma_segment> data) noexcept {
  if (data.empty()) return status{errc::invalid_argument, "empty data segment list"};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const dma_segment& s = data[i];
    if (s.len == 0) return status{errc::invalid_argument, "zero-length data segment", i};
    // The exclusive end must be representable: builders walk [addr, addr+len).
    std::uint64_t end = 0;
    if (!add_checked(s.addr.value(), s.len, end))
      return status{errc::out_of_range, "data segment wraps the 64-bit address space", i};
    if (!add_checked(total, s.len, total))
      return status{errc::out_of_range, "transfer length overflows 64 bits", i};
  }
  return total;
}

}  // namespace prp_detail

namespace prp_detail {

// One pass for the common case (the whole list): input checks, the PRP
// rules and the entry count together. `length` receives the total.
inline result<std::uint32_t> scan_whole(const prp_config& cfg, std::span<const dma_segment> data,
                                        std::uint64_t& length) noexcept {
  if (data.empty()) return status{errc::invalid_argument, "empty data segment list"};
  const std::uint64_t mask = cfg.page_size - 1;
  const unsigned shift = log2_floor(cfg.page_size);
  const std::size_t n = data.size();
  std::uint64_t total = 0;
  std::uint64_t entries = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t a = data[i].addr.value();
    const std::uint64_t l = data[i].len;
    if (l == 0) return status{errc::invalid_argument, "zero-length data segment", i};
    std::uint64_t end = 0;
    if (!add_checked(a, l, end))
      return status{errc::out_of_range, "data segment wraps the 64-bit address space", i};
    if (!add_checked(total, l, total))
      return status{errc::out_of_range, "transfer length overflows 64 bits", i};
    if (i == 0) {
      if ((a & 3) != 0) return status{errc::constraint, "PRP1 not dword aligned", a};
    } else if ((a & mask) != 0) {
      return status{errc::constraint, "PRP entry after the first does not start a memory page", a};
    }
    if (i + 1 != n && (end & mask) != 0)
      return status{errc::constraint, "data before the last PRP entry does not end on a memory page", end};
    entries += ((end - 1) >> shift) - (a >> shift) + 1;
  }
  if (cfg.max_transfer != 0 && total > cfg.max_transfer)
    return status{errc::constraint, "transfer beyond MDTS", total};
  if (entries > 0xFFFFFFFFull) return status{errc::constraint, "transfer beyond MDTS", total};
  length = total;
  return static_cast<std::uint32_t>(entries);
}

// A window [offset, offset+length) of the list; `length` may be `all`
// (resolved to the rest of the data on return).
inline result<std::uint32_t> scan_window(const prp_config& cfg, std::span<const dma_segment> data,
                                         std::uint64_t offset, std::uint64_t& length) noexcept {
  auto tot = total_length(data);
  if (!tot) return tot.error();
  const std::uint64_t total = *tot;
  if (offset >= total) return status{errc::out_of_range, "transfer offset beyond the data", offset};
  if (length == all) length = total - offset;
  if (length == 0) return status{errc::invalid_argument, "zero-length transfer"};
  if (length > total - offset) return status{errc::out_of_range, "transfer longer than the data", length};
  if (cfg.max_transfer != 0 && length > cfg.max_transfer)
    return status{errc::constraint, "transfer beyond MDTS", length};

  const std::uint64_t mask = cfg.page_size - 1;
  const unsigned shift = log2_floor(cfg.page_size);
  const std::uint64_t win_hi = offset + length;
  std::uint64_t seg_off = 0;
  std::uint64_t entries = 0;
  bool first = true;
  for (const dma_segment& s : data) {
    std::uint64_t a = 0, l = 0;
    const bool in = clip(s, seg_off, offset, win_hi, a, l);
    seg_off += s.len;
    if (!in) {
      if (seg_off >= win_hi) break;
      continue;
    }
    if (first) {
      if ((a & 3) != 0) return status{errc::constraint, "PRP1 not dword aligned", a};
    } else if ((a & mask) != 0) {
      return status{errc::constraint, "PRP entry after the first does not start a memory page", a};
    }
    const std::uint64_t end = a + l;  // representable: checked in total_length
    const bool last = seg_off >= win_hi;
    if (!last && (end & mask) != 0)
      return status{errc::constraint, "data before the last PRP entry does not end on a memory page", end};
    entries += ((end - 1) >> shift) - (a >> shift) + 1;
    first = false;
    if (last) break;
  }
  if (entries > 0xFFFFFFFFull) return status{errc::constraint, "transfer beyond MDTS", length};
  return static_cast<std::uint32_t>(entries);
}

inline result<std::uint32_t> scan(const prp_config& cfg, std::span<const dma_segment> data,
                                  std::uint64_t offset, std::uint64_t& length) noexcept {
  DKQ_TRY(cfg.validate());
  if (offset == 0 && length == all) return scan_whole(cfg, data, length);
  return scan_window(cfg, data, offset, length);
}

}  // namespace prp_detail

// Can PRPs describe transfer bytes [offset, offset+length) of `data`?
// Returns the number of PRP entries (memory pages touched) or why not:
//   invalid_argument  empty list, zero-length segment, zero-length transfer
//   out_of_range      wrap, or offset/length beyond the data
//   constraint        "transfer beyond MDTS" (detail = bytes),
//                     "PRP1 not dword aligned" (detail = address),
//                     "PRP entry after the first does not start a memory page" (detail = address),
//                     "data before the last PRP entry does not end on a memory page" (detail = address)
inline result<std::uint32_t> prp_check(const prp_config& cfg, std::span<const dma_segment> data,
                                       std::uint64_t offset = 0,
                                       std::uint64_t length = prp_detail::all) noexcept {
  return prp_detail::scan(cfg, data, offset, length);
}

// Build PRP1/PRP2 (and PRP lists in `list_pages`) for transfer bytes
// [offset, offset+length) of `data`.
//
// `list_pages`: regions for PRP lists, used in order. Each must be qword
// aligned and lie inside one memory page; a region that has to chain to the
// next must end exactly at its memory page's end (the device finds the chain
// entry at the last qword of the page). Page-sized, page-aligned regions from
// a dma_pool always qualify; a small first region (Linux's 256-byte pool for
// lists of <= 32 entries) works when placed at the end of a page or when it
// suffices.
//
// Errors: those of prp_check(), plus
//   invalid_argument  a list region not qword aligned, crossing a page, or
//                     with a CPU pointer not 8-byte aligned (detail = region index)
//   constraint        "PRP list region cannot chain: it does not end at a memory page" (detail = index)
//   no_space          not enough list regions (detail = regions used so far + 1)
inline result<prp_result> build_prp(const prp_config& cfg, std::span<const dma_segment> data,
                                    std::span<const dma_region> list_pages, std::uint64_t offset = 0,
                                    std::uint64_t length = prp_detail::all) noexcept {
  const bool whole = offset == 0 && length == prp_detail::all;
  auto n = prp_detail::scan(cfg, data, offset, length);  // resolves length
  if (!n) return n.error();
  const std::uint32_t entries = *n;

  const std::uint64_t ps = cfg.page_size;
  const std::uint64_t mask = ps - 1;
  const std::uint64_t win_hi = offset + length;

  prp_result r;
  r.entries = entries;

  // Entry generator: walks the window page by page.
  std::size_t si = 0;
  std::uint64_t seg_off = 0;
  std::uint64_t cur = 0, cur_end = 0;  // current clipped piece [cur, cur_end)
  auto next_entry = [&]() noexcept -> std::uint64_t {
    while (cur >= cur_end) {
      if (whole) {  // every segment is in the window: no clipping
        cur = data[si].addr.value();
        cur_end = cur + data[si].len;
        ++si;
        continue;
      }
      std::uint64_t a = 0, l = 0;
      const dma_segment& s = data[si++];
      const bool in = prp_detail::clip(s, seg_off, offset, win_hi, a, l);
      seg_off += s.len;
      if (in) {
        cur = a;
        cur_end = a + l;
      }
    }
    const std::uint64_t e = cur;
    cur = (cur & ~mask) + ps;  // later entries are page starts
    return e;
  };

  r.prp1 = next_entry();
  if (entries == 1) return r;
  if (entries == 2) {
    r.prp2 = next_entry();
    return r;
  }

  // PRP list: entries-1 entries, chained across list regions.
  std::uint32_t remaining = entries - 1;
  std::size_t region = 0;
  auto open_region = [&](std::size_t i, std::uint64_t*& slot, std::uint64_t& slots) noexcept -> status {
    if (i >= list_pages.size()) return {errc::no_space, "not enough PRP list pages", i + 1};
    const dma_region& g = list_pages[i];
    const std::uint64_t d = g.device.value();
    if (g.cpu == nullptr || (d & 7) != 0 || (reinterpret_cast<std::uintptr_t>(g.cpu) & 7) != 0)
      return {errc::invalid_argument, "PRP list region not qword aligned", i};
    const std::uint64_t room = ps - (d & mask);
    if (g.size < prp_entry_bytes || g.size > room)
      return {errc::invalid_argument, "PRP list region crosses a memory page or holds no entry", i};
    slot = static_cast<std::uint64_t*>(g.cpu);
    slots = g.size / prp_entry_bytes;
    return ok_status;
  };

  std::uint64_t* slot = nullptr;
  std::uint64_t slots = 0;
  DKQ_TRY(open_region(0, slot, slots));
  r.prp2 = list_pages[0].device.value();
  r.list_pages = 1;
  while (remaining != 0) {
    if (slots == 1 && remaining > 1) {
      // Last slot of this region and more than one entry left: chain.
      const dma_region& g = list_pages[region];
      if (((g.device.value() + g.size) & mask) != 0)
        return status{errc::constraint, "PRP list region cannot chain: it does not end at a memory page",
                      region};
      std::uint64_t* next_slot = nullptr;
      std::uint64_t next_slots = 0;
      DKQ_TRY(open_region(region + 1, next_slot, next_slots));
      *slot = list_pages[region + 1].device.value();
      ++region;
      ++r.list_pages;
      slot = next_slot;
      slots = next_slots;
      continue;
    }
    // Fill a run of page addresses in one tight loop: as many as the current
    // piece has pages and the region has slots before its chain slot.
    if (cur >= cur_end) {
      *slot++ = next_entry();  // opens the next piece (its first page)
      --slots;
      --remaining;
      continue;
    }
    std::uint64_t run = remaining <= slots ? remaining : slots - 1;
    const std::uint64_t pages_left = (cur_end - cur + mask) >> log2_floor(cfg.page_size);
    if (run > pages_left) run = pages_left;
    const std::uint64_t first_page = cur;
    for (std::uint64_t k = 0; k < run; ++k) slot[k] = first_page + k * ps;
    slot += run;
    slots -= run;
    remaining -= static_cast<std::uint32_t>(run);
    cur = first_page + run * ps;
  }
  return r;
}

// Length of the next command's share of a transfer that MDTS forces to split,
// starting at transfer byte `offset` (0 for the first command, then the sum of
// the previous shares). Each share is at most MDTS, a multiple of
// `block_size` (the LBA data size), and ends on a memory page boundary unless
// it is the tail, so every share is itself PRP-describable. With no MDTS, or
// a tail that fits, the whole rest is returned.
//
// Errors: those of prp_detail::total_length; invalid_argument for a block size
// that is not a power of two; constraint "cannot split at a memory page boundary
// within MDTS" (detail = max_transfer) when no legal cut exists (a first
// segment whose page offset is not a multiple of the block size).
inline result<std::uint64_t> prp_mdts_chunk(const prp_config& cfg, std::span<const dma_segment> data,
                                            std::uint64_t offset, std::uint32_t block_size) noexcept {
  DKQ_TRY(cfg.validate());
  if (block_size == 0 || !is_pow2(block_size))
    return status{errc::invalid_argument, "block size is not a power of two", block_size};
  auto tot = prp_detail::total_length(data);
  if (!tot) return tot.error();
  if (offset >= *tot) return status{errc::out_of_range, "split offset beyond the data", offset};
  const std::uint64_t rest = *tot - offset;
  if (cfg.max_transfer == 0 || rest <= cfg.max_transfer) return rest;

  // In a PRP-describable buffer every later page start sits at a transfer
  // offset congruent to -(page offset of the first byte) mod page size.
  const std::uint64_t ps = cfg.page_size;
  const std::uint64_t off0 = data[0].addr.value() & (ps - 1);
  const std::uint64_t bs = block_size;
  if (off0 % bs != 0 || (bs > ps && off0 != 0))
    return status{errc::constraint, "cannot split at a memory page boundary within MDTS", cfg.max_transfer};
  const std::uint64_t first_cut = (ps - off0) & (ps - 1);
  const std::uint64_t step = bs > ps ? bs : ps;
  const std::uint64_t lim = offset + cfg.max_transfer;
  if (lim < first_cut)
    return status{errc::constraint, "cannot split at a memory page boundary within MDTS", cfg.max_transfer};
  const std::uint64_t cut = first_cut + ((lim - first_cut) / step) * step;
  if (cut <= offset)
    return status{errc::constraint, "cannot split at a memory page boundary within MDTS", cfg.max_transfer};
  return cut - offset;
}

}  // namespace dkq::nvme
