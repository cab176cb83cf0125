// fan_in_ring (dkq/ring/fan_in.hpp): lanes, attach, per-lane order,
// round-robin fairness, bursts across lanes, wrap-around, misuse.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "dkq/ring/fan_in.hpp"

namespace {

using dkq::errc;

TEST(FanIn, InitChecksLanesAndCapacity) {
  dkq::fan_in_ring<int, 4> q;
  EXPECT_EQ(q.init(0, 8).code(), errc::invalid_argument);
  EXPECT_EQ(q.init(5, 8).code(), errc::invalid_argument);  // > MaxLanes
  EXPECT_EQ(q.init(2, 6).code(), errc::invalid_argument);  // not a power of two
  ASSERT_TRUE(q.init(2, 8));
  EXPECT_EQ(q.lanes(), 2u);
  EXPECT_EQ(q.init(2, 8).code(), errc::busy);  // once
  dkq::fan_in_ring<int, 4> s;
  std::vector<int> mem(24);
  EXPECT_EQ(s.init(2, std::span<int>(mem.data(), 20)).code(), errc::invalid_argument);  // 10 per lane
  EXPECT_EQ(s.init(3, std::span<int>(mem.data(), 20)).code(), errc::invalid_argument);  // uneven
  EXPECT_EQ(s.init(2, std::span<int>()).code(), errc::invalid_argument);
  ASSERT_TRUE(s.init(3, std::span<int>(mem.data(), 24)));
  EXPECT_EQ(s.lane(0)->capacity(), 8u);
  EXPECT_EQ(s.lane(3), nullptr);
}

TEST(FanIn, UninitialisedMovesNothing) {
  dkq::fan_in_ring<int, 4> q;
  int out[4];
  int v = 0;
  EXPECT_EQ(q.attach_producer().error().code(), errc::not_initialized);
  EXPECT_EQ(q.pop_burst(out, 4), 0u);
  EXPECT_FALSE(q.try_pop(v));
  EXPECT_FALSE(q.pop(v));
  EXPECT_EQ(q.size_approx(), 0u);
}

TEST(FanIn, EachProducerGetsItsOwnLaneUntilNoneIsLeft) {
  dkq::fan_in_ring<int, 4> q;
  ASSERT_TRUE(q.init(3, 4));
  auto a = q.attach_producer(), b = q.attach_producer(), c = q.attach_producer();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*b, *c);
  EXPECT_EQ(q.attach_producer().error().code(), errc::no_space);
  EXPECT_EQ(q.attach_producer().error().code(), errc::no_space);  // and stays so
}

TEST(FanIn, LanesAreServedInTurnAndEachKeepsItsOrder) {
  dkq::fan_in_ring<int, 4> q;
  ASSERT_TRUE(q.init(2, 8));
  auto* a = *q.attach_producer();
  auto* b = *q.attach_producer();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a->try_push(100 + i));
    ASSERT_TRUE(b->try_push(200 + i));
  }
  // One at a time: the lanes alternate.
  std::vector<int> got;
  int v = 0;
  while (q.try_pop(v)) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{100, 200, 101, 201, 102, 202, 103, 203}));
  // Bursts: the first lane served moves on each call; per-lane order holds.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a->try_push(300 + i));
    ASSERT_TRUE(b->try_push(400 + i));
  }
  int out[8] = {};
  ASSERT_EQ(q.pop_burst(out, 3), 3u);
  ASSERT_EQ(q.pop_burst(out + 3, 5), 5u);
  std::vector<int> burst(out, out + 8);
  std::vector<int> from_a, from_b;
  for (int x : burst) (x < 400 ? from_a : from_b).push_back(x);
  EXPECT_EQ(from_a, (std::vector<int>{300, 301, 302, 303}));
  EXPECT_EQ(from_b, (std::vector<int>{400, 401, 402, 403}));
  EXPECT_EQ(q.pop_burst(out, 8), 0u);
  EXPECT_EQ(q.pop_burst(nullptr, 8), 0u);
}

TEST(FanIn, BusyLaneDoesNotStarveAQuietOne) {
  dkq::fan_in_ring<int, 4> q;
  ASSERT_TRUE(q.init(2, 64));
  auto* busy = *q.attach_producer();
  auto* quiet = *q.attach_producer();
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(busy->try_push(i));
  ASSERT_TRUE(quiet->try_push(-1));
  // Small bursts: the quiet lane's element comes out within two calls.
  int out[4];
  bool seen = false;
  for (int call = 0; call < 2 && !seen; ++call) {
    const std::uint32_t n = q.pop_burst(out, 4);
    for (std::uint32_t i = 0; i < n; ++i) seen = seen || out[i] == -1;
  }
  EXPECT_TRUE(seen);
}

TEST(FanIn, WrapAroundAndFullLanes) {
  dkq::fan_in_ring<std::uint64_t, 2> q;
  ASSERT_TRUE(q.init(2, 4));
  auto* a = q.lane(0);
  auto* b = q.lane(1);
  std::uint64_t na = 0, nb = 0, ea = 0, eb = 0;
  for (int round = 0; round < 100; ++round) {
    while (a->try_push(na)) ++na;  // fill to full
    while (b->try_push((1ull << 32) | nb)) ++nb;
    EXPECT_EQ(q.size_approx(), 8u);
    std::uint64_t out[8];
    const std::uint32_t got = q.pop_burst(out, 8);
    ASSERT_EQ(got, 8u);
    for (std::uint32_t i = 0; i < got; ++i) {
      if (out[i] >> 32) EXPECT_EQ(out[i] & 0xffffffffu, eb++);
      else EXPECT_EQ(out[i], ea++);
    }
  }
  EXPECT_EQ(ea, na);
  EXPECT_EQ(eb, nb);
}

}  // namespace
