// Single-threaded behaviour of the multi-producer/multi-consumer rings: the
// same API contract as SPSC for every sync-mode combination.
#include "dkq/ring/mpmc_ring.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace {

template <class R>
class MpRing : public ::testing::Test {};

using ring_types = ::testing::Types<dkq::mpsc_ring<std::uint64_t>, dkq::spmc_ring<std::uint64_t>,
                                    dkq::mpmc_ring<std::uint64_t>,
                                    dkq::basic_ring<std::uint64_t, dkq::ring_sync::single,
                                                    dkq::ring_sync::single>>;
TYPED_TEST_SUITE(MpRing, ring_types);

TYPED_TEST(MpRing, InitValidation) {
  TypeParam r;
  EXPECT_EQ(r.init(0u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(12u).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(r.init(0x80000001u).code(), dkq::errc::invalid_argument);
  std::uint64_t v = 0;
  EXPECT_FALSE(r.try_push(v));
  EXPECT_FALSE(r.push(v));
  EXPECT_FALSE(r.pop(v));
  ASSERT_TRUE(r.init(16u));
  EXPECT_EQ(r.capacity(), 16u);
}

TYPED_TEST(MpRing, CapacityOneAndTwo) {
  for (std::uint32_t cap : {1u, 2u}) {
    TypeParam r;
    ASSERT_TRUE(r.init(cap));
    for (std::uint64_t i = 0; i < 50; ++i) {
      for (std::uint32_t k = 0; k < cap; ++k) ASSERT_TRUE(r.try_push(i * 10 + k));
      ASSERT_FALSE(r.try_push(1));
      for (std::uint32_t k = 0; k < cap; ++k) {
        std::uint64_t out = 0;
        ASSERT_TRUE(r.try_pop(out));
        ASSERT_EQ(out, i * 10 + k);
      }
      std::uint64_t out = 0;
      ASSERT_FALSE(r.try_pop(out));
    }
  }
}

TYPED_TEST(MpRing, BulkAllOrNothingBurstPartial) {
  TypeParam r;
  ASSERT_TRUE(r.init(8u));
  std::uint64_t in[16], out[16] = {};
  std::iota(in, in + 16, 1);
  std::uint32_t room = 0, avail = 0;
  EXPECT_EQ(r.push_bulk(in, 9, &room), 0u);
  EXPECT_EQ(room, 8u);
  EXPECT_EQ(r.push_bulk(in, 6, &room), 6u);
  EXPECT_EQ(room, 2u);
  EXPECT_EQ(r.push_bulk(in + 6, 3, &room), 0u);
  EXPECT_EQ(r.push_burst(in + 6, 3, &room), 2u);
  EXPECT_EQ(room, 0u);
  EXPECT_EQ(r.pop_bulk(out, 9, &avail), 0u);
  EXPECT_EQ(avail, 8u);
  EXPECT_EQ(r.pop_burst(out, 5, &avail), 5u);
  EXPECT_EQ(avail, 3u);
  EXPECT_EQ(r.push_burst(in + 8, 8), 5u);  // wraps
  EXPECT_EQ(r.pop_burst(out + 5, 16, &avail), 8u);
  EXPECT_EQ(avail, 0u);
  for (std::uint64_t i = 0; i < 13; ++i) EXPECT_EQ(out[i], i + 1);
}

TYPED_TEST(MpRing, WrapManyLaps) {
  TypeParam r;
  ASSERT_TRUE(r.init(4u));
  std::uint64_t next_in = 0, next_out = 0, buf[4];
  for (int lap = 0; lap < 2000; ++lap) {
    const std::uint32_t k = 1 + static_cast<std::uint32_t>(lap % 4);
    for (std::uint32_t i = 0; i < k; ++i) buf[i] = next_in++;
    ASSERT_EQ(r.push_bulk(buf, k), k);
    ASSERT_EQ(r.pop_bulk(buf, k), k);
    for (std::uint32_t i = 0; i < k; ++i) ASSERT_EQ(buf[i], next_out++);
  }
}

TYPED_TEST(MpRing, NullBuffersMoveNothing) {
  TypeParam r;
  ASSERT_TRUE(r.init(4u));
  EXPECT_EQ(r.push_bulk(nullptr, 1), 0u);
  EXPECT_EQ(r.push_burst(nullptr, 1), 0u);
  ASSERT_TRUE(r.try_push(3));
  EXPECT_EQ(r.pop_burst(nullptr, 1), 0u);
  EXPECT_EQ(r.size_approx(), 1u);
}

TYPED_TEST(MpRing, CallerStorage) {
  std::uint64_t storage[8] = {};
  TypeParam r;
  ASSERT_TRUE(r.init(std::span<std::uint64_t>(storage)));
  ASSERT_TRUE(r.try_push(0x55));
  EXPECT_EQ(storage[0], 0x55u);
  EXPECT_EQ(r.init(std::span<std::uint64_t>(storage, 6)).code(), dkq::errc::invalid_argument);
}

}  // namespace
