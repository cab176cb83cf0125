// dkq/nvme/commands.hpp - builders for the NVMe commands a driver issues.
//
// Each builder returns a filled 64-byte SQE with CID 0 (the submission path
// stamps the command identifier from the tag table) and the data pointer left
// for the PRP/SGL builder, except where the command's data is a single page
// the caller passes in (Identify, Doorbell Buffer Config). Arguments that the
// specification bounds are checked: a bad one is an error, never a malformed
// command on the wire.
#pragma once

#include <cstdint>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/nvme/spec.hpp"

namespace dkq::nvme::cmd {

// Identify (Base 5.17): CNS in CDW10 bits 7:0, CNTID 31:16; one 4 KiB page.
constexpr sqe identify(std::uint8_t cns_value, std::uint32_t nsid, dev_addr page) noexcept {
  sqe s{};
  s.opcode = admin_opc::identify;
  s.nsid = nsid;
  s.prp1 = page.value();
  s.cdw10 = cns_value;
  return s;
}

// Create I/O Completion Queue (Base 5.4): QSIZE (0-based) 31:16, QID 15:0 in
// CDW10; IV 31:16, IEN bit 1, PC bit 0 in CDW11. Physically contiguous only.
inline result<sqe> create_io_cq(std::uint16_t qid, std::uint32_t entries, dev_addr base,
                                bool interrupts, std::uint16_t vector) noexcept {
  if (qid == 0) return status{errc::invalid_argument, "queue 0 is the admin queue"};
  if (entries < 2 || entries > 65536)
    return status{errc::invalid_argument, "an I/O queue holds 2 to 65536 entries", entries};
  if ((base.value() & 0xfff) != 0)
    return status{errc::invalid_argument, "queue memory must be page aligned", base.value()};
  sqe s{};
  s.opcode = admin_opc::create_cq;
  s.prp1 = base.value();
  s.cdw10 = ((entries - 1) << 16) | qid;
  s.cdw11 = (std::uint32_t{vector} << 16) | (interrupts ? 2u : 0u) | 1u;
  return s;
}

// Create I/O Submission Queue (Base 5.5): QSIZE/QID in CDW10; CQID 31:16,
// QPRIO 2:1, PC bit 0 in CDW11.
inline result<sqe> create_io_sq(std::uint16_t qid, std::uint32_t entries, dev_addr base,
                                std::uint16_t cqid) noexcept {
  if (qid == 0 || cqid == 0) return status{errc::invalid_argument, "queue 0 is the admin queue"};
  if (entries < 2 || entries > 65536)
    return status{errc::invalid_argument, "an I/O queue holds 2 to 65536 entries", entries};
  if ((base.value() & 0xfff) != 0)
    return status{errc::invalid_argument, "queue memory must be page aligned", base.value()};
  sqe s{};
  s.opcode = admin_opc::create_sq;
  s.prp1 = base.value();
  s.cdw10 = ((entries - 1) << 16) | qid;
  s.cdw11 = (std::uint32_t{cqid} << 16) | 1u;
  return s;
}

constexpr sqe delete_io_sq(std::uint16_t qid) noexcept {
  sqe s{};
  s.opcode = admin_opc::delete_sq;
  s.cdw10 = qid;
  return s;
}
constexpr sqe delete_io_cq(std::uint16_t qid) noexcept {
  sqe s{};
  s.opcode = admin_opc::delete_cq;
  s.cdw10 = qid;
  return s;
}

// Set Features / Number of Queues (Base 5.27.1.5): NCQR 31:16, NSQR 15:0,
// both 0-based. The completion's DW0 has the numbers allocated, same layout.
inline result<sqe> set_number_of_queues(std::uint32_t sq_count, std::uint32_t cq_count) noexcept {
  if (sq_count == 0 || cq_count == 0 || sq_count > 65535 || cq_count > 65535)
    return status{errc::invalid_argument, "ask for 1 to 65535 I/O queues"};
  sqe s{};
  s.opcode = admin_opc::set_features;
  s.cdw10 = fid::number_of_queues;
  s.cdw11 = ((cq_count - 1) << 16) | (sq_count - 1);
  return s;
}

// Abort (Base 5.1): CID 31:16, SQID 15:0.
constexpr sqe abort(std::uint16_t sqid, std::uint16_t cid) noexcept {
  sqe s{};
  s.opcode = admin_opc::abort;
  s.cdw10 = (std::uint32_t{cid} << 16) | sqid;
  return s;
}

constexpr sqe async_event_request() noexcept {
  sqe s{};
  s.opcode = admin_opc::async_event_request;
  return s;
}

// Doorbell Buffer Config (Base 5.8): PRP1 = shadow doorbell page, PRP2 =
// EventIdx page; both one memory page, page aligned.
inline result<sqe> doorbell_buffer_config(dev_addr shadow, dev_addr eventidx) noexcept {
  if ((shadow.value() & 0xfff) != 0 || (eventidx.value() & 0xfff) != 0)
    return status{errc::invalid_argument, "shadow doorbell and EventIdx buffers must be page aligned"};
  sqe s{};
  s.opcode = admin_opc::doorbell_buffer_config;
  s.prp1 = shadow.value();
  s.prp2 = eventidx.value();
  return s;
}

// Read / Write (NVM Command Set 3.2.4 / 3.2.6): SLBA in CDW10-11, NLB
// (0-based) in CDW12 15:0, FUA bit 30.
inline result<sqe> rw(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t slba,
                      std::uint32_t blocks, bool fua = false) noexcept {
  if (opcode != io_opc::read && opcode != io_opc::write)
    return status{errc::invalid_argument, "rw() builds Read or Write only", opcode};
  if (nsid == 0 || nsid == 0xffffffffu) return status{errc::invalid_argument, "invalid namespace id", nsid};
  if (blocks == 0 || blocks > 65536)
    return status{errc::invalid_argument, "one command moves 1 to 65536 blocks", blocks};
  if (slba + blocks < slba) return status{errc::out_of_range, "LBA range wraps", slba};
  sqe s{};
  s.opcode = opcode;
  s.nsid = nsid;
  s.cdw10 = static_cast<std::uint32_t>(slba);
  s.cdw11 = static_cast<std::uint32_t>(slba >> 32);
  s.cdw12 = (blocks - 1) | (fua ? (1u << 30) : 0u);
  return s;
}
inline result<sqe> read(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) noexcept {
  return rw(io_opc::read, nsid, slba, blocks);
}
inline result<sqe> write(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks,
                         bool fua = false) noexcept {
  return rw(io_opc::write, nsid, slba, blocks, fua);
}

// Flush (NVM Command Set 3.2.2): commits the volatile write cache for nsid.
constexpr sqe flush(std::uint32_t nsid) noexcept {
  sqe s{};
  s.opcode = io_opc::flush;
  s.nsid = nsid;
  return s;
}

// Write Zeroes (NVM Command Set 3.2.8): like Write without data; DEAC
// (bit 25 of CDW12) lets the controller deallocate instead.
inline result<sqe> write_zeroes(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks,
                                bool deallocate = false) noexcept {
  if (nsid == 0 || nsid == 0xffffffffu) return status{errc::invalid_argument, "invalid namespace id", nsid};
  if (blocks == 0 || blocks > 65536)
    return status{errc::invalid_argument, "one command covers 1 to 65536 blocks", blocks};
  if (slba + blocks < slba) return status{errc::out_of_range, "LBA range wraps", slba};
  sqe s{};
  s.opcode = io_opc::write_zeroes;
  s.nsid = nsid;
  s.cdw10 = static_cast<std::uint32_t>(slba);
  s.cdw11 = static_cast<std::uint32_t>(slba >> 32);
  s.cdw12 = (blocks - 1) | (deallocate ? (1u << 25) : 0u);
  return s;
}

// Dataset Management range (NVM Command Set 3.2.3, Figure 40): 16 bytes.
struct dsm_range {
  std::uint32_t context_attributes;
  std::uint32_t blocks;  // not 0-based
  std::uint64_t slba;
};
static_assert(sizeof(dsm_range) == 16);

// Dataset Management with the Attribute-Deallocate bit (CDW11 bit 2); the
// ranges (1 to 256, 16 bytes each) sit in one page the caller fills and maps.
inline result<sqe> deallocate(std::uint32_t nsid, std::uint32_t range_count, dev_addr ranges) noexcept {
  if (nsid == 0 || nsid == 0xffffffffu) return status{errc::invalid_argument, "invalid namespace id", nsid};
  if (range_count == 0 || range_count > 256)
    return status{errc::invalid_argument, "Dataset Management takes 1 to 256 ranges", range_count};
  if ((ranges.value() & 0xf) != 0)
    return status{errc::invalid_argument, "range list must be 16-byte aligned", ranges.value()};
  // PRP1 alone describes the list, so it must not cross a 4 KiB page.
  if ((ranges.value() & 0xfff) + std::uint64_t{range_count} * sizeof(dsm_range) > 4096)
    return status{errc::invalid_argument, "range list must not cross a page", ranges.value()};
  sqe s{};
  s.opcode = io_opc::dataset_management;
  s.nsid = nsid;
  s.prp1 = ranges.value();
  s.cdw10 = range_count - 1;
  s.cdw11 = 1u << 2;
  return s;
}

}  // namespace dkq::nvme::cmd
