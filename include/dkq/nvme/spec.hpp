// dkq/nvme/spec.hpp - NVMe wire formats: controller registers, SQE, CQE,
// opcodes, Identify data offsets, status fields.
//
// Section numbers refer to the NVM Express Base Specification 2.0 (registers
// in "Controller Registers" 3.1, SQE/CQE in 4.2/4.6) and the NVM Command Set
// Specification 1.0 (I/O commands, Identify Namespace). Only what a driver
// needs; every layout is checked with static_asserts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/bits.hpp"

namespace dkq::nvme {

// ---- controller registers (Base 3.1.3) --------------------------------------
namespace reg {
inline constexpr std::size_t cap = 0x00;    // 64-bit Controller Capabilities
inline constexpr std::size_t vs = 0x08;     // Version
inline constexpr std::size_t intms = 0x0c;  // Interrupt Mask Set
inline constexpr std::size_t intmc = 0x10;  // Interrupt Mask Clear
inline constexpr std::size_t cc = 0x14;     // Controller Configuration
inline constexpr std::size_t csts = 0x1c;   // Controller Status
inline constexpr std::size_t nssr = 0x20;   // NVM Subsystem Reset
inline constexpr std::size_t aqa = 0x24;    // Admin Queue Attributes
inline constexpr std::size_t asq = 0x28;    // 64-bit Admin SQ Base Address
inline constexpr std::size_t acq = 0x30;    // 64-bit Admin CQ Base Address
inline constexpr std::size_t doorbell_base = 0x1000;
}  // namespace reg

// Doorbell offset of queue `qid` (Base 3.1.3.22): SQ y tail at
// 0x1000 + (2y)(4 << DSTRD), CQ y head at 0x1000 + (2y+1)(4 << DSTRD).
constexpr std::size_t sq_tail_doorbell(std::uint16_t qid, unsigned dstrd) noexcept {
  return reg::doorbell_base + (std::size_t{2} * qid) * (std::size_t{4} << dstrd);
}
constexpr std::size_t cq_head_doorbell(std::uint16_t qid, unsigned dstrd) noexcept {
  return reg::doorbell_base + (std::size_t{2} * qid + 1) * (std::size_t{4} << dstrd);
}

// CAP fields (Base 3.1.3.1).
struct cap_fields {
  std::uint32_t mqes;     // maximum queue entries, 0-based (entries = mqes + 1)
  bool cqr;               // contiguous queues required
  std::uint32_t to_500ms; // worst-case ready transition time in 500 ms units
  unsigned dstrd;         // doorbell stride: 4 << dstrd bytes
  bool nssrs;             // NVM subsystem reset supported
  std::uint8_t css;       // command sets supported (bit 0: NVM, bit 7: admin only)
  unsigned mpsmin;        // minimum memory page size: 2^(12 + mpsmin)
  unsigned mpsmax;        // maximum memory page size: 2^(12 + mpsmax)
  bool cmbs;              // controller memory buffer supported

  static constexpr cap_fields decode(std::uint64_t cap) noexcept {
    return {static_cast<std::uint32_t>(bitfield(cap, 0, 16)),
            bitfield(cap, 16, 1) != 0,
            static_cast<std::uint32_t>(bitfield(cap, 24, 8)),
            static_cast<unsigned>(bitfield(cap, 32, 4)),
            bitfield(cap, 36, 1) != 0,
            static_cast<std::uint8_t>(bitfield(cap, 37, 8)),
            static_cast<unsigned>(bitfield(cap, 48, 4)),
            static_cast<unsigned>(bitfield(cap, 52, 4)),
            bitfield(cap, 57, 1) != 0};
  }
  constexpr std::uint64_t min_page_size() const noexcept { return std::uint64_t{1} << (12 + mpsmin); }
  constexpr std::uint64_t max_page_size() const noexcept { return std::uint64_t{1} << (12 + mpsmax); }
  // CAP.TO in milliseconds; 0 means the controller did not say, and a driver
  // must still bound its wait.
  constexpr std::uint32_t timeout_ms() const noexcept { return to_500ms * 500u; }
};

// CC (Base 3.1.3.5).
namespace cc {
inline constexpr std::uint32_t en = 1u << 0;
inline constexpr unsigned css_shift = 4;       // 000b: NVM command set
inline constexpr unsigned mps_shift = 7;       // page size 2^(12+MPS)
inline constexpr unsigned ams_shift = 11;      // 000b: round robin
inline constexpr unsigned shn_shift = 14;      // 01b normal, 10b abrupt shutdown
inline constexpr std::uint32_t shn_mask = 3u << shn_shift;
inline constexpr std::uint32_t shn_normal = 1u << shn_shift;
inline constexpr std::uint32_t shn_abrupt = 2u << shn_shift;
inline constexpr unsigned iosqes_shift = 16;   // log2 of SQE size (6: 64 bytes)
inline constexpr unsigned iocqes_shift = 20;   // log2 of CQE size (4: 16 bytes)
}  // namespace cc

// CSTS (Base 3.1.3.6).
namespace csts {
inline constexpr std::uint32_t rdy = 1u << 0;
inline constexpr std::uint32_t cfs = 1u << 1;  // controller fatal status
inline constexpr unsigned shst_shift = 2;
inline constexpr std::uint32_t shst_mask = 3u << shst_shift;
inline constexpr std::uint32_t shst_complete = 2u << shst_shift;
inline constexpr std::uint32_t nssro = 1u << 4;
}  // namespace csts

// AQA (Base 3.1.3.7): 0-based sizes.
constexpr std::uint32_t make_aqa(std::uint32_t sq_entries, std::uint32_t cq_entries) noexcept {
  return ((cq_entries - 1) << 16) | (sq_entries - 1);
}

// ---- submission queue entry (Base 4.2) --------------------------------------
struct sqe {
  std::uint8_t opcode;
  std::uint8_t flags;   // FUSE bits 1:0, PSDT bits 7:6
  std::uint16_t cid;    // command identifier
  std::uint32_t nsid;
  std::uint32_t cdw2;
  std::uint32_t cdw3;
  std::uint64_t mptr;
  std::uint64_t prp1;   // or the first 8 bytes of SGL1
  std::uint64_t prp2;   // or the last 8 bytes of SGL1
  std::uint32_t cdw10;
  std::uint32_t cdw11;
  std::uint32_t cdw12;
  std::uint32_t cdw13;
  std::uint32_t cdw14;
  std::uint32_t cdw15;
};
static_assert(sizeof(sqe) == 64);
static_assert(offsetof(sqe, prp1) == 24 && offsetof(sqe, cdw10) == 40);

// PSDT (Base 4.2, CDW0 bits 15:14): how DPTR is to be read.
namespace psdt {
inline constexpr std::uint8_t prp = 0u << 6;
inline constexpr std::uint8_t sgl_mptr_contig = 1u << 6;  // SGL for data, MPTR is an address
inline constexpr std::uint8_t sgl_mptr_sgl = 2u << 6;
}  // namespace psdt

// ---- completion queue entry (Base 4.6) --------------------------------------
struct cqe {
  std::uint32_t dw0;    // command specific
  std::uint32_t dw1;
  std::uint16_t sq_head;
  std::uint16_t sq_id;
  std::uint16_t cid;
  std::uint16_t status;  // bit 0: phase tag; bits 15:1: status field
};
static_assert(sizeof(cqe) == 16);
static_assert(offsetof(cqe, status) == 14);

// The status field (CQE DW3 bits 31:17, i.e. cqe::status >> 1), Base 4.6.1.
struct status_field {
  std::uint8_t sc;   // status code
  std::uint8_t sct;  // status code type
  std::uint8_t crd;  // command retry delay
  bool more;         // more info in the error log page
  bool dnr;          // do not retry

  static constexpr status_field decode(std::uint16_t cqe_status) noexcept {
    const std::uint16_t sf = static_cast<std::uint16_t>(cqe_status >> 1);
    return {static_cast<std::uint8_t>(sf & 0xff), static_cast<std::uint8_t>((sf >> 8) & 0x7),
            static_cast<std::uint8_t>((sf >> 11) & 0x3), ((sf >> 13) & 1) != 0,
            ((sf >> 14) & 1) != 0};
  }
  constexpr bool success() const noexcept { return sc == 0 && sct == 0; }
};

namespace sct {
inline constexpr std::uint8_t generic = 0;
inline constexpr std::uint8_t command_specific = 1;
inline constexpr std::uint8_t media = 2;
inline constexpr std::uint8_t path = 3;
inline constexpr std::uint8_t vendor = 7;
}  // namespace sct

// ---- opcodes ------------------------------------------------------------------
namespace admin_opc {
inline constexpr std::uint8_t delete_sq = 0x00;
inline constexpr std::uint8_t create_sq = 0x01;
inline constexpr std::uint8_t get_log_page = 0x02;
inline constexpr std::uint8_t delete_cq = 0x04;
inline constexpr std::uint8_t create_cq = 0x05;
inline constexpr std::uint8_t identify = 0x06;
inline constexpr std::uint8_t abort = 0x08;
inline constexpr std::uint8_t set_features = 0x09;
inline constexpr std::uint8_t get_features = 0x0a;
inline constexpr std::uint8_t async_event_request = 0x0c;
inline constexpr std::uint8_t doorbell_buffer_config = 0x7c;
}  // namespace admin_opc

namespace io_opc {
inline constexpr std::uint8_t flush = 0x00;
inline constexpr std::uint8_t write = 0x01;
inline constexpr std::uint8_t read = 0x02;
inline constexpr std::uint8_t write_zeroes = 0x08;
inline constexpr std::uint8_t dataset_management = 0x09;
}  // namespace io_opc

// Identify CNS values (Base 5.17.1).
namespace cns {
inline constexpr std::uint8_t ns = 0x00;
inline constexpr std::uint8_t ctrl = 0x01;
inline constexpr std::uint8_t active_ns_list = 0x02;
}  // namespace cns

// Feature identifiers (Base 5.27.1).
namespace fid {
inline constexpr std::uint8_t arbitration = 0x01;
inline constexpr std::uint8_t number_of_queues = 0x07;
inline constexpr std::uint8_t interrupt_coalescing = 0x08;
inline constexpr std::uint8_t async_event_config = 0x0b;
inline constexpr std::uint8_t volatile_write_cache = 0x06;
}  // namespace fid

// ---- Identify Controller data (Base 5.17.2.1), byte offsets ---------------------
namespace id_ctrl {
inline constexpr std::size_t vid = 0;      // u16 PCI vendor id
inline constexpr std::size_t ssvid = 2;    // u16
inline constexpr std::size_t sn = 4;       // 20 ASCII bytes
inline constexpr std::size_t mn = 24;      // 40 ASCII bytes
inline constexpr std::size_t fr = 64;      // 8 ASCII bytes
inline constexpr std::size_t mdts = 77;    // u8: max transfer 2^MDTS min pages, 0 = none
inline constexpr std::size_t cntlid = 78;  // u16
inline constexpr std::size_t ver = 80;     // u32
inline constexpr std::size_t oacs = 256;   // u16: bit 8 Doorbell Buffer Config
inline constexpr std::size_t acl = 258;    // u8: abort command limit, 0-based
inline constexpr std::size_t aerl = 259;   // u8: async event request limit, 0-based
inline constexpr std::size_t sqes = 512;   // u8: bits 3:0 required, 7:4 max (log2)
inline constexpr std::size_t cqes = 513;   // u8
inline constexpr std::size_t maxcmd = 514; // u16
inline constexpr std::size_t nn = 516;     // u32: number of namespaces
inline constexpr std::size_t oncs = 520;   // u16: bit 2 DSM, bit 3 Write Zeroes
inline constexpr std::size_t vwc = 525;    // u8: bit 0 volatile write cache present
inline constexpr std::size_t sgls = 536;   // u32: SGL support
inline constexpr std::size_t subnqn = 768; // 256 bytes
inline constexpr std::uint16_t oacs_dbbuf = 1u << 8;
inline constexpr std::uint16_t oncs_dsm = 1u << 2;
inline constexpr std::uint16_t oncs_write_zeroes = 1u << 3;
}  // namespace id_ctrl

// ---- Identify Namespace data (NVM Command Set 4.1.5.1), byte offsets ------------
namespace id_ns {
inline constexpr std::size_t nsze = 0;    // u64 size in logical blocks
inline constexpr std::size_t ncap = 8;    // u64
inline constexpr std::size_t nuse = 16;   // u64
inline constexpr std::size_t nsfeat = 24; // u8
inline constexpr std::size_t nlbaf = 25;  // u8: number of LBA formats, 0-based
inline constexpr std::size_t flbas = 26;  // u8: bits 3:0 (and 6:5) format index
inline constexpr std::size_t lbaf0 = 128; // 64 x u32: MS 15:0, LBADS 23:16, RP 25:24
}  // namespace id_ns

inline constexpr std::size_t identify_bytes = 4096;

}  // namespace dkq::nvme
