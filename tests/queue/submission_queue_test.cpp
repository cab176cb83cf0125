// Submission queue: post vs ring, the batched policy's flush points, the lap
// guard, "never the same doorbell value twice", bulk reserve/commit, head
// validation and counters.
#include "dkq/queue/submission_queue.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "support/fake_nvme_device.hpp"

namespace {

using dkq::errc;
using dkq::ring_policy;
using dkq::test::fake_doorbell;
using dkq::test::fake_register;
using sq64 = dkq::submission_queue<64, fake_doorbell>;

struct sqe {
  std::uint8_t b[64];
};

sqe make(std::uint8_t tag) {
  sqe e{};
  std::memset(e.b, tag, sizeof e.b);
  return e;
}

struct SqFixture : ::testing::Test {
  dkq::test::test_dma_buffer mem{64 * 64};
  fake_register reg;
  sq64 sq;
};

TEST_F(SqFixture, InitRejectsBadArguments) {
  EXPECT_EQ(sq.init(dkq::dma_region{}, 8, {&reg}).code(), errc::invalid_argument);
  EXPECT_EQ(sq.init(mem.region(), 1, {&reg}).code(), errc::invalid_argument);
  EXPECT_EQ(sq.init(mem.region(), 65537, {&reg}).code(), errc::invalid_argument);
  EXPECT_EQ(sq.init(mem.region(), 65, {&reg}).code(), errc::out_of_range);
  EXPECT_EQ(sq.init(mem.region(), 8, {&reg}, ring_policy::batched, 8).code(), errc::invalid_argument);
  EXPECT_TRUE(sq.init(mem.region(), 64, {&reg}).ok());
  EXPECT_EQ(sq.device_address().value(), 0x10000000u);
}

TEST_F(SqFixture, ImmediatePolicyRingsEveryPost) {
  ASSERT_TRUE(sq.init(mem.region(), 8, {&reg}, ring_policy::immediate).ok());
  for (std::uint8_t i = 0; i < 5; ++i) {
    sqe e = make(i);
    ASSERT_TRUE(sq.post(&e).ok());
    EXPECT_EQ(reg.value.load(), i + 1u);
    EXPECT_EQ(std::memcmp(mem.region().cpu_at(64u * i), e.b, 64), 0);
  }
  EXPECT_EQ(sq.counters().doorbell_writes, 5u);
  EXPECT_EQ(sq.counters().entries_posted, 5u);
  EXPECT_FALSE(sq.ring());  // nothing new: no write
  EXPECT_EQ(reg.writes.load(), 5u);
  EXPECT_EQ(reg.same_value_writes.load(), 0u);
}

TEST_F(SqFixture, BatchedPolicyDefersUntilFlush) {
  ASSERT_TRUE(sq.init(mem.region(), 16, {&reg}, ring_policy::batched).ok());
  sqe e = make(1);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(sq.post(&e).ok());
  EXPECT_EQ(reg.writes.load(), 0u);
  EXPECT_EQ(sq.unrung(), 6u);
  EXPECT_TRUE(sq.flush());
  EXPECT_EQ(reg.value.load(), 6u);
  EXPECT_EQ(reg.writes.load(), 1u);
  // Flushing again writes nothing: the same value is never written twice.
  EXPECT_FALSE(sq.flush());
  EXPECT_FALSE(sq.ring());
  EXPECT_EQ(reg.writes.load(), 1u);
  EXPECT_EQ(sq.counters().doorbell_writes, 1u);
  EXPECT_EQ(sq.counters().entries_posted, 6u);
}

TEST_F(SqFixture, NeverWritesTheSameValueTwiceEvenAcrossLaps) {
  // Post and ring in every pattern across many laps of a small queue; the
  // fake register counts a write equal to its current value as a violation.
  ASSERT_TRUE(sq.init(mem.region(), 4, {&reg}, ring_policy::batched).ok());
  sqe e = make(2);
  std::uint32_t head = 0;
  for (int round = 0; round < 1000; ++round) {
    const int n = round % 4;  // 0..3 entries (a 4-entry queue holds 3)
    for (int i = 0; i < n; ++i) ASSERT_TRUE(sq.post(&e).ok());
    sq.ring();
    sq.ring();
    // The device consumed everything rung.
    head = sq.tail();
    ASSERT_TRUE(sq.update_head(head).ok());
  }
  EXPECT_EQ(reg.same_value_writes.load(), 0u);
  EXPECT_EQ(sq.counters().doorbell_writes, reg.writes.load());
}

TEST_F(SqFixture, LapGuardRingsBeforeTheQueueFillsWithUnrungEntries) {
  ASSERT_TRUE(sq.init(mem.region(), 8, {&reg}, ring_policy::batched).ok());
  sqe e = make(3);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(sq.post(&e).ok());
  EXPECT_EQ(reg.writes.load(), 0u);
  ASSERT_TRUE(sq.post(&e).ok());  // 7 = size-1 un-rung: ring now
  EXPECT_EQ(reg.writes.load(), 1u);
  EXPECT_EQ(reg.value.load(), 7u);
  EXPECT_EQ(sq.free_slots(), 0u);
  EXPECT_EQ(sq.post(&e).code(), errc::no_space);
  EXPECT_EQ(sq.next_entry(), nullptr);
}

TEST_F(SqFixture, MaxUnrungBoundsTheBatch) {
  ASSERT_TRUE(sq.init(mem.region(), 64, {&reg}, ring_policy::batched, 4).ok());
  sqe e = make(4);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(sq.post(&e).ok());
  EXPECT_EQ(reg.writes.load(), 2u);  // at 4 and 8
  EXPECT_EQ(reg.value.load(), 8u);
  sq.flush();
  EXPECT_EQ(reg.value.load(), 10u);
}

TEST_F(SqFixture, ReserveFillCommitRingsOnceAndWraps) {
  ASSERT_TRUE(sq.init(mem.region(), 8, {&reg}, ring_policy::batched).ok());
  sqe e = make(9);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(sq.post(&e).ok());
  sq.flush();
  ASSERT_TRUE(sq.update_head(6).ok());
  // 7 free; reserve 5 across the wrap (slots 6,7,0,1,2).
  auto r = sq.reserve(5);
  ASSERT_EQ(r.size(), 5u);
  for (std::uint32_t i = 0; i < r.size(); ++i) std::memset(r.entry(i), static_cast<int>(0x40 + i), 64);
  EXPECT_EQ(r.entry(2), mem.region().cpu_at(0));
  EXPECT_EQ(sq.commit(6).code(), errc::invalid_argument);  // more than reserved
  ASSERT_TRUE(sq.commit(5).ok());
  EXPECT_EQ(reg.value.load(), 3u);
  EXPECT_EQ(reg.writes.load(), 2u);
  EXPECT_EQ(*mem.region().cpu_at(7 * 64), 0x41);
  EXPECT_EQ(*mem.region().cpu_at(2 * 64), 0x44);
  // Too many: an empty reservation, and a commit of it is an error.
  EXPECT_TRUE(sq.reserve(3).empty());
  EXPECT_EQ(sq.commit(1).code(), errc::invalid_argument);
  // Commit without ending the batch keeps the doorbell for later.
  auto r2 = sq.reserve(1);
  ASSERT_EQ(r2.size(), 1u);
  ASSERT_TRUE(sq.commit(1, false).ok());
  EXPECT_EQ(reg.writes.load(), 2u);
  sq.flush();
  EXPECT_EQ(reg.value.load(), 4u);
}

TEST_F(SqFixture, PostCancelsAnOpenReservation) {
  ASSERT_TRUE(sq.init(mem.region(), 8, {&reg}, ring_policy::batched).ok());
  auto r = sq.reserve(3);
  ASSERT_EQ(r.size(), 3u);
  sqe e = make(6);
  ASSERT_TRUE(sq.post(&e).ok());  // takes the slot the reservation started at
  EXPECT_EQ(sq.commit(3).code(), errc::invalid_argument);
  EXPECT_EQ(sq.tail(), 1u);
  sq.reserve(2);
  ASSERT_NE(sq.next_entry(), nullptr);
  ASSERT_TRUE(sq.post_in_place().ok());
  EXPECT_EQ(sq.commit(1).code(), errc::invalid_argument);
  EXPECT_EQ(sq.tail(), 2u);
}

TEST_F(SqFixture, InPlacePost) {
  ASSERT_TRUE(sq.init(mem.region(), 4, {&reg}, ring_policy::immediate).ok());
  void* p = sq.next_entry();
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x77, 64);
  ASSERT_TRUE(sq.post_in_place().ok());
  EXPECT_EQ(reg.value.load(), 1u);
}

TEST_F(SqFixture, HeadFromTheDeviceIsValidated) {
  ASSERT_TRUE(sq.init(mem.region(), 8, {&reg}, ring_policy::batched).ok());
  sqe e = make(5);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(sq.post(&e).ok());
  sq.flush();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(sq.post(&e).ok());  // posted, not rung
  EXPECT_EQ(sq.update_head(8).code(), errc::protocol_error);  // beyond the queue
  EXPECT_EQ(sq.update_head(6).code(), errc::protocol_error);  // not rung yet
  EXPECT_TRUE(sq.update_head(3).ok());
  EXPECT_EQ(sq.update_head(2).code(), errc::protocol_error);  // backwards
  EXPECT_TRUE(sq.update_head(5).ok());
  EXPECT_EQ(sq.in_use(), 2u);
  EXPECT_EQ(sq.free_slots(), 5u);
}

TEST(SqEntrySize, EightByteEntriesForAddressPosting) {
  // A queue of 8-byte frame addresses (pvscsi-style request rings carry
  // descriptors; MFI-style posting carries addresses).
  dkq::test::test_dma_buffer mem(8 * 16);
  std::uint32_t prod = 0;
  dkq::submission_queue<8, dkq::host_word_doorbell> q;
  ASSERT_TRUE(q.init(mem.region(), 16, dkq::host_word_doorbell{&prod}, ring_policy::batched).ok());
  for (std::uint64_t a = 0; a < 5; ++a) {
    const std::uint64_t frame = 0x80000000ull + a * 0x100;
    ASSERT_TRUE(q.post(&frame).ok());
  }
  q.flush();
  EXPECT_EQ(prod, 5u);
  EXPECT_EQ(*mem.region().cpu_at<std::uint64_t>(8 * 4), 0x80000400ull);
}

}  // namespace
