// Tag table: identifiers carry generations; stale, duplicate and out-of-range
// completions are errors and are never delivered; timeouts hand commands to
// recovery exactly once; a late completion after a timeout is stale.
#include "dkq/queue/tag_table.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

namespace {

using dkq::errc;
using dkq::tag_state;
using table = dkq::tag_table<std::uint32_t>;

TEST(TagTable, InitChecks) {
  table t;
  EXPECT_EQ(t.init(0u).code(), errc::invalid_argument);
  EXPECT_EQ(t.init(table::max_tags + 1).code(), errc::invalid_argument);
  ASSERT_TRUE(t.init(1000u).ok());
  EXPECT_EQ(t.index_bits(), 10u);
  EXPECT_EQ(t.capacity(), 1000u);
  table::slot storage[4];
  ASSERT_TRUE(t.init(std::span<table::slot>(storage, 4)).ok());
  EXPECT_EQ(t.capacity(), 4u);
}

TEST(TagTable, AcquireCompleteRoundTripAndExhaustion) {
  table t;
  ASSERT_TRUE(t.init(8u).ok());
  std::set<std::uint16_t> cids;
  for (std::uint32_t i = 0; i < 8; ++i) {
    auto c = t.acquire(100 + i);
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(cids.insert(*c).second);
  }
  EXPECT_EQ(t.acquire(0).error().code(), errc::no_space);
  EXPECT_EQ(t.in_flight(), 8u);
  for (auto c : cids) {
    auto ctx = t.complete(c);
    ASSERT_TRUE(ctx.ok());
    EXPECT_EQ(*ctx, 100u + (c & 7u));
  }
  EXPECT_EQ(t.in_flight(), 0u);
  EXPECT_EQ(t.counters().completed, 8u);
}

TEST(TagTable, DuplicateCompletionIsReportedNotDelivered) {
  table t;
  ASSERT_TRUE(t.init(16u).ok());
  const std::uint16_t cid = *t.acquire(42);
  ASSERT_TRUE(t.complete(cid).ok());
  auto again = t.complete(cid);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), errc::duplicate);
  EXPECT_EQ(again.error().detail(), cid);
  EXPECT_EQ(t.counters().duplicate, 1u);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(TagTable, StaleCompletionOfAnEarlierOccupantIsReported) {
  table t;
  ASSERT_TRUE(t.init(1u).ok());  // one slot: every acquire reuses it
  const std::uint16_t first = *t.acquire(1);
  ASSERT_TRUE(t.complete(first).ok());
  const std::uint16_t second = *t.acquire(2);
  EXPECT_NE(first, second);
  // The old identifier arrives while the slot is busy with the new command.
  auto r = t.complete(first);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), errc::stale);
  // The real one is still delivered, once.
  auto ok = t.complete(second);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 2u);
}

TEST(TagTable, CompletionForANeverUsedSlotIsStale) {
  table t;
  ASSERT_TRUE(t.init(16u).ok());
  for (std::uint16_t cid : {std::uint16_t{3}, std::uint16_t{0x0f03}, std::uint16_t{0xfff3}}) {
    auto r = t.complete(cid);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), errc::stale) << cid;
  }
  EXPECT_EQ(t.counters().duplicate, 0u);
}

TEST(TagTable, OutOfRangeIdentifierIsAProtocolError) {
  table t;
  ASSERT_TRUE(t.init(10u).ok());  // index bits 4: indices 10..15 are outside
  (void)*t.acquire(1);
  auto r = t.complete(12);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), errc::protocol_error);
  EXPECT_EQ(t.counters().out_of_range, 1u);
  EXPECT_EQ(t.in_flight(), 1u);
}

TEST(TagTable, NeverHandsOutFFFF) {
  table t;
  ASSERT_TRUE(t.init(16u).ok());  // index 15 with all-ones generation would be 0xFFFF
  for (int i = 0; i < 100000; ++i) {
    std::vector<std::uint16_t> held;
    for (int k = 0; k < 16; ++k) {
      auto c = t.acquire(0);
      ASSERT_TRUE(c.ok());
      ASSERT_NE(*c, 0xffff);
      held.push_back(*c);
    }
    for (auto c : held) ASSERT_TRUE(t.complete(c).ok());
    if (i > 5000) break;
  }
}

TEST(TagTable, GenerationsDetectStaleAcrossManyReuses) {
  table t;
  ASSERT_TRUE(t.init(4u).ok());  // 14 generation bits
  std::uint16_t prev = *t.acquire(0);
  ASSERT_TRUE(t.complete(prev).ok());
  for (int i = 0; i < 3000; ++i) {
    const std::uint16_t c = *t.acquire(static_cast<std::uint32_t>(i));
    auto late = t.complete(prev);  // previous occupant of some slot
    ASSERT_FALSE(late.ok());
    ASSERT_TRUE(late.error().code() == errc::stale || late.error().code() == errc::duplicate);
    auto r = t.complete(c);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(*r, static_cast<std::uint32_t>(i));
    prev = c;
  }
}

TEST(TagTable, TimeoutScanHandsExpiredToRecoveryOnceAndLateCompletionIsStale) {
  table t;
  ASSERT_TRUE(t.init(8u).ok());
  const std::uint16_t a = *t.acquire(1, 100);
  const std::uint16_t b = *t.acquire(2, 200);
  const std::uint16_t c = *t.acquire(3);  // no deadline
  std::vector<std::uint16_t> expired;
  EXPECT_EQ(t.timeout_scan(99, [&](std::uint16_t cid, std::uint32_t&) { expired.push_back(cid); }), 0u);
  EXPECT_EQ(t.timeout_scan(150, [&](std::uint16_t cid, std::uint32_t& ctx) {
    expired.push_back(cid);
    EXPECT_EQ(ctx, 1u);
  }), 1u);
  ASSERT_EQ(expired, std::vector<std::uint16_t>{a});
  EXPECT_EQ(t.state(a), tag_state::timed_out);
  // A second scan does not hand it over again.
  EXPECT_EQ(t.timeout_scan(150, [&](std::uint16_t, std::uint32_t&) { ADD_FAILURE(); }), 0u);
  // The late completion arrives: stale, not delivered, noted for recovery.
  auto late = t.complete(a);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), errc::stale);
  EXPECT_TRUE(t.completed_late(a));
  EXPECT_EQ(t.counters().late_completions, 1u);
  // Recovery finishes and frees the slot, once.
  auto rel = t.release_timed_out(a);
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(*rel, 1u);
  EXPECT_EQ(t.release_timed_out(a).error().code(), errc::invalid_argument);
  // And a completion after that is still not delivered.
  EXPECT_FALSE(t.complete(a).ok());
  // The others are unaffected.
  EXPECT_EQ(*t.complete(b), 2u);
  EXPECT_EQ(*t.complete(c), 3u);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(TagTable, CancelAllHandsEveryCommandOverOnce) {
  table t;
  ASSERT_TRUE(t.init(32u).ok());
  std::set<std::uint32_t> live;
  std::vector<std::uint16_t> cids;
  for (std::uint32_t i = 0; i < 20; ++i) {
    cids.push_back(*t.acquire(i, i < 5 ? 10 : dkq::no_deadline));
    live.insert(i);
  }
  // Complete a few normally, time out five.
  for (int i = 15; i < 20; ++i) {
    ASSERT_TRUE(t.complete(cids[static_cast<std::size_t>(i)]).ok());
    live.erase(static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(t.timeout_scan(10, [](std::uint16_t, std::uint32_t&) {}), 5u);
  std::set<std::uint32_t> cancelled;
  std::uint32_t timed_out_seen = 0;
  EXPECT_EQ(t.cancel_all([&](std::uint16_t, std::uint32_t& ctx, bool was_timed_out) {
    EXPECT_TRUE(cancelled.insert(ctx).second);
    timed_out_seen += was_timed_out;
  }), 15u);
  EXPECT_EQ(cancelled, live);
  EXPECT_EQ(timed_out_seen, 5u);
  EXPECT_EQ(t.in_flight(), 0u);
  for (auto c : cids) EXPECT_FALSE(t.complete(c).ok());
}

TEST(TagTable, CancelOfUnsentCommandAndDeadlines) {
  table t;
  ASSERT_TRUE(t.init(4u).ok());
  const std::uint16_t a = *t.acquire(7, 50);
  ASSERT_TRUE(t.set_deadline(a, 500).ok());
  EXPECT_EQ(t.timeout_scan(100, [](std::uint16_t, std::uint32_t&) { ADD_FAILURE(); }), 0u);
  ASSERT_TRUE(t.cancel(a).ok());
  EXPECT_EQ(t.cancel(a).code(), errc::invalid_argument);
  EXPECT_EQ(t.set_deadline(a, 1).code(), errc::invalid_argument);
  EXPECT_EQ(t.in_flight(), 0u);
  EXPECT_EQ(t.context(a), nullptr);
}

}  // namespace
