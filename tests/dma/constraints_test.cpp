#include "dkq/dma/constraints.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dma/split_checker.hpp"
#include "dma/sg_testutil.hpp"

using dkq::dev_addr;
using dkq::dma_constraints;
using dkq::dma_segment;
using dkq::errc;

namespace {

dma_segment seg(std::uint64_t a, std::uint64_t l) { return dma_segment{dev_addr{a}, l}; }

struct split_out {
  dkq::status st;
  std::vector<dma_segment> out;
};

split_out run(const dma_constraints& c, const std::vector<dma_segment>& in, std::size_t cap = 4096,
              bool merge = true) {
  std::vector<dma_segment> out(cap);
  auto r = dkq::split_segments(c, in, out, dkq::split_options{merge});
  if (!r) return {r.error(), {}};
  out.resize(r->count);
  return {dkq::ok_status, out};
}

bool has(const dkq::status& s, const char* words) { return std::strstr(s.message(), words) != nullptr; }

}  // namespace

TEST(Split, PassesThroughWhenUnconstrained) {
  dma_constraints c;
  auto r = run(c, {seg(0x1000, 100), seg(0x9000, 5)});
  ASSERT_TRUE(r.st.ok()) << r.st.message();
  EXPECT_EQ(r.out.size(), 2u);
  EXPECT_EQ(dkq::test::check_split(c, {seg(0x1000, 100), seg(0x9000, 5)}, r.out), "");
}

TEST(Split, OneLongSegmentAsDriverKitHandsIt) {
  // 1 MiB at an address 512 bytes before a 64 KiB boundary; a 3108-class HBA:
  // 64 KiB segments, 32-bit addressing, 4-byte alignment.
  dma_constraints c;
  c.max_segment_bytes = 64 * 1024;
  c.boundary = 64 * 1024;
  c.alignment = 4;
  c.addressable_bits = 32;
  c.max_segments = 129;
  const dma_segment one = seg(0x1000'0000 - 512, 1 << 20);
  std::vector<dma_segment> out(64);
  auto r = dkq::split_segment(c, one, out);
  ASSERT_TRUE(r.ok()) << r.error().message();
  out.resize(r->count);
  EXPECT_EQ(out.size(), 17u);  // 512 B, 15 x 64 KiB, 64 KiB - 512 B
  EXPECT_EQ(out.front().len, 512u);
  EXPECT_EQ(r->bytes, 1u << 20);
  EXPECT_EQ(dkq::test::check_split(c, {one}, out), "");
}

TEST(Split, MergesAdjacentInputs) {
  dma_constraints c;
  c.length_granularity = 4;
  // 6 + 10 bytes: neither length is a multiple of 4, the merged 16 is.
  auto r = run(c, {seg(0x1000, 6), seg(0x1006, 10)});
  ASSERT_TRUE(r.st.ok()) << r.st.message();
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0], seg(0x1000, 16));
  auto nomerge = run(c, {seg(0x1000, 6), seg(0x1006, 10)}, 16, false);
  EXPECT_EQ(nomerge.st.code(), errc::constraint);
  EXPECT_TRUE(has(nomerge.st, "granularity"));
  EXPECT_EQ(nomerge.st.detail(), 6u);
}

TEST(Split, EveryBadInputIsAClearError) {
  dma_constraints c;
  auto empty = run(c, {});
  EXPECT_EQ(empty.st.code(), errc::invalid_argument);
  EXPECT_TRUE(has(empty.st, "empty"));

  auto zero = run(c, {seg(0x1000, 8), seg(0x3000, 0)});
  EXPECT_EQ(zero.st.code(), errc::invalid_argument);
  EXPECT_TRUE(has(zero.st, "zero-length"));
  EXPECT_EQ(zero.st.detail(), 1u);

  auto wrap = run(c, {seg(~std::uint64_t{0} - 3, 8)});
  EXPECT_EQ(wrap.st.code(), errc::out_of_range);
  EXPECT_TRUE(has(wrap.st, "wraps"));
  // A range ending exactly at 2^64 must not "merge" with one at address 0.
  auto top = run(c, {seg(~std::uint64_t{0} - 15, 16), seg(0, 16)});
  EXPECT_EQ(top.st.code(), errc::out_of_range);

  dma_constraints mt;
  mt.max_transfer = 4096;
  auto big = run(mt, {seg(0x1000, 4096), seg(0x9000, 1)});
  EXPECT_EQ(big.st.code(), errc::constraint);
  EXPECT_TRUE(has(big.st, "max_transfer"));
  EXPECT_EQ(big.st.detail(), 4097u);

  dma_constraints b32;
  b32.addressable_bits = 32;
  auto high = run(b32, {seg(0xFFFF'F000, 0x2000)});
  EXPECT_EQ(high.st.code(), errc::constraint);
  EXPECT_TRUE(has(high.st, "addressable"));
  EXPECT_EQ(high.st.detail(), 0xFFFF'F000u);
  EXPECT_TRUE(dkq::needs_bounce(b32, std::vector<dma_segment>{seg(0xFFFF'F000, 0x2000)}));
  EXPECT_FALSE(dkq::needs_bounce(b32, std::vector<dma_segment>{seg(0xFFFF'F000, 0x1000)}));

  dma_constraints al;
  al.alignment = 4;
  auto mis = run(al, {seg(0x1002, 8)});
  EXPECT_EQ(mis.st.code(), errc::constraint);
  EXPECT_TRUE(has(mis.st, "aligned"));
  EXPECT_EQ(mis.st.detail(), 0x1002u);

  dma_constraints few;
  few.max_segments = 4;
  few.max_segment_bytes = 4096;
  auto many = run(few, {seg(0x10000, 5 * 4096)});
  EXPECT_EQ(many.st.code(), errc::constraint);
  EXPECT_TRUE(has(many.st, "max_segments"));
  EXPECT_EQ(many.st.detail(), 5u);

  auto small = run(dma_constraints{}, {seg(0x1000, 1), seg(0x3000, 1), seg(0x5000, 1)}, 2);
  EXPECT_EQ(small.st.code(), errc::no_space);
  EXPECT_EQ(small.st.detail(), 3u);
}

TEST(Split, HugeRangeCountsWithoutWalking) {
  // 2^62 bytes in 1-byte pieces: the count is reported, in O(1).
  dma_constraints c;
  c.max_segment_bytes = 1;
  c.max_segments = 8;
  auto r = run(c, {seg(0, std::uint64_t{1} << 62)}, 8);
  EXPECT_EQ(r.st.code(), errc::constraint);
  EXPECT_EQ(r.st.detail(), std::uint64_t{1} << 62);
  c.boundary = 4096;
  c.max_segment_bytes = 3000;
  auto b = run(c, {seg(100, 3 * 4096)}, 1);
  EXPECT_EQ(b.st.code(), errc::no_space);  // within max_segments, but the output holds one
  // windows: 3996 -> 2, 4096 -> 2, 4096 -> 2, 100 -> 1
  EXPECT_EQ(b.st.detail(), 7u);
}

TEST(Split, InvalidConstraintsAreRejected) {
  dma_constraints c;
  c.alignment = 3;
  EXPECT_EQ(c.validate().code(), errc::invalid_argument);
  c = {};
  c.boundary = 4096;
  c.alignment = 8192;
  EXPECT_EQ(c.validate().code(), errc::invalid_argument);
  c = {};
  c.max_segment_bytes = 2;
  c.alignment = 4;
  EXPECT_EQ(c.validate().code(), errc::invalid_argument);
  c = {};
  c.addressable_bits = 0;
  EXPECT_EQ(c.validate().code(), errc::invalid_argument);
  c = {};
  c.max_segments = 0;
  EXPECT_EQ(c.validate().code(), errc::invalid_argument);
}

// Exhaustive small cases: every (address, length) in a small window against
// every small constraint combination; a success must pass the checker, a
// failure must be justified by the input.
TEST(Split, ExhaustiveSmall) {
  int ok = 0, fail = 0;
  for (std::uint64_t align : {1u, 2u, 4u})
    for (std::uint64_t gran : {1u, 4u})
      for (std::uint64_t boundary : {0u, 8u, 16u})
        for (std::uint64_t maxseg : {4u, 5u, 7u, 8u, 12u, 64u}) {
          dma_constraints c;
          c.alignment = align;
          c.length_granularity = gran;
          c.boundary = boundary;
          c.max_segment_bytes = maxseg;
          c.max_segments = 9;
          if (!c.validate().ok()) continue;
          for (std::uint64_t a = 0; a < 40; ++a)
            for (std::uint64_t l = 1; l <= 48; ++l) {
              const std::vector<dma_segment> in{seg(a, l)};
              auto r = run(c, in, 64);
              if (r.st.ok()) {
                ++ok;
                ASSERT_EQ(dkq::test::check_split(c, in, r.out), "")
                    << "a=" << a << " l=" << l << " align=" << align << " b=" << boundary;
              } else {
                ++fail;
                ASSERT_EQ(r.st.code(), errc::constraint) << r.st.message();
                if (has(r.st, "aligned")) {
                  ASSERT_NE(a % align, 0u);
                }
                if (has(r.st, "max_segments")) {
                  ASSERT_GT(r.st.detail(), 9u);
                }
              }
            }
        }
  EXPECT_GT(ok, 1000);
  EXPECT_GT(fail, 100);
}

TEST(Split, RandomizedSeeded) {
  std::mt19937_64 rng(0xD3A5EEDull);
  int ok = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    dma_constraints c;
    c.alignment = std::uint64_t{1} << (rng() % 4);
    c.length_granularity = std::uint64_t{1} << (rng() % 3);
    c.boundary = rng() % 3 == 0 ? 0 : std::uint64_t{1} << (8 + rng() % 10);
    c.max_segment_bytes = 1 + rng() % 70000;
    c.max_segments = 1 + static_cast<std::uint32_t>(rng() % 300);
    c.addressable_bits = rng() % 4 == 0 ? 32 : 64;
    if (rng() % 5 == 0) c.max_transfer = 1 + rng() % 500000;
    if (!c.validate().ok()) continue;
    std::vector<dma_segment> in;
    const int n = 1 + static_cast<int>(rng() % 8);
    std::uint64_t a = (rng() % 2 ? 0x1'0000'0000ull : 0) + (rng() % 0x4000'0000) * 4;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t l = 1 + rng() % 40000;
      in.push_back(seg(a, l));
      a = rng() % 3 == 0 ? a + l : a + l + (rng() % 100000);
    }
    auto r = run(c, in, 1 + rng() % 400);
    if (r.st.ok()) {
      ASSERT_EQ(dkq::test::check_split(c, in, r.out), "") << "iter " << iter;
      ++ok;
    } else {
      ASSERT_TRUE(r.st.code() == errc::constraint || r.st.code() == errc::no_space) << r.st.message();
    }
  }
  EXPECT_GT(ok, 2000);  // the random space must exercise successes, not only errors
}
