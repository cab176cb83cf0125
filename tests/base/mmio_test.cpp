#include "dkq/base/mmio.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

// A register window over ordinary memory: the accessors must hit exactly the
// addressed bytes with the exact width, and reject offsets outside the window.
TEST(Mmio, ReadWriteExactWidthAndOffsets) {
  alignas(8) std::uint8_t bar[64];
  std::memset(bar, 0xaa, sizeof bar);
  dkq::mmio_window w(bar, sizeof bar);
  ASSERT_TRUE(w.valid());
  w.write32(8, 0x11223344u);
  EXPECT_EQ(bar[7], 0xaa);
  EXPECT_EQ(bar[12], 0xaa);
  EXPECT_EQ(w.read32(8), 0x11223344u);
  w.write64(16, 0x0102030405060708ull);
  EXPECT_EQ(w.read64(16), 0x0102030405060708ull);
  w.write64_lo_hi(24, 0xdeadbeefcafef00dull);
  EXPECT_EQ(w.read32(24), 0xcafef00du);
  EXPECT_EQ(w.read32(28), 0xdeadbeefu);
  w.write32_relaxed(32, 7);
  EXPECT_EQ(w.read32_relaxed(32), 7u);
}

TEST(Mmio, CheckedAccessRejectsBadOffsets) {
  alignas(8) std::uint8_t bar[32] = {};
  dkq::mmio_window w(bar, sizeof bar);
  EXPECT_EQ(w.write32_checked(32, 1).code(), dkq::errc::out_of_range);
  EXPECT_EQ(w.write32_checked(30, 1).code(), dkq::errc::invalid_argument);  // misaligned
  EXPECT_EQ(w.write64_checked(28, 1).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(w.read64_checked(32).error().code(), dkq::errc::out_of_range);
  EXPECT_EQ(w.check(0, 2).code(), dkq::errc::invalid_argument);
  EXPECT_TRUE(w.write32_checked(28, 5).ok());
  EXPECT_EQ(*w.read32_checked(28), 5u);
  EXPECT_TRUE(w.write64_checked(24, 9).ok());
  EXPECT_EQ(*w.read64_checked(24), 9u);
  // Huge offsets must not wrap around the size check.
  EXPECT_EQ(w.check(~std::size_t{0} - 2, 4).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(w.check(~std::size_t{0} - 3, 4).code(), dkq::errc::out_of_range);
}

TEST(Mmio, UnmappedWindowIsAnError) {
  dkq::mmio_window w;
  EXPECT_FALSE(w.valid());
  EXPECT_EQ(w.read32_checked(0).error().code(), dkq::errc::not_initialized);
}

TEST(Mmio, RemovedDeviceDetection) {
  EXPECT_TRUE(dkq::looks_removed(std::uint32_t{0xffffffffu}));
  EXPECT_FALSE(dkq::looks_removed(std::uint32_t{0x7fffffffu}));
  EXPECT_TRUE(dkq::looks_removed(~std::uint64_t{0}));
}
