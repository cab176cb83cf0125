// NVMe protocol layer: register decoding, doorbell offsets, status decoding
// and command builders, checked field by field against the specification.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "dkq/nvme/commands.hpp"
#include "dkq/nvme/spec.hpp"
#include "dkq/nvme/status.hpp"

namespace nv = dkq::nvme;

TEST(NvmeSpec, CapDecode) {
  // MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, NSSRS, CSS NVM (bit 0), MPSMIN 0, MPSMAX 4, CMBS
  const std::uint64_t cap = 0x07ffull | (1ull << 16) | (15ull << 24) | (0ull << 32) | (1ull << 36) |
                            (1ull << 37) | (0ull << 48) | (4ull << 52) | (1ull << 57);
  const auto f = nv::cap_fields::decode(cap);
  EXPECT_EQ(f.mqes, 2047u);
  EXPECT_TRUE(f.cqr);
  EXPECT_EQ(f.timeout_ms(), 7500u);
  EXPECT_EQ(f.dstrd, 0u);
  EXPECT_TRUE(f.nssrs);
  EXPECT_EQ(f.css, 1u);
  EXPECT_EQ(f.min_page_size(), 4096u);
  EXPECT_EQ(f.max_page_size(), 65536u);
  EXPECT_TRUE(f.cmbs);
  const auto g = nv::cap_fields::decode(std::uint64_t{3} << 32);
  EXPECT_EQ(g.dstrd, 3u);
  EXPECT_FALSE(g.cqr);
}

TEST(NvmeSpec, DoorbellOffsets) {
  EXPECT_EQ(nv::sq_tail_doorbell(0, 0), 0x1000u);
  EXPECT_EQ(nv::cq_head_doorbell(0, 0), 0x1004u);
  EXPECT_EQ(nv::sq_tail_doorbell(1, 0), 0x1008u);
  EXPECT_EQ(nv::cq_head_doorbell(1, 0), 0x100cu);
  // DSTRD 2: 16-byte stride
  EXPECT_EQ(nv::sq_tail_doorbell(1, 2), 0x1020u);
  EXPECT_EQ(nv::cq_head_doorbell(3, 2), 0x1070u);
  EXPECT_EQ(nv::make_aqa(32, 64), (63u << 16) | 31u);
}

TEST(NvmeStatus, DecodeFieldsFromCqe) {
  // DW3 status halfword: phase 1, SC 0x80, SCT 0, CRD 2, M, DNR
  const std::uint16_t st = static_cast<std::uint16_t>(1u | (0x80u << 1) | (0u << 9) | (2u << 12) |
                                                      (1u << 14) | (1u << 15));
  const auto f = nv::status_field::decode(st);
  EXPECT_EQ(f.sc, 0x80u);
  EXPECT_EQ(f.sct, 0u);
  EXPECT_EQ(f.crd, 2u);
  EXPECT_TRUE(f.more);
  EXPECT_TRUE(f.dnr);
  EXPECT_FALSE(f.success());
  const dkq::status s = nv::to_status(f);
  EXPECT_EQ(s.code(), dkq::errc::out_of_range);
  EXPECT_STREQ(s.message(), "LBA Out of Range");
  EXPECT_EQ(s.detail(), 0x80u);
}

TEST(NvmeStatus, PhaseBitAloneIsSuccess) {
  nv::cqe c{};
  c.status = 1;  // phase only
  EXPECT_TRUE(nv::to_status(c).ok());
}

TEST(NvmeStatus, NamesForEveryTypeAndMapping) {
  auto name = [](std::uint8_t sct, std::uint8_t sc) {
    return std::string(nv::status_name(nv::status_field{sc, sct, 0, false, false}));
  };
  EXPECT_EQ(name(0, 0x01), "Invalid Command Opcode");
  EXPECT_EQ(name(0, 0x13), "PRP Offset Invalid");
  EXPECT_EQ(name(1, 0x01), "Invalid Queue Identifier");
  EXPECT_EQ(name(1, 0x08), "Invalid Interrupt Vector");
  EXPECT_EQ(name(2, 0x81), "Unrecovered Read Error");
  EXPECT_EQ(name(3, 0x71), "Command Aborted By Host");
  EXPECT_EQ(name(7, 0x00), "Vendor Specific Status");
  EXPECT_EQ(name(5, 0x00), "Reserved Status Code Type");
  EXPECT_EQ(name(0, 0x55), "Unknown Generic Status");
  // Every generic code below 0x23 except the reserved 0x17 has a name.
  for (unsigned sc = 0; sc <= 0x22; ++sc) {
    if (sc == 0x17) continue;
    EXPECT_NE(name(0, static_cast<std::uint8_t>(sc)), "Unknown Generic Status") << sc;
  }
  using dkq::errc;
  EXPECT_EQ(nv::to_status(nv::status_field{0x02, 0, 0, false, true}).code(), errc::invalid_argument);
  EXPECT_EQ(nv::to_status(nv::status_field{0x07, 0, 0, false, false}).code(), errc::timeout);
  EXPECT_EQ(nv::to_status(nv::status_field{0x13, 0, 0, false, false}).code(), errc::protocol_error);
  EXPECT_EQ(nv::to_status(nv::status_field{0x06, 0, 0, false, false}).code(), errc::device_error);
  EXPECT_EQ(nv::to_status(nv::status_field{0x81, 2, 0, false, false}).code(), errc::io_error);
  EXPECT_EQ(nv::to_status(nv::status_field{0x81, 2, 0, false, false}).detail(), 0x281u);
}

TEST(NvmeCommands, Identify) {
  const auto s = nv::cmd::identify(nv::cns::ns, 3, dkq::dev_addr{0x12345000});
  EXPECT_EQ(s.opcode, 0x06);
  EXPECT_EQ(s.nsid, 3u);
  EXPECT_EQ(s.prp1, 0x12345000u);
  EXPECT_EQ(s.cdw10, 0u);
  EXPECT_EQ(s.cid, 0u);
}

TEST(NvmeCommands, CreateQueues) {
  auto cq = nv::cmd::create_io_cq(2, 1024, dkq::dev_addr{0x200000}, true, 5);
  ASSERT_TRUE(cq.ok());
  EXPECT_EQ(cq->opcode, 0x05);
  EXPECT_EQ(cq->cdw10, (1023u << 16) | 2u);
  EXPECT_EQ(cq->cdw11, (5u << 16) | 0x3u);
  auto polled = nv::cmd::create_io_cq(2, 1024, dkq::dev_addr{0x200000}, false, 0);
  EXPECT_EQ(polled->cdw11, 0x1u);
  auto sq = nv::cmd::create_io_sq(2, 64, dkq::dev_addr{0x300000}, 2);
  ASSERT_TRUE(sq.ok());
  EXPECT_EQ(sq->opcode, 0x01);
  EXPECT_EQ(sq->cdw10, (63u << 16) | 2u);
  EXPECT_EQ(sq->cdw11, (2u << 16) | 1u);
  EXPECT_EQ(nv::cmd::create_io_cq(0, 16, dkq::dev_addr{0}, false, 0).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(nv::cmd::create_io_cq(1, 1, dkq::dev_addr{0}, false, 0).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(nv::cmd::create_io_sq(1, 65537, dkq::dev_addr{0}, 1).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(nv::cmd::create_io_sq(1, 16, dkq::dev_addr{0x1008}, 1).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(nv::cmd::create_io_sq(1, 16, dkq::dev_addr{0x1000}, 0).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(nv::cmd::delete_io_sq(4).cdw10, 4u);
  EXPECT_EQ(nv::cmd::delete_io_cq(4).opcode, 0x04);
}

TEST(NvmeCommands, FeaturesAbortAerDbbuf) {
  auto q = nv::cmd::set_number_of_queues(4, 2);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->opcode, 0x09);
  EXPECT_EQ(q->cdw10, 0x07u);
  EXPECT_EQ(q->cdw11, (1u << 16) | 3u);
  EXPECT_FALSE(nv::cmd::set_number_of_queues(0, 1).ok());
  EXPECT_FALSE(nv::cmd::set_number_of_queues(1, 65536).ok());
  const auto a = nv::cmd::abort(3, 0x1234);
  EXPECT_EQ(a.opcode, 0x08);
  EXPECT_EQ(a.cdw10, (0x1234u << 16) | 3u);
  EXPECT_EQ(nv::cmd::async_event_request().opcode, 0x0c);
  auto d = nv::cmd::doorbell_buffer_config(dkq::dev_addr{0x1000}, dkq::dev_addr{0x2000});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->opcode, 0x7c);
  EXPECT_EQ(d->prp1, 0x1000u);
  EXPECT_EQ(d->prp2, 0x2000u);
  EXPECT_FALSE(nv::cmd::doorbell_buffer_config(dkq::dev_addr{0x1000}, dkq::dev_addr{0x2004}).ok());
}

TEST(NvmeCommands, ReadWrite) {
  auto r = nv::cmd::read(1, 0x1'2345'6789ull, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->opcode, 0x02);
  EXPECT_EQ(r->nsid, 1u);
  EXPECT_EQ(r->cdw10, 0x23456789u);
  EXPECT_EQ(r->cdw11, 0x1u);
  EXPECT_EQ(r->cdw12, 7u);
  auto w = nv::cmd::write(2, 0, 65536, true);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->opcode, 0x01);
  EXPECT_EQ(w->cdw12, 65535u | (1u << 30));
  using dkq::errc;
  EXPECT_EQ(nv::cmd::read(1, 0, 0).error().code(), errc::invalid_argument);
  EXPECT_EQ(nv::cmd::read(1, 0, 65537).error().code(), errc::invalid_argument);
  EXPECT_EQ(nv::cmd::read(0, 0, 1).error().code(), errc::invalid_argument);
  EXPECT_EQ(nv::cmd::read(0xffffffffu, 0, 1).error().code(), errc::invalid_argument);
  EXPECT_EQ(nv::cmd::write(1, ~0ull - 2, 8).error().code(), errc::out_of_range);
  EXPECT_EQ(nv::cmd::rw(0x05, 1, 0, 1).error().code(), errc::invalid_argument);
}

TEST(NvmeCommands, FlushWriteZeroesDeallocate) {
  const auto f = nv::cmd::flush(7);
  EXPECT_EQ(f.opcode, 0x00);
  EXPECT_EQ(f.nsid, 7u);
  auto z = nv::cmd::write_zeroes(1, 100, 16, true);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->opcode, 0x08);
  EXPECT_EQ(z->cdw10, 100u);
  EXPECT_EQ(z->cdw12, 15u | (1u << 25));
  EXPECT_FALSE(nv::cmd::write_zeroes(1, 0, 0).ok());
  auto d = nv::cmd::deallocate(1, 256, dkq::dev_addr{0x5000});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->opcode, 0x09);
  EXPECT_EQ(d->cdw10, 255u);
  EXPECT_EQ(d->cdw11, 4u);
  EXPECT_EQ(d->prp1, 0x5000u);
  EXPECT_FALSE(nv::cmd::deallocate(1, 0, dkq::dev_addr{0x5000}).ok());
  EXPECT_FALSE(nv::cmd::deallocate(1, 257, dkq::dev_addr{0x5000}).ok());
  EXPECT_FALSE(nv::cmd::deallocate(1, 2, dkq::dev_addr{0x5ff0}).ok()) << "crosses a page";
  EXPECT_TRUE(nv::cmd::deallocate(1, 1, dkq::dev_addr{0x5ff0}).ok());
  EXPECT_FALSE(nv::cmd::deallocate(1, 1, dkq::dev_addr{0x5008}).ok());
}
