// The second walk-through of docs/writing-a-driver.md: a driver for a device
// that is not NVMe - a paravirtual SCSI HBA with PVSCSI-shaped rings
// (free-running producer/consumer indices in a rings-state page, 64-byte
// requests, 32-byte completions, a doorbell that is "write the index word,
// then kick a register"), modelled in tests/support/fake_pv_ring_device.hpp.
//
// The device-specific part is the three things below marked (1), (2), (3):
// its wire structs and layout, its bring-up, its command builder. Rings,
// doorbells and their batching, tags with generations, deadlines, timeout
// scan, reset and every check of what the device sends come from dkq.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/ring_pair.hpp"
#include "dkq/scsi/command.hpp"
#include "support/fake_nvme_device.hpp"  // test_dma_buffer
#include "support/fake_pv_ring_device.hpp"

namespace {

using dkq::errc;
using dkq::status;
using dkq::test::fake_pv_ring_device;
using dkq::test::pv_completion;
using dkq::test::pv_request;
using dkq::test::pv_rings_state;
using dkq::test::test_dma_buffer;

// (1) The layout: where the tag goes and comes back, how indices count, how
// the request ring's head is reported.
struct pv_layout {
  static constexpr std::size_t sqe_size = sizeof(pv_request);
  static constexpr dkq::index_mode sq_mode = dkq::index_mode::free_running;
  static constexpr dkq::cq_kind cq_kind = dkq::cq_kind::producer_index;
  static constexpr dkq::index_mode cq_mode = dkq::index_mode::free_running;
  static constexpr dkq::sq_head_report head = dkq::sq_head_report::index_word;  // req_cons
  using cqe_type = pv_completion;
  static void set_tag(void* sqe, std::uint16_t tag) noexcept {
    const std::uint64_t ctx = tag;
    std::memcpy(static_cast<std::uint8_t*>(sqe) + offsetof(pv_request, context), &ctx, sizeof ctx);
  }
  static std::uint16_t tag_of(const pv_completion& c) noexcept {
    // A context that does not fit a tag is passed on as one the table refuses.
    return c.context <= 0xffff ? static_cast<std::uint16_t>(c.context) : std::uint16_t{0};
  }
};

// The doorbells: requests = publish req_prod in the state page, then kick;
// completions = publish cmp_cons in the state page (the device reads it).
using kick_t = fake_pv_ring_device::kick_doorbell;  // on hardware: dkq::mmio_doorbell on the kick register
using req_db = dkq::composite_doorbell<dkq::host_word_doorbell, kick_t>;
using cmp_db = dkq::host_word_doorbell;

struct request_ctx {
  std::uint64_t user;
};
using rings = dkq::ring_pair<pv_layout, req_db, cmp_db, request_ctx>;

struct pv_completion_result {
  std::uint64_t user;
  status st;
};

class pv_driver {
 public:
  // (2) Bring-up: the rings and the state page in DMA memory, handed to the
  // device (on hardware: a SETUP_RINGS command with their page numbers).
  status start(fake_pv_ring_device& dev, pv_rings_state* state, dkq::dma_region req_mem, unsigned req_log2,
               dkq::dma_region cmp_mem, unsigned cmp_log2, std::uint32_t start_index = 0) {
    rings::config c;
    c.sq_memory = req_mem;
    c.sq_entries = 1u << req_log2;
    c.sq_db = req_db(cmp_db_word(&state->req_prod), dev.kick_db());
    c.cq_memory = cmp_mem;
    c.cq_entries = 1u << cmp_log2;
    c.cq_producer = &state->cmp_prod;
    c.cq_db = cmp_db(&state->cmp_cons);
    c.sq_head_word = &state->req_cons;
    c.tag_base = 1;  // context 0 means "no request" to this device
    c.start_index = start_index;
    return rings_.init(c);
  }

  // (3) The command builder: a SCSI READ(10)/WRITE(10) request.
  status read_write(bool write, std::uint32_t lba, std::uint16_t blocks, dkq::dev_addr buf, std::uint64_t user) {
    pv_request r{};
    r.data_addr = buf.value();
    r.data_len = std::uint32_t{blocks} * 512;
    r.flags = write ? 2 : 1;
    r.cdb_len = 10;
    r.cdb[0] = write ? 0x2a : 0x28;
    r.cdb[2] = static_cast<std::uint8_t>(lba >> 24);
    r.cdb[3] = static_cast<std::uint8_t>(lba >> 16);
    r.cdb[4] = static_cast<std::uint8_t>(lba >> 8);
    r.cdb[5] = static_cast<std::uint8_t>(lba);
    r.cdb[7] = static_cast<std::uint8_t>(blocks >> 8);
    r.cdb[8] = static_cast<std::uint8_t>(blocks);
    auto tag = rings_.submit(&r, request_ctx{user});
    return tag ? dkq::ok_status : tag.error();
  }

  // Everything else is dkq's: one kick per batch, one consumer write per
  // batch, every completion checked before it is delivered.
  void ring() { rings_.flush(); }
  template <class H>
  std::uint32_t poll(H&& done) {
    return rings_.process_completions(
        64,
        [&](request_ctx& c, const pv_completion& e) {
          // Host status, SCSI status and sense to one answer: the same
          // classification every SCSI transport uses (dkq/scsi/command.hpp).
          dkq::scsi::raw_result raw;
          if (e.host_status != 0) raw.transport = status{errc::io_error, "host adapter error", e.host_status};
          raw.status_byte = static_cast<std::uint8_t>(e.scsi_status);
          done(pv_completion_result{c.user, dkq::scsi::classify(raw).st});
        },
        [&](status s, const pv_completion*) {
          ++protocol_errors;
          last_error = s;
        });
  }
  rings& pair() { return rings_; }
  std::uint64_t protocol_errors = 0;
  status last_error{};

 private:
  static dkq::host_word_doorbell cmp_db_word(std::uint32_t* w) { return dkq::host_word_doorbell{w}; }
  rings rings_;
};

struct rig {
  static constexpr unsigned req_log2 = 4, cmp_log2 = 5;
  test_dma_buffer state_mem{sizeof(pv_rings_state)};
  test_dma_buffer req_mem{sizeof(pv_request) << req_log2};
  test_dma_buffer cmp_mem{sizeof(pv_completion) << cmp_log2};
  test_dma_buffer data{64 * 512};
  pv_rings_state* state = state_mem.region().cpu_at<pv_rings_state>();
  fake_pv_ring_device dev{state, req_mem.region().cpu_at<pv_request>(), req_log2,
                          cmp_mem.region().cpu_at<pv_completion>(), cmp_log2, 1024};
  pv_driver drv;
  // The model reads device addresses as host pointers (an identity IOMMU).
  dkq::dev_addr addr(std::uint32_t slot) {
    return dkq::dev_addr{reinterpret_cast<std::uintptr_t>(data.region().cpu_at<std::uint8_t>() + slot * 512u)};
  }
  explicit rig(std::uint32_t start = 0) {
    dev.start_at(start);
    EXPECT_TRUE(drv.start(dev, state, req_mem.region(), req_log2, cmp_mem.region(), cmp_log2, start).ok());
  }
};

TEST(PvRingDriver, WritesAndReadsBackAcrossTheIndexWrapWithBatchedDoorbells) {
  rig r(0xffffff00u);  // free-running indices cross 2^32 during the run
  std::map<std::uint64_t, int> seen;
  std::uint64_t next = 0, errors = 0;
  auto done = [&](const pv_completion_result& c) {
    ++seen[c.user];
    if (!c.st.ok()) ++errors;
  };
  // 2000 one-block writes of a pattern, 8 per batch, then read them back.
  for (int pass = 0; pass < 2; ++pass) {
    const bool write = pass == 0;
    for (std::uint32_t batch = 0; batch < 250; ++batch) {
      for (std::uint32_t i = 0; i < 8; ++i) {
        const std::uint32_t lba = (batch * 8 + i) % 1024;
        const std::uint32_t slot = i;
        auto* p = r.data.region().cpu_at<std::uint8_t>() + slot * 512;
        if (write) std::memset(p, static_cast<int>(lba & 0xff), 512);
        ASSERT_TRUE(r.drv.read_write(write, lba, 1, r.addr(slot), next++).ok());
      }
      r.drv.ring();  // one kick for the 8
      r.dev.step();
      EXPECT_EQ(r.drv.poll(done), 8u);
      if (!write) {
        for (std::uint32_t i = 0; i < 8; ++i)
          EXPECT_EQ(r.data.region().cpu_at<std::uint8_t>()[i * 512], ((batch * 8 + i) % 1024) & 0xff);
      }
    }
  }
  EXPECT_EQ(seen.size(), 4000u);
  for (auto& [u, n] : seen) ASSERT_EQ(n, 1) << u;
  EXPECT_EQ(errors, 0u);
  EXPECT_EQ(r.drv.protocol_errors, 0u);
  EXPECT_EQ(r.dev.kicks, 500u);               // one per batch of 8
  EXPECT_EQ(r.dev.last_req_prod_at_kick, 0xffffff00u + 4000u);  // the word was published before each kick
  EXPECT_EQ(r.drv.pair().cq().counters().doorbell_writes, 500u);  // one cmp_cons write per batch
  EXPECT_EQ(r.state->cmp_cons, 0xffffff00u + 4000u);
  EXPECT_EQ(r.dev.writes, 2000u);
  EXPECT_EQ(r.dev.reads, 2000u);
}

TEST(PvRingDriver, WhatTheDeviceSendsIsCheckedBeforeItIsDelivered) {
  rig r;
  std::map<std::uint64_t, int> seen;
  auto done = [&](const pv_completion_result& c) { ++seen[c.user]; };
  // A duplicated completion and a corrupted context: neither is delivered.
  r.dev.duplicate_next = 1;
  r.dev.corrupt_context_next = 0;
  for (std::uint64_t u = 0; u < 4; ++u)
    ASSERT_TRUE(r.drv.read_write(false, static_cast<std::uint32_t>(u), 1, r.addr(static_cast<std::uint32_t>(u)), u).ok());
  r.drv.ring();
  r.dev.step();
  r.drv.poll(done);
  EXPECT_EQ(seen.size(), 4u);
  for (auto& [u, n] : seen) EXPECT_EQ(n, 1) << u;
  EXPECT_EQ(r.drv.protocol_errors, 1u);
  EXPECT_EQ(r.drv.last_error.code(), errc::duplicate);
  // A context that names no request (the device flipped a bit).
  r.dev.corrupt_context_next = 1;
  ASSERT_TRUE(r.drv.read_write(false, 9, 1, r.addr(0), 10).ok());
  r.drv.ring();
  r.dev.step();
  r.drv.poll(done);
  EXPECT_EQ(seen.count(10), 0u);
  EXPECT_EQ(r.drv.protocol_errors, 2u);
  // ... so that request times out and the reset path hands it back once.
  std::uint32_t expired = 0;
  r.drv.pair().timeout_scan(dkq::no_deadline - 1, [&](std::uint16_t, request_ctx&) { ++expired; });
  EXPECT_EQ(expired, 0u);  // submitted without a deadline: nothing expires
  std::uint32_t handed = 0;
  r.drv.pair().reset([&](std::uint16_t, request_ctx& c, bool) {
    ++handed;
    ++seen[c.user];
  }, r.dev.cmp_prod());
  EXPECT_EQ(handed, 1u);
  EXPECT_EQ(seen[10], 1);
  // A producer index more than a ring ahead: protocol error, nothing consumed.
  r.dev.start_at(r.dev.cmp_prod());
  r.drv.pair().reset([](std::uint16_t, request_ctx&, bool) {}, r.dev.cmp_prod());
  ASSERT_TRUE(r.drv.read_write(false, 1, 1, r.addr(0), 20).ok());
  r.drv.ring();
  r.dev.wild_cmp_prod_once = r.dev.cmp_prod() + 1000;
  r.dev.step();
  EXPECT_EQ(r.drv.poll(done), 0u);
  EXPECT_EQ(r.drv.last_error.code(), errc::protocol_error);
  EXPECT_EQ(seen.count(20), 0u);
  // The device publishes the true index again: the request completes once.
  r.dev.restore_cmp_prod();
  EXPECT_EQ(r.drv.poll(done), 1u);
  EXPECT_EQ(seen[20], 1);
}

TEST(PvRingDriver, AFullRequestRingIsNoSpaceNotAnOverwrite) {
  rig r;
  std::uint64_t u = 0;
  dkq::status st;
  while ((st = r.drv.read_write(false, 0, 1, r.addr(0), u)).ok()) ++u;
  EXPECT_EQ(st.code(), errc::no_space);
  EXPECT_EQ(u, 16u);  // free-running: every one of the 16 slots
  r.drv.ring();
  r.dev.step();
  std::uint64_t n = 0;
  r.drv.poll([&](const pv_completion_result&) { ++n; });
  EXPECT_EQ(n, 16u);
  EXPECT_TRUE(r.drv.read_write(false, 0, 1, r.addr(0), u).ok());  // room again
}

}  // namespace
