// The VFIO backend's IOVA allocator: first fit, alignment, address limits,
// merging on free, double-free detection, reservations and allocation at a
// caller-chosen address (what device::dma_map_at / reserve_iova build on).
#include "dkq/platform/vfio/iova_space.hpp"

#include <gtest/gtest.h>

#include <vector>

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
  EXPECT_TRUE(s.reserve(0x10000, 0x8000).ok());
  EXPECT_EQ(s.alloc(0x1000, 0x1000, ~0ull).value(), 0x18000u);
}

// ---- reservations and fixed addresses ---------------------------------------------

namespace {
iova_space two_windows() {
  iova_space s;
  s.add(0x10000, 0x100000);
  s.add(0x200000, 0x400000);
  return s;
}
}  // namespace

TEST(IovaSpace, AllocatorNeverHandsOutAReservation) {
  auto s = two_windows();
  ASSERT_TRUE(s.reserve(0x10000, 0x20000).ok());  // the bottom of window 1
  ASSERT_TRUE(s.reserve(0x80000, 0x80000).ok());  // the top of window 1
  // Everything that fits goes around the reservations, until only window 2 is left.
  std::vector<std::uint64_t> got;
  for (;;) {
    auto a = s.alloc(0x10000, 0x1000, ~0ull);
    if (!a) break;
    got.push_back(*a);
  }
  ASSERT_FALSE(got.empty());
  for (std::uint64_t a : got) {
    EXPECT_FALSE(a < 0x30000) << std::hex << a;
    EXPECT_FALSE(a + 0x10000 > 0x80000 && a < 0x100000) << std::hex << a;
  }
  EXPECT_EQ(got.size(), (0x80000u - 0x30000u) / 0x10000u + (0x400000u - 0x200000u) / 0x10000u);
  // Ending a reservation gives its space back to the allocator.
  ASSERT_TRUE(s.unreserve(0x80000, 0x80000).ok());
  auto a = s.alloc(0x80000, 0x1000, ~0ull);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 0x80000u);
  EXPECT_EQ(s.unreserve(0x80000, 0x80000).code(), errc::invalid_argument);  // already ended
  EXPECT_EQ(s.unreserve(0x10000, 0x1000).code(), errc::invalid_argument);   // not as it was made
}

TEST(IovaSpace, ReserveRefusesOverlapAndBadAlignment) {
  auto s = two_windows();
  auto a = s.alloc(0x4000, 0x1000, ~0ull).value();  // 0x10000
  auto r = s.reserve(0xf000, 0x2000);                // ends inside the allocation
  EXPECT_EQ(r.code(), errc::busy);
  EXPECT_EQ(r.detail(), a);
  ASSERT_TRUE(s.reserve(0x20000, 0x10000).ok());
  EXPECT_EQ(s.reserve(0x28000, 0x10000).code(), errc::busy);  // overlaps the reservation
  EXPECT_EQ(s.reserve(0x40800, 0x1000).code(), errc::invalid_argument);
  EXPECT_EQ(s.reserve(0x40000, 0x800).code(), errc::invalid_argument);
  EXPECT_EQ(s.reserve(0x40000, 0).code(), errc::invalid_argument);
  EXPECT_EQ(s.reserve(~0ull & ~0xfffull, 0x2000).code(), errc::out_of_range);  // wraps
  // Outside every window: recorded, nothing taken (and alloc_at refuses it).
  const auto free_before = s.free_ranges().size();
  ASSERT_TRUE(s.reserve(0x100000, 0x100000).ok());
  EXPECT_EQ(s.free_ranges().size(), free_before);
  EXPECT_EQ(s.reservations().size(), 2u);
  // A refused reservation changed nothing.
  EXPECT_EQ(s.alloc(0x1000, 0x1000, ~0ull).value(), 0x14000u);
}

TEST(IovaSpace, AllocAtTakesExactlyThatRange) {
  auto s = two_windows();
  auto fixed = s.alloc_at(0x300000, 0x20000);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(*fixed, 0x300000u);
  // The allocator works around it and never returns an overlapping range.
  for (int i = 0; i < 40; ++i) {
    auto a = s.alloc(0x10000, 0x1000, ~0ull);
    if (!a) break;
    EXPECT_TRUE(*a + 0x10000 <= 0x300000 || *a >= 0x320000) << std::hex << *a;
  }
  // Freed like any allocation; then the same address can be taken again.
  ASSERT_TRUE(s.free(0x300000, 0x20000).ok());
  EXPECT_TRUE(s.alloc_at(0x300000, 0x20000).ok());
}

TEST(IovaSpace, AllocAtRefusesOverlapReservationAndOutsideWindows) {
  auto s = two_windows();
  auto a = s.alloc(0x8000, 0x1000, ~0ull).value();  // [0x10000, 0x18000)
  // Overlapping an allocation, in part or in whole: busy, value = first conflict.
  auto o = s.alloc_at(0x16000, 0x4000);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code(), errc::busy);
  EXPECT_EQ(o.error().detail(), 0x16000u);
  EXPECT_STREQ(o.error().message(), "IOVA range overlaps an existing mapping");
  EXPECT_EQ(s.alloc_at(a, 0x8000).error().code(), errc::busy);
  auto f = s.alloc_at(0x18000, 0x4000);  // right after it: fine
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(s.alloc_at(0x10000, 0x10000).error().detail(), 0x10000u);
  // A reservation: busy, with its own message.
  ASSERT_TRUE(s.reserve(0x40000, 0x10000).ok());
  auto r = s.alloc_at(0x3c000, 0x8000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), errc::busy);
  EXPECT_STREQ(r.error().message(), "IOVA range overlaps a reserved range");
  EXPECT_EQ(r.error().detail(), 0x40000u);
  // Outside the usable windows, or straddling the hole between them: out_of_range.
  EXPECT_EQ(s.alloc_at(0x0, 0x1000).error().code(), errc::out_of_range);
  EXPECT_EQ(s.alloc_at(0x1f0000, 0x20000).error().code(), errc::out_of_range);
  EXPECT_EQ(s.alloc_at(0xf0000, 0x20000).error().code(), errc::out_of_range);
  EXPECT_EQ(s.alloc_at(0x400000, 0x1000).error().code(), errc::out_of_range);
  // Bad alignment and sizes.
  EXPECT_EQ(s.alloc_at(0x50800, 0x1000).error().code(), errc::invalid_argument);
  EXPECT_EQ(s.alloc_at(0x50000, 0x1800).error().code(), errc::invalid_argument);
  EXPECT_EQ(s.alloc_at(0x50000, 0).error().code(), errc::invalid_argument);
  EXPECT_EQ(s.alloc_at(0x50000, 0x10000, 0x3000).error().code(), errc::invalid_argument);  // granule
  EXPECT_EQ(s.alloc_at(0x50000, 0x10000, 0x10000).value(), 0x50000u);  // 64 KiB pages
  EXPECT_EQ(s.alloc_at(0x68000, 0x8000, 0x10000).error().code(), errc::invalid_argument);
}

TEST(IovaSpace, DefaultsKeepWindowsForAllocAt) {
  auto s = iova_space::defaults();
  ASSERT_EQ(s.windows().size(), 2u);
  EXPECT_EQ(s.alloc_at(0xfee00000, 0x1000).error().code(), errc::out_of_range);  // the x86 MSI window
  EXPECT_TRUE(s.alloc_at(0xfef00000, 0x1000).ok());
}
