// dkq/nvme/sgl.hpp - NVMe Scatter Gather Lists (SGLs) and the PRP-vs-SGL choice.
//
// Wire rules (NVM Express Base Specification 1.4, 4.4 "Scatter Gather List
// (SGL)", Figures 112-119; NVMe over PCIe):
//
//  - An SGL descriptor is 16 bytes: Address (bytes 7:0), Length (11:8),
//    reserved/type specific (14:12), SGL Identifier (byte 15: type in bits
//    7:4, subtype in bits 3:0).
//  - Data Block (type 0) describes data; Segment (type 2) points at the next
//    SGL segment; Last Segment (type 3) points at the final segment, which
//    holds no Segment or Last Segment descriptor. Subtype 0 = Address.
//  - An SGL segment is a qword-aligned array of descriptors in contiguous
//    memory; only its last descriptor may be a Segment or Last Segment
//    descriptor, whose Length is the byte size of the segment it points at.
//  - SGL1 in the command (DPTR) is the first descriptor: a Data Block when one
//    block describes everything, else a (Last) Segment descriptor. PSDT in
//    CDW0 bits 15:14 = 01b selects SGLs for PCIe data.
//  - Identify Controller SGLS (bytes 539:536) bits 1:0: 00b no SGLs, 01b SGLs
//    with byte alignment and granularity, 10b SGLs that require Data Block
//    address and length to be dword aligned (low two bits zero).
//  - Admin commands over PCIe use PRPs (PSDT shall be 00b for Admin commands).
//
// The choice policy follows Linux nvme-pci (drivers/nvme/host/pci.c,
// nvme_pci_use_sgls and the sgl_threshold module parameter):
// SGLs only on I/O queues of SGL-capable controllers; forced when PRPs cannot
// describe the buffer (page gaps) or for user passthrough (the device then
// validates lengths); otherwise only when the average segment is at least
// sgl_threshold (32 KiB default; 0 disables).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/nvme/prp.hpp"

namespace dkq::nvme {

enum class sgl_type : std::uint8_t {
  data_block = 0x0,
  bit_bucket = 0x1,
  segment = 0x2,
  last_segment = 0x3,
  keyed_data_block = 0x4,
  transport_data_block = 0x5,
};
enum class sgl_subtype : std::uint8_t {
  address = 0x0,
  offset = 0x1,  // NVMe over Fabrics only
};

constexpr std::uint8_t sgl_identifier(sgl_type t, sgl_subtype st = sgl_subtype::address) noexcept {
  return static_cast<std::uint8_t>((static_cast<unsigned>(t) << 4) | static_cast<unsigned>(st));
}

struct sgl_descriptor {
  std::uint64_t address;
  std::uint32_t length;
  std::uint8_t reserved[3];
  std::uint8_t identifier;  // type << 4 | subtype

  constexpr sgl_type type() const noexcept { return static_cast<sgl_type>(identifier >> 4); }
  constexpr sgl_subtype subtype() const noexcept { return static_cast<sgl_subtype>(identifier & 0xF); }
};
static_assert(sizeof(sgl_descriptor) == 16, "NVMe SGL descriptor is 16 bytes (Figure 112)");
static_assert(offsetof(sgl_descriptor, length) == 8 && offsetof(sgl_descriptor, identifier) == 15);

// A command carrying sgl1 sets PSDT (CDW0 bits 15:14) to 01b: nvme/spec.hpp
// psdt::sgl_mptr_contig, with the SQE layout.

// What the controller supports, from Identify Controller SGLS.
struct sgl_caps {
  bool supported = false;
  bool dword_aligned = false;  // Data Block address and length must be dword aligned

  static constexpr sgl_caps from_sgls(std::uint32_t sgls) noexcept {
    switch (sgls & 0x3) {
      case 0x1: return sgl_caps{true, false};
      case 0x2: return sgl_caps{true, true};
      default: return sgl_caps{false, false};  // 00b none; 11b reserved
    }
  }
};

struct sgl_result {
  sgl_descriptor sgl1{};         // goes into the command's DPTR
  std::uint32_t data_blocks = 0; // Data Block descriptors written (or 1 in sgl1)
  std::uint32_t segments = 0;    // segment regions used (0 when sgl1 is the Data Block)
};

inline constexpr std::uint64_t sgl_descriptor_bytes = 16;
inline constexpr std::uint64_t sgl_max_block = 0xFFFFFFFFull;  // Length is 32 bits

// Build an SGL for `data` (one Data Block per segment; run split_segments()
// first to merge or cut them). Segment memory comes from `segment_memory`,
// used in order; each region must be qword aligned with a CPU pointer aligned
// for 8-byte stores and hold at least one descriptor (two to chain onwards).
// `max_transfer` (bytes, 0 = none) is MDTS.
//
// Errors:
//   invalid_argument  empty list, zero-length segment (detail = index), bad segment region (detail = index)
//   out_of_range      a segment that wraps the address space
//   not_supported     the controller has no SGL support
//   constraint        "transfer beyond MDTS" (detail = bytes),
//                     "SGL Data Block longer than 2^32-1 bytes" (detail = index),
//                     "SGL Data Block not dword aligned (SGLS bits 1:0 = 10b)" (detail = address or length)
//   no_space          not enough segment memory (detail = regions needed so far)
inline result<sgl_result> build_sgl(const sgl_caps& caps, std::span<const dma_segment> data,
                                    std::span<const dma_region> segment_memory,
                                    std::uint64_t max_transfer = 0) noexcept {
  if (!caps.supported) return status{errc::not_supported, "controller does not support SGLs"};
  if (data.empty()) return status{errc::invalid_argument, "empty data segment list"};

  // Validation is fused with writing (one pass over the segments on the hot
  // path); on failure the segment memory holds a partial list nobody posts.
  std::uint64_t total = 0;
  auto block = [&](std::size_t i, sgl_descriptor& out) noexcept -> status {
    const std::uint64_t a = data[i].addr.value();
    const std::uint64_t l = data[i].len;
    std::uint64_t end = 0;
    if (DKQ_UNLIKELY(l == 0)) return {errc::invalid_argument, "zero-length data segment", i};
    if (DKQ_UNLIKELY(!add_checked(a, l, end)))
      return {errc::out_of_range, "data segment wraps the 64-bit address space", i};
    if (DKQ_UNLIKELY(l > sgl_max_block))
      return {errc::constraint, "SGL Data Block longer than 2^32-1 bytes", i};
    if (caps.dword_aligned && DKQ_UNLIKELY(((a | l) & 3) != 0))
      return {errc::constraint, "SGL Data Block not dword aligned (SGLS bits 1:0 = 10b)", (a & 3) != 0 ? a : l};
    if (DKQ_UNLIKELY(!add_checked(total, l, total)))
      return {errc::out_of_range, "transfer length overflows 64 bits", i};
    out = sgl_descriptor{a, static_cast<std::uint32_t>(l), {0, 0, 0}, sgl_identifier(sgl_type::data_block)};
    return ok_status;
  };
  auto check_mdts = [&]() noexcept -> status {
    if (max_transfer != 0 && total > max_transfer) return {errc::constraint, "transfer beyond MDTS", total};
    return ok_status;
  };

  sgl_result r;
  const std::size_t n = data.size();
  r.data_blocks = static_cast<std::uint32_t>(n);
  if (n == 1) {
    DKQ_TRY(block(0, r.sgl1));
    DKQ_TRY(check_mdts());
    return r;
  }

  auto capacity = [&](std::size_t i, std::uint64_t& cap) noexcept -> status {
    if (i >= segment_memory.size()) return {errc::no_space, "not enough SGL segment memory", i + 1};
    const dma_region& g = segment_memory[i];
    if (g.cpu == nullptr || (g.device.value() & 7) != 0 ||
        (reinterpret_cast<std::uintptr_t>(g.cpu) & 7) != 0)
      return {errc::invalid_argument, "SGL segment region not qword aligned", i};
    cap = g.size / sgl_descriptor_bytes;
    if (cap == 0) return {errc::invalid_argument, "SGL segment region smaller than one descriptor", i};
    return ok_status;
  };

  // The pointer to segment `i` (holding `remaining` descriptors still to place)
  // is a Last Segment descriptor if everything fits there, else a Segment
  // descriptor covering the whole region (data blocks plus its own pointer).
  auto pointer_to = [&](std::size_t i, std::uint64_t cap, std::size_t remaining) noexcept {
    const bool last = remaining <= cap;
    const std::uint64_t count = last ? remaining : cap;
    return sgl_descriptor{segment_memory[i].device.value(),
                          static_cast<std::uint32_t>(count * sgl_descriptor_bytes), {0, 0, 0},
                          sgl_identifier(last ? sgl_type::last_segment : sgl_type::segment)};
  };

  std::uint64_t cap = 0;
  DKQ_TRY(capacity(0, cap));
  std::size_t remaining = n;
  std::size_t seg = 0;
  std::size_t next = 0;  // next data segment to place
  r.sgl1 = pointer_to(0, cap, remaining);
  for (;;) {
    auto* out = static_cast<sgl_descriptor*>(segment_memory[seg].cpu);
    if (remaining <= cap) {
      for (std::size_t k = 0; k < remaining; ++k) DKQ_TRY(block(next + k, out[k]));
      DKQ_TRY(check_mdts());
      r.segments = static_cast<std::uint32_t>(seg + 1);
      return r;
    }
    if (cap < 2)
      return status{errc::invalid_argument, "SGL segment region too small to chain (needs 2 descriptors)",
                    seg};
    const std::size_t here = static_cast<std::size_t>(cap - 1);
    for (std::size_t k = 0; k < here; ++k) DKQ_TRY(block(next + k, out[k]));
    next += here;
    remaining -= here;
    std::uint64_t next_cap = 0;
    DKQ_TRY(capacity(seg + 1, next_cap));
    out[here] = pointer_to(seg + 1, next_cap, remaining);
    ++seg;
    cap = next_cap;
  }
}

// ---- PRP or SGL ------------------------------------------------------------

enum class data_pointer : std::uint8_t { prp, sgl };

struct dptr_policy {
  sgl_caps caps{};
  // Use SGLs when the average segment is at least this many bytes (Linux
  // nvme-pci sgl_threshold, default 32 KiB); 0 = never by size.
  std::uint32_t sgl_threshold = 32 * 1024;
};

struct dptr_request {
  bool admin_queue = false;  // NVMe over PCIe: Admin commands use PRPs
  bool passthrough = false;  // user passthrough: SGL lets the device check lengths
};

// Choose how to describe `data`. Errors when neither form can describe it:
// constraint "data has page gaps and the controller cannot use SGLs here"
// (detail = the address PRPs reject), or the SGL alignment failure.
inline result<data_pointer> choose_data_pointer(const dptr_policy& pol, const prp_config& cfg,
                                                std::span<const dma_segment> data,
                                                dptr_request req = {}) noexcept {
  auto tot = prp_detail::total_length(data);
  if (!tot) return tot.error();
  // Beyond MDTS neither form helps: split first (prp_mdts_chunk).
  if (cfg.max_transfer != 0 && *tot > cfg.max_transfer)
    return status{errc::constraint, "transfer beyond MDTS", *tot};
  auto prp = prp_check(cfg, data);
  if (!prp && prp.error().code() != errc::constraint) return prp.error();
  const bool sgl_allowed = pol.caps.supported && !req.admin_queue;
  auto sgl_fits = [&]() noexcept -> status {
    if (!pol.caps.dword_aligned) return ok_status;
    for (const dma_segment& s : data)
      if (((s.addr.value() | s.len) & 3) != 0)
        return {errc::constraint, "SGL Data Block not dword aligned (SGLS bits 1:0 = 10b)",
                s.addr.value()};
    return ok_status;
  };
  if (!prp) {
    if (!sgl_allowed)
      return status{errc::constraint, "data has page gaps and the controller cannot use SGLs here",
                    prp.error().detail()};
    DKQ_TRY(sgl_fits());
    return data_pointer::sgl;
  }
  if (!sgl_allowed) return data_pointer::prp;
  if (!sgl_fits().ok()) return data_pointer::prp;
  if (req.passthrough) return data_pointer::sgl;
  // One segment spanning at most two memory pages: PRP1/PRP2, no list, no
  // segment memory -- the cheapest form (Linux nvme_pci_setup_data_simple).
  if (data.size() == 1 && *prp <= 2) return data_pointer::prp;
  if (pol.sgl_threshold == 0) return data_pointer::prp;
  const std::uint64_t avg = *tot / data.size();
  return avg >= pol.sgl_threshold ? data_pointer::sgl : data_pointer::prp;
}

}  // namespace dkq::nvme
