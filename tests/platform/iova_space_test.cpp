// The VFIO backend's IOVA allocator: first fit, alignment, address limits,
// merging on free, double-free detection.
#include "dkq/platform/vfio/iova_space.hpp"

#include <gtest/gtest.h>

using dkq::errc;
using dkq::vfio::iova_space;

TEST(IovaSpace, DefaultsSkipZeroAndMsiWindow) {
  auto s = iova_space::defaults();
  ASSERT_EQ(s.free_ranges().size(), 2u);
  EXPECT_EQ(s.free_ranges()[0].start, 0x10000u);
  EXPECT_EQ(s.free_ranges()[0].end, 0xfee00000u);
  EXPECT_EQ(s.free_ranges()[1].start, 0xfef00000u);
}

TEST(IovaSpace, AlignsAndRespectsLimit) {
  iova_space s;
  s.add(0x1000, 0x100000000ull);
  s.add(0x200000000ull, 0x400000000ull);
  auto a = s.alloc(0x1000, 0x1000, ~0ull);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 0x1000u);
  auto b = s.alloc(0x3000, 0x10000, ~0ull);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b % 0x10000, 0u);
  EXPECT_EQ(*b, 0x10000u);
  // The gap left by alignment is reused by a later small allocation.
  auto c = s.alloc(0x1000, 0x1000, ~0ull);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, 0x2000u);
  // Below 4 GiB: something too large for the low window fails with `constraint`...
  auto big = s.alloc(0x100000000ull, 0x1000, 1ull << 32);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code(), errc::constraint);
  // ...and succeeds in the high window without the limit.
  auto high = s.alloc(0x100000000ull, 0x1000, ~0ull);
  ASSERT_TRUE(high.ok());
  EXPECT_EQ(*high, 0x200000000ull);
  auto low = s.alloc(0x10000, 0x1000, 1ull << 32);
  ASSERT_TRUE(low.ok());
  EXPECT_LT(*low + 0x10000, 1ull << 32);
}

TEST(IovaSpace, FreeMergesAndDetectsDoubleFree) {
  iova_space s;
  s.add(0x10000, 0x20000);
  auto a = s.alloc(0x4000, 0x1000, ~0ull).value();
  auto b = s.alloc(0x4000, 0x1000, ~0ull).value();
  auto c = s.alloc(0x4000, 0x1000, ~0ull).value();
  EXPECT_EQ(s.free_ranges().size(), 1u);
  EXPECT_TRUE(s.free(b, 0x4000).ok());
  EXPECT_EQ(s.free_ranges().size(), 2u);
  EXPECT_EQ(s.free(b, 0x4000).code(), errc::invalid_argument);
  EXPECT_TRUE(s.free(a, 0x4000).ok());
  EXPECT_TRUE(s.free(c, 0x4000).ok());
  ASSERT_EQ(s.free_ranges().size(), 1u);
  EXPECT_EQ(s.free_ranges()[0].start, 0x10000u);
  EXPECT_EQ(s.free_ranges()[0].end, 0x20000u);
}

TEST(IovaSpace, RejectsBadArguments) {
  iova_space s;
  s.add(0x10000, 0x20000);
  EXPECT_EQ(s.alloc(0, 0x1000, ~0ull).error().code(), errc::invalid_argument);
  EXPECT_EQ(s.alloc(0x1000, 0x1800, ~0ull).error().code(), errc::invalid_argument);
  s.reserve(0x10000, 0x18000);
  EXPECT_EQ(s.alloc(0x1000, 0x1000, ~0ull).value(), 0x18000u);
}
