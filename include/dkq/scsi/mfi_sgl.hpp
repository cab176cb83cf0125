// dkq/scsi/mfi_sgl.hpp - MegaRAID scatter-gather lists: MFI SGL32/SGL64/IEEE
// and the MPI 2.5 IEEE SGL with chain elements (Fusion / MPT3 controllers).
//
// MFI (the frame protocol of SAS1078/2108, emulated by QEMU's megasas):
// references are Linux drivers/scsi/megaraid/megaraid_sas.h (struct
// megasas_sge32 / megasas_sge64 / megasas_sge_skinny, MFI_FRAME_* flags,
// megasas_get_frame_count) and QEMU hw/scsi/mfi.h + megasas.c (megasas_map_sgl).
//
//  - The SGL follows the frame's fixed part (offset 40 in I/O and DCMD frames,
//    48 in pass-through frames) and may run on into the following 64-byte
//    frames; header.sge_count (one byte) counts the elements and
//    header.flags says their format:
//      SGL32 (flags 0x0):       { le32 addr, le32 length }          8 bytes
//      SGL64 (flags 0x2):       { le64 addr, le32 length }, packed  12 bytes
//      IEEE  (flags 0x20):      { le64 addr, le32 length, le32 flag } 16 bytes
//  - QEMU fails a command whose element has address 0 or length 0, or whose
//    sge_count is 0 or above MEGASAS_MAX_SGE (128); the firmware advertises
//    its own limit (max_sge / max_sg_elements), passed in here.
//  - The frame count posted with the frame (IQP bits 4:1) covers the SGL's
//    extra frames; Linux caps it at 8 (megasas_get_frame_count).
//
// MPI 2.5 IEEE SGL (Fusion/Invader MegaRAID, megaraid_sas_fusion.c
// megasas_make_sgl_fusion; MPT3SAS _base_build_sg_scmd_ieee; MPI 2.5 spec,
// "IEEE Scatter Gather Elements"): MPI25_IEEE_SGE_CHAIN64 { le64 Address,
// le32 Length, le16 Reserved1, u8 NextChainOffset, u8 Flags }, 16 bytes.
//  - Simple element: Flags = 0x00 (SIMPLE_ELEMENT | SYSTEM_ADDR); the final
//    element also carries END_OF_LIST (0x40) on MPI 2.5 parts.
//  - When the elements do not fit in the request frame's SGL area, its last
//    slot becomes a chain element (Flags 0x80, plus IOCPLBNTA_ADDR 0x03 on
//    pre-Invader MegaRAID) whose Address is a chain buffer and Length the
//    bytes used there; NextChainOffset is the index (in 16-byte elements) of
//    the chain element inside that buffer when it chains again, else 0. The
//    request's ChainOffset field points at the chain element in the frame.
//
// Builders write into caller memory (the frame, chain frames from a dma_pool)
// with memcpy (SGL64 elements are 12 bytes, so 8-byte fields are misaligned),
// return counts and flags, and never allocate.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::scsi {

static_assert(std::endian::native == std::endian::little,
              "MegaRAID frames are little-endian; a big-endian host needs byte swaps here");

// ---- MFI ---------------------------------------------------------------------

struct mfi_sge32 {
  std::uint32_t addr;
  std::uint32_t length;
};
struct __attribute__((packed)) mfi_sge64 {
  std::uint64_t addr;
  std::uint32_t length;
};
struct mfi_sge_ieee {  // Linux megasas_sge_skinny, QEMU mfi_sg_skinny
  std::uint64_t addr;
  std::uint32_t length;
  std::uint32_t flag;
};
static_assert(sizeof(mfi_sge32) == 8 && sizeof(mfi_sge64) == 12 && sizeof(mfi_sge_ieee) == 16);

// header.flags bits (megaraid_sas.h MFI_FRAME_*).
inline constexpr std::uint16_t mfi_frame_sgl32 = 0x0000;
inline constexpr std::uint16_t mfi_frame_sgl64 = 0x0002;
inline constexpr std::uint16_t mfi_frame_sense64 = 0x0004;
inline constexpr std::uint16_t mfi_frame_dir_write = 0x0008;
inline constexpr std::uint16_t mfi_frame_dir_read = 0x0010;
inline constexpr std::uint16_t mfi_frame_ieee = 0x0020;

inline constexpr std::size_t mfi_frame_size = 64;       // MEGAMFI_FRAME_SIZE
inline constexpr std::uint32_t mfi_max_frame_count = 8;  // megasas_get_frame_count cap
inline constexpr std::uint32_t mfi_max_sge = 255;        // header.sge_count is one byte

enum class mfi_sgl_format : std::uint8_t { sgl32, sgl64, ieee };

constexpr std::size_t mfi_sge_size(mfi_sgl_format f) noexcept {
  return f == mfi_sgl_format::sgl32 ? sizeof(mfi_sge32)
         : f == mfi_sgl_format::sgl64 ? sizeof(mfi_sge64)
                                      : sizeof(mfi_sge_ieee);
}
constexpr std::uint16_t mfi_sgl_flags(mfi_sgl_format f) noexcept {
  return f == mfi_sgl_format::sgl32 ? mfi_frame_sgl32
         : f == mfi_sgl_format::sgl64 ? mfi_frame_sgl64
                                      : mfi_frame_ieee;
}

struct mfi_sgl_result {
  std::uint8_t sge_count = 0;     // header.sge_count
  std::uint16_t frame_flags = 0;  // OR into header.flags
  std::uint32_t data_len = 0;     // header.data_xferlen
  std::uint32_t sgl_bytes = 0;    // bytes of SGL written
};

// Write an MFI SGL for `data` into `sgl` (the frame memory from the SGL
// offset on, including any following frames). `max_sge` is the controller's
// limit (1..255).
//
// Errors:
//   invalid_argument  empty list, zero-length segment (detail = index), max_sge outside 1..255
//   out_of_range      a segment that wraps the address space
//   constraint        "more segments than the controller's max SGE" (detail = count),
//                     "SGL32 element beyond 4 GiB (use SGL64 or bounce)" (detail = address),
//                     "MFI element longer than 2^32-1 bytes" (detail = index),
//                     "MFI element with device address 0" (detail = index),
//                     "MFI transfer longer than data_xferlen can hold" (detail = bytes)
//   no_space          `sgl` too small for the elements (detail = bytes needed)
inline result<mfi_sgl_result> build_mfi_sgl(mfi_sgl_format fmt, std::span<const dma_segment> data,
                                            std::span<std::byte> sgl, std::uint32_t max_sge) noexcept {
  if (max_sge == 0 || max_sge > mfi_max_sge)
    return status{errc::invalid_argument, "MFI max_sge outside 1..255", max_sge};
  if (data.empty()) return status{errc::invalid_argument, "empty data segment list"};
  if (data.size() > max_sge)
    return status{errc::constraint, "more segments than the controller's max SGE", data.size()};
  const std::size_t esz = mfi_sge_size(fmt);
  const std::size_t bytes = data.size() * esz;
  if (bytes > sgl.size()) return status{errc::no_space, "MFI SGL area too small", bytes};

  std::uint64_t total = 0;
  std::byte* p = sgl.data();
  for (std::size_t i = 0; i < data.size(); ++i) {
    const dma_segment& s = data[i];
    const std::uint64_t a = s.addr.value();
    if (s.len == 0) return status{errc::invalid_argument, "zero-length data segment", i};
    std::uint64_t last = 0;
    if (!add_checked(a, s.len - 1, last))
      return status{errc::out_of_range, "data segment wraps the 64-bit address space", i};
    if (s.len > 0xFFFFFFFFull) return status{errc::constraint, "MFI element longer than 2^32-1 bytes", i};
    if (a == 0) return status{errc::constraint, "MFI element with device address 0", i};
    total += s.len;  // <= 255 * 2^32: no overflow
    const auto len32 = static_cast<std::uint32_t>(s.len);
    switch (fmt) {
      case mfi_sgl_format::sgl32: {
        if (last > 0xFFFFFFFFull)
          return status{errc::constraint, "SGL32 element beyond 4 GiB (use SGL64 or bounce)", a};
        const mfi_sge32 e{static_cast<std::uint32_t>(a), len32};
        std::memcpy(p, &e, sizeof e);
        break;
      }
      case mfi_sgl_format::sgl64: {
        const mfi_sge64 e{a, len32};
        std::memcpy(p, &e, sizeof e);
        break;
      }
      case mfi_sgl_format::ieee: {
        const mfi_sge_ieee e{a, len32, 0};
        std::memcpy(p, &e, sizeof e);
        break;
      }
    }
    p += esz;
  }
  if (total > 0xFFFFFFFFull)
    return status{errc::constraint, "MFI transfer longer than data_xferlen can hold", total};
  mfi_sgl_result r;
  r.sge_count = static_cast<std::uint8_t>(data.size());
  r.frame_flags = mfi_sgl_flags(fmt);
  r.data_len = static_cast<std::uint32_t>(total);
  r.sgl_bytes = static_cast<std::uint32_t>(bytes);
  return r;
}

// Frames (64 bytes each) a command occupies when its SGL starts at byte
// `sgl_offset` of the first frame: the value for the inbound queue port's
// frame-count bits. Errors if more than the 8 frames Linux ever posts.
inline result<std::uint32_t> mfi_frame_count(std::size_t sgl_offset, mfi_sgl_format fmt,
                                             std::uint32_t sge_count) noexcept {
  const std::size_t end = sgl_offset + static_cast<std::size_t>(sge_count) * mfi_sge_size(fmt);
  const std::size_t frames = end / mfi_frame_size + (end % mfi_frame_size != 0 ? 1 : 0);
  if (frames == 0) return std::uint32_t{1};
  if (frames > mfi_max_frame_count)
    return status{errc::constraint, "MFI command needs more than 8 frames", frames};
  return static_cast<std::uint32_t>(frames);
}

// ---- MPI 2.5 IEEE SGL with chaining ------------------------------------------

struct ieee_sge {  // MPI25_IEEE_SGE_CHAIN64 (simple and chain elements share it)
  std::uint64_t address;
  std::uint32_t length;
  std::uint16_t reserved1;
  std::uint8_t next_chain_offset;
  std::uint8_t flags;
};
static_assert(sizeof(ieee_sge) == 16 && offsetof(ieee_sge, flags) == 15);

inline constexpr std::uint8_t ieee_sge_simple_element = 0x00;
inline constexpr std::uint8_t ieee_sge_chain_element = 0x80;
inline constexpr std::uint8_t ieee_sge_end_of_list = 0x40;  // MPI 2.5
inline constexpr std::uint8_t ieee_sge_system_addr = 0x00;
inline constexpr std::uint8_t ieee_sge_iocplbnta_addr = 0x03;
inline constexpr std::uint8_t ieee_sge_element_type_mask = 0x80;

struct ieee_sgl_options {
  // MPI 2.5 / Invader and later mark the final element END_OF_LIST.
  bool end_of_list = true;
  // Pre-Invader MegaRAID (Thunderbolt) chain elements carry IOCPLBNTA_ADDR.
  bool chain_iocplbnta = false;
};

// NextChainOffset is one byte, so a buffer that chains again can place its
// chain element at index 255 at most: 256 elements per chain buffer.
inline constexpr std::uint64_t ieee_max_chain_elements = 256;

struct ieee_sgl_result {
  std::uint32_t data_elements = 0;  // simple elements written
  std::uint32_t main_elements = 0;  // slots used in the frame (including a chain element)
  std::uint32_t chain_frames = 0;   // chain buffers used
  // Index of the chain element in the frame's SGL (the request's ChainOffset
  // is the frame byte offset of the SGL plus 16 * this, in 16-byte units), or
  // -1 when the list fits in the frame.
  std::int32_t main_chain_index = -1;
};

// Write an IEEE SGL for `data`: up to `main_slots` elements in `main_sgl` (the
// request frame's SGL area), continuing through `chain_frames` (each holding
// size/16 elements; qword-aligned device address) when more are needed.
//
// Errors:
//   invalid_argument  empty list, zero-length segment (detail = index), main_slots 0,
//                     main_sgl smaller than main_slots elements, a bad chain buffer (detail = index)
//   out_of_range      a segment that wraps the address space
//   constraint        "IEEE SGE longer than 2^32-1 bytes" (detail = index)
//   no_space          not enough chain buffers (detail = buffers needed so far)
inline result<ieee_sgl_result> build_ieee_sgl(std::span<const dma_segment> data, std::span<std::byte> main_sgl,
                                              std::uint32_t main_slots,
                                              std::span<const dma_region> chain_frames,
                                              ieee_sgl_options opt = {}) noexcept {
  if (data.empty()) return status{errc::invalid_argument, "empty data segment list"};
  if (main_slots == 0) return status{errc::invalid_argument, "IEEE SGL with no slot in the frame"};
  if (main_sgl.size() < static_cast<std::size_t>(main_slots) * sizeof(ieee_sge))
    return status{errc::invalid_argument, "IEEE SGL area smaller than its slot count", main_slots};
  for (std::size_t i = 0; i < data.size(); ++i) {
    const dma_segment& s = data[i];
    if (s.len == 0) return status{errc::invalid_argument, "zero-length data segment", i};
    std::uint64_t last = 0;
    if (!add_checked(s.addr.value(), s.len - 1, last))
      return status{errc::out_of_range, "data segment wraps the 64-bit address space", i};
    if (s.len > 0xFFFFFFFFull) return status{errc::constraint, "IEEE SGE longer than 2^32-1 bytes", i};
  }

  const std::uint8_t chain_flags =
      static_cast<std::uint8_t>(ieee_sge_chain_element |
                                (opt.chain_iocplbnta ? ieee_sge_iocplbnta_addr : ieee_sge_system_addr));
  auto put = [](std::byte* at, const ieee_sge& e) noexcept { std::memcpy(at, &e, sizeof e); };
  auto simple = [&](std::size_t i) noexcept {
    const bool final_one = i + 1 == data.size();
    return ieee_sge{data[i].addr.value(), static_cast<std::uint32_t>(data[i].len), 0, 0,
                    static_cast<std::uint8_t>(ieee_sge_simple_element | ieee_sge_system_addr |
                                              (final_one && opt.end_of_list ? ieee_sge_end_of_list : 0))};
  };
  auto frame_cap = [&](std::size_t i, std::uint64_t& cap) noexcept -> status {
    if (i >= chain_frames.size()) return {errc::no_space, "not enough IEEE SGL chain buffers", i + 1};
    const dma_region& g = chain_frames[i];
    if (g.cpu == nullptr || (g.device.value() & 7) != 0)
      return {errc::invalid_argument, "IEEE SGL chain buffer not qword aligned", i};
    cap = g.size / sizeof(ieee_sge);
    if (cap > ieee_max_chain_elements) cap = ieee_max_chain_elements;
    if (cap == 0) return {errc::invalid_argument, "IEEE SGL chain buffer smaller than one element", i};
    return ok_status;
  };
  // Chain element pointing at buffer `i` that will hold `remaining` elements.
  auto chain_to = [&](std::size_t i, std::uint64_t cap, std::size_t remaining) noexcept {
    const bool again = remaining > cap;
    const std::uint64_t used = again ? cap : remaining;
    return ieee_sge{chain_frames[i].device.value(), static_cast<std::uint32_t>(used * sizeof(ieee_sge)), 0,
                    static_cast<std::uint8_t>(again ? cap - 1 : 0), chain_flags};
  };

  ieee_sgl_result r;
  r.data_elements = static_cast<std::uint32_t>(data.size());
  std::size_t remaining = data.size();
  std::size_t next = 0;
  std::byte* out = main_sgl.data();
  std::uint64_t cap = main_slots;
  std::size_t frame = 0;  // 0 = the request frame, k = chain buffer k-1
  for (;;) {
    if (remaining <= cap) {
      for (std::size_t k = 0; k < remaining; ++k) put(out + k * sizeof(ieee_sge), simple(next + k));
      if (frame == 0) r.main_elements = static_cast<std::uint32_t>(remaining);
      r.chain_frames = static_cast<std::uint32_t>(frame);
      return r;
    }
    if (cap < 2 && frame != 0)
      return status{errc::invalid_argument, "IEEE SGL chain buffer too small to chain again", frame - 1};
    const std::size_t here = static_cast<std::size_t>(cap - 1);
    for (std::size_t k = 0; k < here; ++k) put(out + k * sizeof(ieee_sge), simple(next + k));
    next += here;
    remaining -= here;
    std::uint64_t next_cap = 0;
    DKQ_TRY(frame_cap(frame, next_cap));
    put(out + here * sizeof(ieee_sge), chain_to(frame, next_cap, remaining));
    if (frame == 0) {
      r.main_elements = main_slots;
      r.main_chain_index = static_cast<std::int32_t>(here);
    }
    out = static_cast<std::byte*>(chain_frames[frame].cpu);
    cap = next_cap;
    ++frame;
  }
}

}  // namespace dkq::scsi
