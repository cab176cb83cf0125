// Single-threaded behaviour of dkq::spsc_ring: every operation, the edges
// (empty, full, wrap, capacity 1 and 2) and misuse.
#include "dkq/ring/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace {

using ring = dkq::spsc_ring<std::uint64_t>;

TEST(SpscInit, RejectsBadCapacities) {
  ring r;
  EXPECT_EQ(r.init(0u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(3u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(1000u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(0x80000001u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(std::span<std::uint64_t>()).code(), dkq::errc::invalid_argument);
  std::uint64_t six[6];
  EXPECT_EQ(r.init(std::span<std::uint64_t>(six, 6)).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(std::span<std::uint64_t>(static_cast<std::uint64_t*>(nullptr), 4)).code(),
            dkq::errc::invalid_argument);
  EXPECT_EQ(r.capacity(), 0u);
}

TEST(SpscInit, UninitialisedRingMovesNothing) {
  ring r;
  std::uint64_t v = 1, buf[4] = {};
  EXPECT_FALSE(r.try_push(v));
  EXPECT_FALSE(r.push(v));  // must not spin forever
  EXPECT_FALSE(r.try_pop(v));
  EXPECT_FALSE(r.pop(v));
  EXPECT_EQ(r.push_burst(buf, 4), 0u);
  EXPECT_EQ(r.pop_burst(buf, 4), 0u);
  EXPECT_TRUE(r.reserve(1).empty());
  EXPECT_TRUE(r.peek(1).empty());
}

TEST(Spsc, CapacityOneAlternates) {
  ring r;
  ASSERT_TRUE(r.init(1u));
  for (std::uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(r.try_push(i));
    ASSERT_FALSE(r.try_push(i + 1000)) << "capacity 1 must be full after one push";
    std::uint64_t out = 0;
    ASSERT_TRUE(r.try_pop(out));
    ASSERT_EQ(out, i);
    ASSERT_FALSE(r.try_pop(out));
  }
}

TEST(Spsc, CapacityTwoFullAndEmptyEdges) {
  ring r;
  ASSERT_TRUE(r.init(2u));
  std::uint64_t out = 0;
  EXPECT_FALSE(r.try_pop(out));
  EXPECT_TRUE(r.try_push(1));
  EXPECT_TRUE(r.try_push(2));
  EXPECT_FALSE(r.try_push(3));
  EXPECT_EQ(r.size_approx(), 2u);
  EXPECT_TRUE(r.try_pop(out));
  EXPECT_EQ(out, 1u);
  EXPECT_TRUE(r.try_push(3));
  EXPECT_TRUE(r.try_pop(out));
  EXPECT_EQ(out, 2u);
  EXPECT_TRUE(r.try_pop(out));
  EXPECT_EQ(out, 3u);
  EXPECT_TRUE(r.empty_approx());
}

TEST(Spsc, WrapAroundManyLapsKeepsOrder) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  std::uint64_t next_in = 0, next_out = 0;
  for (int lap = 0; lap < 1000; ++lap) {
    // Vary the fill level so the wrap point lands everywhere.
    const unsigned k = 1 + static_cast<unsigned>(lap % 8);
    for (unsigned i = 0; i < k; ++i) ASSERT_TRUE(r.try_push(next_in++));
    for (unsigned i = 0; i < k; ++i) {
      std::uint64_t out = 0;
      ASSERT_TRUE(r.try_pop(out));
      ASSERT_EQ(out, next_out++);
    }
  }
}

TEST(Spsc, IndicesSurviveUint32Wrap) {
  // Free-running 32-bit indices: after 2^32 elements the arithmetic must still
  // be right. Zero-copy reserve/commit and peek/consume move the indices in
  // O(1) per call, so the test can drive them past the wrap quickly.
  dkq::spsc_ring<std::uint8_t> r;
  ASSERT_TRUE(r.init(std::uint32_t{1} << 16));
  const std::uint32_t step = (1u << 16) - 3;  // odd step: the wrap lands mid-span
  const std::uint64_t target = (std::uint64_t{1} << 32) + 12345;
  std::uint64_t moved = 0;
  while (moved < target) {
    auto w = r.reserve(step);
    ASSERT_EQ(w.size(), step);
    w[0] = static_cast<std::uint8_t>(moved);
    w[step - 1] = static_cast<std::uint8_t>(moved + 1);
    ASSERT_TRUE(r.commit(step));
    ASSERT_EQ(r.size_approx(), step);
    auto rd = r.peek(step);
    ASSERT_EQ(rd.size(), step);
    ASSERT_EQ(rd[0], static_cast<std::uint8_t>(moved));
    ASSERT_EQ(rd[step - 1], static_cast<std::uint8_t>(moved + 1));
    ASSERT_TRUE(r.consume(step));
    moved += step;
  }
  ASSERT_GT(moved, std::uint64_t{1} << 32);
  // Now past the wrap: a full fill and drain must still behave exactly.
  std::vector<std::uint8_t> buf(1u << 16);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i * 7);
  ASSERT_EQ(r.push_bulk(buf.data(), 1u << 16), 1u << 16);
  ASSERT_FALSE(r.try_push(1));
  std::vector<std::uint8_t> out(1u << 16);
  ASSERT_EQ(r.pop_bulk(out.data(), 1u << 16), 1u << 16);
  EXPECT_EQ(out, buf);
  EXPECT_TRUE(r.empty_approx());
}

TEST(Spsc, BulkIsAllOrNothing) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  std::uint64_t in[16], out[16] = {};
  std::iota(in, in + 16, 100);
  std::uint32_t free_space = 99;
  EXPECT_EQ(r.push_bulk(in, 9, &free_space), 0u) << "more than capacity";
  EXPECT_EQ(free_space, 8u);
  EXPECT_EQ(r.push_bulk(in, 5, &free_space), 5u);
  EXPECT_EQ(free_space, 3u);
  EXPECT_EQ(r.push_bulk(in + 5, 4, &free_space), 0u) << "more than free space";
  EXPECT_EQ(free_space, 3u);
  EXPECT_EQ(r.size_approx(), 5u);
  std::uint32_t avail = 99;
  EXPECT_EQ(r.pop_bulk(out, 6, &avail), 0u);
  EXPECT_EQ(avail, 5u);
  EXPECT_EQ(r.pop_bulk(out, 5, &avail), 5u);
  EXPECT_EQ(avail, 0u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], 100u + i);
}

TEST(Spsc, BurstMovesWhatFits) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  std::uint64_t in[16], out[16] = {};
  std::iota(in, in + 16, 0);
  std::uint32_t free_space = 0;
  EXPECT_EQ(r.push_burst(in, 16, &free_space), 8u);
  EXPECT_EQ(free_space, 0u);
  EXPECT_EQ(r.push_burst(in, 1), 0u);
  std::uint32_t avail = 0;
  EXPECT_EQ(r.pop_burst(out, 3, &avail), 3u);
  EXPECT_EQ(avail, 5u);
  EXPECT_EQ(r.push_burst(in + 8, 16), 3u);  // wraps
  EXPECT_EQ(r.pop_burst(out + 3, 16, &avail), 8u);
  EXPECT_EQ(avail, 0u);
  for (std::uint64_t i = 0; i < 11; ++i) EXPECT_EQ(out[i], i);
}

TEST(Spsc, NullBuffersMoveNothing) {
  ring r;
  ASSERT_TRUE(r.init(4u));
  EXPECT_EQ(r.push_bulk(nullptr, 2), 0u);
  EXPECT_EQ(r.push_burst(nullptr, 2), 0u);
  ASSERT_TRUE(r.try_push(1));
  EXPECT_EQ(r.pop_bulk(nullptr, 1), 0u);
  EXPECT_EQ(r.pop_burst(nullptr, 1), 0u);
  EXPECT_EQ(r.size_approx(), 1u);
}

TEST(Spsc, ReserveCommitHandsBackTwoSpansAtWrap) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  std::uint64_t tmp[8];
  ASSERT_EQ(r.push_bulk(tmp, 6), 6u);
  ASSERT_EQ(r.pop_bulk(tmp, 6), 6u);  // head = tail = 6
  auto s = r.reserve(5);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s.first_count, 2u) << "slots 6 and 7 before the wrap";
  EXPECT_EQ(s.second_count, 3u) << "slots 0..2 after it";
  for (std::uint32_t i = 0; i < s.size(); ++i) s[i] = 500 + i;
  EXPECT_EQ(r.size_approx(), 0u) << "nothing visible before commit";
  ASSERT_TRUE(r.commit(5));
  std::uint64_t out[5];
  ASSERT_EQ(r.pop_bulk(out, 5), 5u);
  for (std::uint32_t i = 0; i < 5; ++i) EXPECT_EQ(out[i], 500 + i);
}

TEST(Spsc, ReserveBulkVersusBurst) {
  ring r;
  ASSERT_TRUE(r.init(4u));
  ASSERT_TRUE(r.try_push(1));
  EXPECT_TRUE(r.reserve(4).empty()) << "bulk reserve is all or nothing";
  EXPECT_EQ(r.commit(1).code(), dkq::errc::invalid_argument) << "nothing reserved";
  auto s = r.reserve_burst(4);
  EXPECT_EQ(s.size(), 3u);
  s[0] = 2;
  s[1] = 3;
  ASSERT_TRUE(r.commit(2)) << "committing fewer than reserved is allowed";
  EXPECT_EQ(r.size_approx(), 3u);
  EXPECT_EQ(r.commit(1).code(), dkq::errc::invalid_argument) << "reservation is used up";
}

TEST(Spsc, CommitMoreThanReservedIsAnErrorAndChangesNothing) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  auto s = r.reserve(2);
  ASSERT_EQ(s.size(), 2u);
  auto st = r.commit(3);
  EXPECT_EQ(st.code(), dkq::errc::invalid_argument);
  EXPECT_EQ(st.detail(), 3u);
  EXPECT_EQ(r.size_approx(), 0u);
  EXPECT_TRUE(r.commit(2));
  EXPECT_EQ(r.size_approx(), 2u);
}

TEST(Spsc, PushCancelsAnOutstandingReservation) {
  ring r;
  ASSERT_TRUE(r.init(8u));
  auto s = r.reserve(3);
  s[0] = 99;
  ASSERT_TRUE(r.try_push(7));
  EXPECT_EQ(r.commit(1).code(), dkq::errc::invalid_argument);
  std::uint64_t out = 0;
  ASSERT_TRUE(r.try_pop(out));
  EXPECT_EQ(out, 7u);
  EXPECT_FALSE(r.try_pop(out));
}

TEST(Spsc, PeekConsumeInPlace) {
  ring r;
  ASSERT_TRUE(r.init(4u));
  std::uint64_t in[4] = {1, 2, 3, 4};
  ASSERT_EQ(r.push_bulk(in, 3), 3u);
  std::uint64_t out[2];
  ASSERT_EQ(r.pop_bulk(out, 2), 2u);
  ASSERT_EQ(r.push_bulk(in, 3), 3u);  // now 4 items, wrapping: 3 | 1 2 3
  EXPECT_TRUE(r.peek(5).empty());
  auto p = r.peek(4);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p.first_count, 2u);
  EXPECT_EQ(p.second_count, 2u);
  EXPECT_EQ(p[0], 3u);
  EXPECT_EQ(p[1], 1u);
  EXPECT_EQ(p[3], 3u);
  EXPECT_EQ(r.consume(5).code(), dkq::errc::invalid_argument);
  ASSERT_TRUE(r.consume(1));
  EXPECT_EQ(r.size_approx(), 3u);
  EXPECT_EQ(r.consume(1).code(), dkq::errc::invalid_argument) << "peek is used up";
  auto q = r.peek_burst(10);
  EXPECT_EQ(q.size(), 3u);
  ASSERT_TRUE(r.consume(3));
  EXPECT_TRUE(r.empty_approx());
}

TEST(Spsc, CallerStorageIsUsedInPlace) {
  std::uint64_t storage[4] = {};
  ring r;
  ASSERT_TRUE(r.init(std::span<std::uint64_t>(storage)));
  ASSERT_TRUE(r.try_push(0xabc));
  EXPECT_EQ(storage[0], 0xabcu);
  EXPECT_EQ(r.capacity(), 4u);
}

TEST(Spsc, ReinitResetsState) {
  ring r;
  ASSERT_TRUE(r.init(4u));
  ASSERT_TRUE(r.try_push(1));
  ASSERT_TRUE(r.init(16u));
  EXPECT_EQ(r.capacity(), 16u);
  EXPECT_TRUE(r.empty_approx());
}

struct descriptor {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t tag;
};

TEST(Spsc, StructElements) {
  dkq::spsc_ring<descriptor> r;
  ASSERT_TRUE(r.init(2u));
  ASSERT_TRUE(r.try_push({0x1000, 4096, 7}));
  descriptor d{};
  ASSERT_TRUE(r.try_pop(d));
  EXPECT_EQ(d.addr, 0x1000u);
  EXPECT_EQ(d.len, 4096u);
  EXPECT_EQ(d.tag, 7u);
}

}  // namespace
