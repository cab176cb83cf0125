#include "dkq/base/bits.hpp"

#include <gtest/gtest.h>

#include <cstdint>

TEST(Bits, Pow2) {
  EXPECT_FALSE(dkq::is_pow2(0u));
  EXPECT_TRUE(dkq::is_pow2(1u));
  EXPECT_TRUE(dkq::is_pow2(4096u));
  EXPECT_FALSE(dkq::is_pow2(4097u));
  EXPECT_EQ(dkq::round_up_pow2(0u), 1u);
  EXPECT_EQ(dkq::round_up_pow2(5u), 8u);
  EXPECT_EQ(dkq::round_up_pow2(std::uint32_t{0x80000000u}), 0x80000000u);
  EXPECT_EQ(dkq::round_up_pow2(std::uint32_t{0x80000001u}), 0u);  // does not fit
  EXPECT_EQ(dkq::log2_floor(1u), 0u);
  EXPECT_EQ(dkq::log2_floor(4096u), 12u);
  EXPECT_EQ(dkq::log2_floor(4097u), 12u);
}

TEST(Bits, Align) {
  EXPECT_EQ(dkq::align_down(std::uint64_t{4097}, std::uint64_t{4096}), 4096u);
  EXPECT_EQ(dkq::align_up(std::uint64_t{4097}, std::uint64_t{4096}), 8192u);
  EXPECT_TRUE(dkq::is_aligned(std::uint64_t{8192}, std::uint64_t{4096}));
  EXPECT_FALSE(dkq::is_aligned(std::uint64_t{8193}, std::uint64_t{4096}));
  std::uint64_t out = 0;
  EXPECT_TRUE(dkq::align_up_checked(std::uint64_t{1}, std::uint64_t{4096}, out));
  EXPECT_EQ(out, 4096u);
  EXPECT_FALSE(dkq::align_up_checked(~std::uint64_t{0} - 5, std::uint64_t{4096}, out));
}

TEST(Bits, CheckedArithmetic) {
  std::uint32_t o = 0;
  EXPECT_TRUE(dkq::add_checked(1u, 2u, o));
  EXPECT_EQ(o, 3u);
  EXPECT_FALSE(dkq::add_checked(0xffffffffu, 1u, o));
  EXPECT_FALSE(dkq::mul_checked(0x10000u, 0x10000u, o));
  EXPECT_TRUE(dkq::mul_checked(0x1000u, 0x1000u, o));
  EXPECT_EQ(o, 0x1000000u);
}

TEST(Bits, Bitfield) {
  // NVMe CAP: MQES in bits 15:0, DSTRD in 35:32, MPSMIN 51:48.
  const std::uint64_t cap = 0x0030'0020'0f01'07ffull;
  EXPECT_EQ(dkq::bitfield(cap, 0, 16), 0x07ffu);
  EXPECT_EQ(dkq::bitfield(cap, 32, 4), 0x0u);
  EXPECT_EQ(dkq::bitfield(cap, 48, 4), 0x0u);
  EXPECT_EQ(dkq::bitfield(cap, 36, 1), 0x0u);
  EXPECT_EQ(dkq::bitfield(cap, 37, 8), 0x01u);
  EXPECT_EQ(dkq::bitfield(cap, 0, 64), cap);
}

TEST(Layout, CacheLineIs128) { static_assert(dkq::cache_line == 128); }
