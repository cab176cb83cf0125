// Queue pair against the software device model (tests/support), with every
// injected fault: each command is delivered exactly once or handed to
// recovery exactly once, never both, never twice.
#include "dkq/queue/queue_pair.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "dkq/nvme/spec.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

// The queue layer's minimal CQE (it may not include the protocol layer) must
// stay layout-identical to the full NVMe structure in dkq/nvme/spec.hpp, so a
// driver can read either view of the same entry.
static_assert(sizeof(dkq::nvme_cqe) == sizeof(dkq::nvme::cqe));
static_assert(offsetof(dkq::nvme_cqe, sq_head) == offsetof(dkq::nvme::cqe, sq_head));
static_assert(offsetof(dkq::nvme_cqe, sq_id) == offsetof(dkq::nvme::cqe, sq_id));
static_assert(offsetof(dkq::nvme_cqe, cid) == offsetof(dkq::nvme::cqe, cid));
static_assert(offsetof(dkq::nvme_cqe, status) == offsetof(dkq::nvme::cqe, status));
// And the identifier goes where the full SQE has it.
static_assert(offsetof(dkq::nvme::sqe, cid) == 2 && offsetof(dkq::nvme::sqe, cdw10) == 40);

using dkq::errc;
using dkq::nvme_cqe;
using dkq::ring_policy;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint32_t>;

struct sqe {
  std::uint8_t b[64];
};
sqe command(std::uint32_t seq) {
  sqe e{};
  e.b[0] = 0x02;  // NVMe Read, for the look of it
  std::memcpy(e.b + 40, &seq, 4);  // CDW10: the model echoes it in DW0
  return e;
}

struct harness {
  explicit harness(std::uint32_t entries, ring_policy policy = ring_policy::batched, std::uint32_t tags = 0)
      : sq_mem(64u * entries, 0x1000000), cq_mem(16u * entries, 0x2000000),
        dev(sq_mem.region(), cq_mem.region(), entries) {
    EXPECT_TRUE(qp.init(sq_mem.region(), cq_mem.region(), entries, dev.sq_doorbell(), dev.cq_doorbell(), policy, tags)
                    .ok());
  }
  bool submit(std::uint32_t seq, std::uint64_t deadline = dkq::no_deadline) {
    sqe e = command(seq);
    auto c = qp.submit(&e, seq, deadline);
    if (!c) return false;
    cid_of[seq] = *c;
    ++submitted;
    return true;
  }
  std::uint32_t process(std::uint32_t budget = 1u << 20) {
    return qp.process_completions(
        budget,
        [&](std::uint32_t& seq, const nvme_cqe& e) {
          EXPECT_EQ(e.dw0, seq);  // the completion belongs to this command
          ++delivered[seq];
        },
        [&](dkq::status s, const nvme_cqe&) { ++errors[s.code()]; });
  }
  void expect_each_delivered_once(std::uint32_t n) {
    ASSERT_EQ(delivered.size(), n);
    for (auto& [seq, count] : delivered) EXPECT_EQ(count, 1u) << seq;
  }

  test_dma_buffer sq_mem, cq_mem;
  fake_nvme_device dev;
  qp_t qp;
  std::map<std::uint32_t, std::uint16_t> cid_of;
  std::map<std::uint32_t, std::uint32_t> delivered;
  std::map<errc, std::uint32_t> errors;
  std::uint32_t submitted = 0;
};

TEST(QueuePair, BatchedRoundTripTwoDoorbellsPerBatch) {
  harness h(64);
  for (std::uint32_t s = 0; s < 32; ++s) ASSERT_TRUE(h.submit(s));
  EXPECT_EQ(h.dev.sq_tail_reg.writes.load(), 0u);  // nothing rung yet
  h.qp.flush();
  EXPECT_EQ(h.dev.step(), 32u);
  EXPECT_EQ(h.process(), 32u);
  h.expect_each_delivered_once(32);
  EXPECT_EQ(h.dev.sq_tail_reg.writes.load(), 1u);
  EXPECT_EQ(h.dev.cq_head_reg.writes.load(), 1u);
  EXPECT_TRUE(h.errors.empty());
  EXPECT_EQ(h.qp.tags().in_flight(), 0u);
  EXPECT_EQ(h.qp.sq().head(), 32u);  // SQ head came back in the CQEs
}

TEST(QueuePair, ImmediatePolicyTwoDoorbellsPerIo) {
  harness h(64, ring_policy::immediate);
  for (std::uint32_t s = 0; s < 16; ++s) {
    ASSERT_TRUE(h.submit(s));
    h.dev.step();
    EXPECT_EQ(h.process(1), 1u);
  }
  h.expect_each_delivered_once(16);
  EXPECT_EQ(h.dev.sq_tail_reg.writes.load(), 16u);
  EXPECT_EQ(h.dev.cq_head_reg.writes.load(), 16u);
}

TEST(QueuePair, WrapsManyTimesWithoutLossOrRepeatedDoorbell) {
  harness h(4);  // 3 commands in flight at most
  std::minstd_rand rng(7);
  std::uint32_t next = 0;
  while (next < 20000) {
    const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng()) % 3;
    for (std::uint32_t i = 0; i < n && h.qp.tags().available() != 0; ++i) ASSERT_TRUE(h.submit(next++));
    if (static_cast<std::uint32_t>(rng()) % 2) h.qp.flush();
    h.dev.step();
    h.process(1 + static_cast<std::uint32_t>(rng()) % 3);
  }
  h.qp.flush();
  while (h.qp.tags().in_flight() != 0) {
    h.dev.step();
    h.process();
  }
  h.expect_each_delivered_once(20000);
  EXPECT_EQ(h.dev.sq_tail_reg.same_value_writes.load(), 0u);
  EXPECT_EQ(h.dev.cq_head_reg.same_value_writes.load(), 0u);
  EXPECT_EQ(h.dev.protocol_errors.load(), 0u);
  EXPECT_TRUE(h.errors.empty());
}

TEST(QueuePair, ShuffledCompletionOrderDeliversEachOnce) {
  harness h(128);
  h.dev.set_shuffle(true, 99);
  std::uint32_t next = 0;
  for (int round = 0; round < 200; ++round) {
    while (h.qp.tags().available() > 60) ASSERT_TRUE(h.submit(next++));
    h.qp.flush();
    h.dev.step();
    h.process(17);
  }
  while (h.qp.tags().in_flight() != 0) {
    h.dev.step();
    h.process();
  }
  h.expect_each_delivered_once(next);
  EXPECT_TRUE(h.errors.empty());
}

TEST(QueuePair, DuplicateCompletionIsReportedAndNotDeliveredTwice) {
  harness h(16);
  for (std::uint32_t s = 0; s < 4; ++s) ASSERT_TRUE(h.submit(s));
  h.qp.flush();
  h.dev.inject_duplicate(2);
  h.dev.step();
  EXPECT_EQ(h.process(), 6u);
  h.expect_each_delivered_once(4);
  EXPECT_EQ(h.errors[errc::duplicate], 2u);
  EXPECT_EQ(h.qp.tags().counters().duplicate, 2u);
}

TEST(QueuePair, OutOfRangeIdentifierIsAProtocolErrorAndTheCommandTimesOut) {
  harness h(16);  // 15 tags: index bits 4, index 15 is outside
  ASSERT_TRUE(h.submit(0, 1000));
  ASSERT_TRUE(h.submit(1, 1000));
  h.qp.flush();
  h.dev.inject_bad_cid(0x000f);
  h.dev.step();
  h.process();
  EXPECT_EQ(h.errors[errc::protocol_error], 1u);
  EXPECT_EQ(h.delivered.size(), 1u);  // the other one
  // The command whose identifier was mangled never completes: timeout,
  // recovery (abort) frees it.
  std::vector<std::uint32_t> recovered;
  EXPECT_EQ(h.qp.timeout_scan(1000, [&](std::uint16_t cid, std::uint32_t& seq) {
    recovered.push_back(seq);
    EXPECT_EQ(cid, h.cid_of[seq]);
  }), 1u);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(h.delivered.count(recovered[0]), 0u);
  ASSERT_TRUE(h.qp.tags().release_timed_out(h.cid_of[recovered[0]]).ok());
  EXPECT_EQ(h.qp.tags().in_flight(), 0u);
}

TEST(QueuePair, DroppedCompletionEndsInTimeoutAndLateCompletionIsStale) {
  harness h(16);
  for (std::uint32_t s = 0; s < 5; ++s) ASSERT_TRUE(h.submit(s, 500));
  h.qp.flush();
  h.dev.inject_drop(1);  // the first command fetched gets no completion
  h.dev.step();
  EXPECT_EQ(h.process(), 4u);
  ASSERT_EQ(h.dev.dropped_cids().size(), 1u);
  const std::uint16_t lost = h.dev.dropped_cids()[0];
  EXPECT_EQ(h.qp.timeout_scan(499, [](std::uint16_t, std::uint32_t&) { ADD_FAILURE(); }), 0u);
  std::vector<std::uint16_t> expired;
  EXPECT_EQ(h.qp.timeout_scan(500, [&](std::uint16_t cid, std::uint32_t&) { expired.push_back(cid); }), 1u);
  ASSERT_EQ(expired, std::vector<std::uint16_t>{lost});
  // The device finally completes it: reported stale, not delivered.
  h.dev.post_late(lost, 0);
  h.dev.step();
  EXPECT_EQ(h.process(), 1u);
  EXPECT_EQ(h.errors[errc::stale], 1u);
  EXPECT_EQ(h.delivered.size(), 4u);
  EXPECT_TRUE(h.qp.tags().completed_late(lost));
  // Recovery finishes: the command leaves the table exactly once.
  ASSERT_TRUE(h.qp.tags().release_timed_out(lost).ok());
  EXPECT_EQ(h.qp.tags().in_flight(), 0u);
}

TEST(QueuePair, StalePhaseEntryIsNeverConsumedAndResetRecoversEverything) {
  harness h(8);
  for (std::uint32_t s = 0; s < 6; ++s) ASSERT_TRUE(h.submit(s, 100));
  h.qp.flush();
  h.dev.inject_stale_phase(1);  // the 3rd completion carries the old phase
  h.dev.inject_drop(0);
  // Post two good ones first by limiting the fetch.
  h.dev.inject_stale_phase(0);
  h.dev.step(2);
  EXPECT_EQ(h.process(), 2u);
  h.dev.inject_stale_phase(1);
  h.dev.step();
  // The host stops at the stale entry; the good entries behind it wait.
  EXPECT_EQ(h.process(), 0u);
  EXPECT_EQ(h.delivered.size(), 2u);
  // Timeout: all four outstanding go to recovery, which resets the controller.
  std::vector<std::uint32_t> expired;
  EXPECT_EQ(h.qp.timeout_scan(100, [&](std::uint16_t, std::uint32_t& seq) { expired.push_back(seq); }), 4u);
  h.dev.reset();
  std::uint32_t handed = 0;
  EXPECT_EQ(h.qp.reset([&](std::uint16_t, std::uint32_t& seq, bool was_timed_out) {
    EXPECT_TRUE(was_timed_out);
    EXPECT_EQ(h.delivered.count(seq), 0u);
    ++handed;
  }), 4u);
  EXPECT_EQ(handed, 4u);
  // The queue works again after the reset.
  for (std::uint32_t s = 100; s < 110; ++s) {
    ASSERT_TRUE(h.submit(s));
    h.qp.flush();
    h.dev.step();
    EXPECT_EQ(h.process(), 1u);
  }
  EXPECT_EQ(h.delivered.size(), 12u);
  for (auto& [seq, count] : h.delivered) EXPECT_EQ(count, 1u);
}

TEST(QueuePair, InitChecksAndTagDefault) {
  test_dma_buffer sq(64u * 65536), cq(16u * 65536);
  fake_nvme_device dev(sq.region(), cq.region(), 65536);
  qp_t qp;
  EXPECT_EQ(qp.init(sq.region(), cq.region(), 1, dev.sq_doorbell(), dev.cq_doorbell()).code(), errc::invalid_argument);
  EXPECT_EQ(qp.init(sq.region(), cq.region(), 8, dev.sq_doorbell(), dev.cq_doorbell(), ring_policy::batched, 8).code(),
            errc::invalid_argument);  // more tags than the queue holds
  ASSERT_TRUE(qp.init(sq.region(), cq.region(), 65536, dev.sq_doorbell(), dev.cq_doorbell()).ok());
  EXPECT_EQ(qp.tags().capacity(), dkq::tag_table<std::uint32_t>::max_tags);
  ASSERT_TRUE(qp.init(sq.region(), cq.region(), 64, dev.sq_doorbell(), dev.cq_doorbell()).ok());
  EXPECT_EQ(qp.tags().capacity(), 63u);
}

TEST(QueuePair, ImpossibleSqHeadIsReported) {
  harness h(8);
  ASSERT_TRUE(h.submit(0));
  h.qp.flush();
  h.dev.step();
  // Corrupt the SQ head in the posted entry (the device lies).
  auto* ring = h.cq_mem.region().cpu_at<nvme_cqe>();
  ring[0].sq_head = 5;
  EXPECT_EQ(h.process(), 1u);
  EXPECT_EQ(h.errors[errc::protocol_error], 1u);
  EXPECT_EQ(h.delivered.size(), 1u);  // the identifier was fine
  EXPECT_EQ(h.qp.sq().head(), 0u);    // the bad head was not taken
}

// A device whose completions keep reporting the first SQ head: every command
// completes, but the ring never frees. With no command in flight that is not
// "full", it is the device lying: a protocol error the driver can act on.
TEST(QueuePair, StuckSqHeadWithNothingInFlightIsAProtocolError) {
  harness h(8);  // 7 usable entries, 7 tags
  std::uint32_t seq = 0;
  dkq::status last = dkq::ok_status;
  for (int round = 0; round < 20 && last.ok(); ++round) {
    sqe e = command(seq);
    auto c = h.qp.submit(&e, seq, dkq::no_deadline);
    if (!c) {
      last = c.error();
      break;
    }
    ++seq;
    h.qp.flush();
    h.dev.step();
    auto* ring = h.cq_mem.region().cpu_at<nvme_cqe>();
    for (std::uint32_t i = 0; i < 8; ++i) ring[i].sq_head = 0;  // the head never moves
    h.process();
  }
  EXPECT_EQ(last.code(), errc::protocol_error) << last.message();
  EXPECT_EQ(seq, 7u);
  EXPECT_EQ(h.qp.tags().in_flight(), 0u);
  EXPECT_EQ(h.qp.held_by_stale_head(), 7u);
  // An honest full queue is still just full.
  harness f(8);
  for (std::uint32_t i = 0; i < 7; ++i) ASSERT_TRUE(f.submit(i));
  sqe e = command(7);
  EXPECT_EQ(f.qp.submit(&e, 7u, dkq::no_deadline).error().code(), errc::no_space);
  EXPECT_EQ(f.qp.held_by_stale_head(), 0u);
}

// ---- shadow doorbells end to end ----

using sdb = dkq::shadow_doorbell<fake_doorbell>;
using sqp_t = dkq::queue_pair<dkq::nvme_queue_layout, sdb, sdb, std::uint32_t>;

TEST(QueuePairShadow, EventIdxHandshakeNeverLosesASubmission) {
  const std::uint32_t entries = 32;
  test_dma_buffer sq_mem(64u * entries), cq_mem(16u * entries);
  alignas(64) std::uint32_t dbbuf[4] = {}, eventidx[4] = {};  // sq tail, cq head
  fake_nvme_device dev(sq_mem.region(), cq_mem.region(), entries);
  dev.enable_shadow(&dbbuf[0], &eventidx[0], &dbbuf[1], &eventidx[1]);
  sqp_t qp;
  ASSERT_TRUE(qp.init(sq_mem.region(), cq_mem.region(), entries, sdb(&dbbuf[0], &eventidx[0], dev.sq_doorbell()),
                      sdb(&dbbuf[1], &eventidx[1], dev.cq_doorbell()))
                  .ok());
  std::minstd_rand rng(3);
  std::uint32_t next = 0, done = 0;
  std::uint64_t stuck = 0;
  while (done < 5000) {
    const std::uint32_t n = static_cast<std::uint32_t>(rng()) % 6;
    for (std::uint32_t i = 0; i < n && qp.tags().available() != 0; ++i) {
      sqe e = command(next);
      ASSERT_TRUE(qp.submit(&e, next).ok());
      ++next;
    }
    qp.flush();
    // The device wakes only on an MMIO or its own re-check; sometimes it is
    // slow (no step), so the shadow runs ahead of its EventIdx.
    if (static_cast<std::uint32_t>(rng()) % 3) dev.step(1 + static_cast<std::uint32_t>(rng()) % 8);
    const auto got = qp.process_completions(
        64, [&](std::uint32_t& seq, const nvme_cqe& e) { EXPECT_EQ(e.dw0, seq); ++done; },
        [](dkq::status s, const nvme_cqe&) { ADD_FAILURE() << s.message(); });
    stuck = got == 0 && qp.tags().in_flight() != 0 ? stuck + 1 : 0;
    ASSERT_LT(stuck, 1000u) << "a submission was never seen by the device";
  }
  // Shadow doorbells absorbed most register writes.
  EXPECT_LT(qp.sq().doorbell_ref().mmio_writes(), qp.sq().counters().doorbell_writes);
  EXPECT_EQ(dev.sq_tail_reg.same_value_writes.load(), 0u);
  EXPECT_EQ(dev.sq_tail_reg.writes.load(), qp.sq().doorbell_ref().mmio_writes());
}

}  // namespace

// ---- SQ heads taken once per reaped batch ----

// The batch's SQ head is taken at its end, but a submit from on_complete on a
// ring that only looks full (the head the batch reported is not yet taken)
// must take it then, not call the device a liar.
TEST(QueuePair, ResubmitFromHandlerOnAFullRingTakesTheBatchHead) {
  harness h(8);  // 7 usable entries, 7 tags
  for (std::uint32_t s = 0; s < 7; ++s) ASSERT_TRUE(h.submit(s));
  h.qp.flush();
  ASSERT_EQ(h.dev.step(), 7u);
  std::uint32_t resubmitted = 0, refused = 0;
  std::uint32_t seq = 100;
  const std::uint32_t n = h.qp.process_completions(
      64,
      [&](std::uint32_t&, const nvme_cqe&) {
        sqe e = command(seq);
        if (h.qp.submit(&e, seq++, dkq::no_deadline))
          ++resubmitted;
        else
          ++refused;
      },
      [&](dkq::status s, const nvme_cqe&) { ++h.errors[s.code()]; });
  EXPECT_EQ(n, 7u);
  EXPECT_EQ(resubmitted, 7u);
  EXPECT_EQ(refused, 0u);
  EXPECT_TRUE(h.errors.empty());
  EXPECT_EQ(h.qp.sq().head(), 7u);  // the device consumed all 7 first commands
  EXPECT_EQ(h.qp.tags().in_flight(), 7u);
  EXPECT_EQ(h.qp.held_by_stale_head(), 0u);
}

// Under the immediate policy a submit from on_complete rings at once; if the
// device consumes it and completes it within the same batch, its SQ head lies
// past the window the batch opened with. That head is checked again exactly
// and taken, not reported.
TEST(QueuePair, HeadPastTheBatchWindowIsRecheckedNotReported) {
  harness h(16, ring_policy::immediate);
  ASSERT_TRUE(h.submit(0));
  ASSERT_TRUE(h.submit(1));
  ASSERT_EQ(h.dev.step(), 2u);
  std::uint32_t handled = 0;
  const std::uint32_t n = h.qp.process_completions(
      64,
      [&](std::uint32_t& seq, const nvme_cqe& e) {
        EXPECT_EQ(e.dw0, seq);
        ++h.delivered[seq];
        if (handled++ == 0) {
          ASSERT_TRUE(h.submit(2));   // rung at once (immediate)
          ASSERT_EQ(h.dev.step(), 1u);  // consumed and completed: its CQE reports head 3
        }
      },
      [&](dkq::status s, const nvme_cqe&) { ++h.errors[s.code()]; });
  EXPECT_EQ(n, 3u);
  h.expect_each_delivered_once(3);
  EXPECT_TRUE(h.errors.empty());
  EXPECT_EQ(h.qp.sq().head(), 3u);
  // A head past every rung entry is still reported, once, on its own entry.
  ASSERT_TRUE(h.submit(3));
  ASSERT_EQ(h.dev.step(), 1u);
  auto* ring = h.cq_mem.region().cpu_at<nvme_cqe>();
  ring[3].sq_head = 9;  // only 4 entries were ever rung
  EXPECT_EQ(h.process(), 1u);
  EXPECT_EQ(h.errors[errc::protocol_error], 1u);
  EXPECT_EQ(h.qp.sq().head(), 3u);
}
