#include "dkq/nvme/sgl.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dma/sg_testutil.hpp"
#include "nvme/sgl_checker.hpp"

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;
using dkq::errc;
using dkq::nvme::data_pointer;
using dkq::nvme::sgl_caps;
using dkq::nvme::sgl_type;

namespace {

dma_segment seg(std::uint64_t a, std::uint64_t l) { return dma_segment{dev_addr{a}, l}; }

std::vector<dma_region> seg_regions(dkq::test::fake_dma_memory& mem, std::size_t bytes, int n,
                                    std::uint64_t base = 0x7E00'0000'0000ull) {
  std::vector<dma_region> v;
  for (int i = 0; i < n; ++i) v.push_back(mem.map(base + static_cast<std::uint64_t>(i) * 0x10000, bytes));
  return v;
}

std::vector<dma_segment> scattered(std::mt19937_64& rng, int n, bool dword) {
  std::vector<dma_segment> v;
  for (int i = 0; i < n; ++i) {
    std::uint64_t a = 0x1'0000'0000ull + (rng() % 0x1000'0000) * 16 + (dword ? 0 : rng() % 4);
    std::uint64_t l = 1 + rng() % 20000;
    if (dword) l = (l + 3) & ~std::uint64_t{3};
    v.push_back(seg(a, l));
  }
  return v;
}

std::string build_and_check(sgl_caps caps, dkq::test::fake_dma_memory& mem, const std::vector<dma_region>& regions,
                            const std::vector<dma_segment>& data, std::uint32_t* segs_used = nullptr) {
  auto r = dkq::nvme::build_sgl(caps, data, regions);
  if (!r) return std::string("build failed: ") + r.error().message();
  if (segs_used != nullptr) *segs_used = r->segments;
  return dkq::test::check_sgl(mem, &r->sgl1, caps.dword_aligned, data);
}

bool has(const dkq::status& s, const char* words) { return std::strstr(s.message(), words) != nullptr; }

const sgl_caps byte_sgl = sgl_caps::from_sgls(0x1);
const sgl_caps dword_sgl = sgl_caps::from_sgls(0x2);

}  // namespace

TEST(Sgl, CapsFromSgls) {
  EXPECT_FALSE(sgl_caps::from_sgls(0).supported);
  EXPECT_TRUE(byte_sgl.supported);
  EXPECT_FALSE(byte_sgl.dword_aligned);
  EXPECT_TRUE(dword_sgl.dword_aligned);
  EXPECT_FALSE(sgl_caps::from_sgls(0x3).supported);  // reserved encoding
  EXPECT_EQ(dkq::nvme::sgl_identifier(sgl_type::last_segment), 0x30);
}

TEST(Sgl, SingleBlockGoesInTheCommand) {
  dkq::test::fake_dma_memory mem;
  auto regions = seg_regions(mem, 4096, 1);
  auto r = dkq::nvme::build_sgl(byte_sgl, std::vector<dma_segment>{seg(0x1234'5671, 777)}, regions);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sgl1.type(), sgl_type::data_block);
  EXPECT_EQ(r->sgl1.address, 0x1234'5671u);
  EXPECT_EQ(r->sgl1.length, 777u);
  EXPECT_EQ(r->segments, 0u);
}

TEST(Sgl, ManyBlocksUseALastSegment) {
  dkq::test::fake_dma_memory mem;
  auto regions = seg_regions(mem, 4096, 1);
  const std::vector<dma_segment> d{seg(0x10000, 512), seg(0x30000, 4096), seg(0x50004, 100)};
  auto r = dkq::nvme::build_sgl(byte_sgl, d, regions);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sgl1.type(), sgl_type::last_segment);
  EXPECT_EQ(r->sgl1.address, regions[0].device.value());
  EXPECT_EQ(r->sgl1.length, 48u);
  EXPECT_EQ(dkq::test::check_sgl(mem, &r->sgl1, false, d), "");
}

// Every descriptor count 1..700 through page-sized segments (256 descriptors,
// chaining twice) and through tiny 3-descriptor segments (long Segment chains).
TEST(Sgl, ExhaustiveCountsAndChains) {
  dkq::test::fake_dma_memory mem;
  auto pages = seg_regions(mem, 4096, 3);
  auto tiny = seg_regions(mem, 48, 400, 0x7D00'0000'0000ull);
  std::mt19937_64 rng(7);
  for (int n = 1; n <= 700; ++n) {
    const auto d = scattered(rng, n, true);
    std::uint32_t used = 0;
    ASSERT_EQ(build_and_check(dword_sgl, mem, pages, d, &used), "") << "n=" << n;
    if (n == 1) {
      EXPECT_EQ(used, 0u);
    } else if (n <= 256) {
      EXPECT_EQ(used, 1u) << n;
    } else if (n <= 511) {
      EXPECT_EQ(used, 2u) << n;
    } else {
      EXPECT_EQ(used, 3u) << n;
    }
    if (n <= 399) {
      ASSERT_EQ(build_and_check(byte_sgl, mem, tiny, d), "") << "tiny n=" << n;
    }
  }
}

TEST(Sgl, RandomizedSeeded) {
  dkq::test::fake_dma_memory mem;
  std::mt19937_64 rng(0x5EED'0002ull);
  std::vector<std::vector<dma_region>> pools;
  for (std::size_t bytes : {32u, 48u, 256u, 4096u})
    pools.push_back(seg_regions(mem, bytes, 300, 0x7C00'0000'0000ull + bytes * 0x1000'0000ull));
  for (int iter = 0; iter < 3000; ++iter) {
    const bool dword = rng() % 2 == 0;
    const auto d = scattered(rng, 1 + static_cast<int>(rng() % 300), dword);
    const auto& regions = pools[rng() % pools.size()];
    ASSERT_EQ(build_and_check(dword ? dword_sgl : byte_sgl, mem, regions, d), "") << "iter " << iter;
  }
}

TEST(Sgl, EveryBadInputIsAClearError) {
  dkq::test::fake_dma_memory mem;
  auto regions = seg_regions(mem, 64, 2);
  auto build = [&](sgl_caps c, std::vector<dma_segment> d, std::uint64_t mdts = 0) {
    return dkq::nvme::build_sgl(c, d, regions, mdts);
  };
  EXPECT_EQ(build(sgl_caps{}, {seg(0x1000, 8)}).error().code(), errc::not_supported);
  EXPECT_EQ(build(byte_sgl, {}).error().code(), errc::invalid_argument);
  auto zero = build(byte_sgl, {seg(0x1000, 8), seg(0x2000, 0)});
  EXPECT_EQ(zero.error().code(), errc::invalid_argument);
  EXPECT_EQ(zero.error().detail(), 1u);
  EXPECT_EQ(build(byte_sgl, {seg(~std::uint64_t{0}, 2)}).error().code(), errc::out_of_range);
  auto mis = build(dword_sgl, {seg(0x1002, 8)});
  EXPECT_EQ(mis.error().code(), errc::constraint);
  EXPECT_TRUE(has(mis.error(), "dword"));
  EXPECT_EQ(mis.error().detail(), 0x1002u);
  auto odd_len = build(dword_sgl, {seg(0x1000, 7)});
  EXPECT_EQ(odd_len.error().code(), errc::constraint);
  EXPECT_EQ(odd_len.error().detail(), 7u);
  EXPECT_TRUE(build(byte_sgl, {seg(0x1002, 7)}).ok());  // byte-granular controllers accept it
  auto mdts = build(byte_sgl, {seg(0x1000, 4096), seg(0x9000, 4096)}, 4096);
  EXPECT_EQ(mdts.error().code(), errc::constraint);
  EXPECT_TRUE(has(mdts.error(), "MDTS"));
  auto huge = build(byte_sgl, {seg(0x1000, std::uint64_t{1} << 32)});
  EXPECT_EQ(huge.error().code(), errc::constraint);
  // 64-byte regions hold 4 descriptors: 2 regions carry at most 3 + 4 = 7 blocks.
  std::vector<dma_segment> eight;
  for (int i = 0; i < 8; ++i) eight.push_back(seg(0x10000 * (i + 1), 16));
  auto full = build(byte_sgl, eight);
  EXPECT_EQ(full.error().code(), errc::no_space);
  eight.pop_back();
  EXPECT_EQ(build_and_check(byte_sgl, mem, regions, eight), "");
  auto unaligned_region = mem.map(0x7A00'0000'0004ull, 64);
  EXPECT_EQ(dkq::nvme::build_sgl(byte_sgl, eight, std::vector<dma_region>{unaligned_region})
                .error()
                .code(),
            errc::invalid_argument);
}

TEST(Sgl, CheckerCatchesBrokenSegments) {
  dkq::test::fake_dma_memory mem;
  auto regions = seg_regions(mem, 64, 4);
  std::vector<dma_segment> d;
  for (int i = 0; i < 10; ++i) d.push_back(seg(0x10000 * (i + 1), 64));
  auto r = dkq::nvme::build_sgl(dword_sgl, d, regions);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(dkq::test::check_sgl(mem, &r->sgl1, true, d), "");
  auto* first = static_cast<dkq::nvme::sgl_descriptor*>(regions[0].cpu);
  first[1].length = 65;  // breaks dword granularity
  EXPECT_NE(dkq::test::check_sgl(mem, &r->sgl1, true, d), "");
  first[1].length = 64;
  first[1].identifier = dkq::nvme::sgl_identifier(sgl_type::segment);  // pointer not last
  EXPECT_NE(dkq::test::check_sgl(mem, &r->sgl1, true, d), "");
  first[1].identifier = 0;
  first[3].identifier = dkq::nvme::sgl_identifier(sgl_type::last_segment);  // wrong kind of pointer
  EXPECT_NE(dkq::test::check_sgl(mem, &r->sgl1, true, d), "");
}

// ---- PRP or SGL ----------------------------------------------------------------

TEST(SglPolicy, FollowsLinuxRules) {
  dkq::nvme::prp_config cfg;
  dkq::nvme::dptr_policy pol{dword_sgl, 32 * 1024};
  auto choose = [&](std::vector<dma_segment> d, dkq::nvme::dptr_request req = {}) {
    return dkq::nvme::choose_data_pointer(pol, cfg, d, req);
  };
  const std::vector<dma_segment> big{seg(0x100000, 64 * 1024), seg(0x300000, 64 * 1024)};
  const std::vector<dma_segment> small{seg(0x100000, 4096), seg(0x300000, 4096)};
  const std::vector<dma_segment> gappy{seg(0x100000, 512), seg(0x300000, 4096)};
  EXPECT_EQ(*choose(big), data_pointer::sgl);    // average >= threshold
  EXPECT_EQ(*choose(small), data_pointer::prp);  // average below threshold
  EXPECT_EQ(*choose({seg(0x100000, 8192)}), data_pointer::prp);  // one segment, two pages
  EXPECT_EQ(*choose({seg(0x100000, 64 * 1024)}), data_pointer::sgl);
  EXPECT_EQ(*choose(gappy), data_pointer::sgl);  // page gap: SGL forced
  EXPECT_EQ(*choose(small, {false, true}), data_pointer::sgl);  // passthrough
  EXPECT_EQ(*choose(big, {true, false}), data_pointer::prp);    // admin queue
  auto admin_gap = choose(gappy, {true, false});
  EXPECT_EQ(admin_gap.error().code(), errc::constraint);
  EXPECT_TRUE(has(admin_gap.error(), "page gaps"));
  pol.sgl_threshold = 0;
  EXPECT_EQ(*choose(big), data_pointer::prp);  // threshold 0 disables by-size SGL
  EXPECT_EQ(*choose(gappy), data_pointer::sgl);
  pol.caps = sgl_caps{};
  EXPECT_EQ(*choose(big), data_pointer::prp);
  EXPECT_EQ(choose(gappy).error().code(), errc::constraint);
  // Dword-aligned SGLs cannot take a 3-byte tail; PRPs can.
  pol = {dword_sgl, 32 * 1024};
  EXPECT_EQ(*choose({seg(0x100000, 64 * 1024), seg(0x300000, 64 * 1024 + 3)}), data_pointer::prp);
  cfg.max_transfer = 64 * 1024;
  EXPECT_EQ(choose(big).error().code(), errc::constraint);  // beyond MDTS: split first
}
