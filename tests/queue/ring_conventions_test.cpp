// Index conventions and the pieces a non-NVMe ring device needs: free-running
// request and completion indices (across the 2^32 wrap), struct completion
// entries, a composite doorbell's order, and a tag base.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "dkq/queue/completion_queue.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/ring_pair.hpp"
#include "dkq/queue/submission_queue.hpp"
#include "dkq/queue/tag_table.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::errc;
using dkq::index_mode;
using dkq::test::test_dma_buffer;

struct recording_doorbell {
  std::vector<std::uint32_t>* values;
  void write(std::uint32_t v) noexcept { values->push_back(v); }
};

TEST(IndexModes, FreeRunningSubmissionUsesEverySlotAndCrossesTheWrap) {
  test_dma_buffer mem(16u * 8);
  std::vector<std::uint32_t> rung;
  dkq::submission_queue<16, recording_doorbell, index_mode::free_running> sq;
  ASSERT_TRUE(sq.init(mem.region(), 8, recording_doorbell{&rung}).ok());
  const std::uint32_t start = 0xfffffffcu;
  sq.reset_indices(start);
  std::uint8_t e[16] = {};
  for (int i = 0; i < 8; ++i) {  // all 8 slots: "tail - head == size" is full
    e[0] = static_cast<std::uint8_t>(i);
    ASSERT_TRUE(sq.post(e).ok()) << i;
  }
  EXPECT_EQ(sq.post(e).code(), errc::no_space);
  EXPECT_TRUE(sq.flush());
  // The lap guard rang at 7 unrung entries; the flush rings the 8th. The
  // values are the free-running ones, across the wrap.
  ASSERT_EQ(rung.size(), 2u);
  EXPECT_EQ(rung[0], start + 7);
  EXPECT_EQ(rung[1], start + 8);  // 4 after the wrap
  // Slots are masked: entry i sits at (start + i) & 7.
  for (std::uint32_t i = 0; i < 8; ++i)
    EXPECT_EQ(mem.region().cpu_at<std::uint8_t>()[((start + i) & 7) * 16], i);
  // The device consumed 5 (its index is free-running too).
  ASSERT_TRUE(sq.update_head(start + 5).ok());
  EXPECT_EQ(sq.free_slots(), 5u);
  // A head beyond what was published is a lie, not taken.
  EXPECT_EQ(sq.update_head(start + 9).code(), errc::protocol_error);
  EXPECT_EQ(sq.head(), start + 5);
  // A power-of-two size is required.
  dkq::submission_queue<16, recording_doorbell, index_mode::free_running> bad;
  EXPECT_EQ(bad.init(mem.region(), 6, recording_doorbell{&rung}).code(), errc::invalid_argument);
}

TEST(IndexModes, WrappedSubmissionKeepsOneSlotEmpty) {
  test_dma_buffer mem(16u * 8);
  std::vector<std::uint32_t> rung;
  dkq::submission_queue<16, recording_doorbell> sq;
  ASSERT_TRUE(sq.init(mem.region(), 8, recording_doorbell{&rung}).ok());
  std::uint8_t e[16] = {};
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(sq.post(e).ok());
  EXPECT_EQ(sq.post(e).code(), errc::no_space);
  sq.flush();
  EXPECT_EQ(rung.back(), 7u);
}

struct wide_completion {
  std::uint64_t context;
  std::uint32_t status;
  std::uint32_t pad[5];
};
static_assert(sizeof(wide_completion) == 32);

TEST(IndexModes, FreeRunningCompletionRingWithStructEntries) {
  test_dma_buffer mem(sizeof(wide_completion) * 4);
  auto* ring = mem.region().cpu_at<wide_completion>();
  std::uint32_t producer = 0xfffffffeu, consumer = 0;
  dkq::producer_index_cq<wide_completion, dkq::host_word_doorbell, index_mode::free_running> cq;
  ASSERT_TRUE(cq.init(mem.region(), 4, &producer, dkq::host_word_doorbell{&consumer}, producer).ok());
  std::vector<std::uint64_t> got;
  // The device posts 3 entries across the 2^32 wrap, then publishes.
  for (std::uint32_t i = 0; i < 3; ++i) ring[(0xfffffffeu + i) & 3] = wide_completion{100 + i, 0, {}};
  producer = 0xfffffffeu + 3;  // == 1
  auto n = cq.reap(16, [&](const wide_completion& e) { got.push_back(e.context); });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{100, 101, 102}));
  EXPECT_EQ(consumer, 1u);  // one consumer-index write, free-running
  EXPECT_EQ(cq.counters().doorbell_writes, 1u);
  // A producer index more than a ring ahead is a lie: nothing consumed.
  producer = 1 + 5;
  auto bad = cq.reap(16, [&](const wide_completion&) { ADD_FAILURE(); });
  EXPECT_EQ(bad.error().code(), errc::protocol_error);
  EXPECT_EQ(cq.head(), 1u);
  // Exactly a ring ahead is legal (the ring is full).
  producer = 1 + 4;
  EXPECT_EQ(*cq.reap(16, [&](const wide_completion&) {}), 4u);
}

TEST(IndexModes, WrappedReplyQueueStillRefusesAnIndexOutsideIt) {
  test_dma_buffer mem(4u * 8);
  std::uint32_t producer = 0, consumer = 0;
  dkq::index_reply_queue<std::uint32_t, dkq::host_word_doorbell> rq;
  ASSERT_TRUE(rq.init(mem.region(), 8, &producer, dkq::host_word_doorbell{&consumer}).ok());
  producer = 8;
  EXPECT_EQ(rq.reap(8, [](std::uint32_t) {}).error().code(), errc::protocol_error);
}

// The device must see the index word before the kick arrives.
struct word_then_kick_check {
  std::uint32_t* word;
  std::vector<std::uint32_t>* seen_at_kick;
  void write(std::uint32_t) noexcept { seen_at_kick->push_back(dkq::load_acquire(word)); }
};

TEST(CompositeDoorbell, PublishesTheWordBeforeTheKick) {
  std::uint32_t word = 0;
  std::vector<std::uint32_t> seen;
  dkq::composite_doorbell<dkq::host_word_doorbell, word_then_kick_check> db(dkq::host_word_doorbell{&word},
                                                                             word_then_kick_check{&word, &seen});
  db.write(5);
  db.write(9);
  EXPECT_EQ(seen, (std::vector<std::uint32_t>{5, 9}));
  EXPECT_EQ(db.kicks(), 2u);
}

TEST(TagBase, IdentifiersBelowTheBaseNeverAppearAndIndexOfMapsBack) {
  dkq::tag_table<int> t;
  ASSERT_TRUE(t.init(3, 1).ok());  // context 0 is forbidden by the device
  for (int round = 0; round < 200; ++round) {
    std::uint16_t ids[3];
    for (int i = 0; i < 3; ++i) {
      auto c = t.acquire(i);
      ASSERT_TRUE(c.ok());
      ids[i] = *c;
      EXPECT_NE(ids[i] & ((1u << t.index_bits()) - 1), 0u) << ids[i];
      auto idx = t.index_of(ids[i]);
      ASSERT_TRUE(idx.ok());
      EXPECT_LT(*idx, 3u);
    }
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.complete(ids[i]).ok());
  }
  EXPECT_EQ(t.index_of(0).error().code(), errc::protocol_error);  // below the base
  EXPECT_EQ(t.complete(0).error().code(), errc::protocol_error);
  EXPECT_EQ(t.index_of(4).error().code(), errc::protocol_error);  // past the last slot
  EXPECT_EQ(t.init(16384, 1).code(), errc::invalid_argument);
}

// NVMe as a ring_pair layout (phase-tag CQ, CID in the SQE, SQ head in the
// CQE) against the software NVMe queue model, across many laps, with faults.
TEST(RingPairNvmeLayout, PhaseTagLayoutDeliversEachOnceWithBatchedDoorbells) {
  using dkq::test::fake_doorbell;
  using dkq::test::fake_nvme_device;
  using rp_t = dkq::ring_pair<dkq::nvme_ring_layout, fake_doorbell, fake_doorbell, std::uint32_t>;
  constexpr std::uint32_t entries = 16;
  test_dma_buffer sq(64u * entries), cq(16u * entries);
  fake_nvme_device dev(sq.region(), cq.region(), entries);
  rp_t rp;
  rp_t::config c;
  c.sq_memory = sq.region();
  c.sq_entries = entries;
  c.sq_db = dev.sq_doorbell();
  c.cq_memory = cq.region();
  c.cq_entries = entries;
  c.cq_db = dev.cq_doorbell();
  ASSERT_TRUE(rp.init(c).ok());
  EXPECT_EQ(rp.tags().capacity(), entries - 1);
  std::vector<int> seen(2000, 0);
  std::uint32_t next = 0, errors = 0;
  dev.inject_duplicate(3);
  for (int round = 0; round < 400 && next < 2000; ++round) {
    for (int i = 0; i < 8 && next < 2000; ++i) {
      std::uint8_t sqe[64] = {};
      std::memcpy(sqe + 40, &next, 4);
      if (!rp.submit(sqe, next).ok()) break;
      ++next;
    }
    rp.flush();
    dev.step();
    rp.process_completions(
        64, [&](std::uint32_t& v, const dkq::nvme_cqe& e) {
          EXPECT_EQ(e.dw0, v);
          ++seen[v];
        },
        [&](dkq::status, const dkq::nvme_cqe*) { ++errors; });
  }
  ASSERT_EQ(next, 2000u);
  for (int v : seen) ASSERT_EQ(v, 1);
  EXPECT_EQ(errors, 3u);  // the three duplicates, never delivered
  EXPECT_EQ(rp.tags().in_flight(), 0u);
  EXPECT_EQ(dev.sq_tail_reg.writes.load(), 250u);  // one SQ doorbell per batch of 8
}

}  // namespace
