// Completion queues: phase-tag detection across laps, one head doorbell per
// batch, budgets; the producer-index reply queue and its range check.
#include "dkq/queue/completion_queue.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "support/fake_nvme_device.hpp"

namespace {

using dkq::errc;
using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_register;
using cq_t = dkq::phase_cq<dkq::nvme_cq_layout, fake_doorbell>;

// Device side, by hand: write entry `slot` with `phase`.
void post(nvme_cqe* ring, std::uint32_t slot, std::uint16_t cid, std::uint16_t phase, std::uint16_t sqhd = 0) {
  ring[slot].dw0 = cid * 10u;
  ring[slot].sq_head = sqhd;
  ring[slot].cid = cid;
  dkq::store_release(&ring[slot].status, phase);
}

TEST(PhaseCq, InitZeroesAndChecks) {
  dkq::test::test_dma_buffer mem(16 * 8);
  std::memset(mem.region().cpu, 0xff, 16 * 8);
  fake_register reg;
  cq_t cq;
  EXPECT_EQ(cq.init(mem.region(), 9, {&reg}).code(), errc::out_of_range);
  EXPECT_EQ(cq.init(mem.region(), 1, {&reg}).code(), errc::invalid_argument);
  ASSERT_TRUE(cq.init(mem.region(), 8, {&reg}).ok());
  EXPECT_EQ(*mem.region().cpu_at<std::uint32_t>(8 * 16 - 4), 0u);
  EXPECT_FALSE(cq.pending());
  EXPECT_EQ(cq.reap(100, [](const nvme_cqe&) {}), 0u);
  EXPECT_EQ(reg.writes.load(), 0u);  // an empty reap writes no doorbell
}

TEST(PhaseCq, ReapsInOrderOneDoorbellPerBatchAcrossLaps) {
  dkq::test::test_dma_buffer mem(16 * 4);
  fake_register reg;
  cq_t cq;
  ASSERT_TRUE(cq.init(mem.region(), 4, {&reg}).ok());
  auto* ring = mem.region().cpu_at<nvme_cqe>();
  std::uint16_t dev_phase = 1;
  std::uint32_t dev_tail = 0;
  std::uint16_t next_cid = 0, expect_cid = 0;
  for (int lap = 0; lap < 50; ++lap) {
    // Post 3 (the most a 4-entry CQ can hold), reap in batches of 2 then 1.
    for (int i = 0; i < 3; ++i) {
      post(ring, dev_tail, next_cid++, dev_phase);
      if (++dev_tail == 4) {
        dev_tail = 0;
        dev_phase ^= 1;
      }
    }
    const auto before = reg.writes.load();
    std::vector<std::uint16_t> got;
    EXPECT_EQ(cq.reap(2, [&](const nvme_cqe& e) { got.push_back(e.cid); }), 2u);
    EXPECT_EQ(reg.writes.load(), before + 1);
    EXPECT_EQ(cq.reap(5, [&](const nvme_cqe& e) { got.push_back(e.cid); }), 1u);
    EXPECT_EQ(reg.writes.load(), before + 2);
    EXPECT_EQ(reg.value.load(), cq.head());
    ASSERT_EQ(got.size(), 3u);
    for (auto c : got) EXPECT_EQ(c, expect_cid++);
    EXPECT_FALSE(cq.pending());
  }
  EXPECT_EQ(reg.same_value_writes.load(), 0u);
  EXPECT_EQ(cq.counters().entries_reaped, 150u);
  EXPECT_EQ(cq.counters().doorbell_writes, 100u);
}

TEST(PhaseCq, StalePhaseEntryIsNotConsumed) {
  dkq::test::test_dma_buffer mem(16 * 4);
  fake_register reg;
  cq_t cq;
  ASSERT_TRUE(cq.init(mem.region(), 4, {&reg}).ok());
  auto* ring = mem.region().cpu_at<nvme_cqe>();
  post(ring, 0, 7, 0);  // first lap must carry phase 1
  EXPECT_FALSE(cq.pending());
  EXPECT_EQ(cq.reap(4, [](const nvme_cqe&) { ADD_FAILURE(); }), 0u);
  post(ring, 0, 7, 1);
  EXPECT_EQ(cq.reap(4, [](const nvme_cqe& e) { EXPECT_EQ(e.cid, 7); }), 1u);
}

// ---- MFI-style producer-index reply queue ----

TEST(IndexReplyQueue, ReapsUpToProducerAndPublishesConsumerOnce) {
  dkq::test::test_dma_buffer mem(4 * 5);
  std::uint32_t producer = 0, consumer = 0;
  dkq::index_reply_queue<std::uint32_t, dkq::host_word_doorbell> rq;
  EXPECT_EQ(rq.init(mem.region(), 6, &producer, dkq::host_word_doorbell{&consumer}).code(), errc::out_of_range);
  ASSERT_TRUE(rq.init(mem.region(), 5, &producer, dkq::host_word_doorbell{&consumer}).ok());
  auto* ring = mem.region().cpu_at<std::uint32_t>();
  std::uint32_t dev = 0, next_ctx = 100, expect = 100;
  for (int round = 0; round < 40; ++round) {
    const int n = round % 5;  // 0..4 (5 entries hold 4)
    for (int i = 0; i < n; ++i) {
      ring[dev] = next_ctx++;
      dev = (dev + 1) % 5;
    }
    dkq::store_release(&producer, dev);
    auto got = rq.reap(100, [&](std::uint32_t ctx) { EXPECT_EQ(ctx, expect++); });
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, static_cast<std::uint32_t>(n));
    EXPECT_EQ(consumer, dev);
  }
  EXPECT_EQ(rq.counters().doorbell_writes, 32u);  // rounds with n != 0
}

TEST(IndexReplyQueue, BudgetAndBadProducer) {
  dkq::test::test_dma_buffer mem(8 * 8);
  std::uint32_t producer = 0, consumer = 0;
  dkq::index_reply_queue<std::uint64_t, dkq::host_word_doorbell> rq;
  ASSERT_TRUE(rq.init(mem.region(), 8, &producer, dkq::host_word_doorbell{&consumer}).ok());
  auto* ring = mem.region().cpu_at<std::uint64_t>();
  for (std::uint64_t i = 0; i < 6; ++i) ring[i] = 0xabc00000000ull + i;
  producer = 6;
  std::uint64_t seen = 0;
  auto a = rq.reap(4, [&](std::uint64_t c) { EXPECT_EQ(c, 0xabc00000000ull + seen++); });
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 4u);
  EXPECT_EQ(consumer, 4u);
  producer = 8;  // impossible: outside the queue
  auto b = rq.reap(4, [&](std::uint64_t) { ADD_FAILURE(); });
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), errc::protocol_error);
  EXPECT_EQ(consumer, 4u);  // nothing consumed
  producer = 6;
  auto c = rq.reap(4, [&](std::uint64_t x) { EXPECT_EQ(x, 0xabc00000000ull + seen++); });
  EXPECT_EQ(*c, 2u);
}

}  // namespace
