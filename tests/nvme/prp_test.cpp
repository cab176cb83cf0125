#include "dkq/nvme/prp.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dma/sg_testutil.hpp"
#include "nvme/prp_checker.hpp"

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;
using dkq::errc;
using dkq::nvme::prp_config;

namespace {

dma_segment seg(std::uint64_t a, std::uint64_t l) { return dma_segment{dev_addr{a}, l}; }

// Page-aligned list pages at scattered device addresses.
std::vector<dma_region> list_pages(dkq::test::fake_dma_memory& mem, std::uint64_t ps, int n,
                                   std::uint64_t base = 0x7F00'0000'0000ull) {
  std::vector<dma_region> v;
  for (int i = 0; i < n; ++i) v.push_back(mem.map(base + static_cast<std::uint64_t>(i) * 3 * ps, ps));
  return v;
}

prp_config cfg(std::uint32_t ps, std::uint64_t mdts_bytes = 0) {
  prp_config c;
  c.page_size = ps;
  c.max_transfer = mdts_bytes;
  return c;
}

bool has(const dkq::status& s, const char* words) { return std::strstr(s.message(), words) != nullptr; }

std::string build_and_check(const prp_config& c, dkq::test::fake_dma_memory& mem,
                            const std::vector<dma_region>& lists, const std::vector<dma_segment>& data,
                            std::uint64_t off = 0, std::uint64_t len = ~std::uint64_t{0}) {
  auto r = dkq::nvme::build_prp(c, data, lists, off, len);
  if (!r) return std::string("build failed: ") + r.error().message();
  if (len == ~std::uint64_t{0}) len = dkq::test::total_bytes(data) - off;
  return dkq::test::check_prp(mem, c.page_size, r->prp1, r->prp2, dkq::test::window(data, off, len));
}

// A random PRP-describable buffer: first segment may start at any dword and
// must end on a page; middle segments are whole pages; the last starts on a page.
std::vector<dma_segment> random_prp_buffer(std::mt19937_64& rng, std::uint64_t ps, int nseg) {
  std::vector<dma_segment> v;
  auto page = [&] { return (0x1000 + rng() % 0x100000) * ps; };
  const std::uint64_t off0 = rng() % 3 == 0 ? 0 : (rng() % (ps / 4)) * 4;
  if (nseg == 1) {
    v.push_back(seg(page() + off0, 1 + rng() % (6 * ps)));
    return v;
  }
  v.push_back(seg(page() + off0, ps - off0 + (rng() % 3) * ps));
  for (int i = 1; i + 1 < nseg; ++i) v.push_back(seg(page(), (1 + rng() % 4) * ps));
  v.push_back(seg(page(), 1 + rng() % (4 * ps)));
  return v;
}

}  // namespace

TEST(Prp, FromRegisters) {
  auto c = prp_config::from_registers(0, 0, 5);  // 4 KiB pages, MDTS 2^5 * 4 KiB
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->page_size, 4096u);
  EXPECT_EQ(c->max_transfer, 128u * 1024);
  auto big = prp_config::from_registers(4, 1, 0);
  EXPECT_EQ(big->page_size, 65536u);
  EXPECT_EQ(big->max_transfer, 0u);  // MDTS 0 = no limit
  EXPECT_EQ(prp_config::from_registers(16, 0, 0).error().code(), errc::invalid_argument);
}

TEST(Prp, OnePageTwoPagesAndList) {
  dkq::test::fake_dma_memory mem;
  auto lists = list_pages(mem, 4096, 2);
  const auto c = cfg(4096);
  // Fits in PRP1's page: PRP2 unused.
  auto one = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x10'0200, 512)}, lists);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->prp1, 0x10'0200u);
  EXPECT_EQ(one->prp2, 0u);
  EXPECT_EQ(one->list_pages, 0u);
  // Ends in the second page: PRP2 is that page.
  auto two = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x10'0200, 4096)}, lists);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->prp2, 0x10'1000u);
  EXPECT_EQ(two->entries, 2u);
  // Three pages: PRP2 is the list.
  auto three = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x10'0000, 3 * 4096)}, lists);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->prp2, lists[0].device.value());
  EXPECT_EQ(three->list_pages, 1u);
  EXPECT_EQ(lists[0].cpu_at<std::uint64_t>()[0], 0x10'1000u);
  EXPECT_EQ(lists[0].cpu_at<std::uint64_t>()[1], 0x10'2000u);
  EXPECT_EQ(build_and_check(c, mem, lists, {seg(0x10'0000, 3 * 4096)}), "");
}

TEST(Prp, ChainOnlyWhenMoreThanOneEntryRemains) {
  // 4 KiB pages hold 512 entries. 513 data pages -> PRP1 + 512 list entries:
  // the list exactly fills one page, so its last slot is data, not a chain
  // (libvfn PR #67). 514 pages -> 513 entries: chain after 511.
  dkq::test::fake_dma_memory mem;
  auto lists = list_pages(mem, 4096, 3);
  const auto c = cfg(4096);
  auto exact = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x100'0000, 513 * 4096)}, lists);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->list_pages, 1u);
  EXPECT_EQ(lists[0].cpu_at<std::uint64_t>()[511], 0x100'0000u + 512 * 4096);
  EXPECT_EQ(build_and_check(c, mem, lists, {seg(0x100'0000, 513 * 4096)}), "");
  auto over = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x100'0000, 514 * 4096)}, lists);
  ASSERT_TRUE(over.ok());
  EXPECT_EQ(over->list_pages, 2u);
  EXPECT_EQ(lists[0].cpu_at<std::uint64_t>()[511], lists[1].device.value());
  EXPECT_EQ(build_and_check(c, mem, lists, {seg(0x100'0000, 514 * 4096)}), "");
}

TEST(Prp, SmallFirstListRegion) {
  // Linux's 256-byte list pool: at the end of a page it can chain; elsewhere
  // it can only hold a list that fits (32 entries).
  dkq::test::fake_dma_memory mem;
  const auto c = cfg(4096);
  auto page = mem.map(0x6000'0000, 4096);
  auto tail = *page.slice(4096 - 256, 256);
  auto mid = *page.slice(1024, 256);
  auto more = list_pages(mem, 4096, 2);
  std::vector<dma_region> chainable{tail, more[0], more[1]};
  const std::vector<dma_segment> data{seg(0x200'0000, 100 * 4096)};
  EXPECT_EQ(build_and_check(c, mem, chainable, data), "");
  auto r = dkq::nvme::build_prp(c, data, std::vector<dma_region>{mid, more[0]});
  EXPECT_EQ(r.error().code(), errc::constraint);
  EXPECT_TRUE(has(r.error(), "cannot chain"));
  // 33 pages -> 32 list entries: fits in the mid-page 256-byte region.
  EXPECT_EQ(build_and_check(c, mem, std::vector<dma_region>{mid}, {seg(0x200'0000, 33 * 4096)}), "");
  // A region crossing a page is rejected.
  auto cross = mem.map(0x6100'0000 + 4096 - 128, 256);
  auto bad = dkq::nvme::build_prp(c, data, std::vector<dma_region>{cross});
  EXPECT_EQ(bad.error().code(), errc::invalid_argument);
}

TEST(Prp, EveryBadInputIsAClearError) {
  dkq::test::fake_dma_memory mem;
  auto lists = list_pages(mem, 4096, 1);
  const auto c = cfg(4096, 64 * 1024);
  auto build = [&](std::vector<dma_segment> d) { return dkq::nvme::build_prp(c, d, lists); };

  auto empty = build({});
  EXPECT_EQ(empty.error().code(), errc::invalid_argument);
  auto zero = build({seg(0x1000, 4096), seg(0x3000, 0)});
  EXPECT_EQ(zero.error().code(), errc::invalid_argument);
  EXPECT_TRUE(has(zero.error(), "zero-length"));
  EXPECT_EQ(zero.error().detail(), 1u);
  auto wrap = build({seg(~std::uint64_t{0} - 4095, 8192)});
  EXPECT_EQ(wrap.error().code(), errc::out_of_range);
  auto top = build({seg(~std::uint64_t{0} - 4095, 4096)});  // ends exactly at 2^64
  EXPECT_EQ(top.error().code(), errc::out_of_range);
  auto mdts = build({seg(0x10000, 64 * 1024 + 4)});
  EXPECT_EQ(mdts.error().code(), errc::constraint);
  EXPECT_TRUE(has(mdts.error(), "MDTS"));
  EXPECT_EQ(mdts.error().detail(), 64u * 1024 + 4);
  auto dword = build({seg(0x10002, 512)});
  EXPECT_EQ(dword.error().code(), errc::constraint);
  EXPECT_TRUE(has(dword.error(), "dword"));
  auto gap_start = build({seg(0x10000, 4096), seg(0x20200, 4096)});
  EXPECT_EQ(gap_start.error().code(), errc::constraint);
  EXPECT_TRUE(has(gap_start.error(), "does not start a memory page"));
  EXPECT_EQ(gap_start.error().detail(), 0x20200u);
  auto gap_end = build({seg(0x10000, 2048), seg(0x20000, 4096)});
  EXPECT_EQ(gap_end.error().code(), errc::constraint);
  EXPECT_TRUE(has(gap_end.error(), "does not end on a memory page"));
  auto no_lists = dkq::nvme::build_prp(cfg(4096), std::vector<dma_segment>{seg(0x10000, 1100 * 4096)},
                                       lists);
  EXPECT_EQ(no_lists.error().code(), errc::no_space);
  auto zero_len = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x10000, 8)}, lists, 0, 0);
  EXPECT_EQ(zero_len.error().code(), errc::invalid_argument);
  auto past = dkq::nvme::build_prp(c, std::vector<dma_segment>{seg(0x10000, 8)}, lists, 8, 1);
  EXPECT_EQ(past.error().code(), errc::out_of_range);
  prp_config bad_ps = cfg(3000);
  EXPECT_EQ(dkq::nvme::build_prp(bad_ps, std::vector<dma_segment>{seg(0x10000, 8)}, lists).error().code(),
            errc::invalid_argument);
}

// Exhaustive small cases: every entry count 1..1100 (through one and two list
// chains, including the exact-fill edges) at several first-entry offsets and
// two tail shapes, each read back by the checker.
TEST(Prp, ExhaustivePageCounts) {
  dkq::test::fake_dma_memory mem;
  auto lists = list_pages(mem, 4096, 4);
  const auto c = cfg(4096);
  for (std::uint64_t off0 : {0u, 4u, 512u, 4092u})
    for (std::uint64_t pages = 1; pages <= 1100; ++pages)
      for (std::uint64_t short_tail : {0u, 1000u}) {
        const std::uint64_t len = pages * 4096 - off0 - (short_tail < pages * 4096 - off0 ? short_tail : 0);
        const std::vector<dma_segment> d{seg(0x4000'0000 + off0, len)};
        ASSERT_EQ(build_and_check(c, mem, lists, d), "") << "off0=" << off0 << " pages=" << pages;
      }
}

TEST(Prp, RandomizedSeededWithMdtsSplitting) {
  dkq::test::fake_dma_memory mem;
  std::mt19937_64 rng(0x5EED'0001ull);
  std::vector<std::vector<dma_region>> lists_by_ps;
  const std::uint32_t sizes[] = {4096, 8192, 16384, 65536};
  for (std::uint32_t ps : sizes)
    lists_by_ps.push_back(list_pages(mem, ps, 8, 0x7F00'0000'0000ull + std::uint64_t{ps} * 0x100000));
  int chunks_total = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const int psi = static_cast<int>(rng() % 4);
    const std::uint32_t ps = sizes[psi];
    const auto& lists = lists_by_ps[static_cast<std::size_t>(psi)];
    const std::vector<dma_segment> data = random_prp_buffer(rng, ps, 1 + static_cast<int>(rng() % 12));
    const std::uint64_t total = dkq::test::total_bytes(data);
    const std::uint32_t bs = 512u << (rng() % 4);
    const std::uint64_t mdts = rng() % 3 == 0 ? 0 : std::uint64_t{ps} << (rng() % 6);
    const auto c = cfg(ps, mdts);
    std::uint64_t off = 0;
    while (off < total) {
      auto n = dkq::nvme::prp_mdts_chunk(c, data, off, bs);
      if (!n) {
        // Only a first segment whose page offset is not block aligned has no legal cut.
        ASSERT_EQ(n.error().code(), errc::constraint) << n.error().message();
        ASSERT_TRUE((data[0].addr.value() % ps) % bs != 0 || bs > ps) << n.error().message();
        break;
      }
      ASSERT_GT(*n, 0u);
      if (mdts != 0) {
        ASSERT_LE(*n, mdts);
      }
      if (off + *n < total) {
        ASSERT_EQ(*n % bs, 0u) << "split not on a block";
      }
      ASSERT_EQ(build_and_check(c, mem, lists, data, off, *n), "")
          << "iter " << iter << " ps " << ps << " off " << off << " n " << *n << " mdts " << mdts;
      off += *n;
      ++chunks_total;
    }
  }
  EXPECT_GT(chunks_total, 4000);
}

TEST(Prp, CheckerCatchesBrokenLists) {
  // The checker must itself catch a wrong list: corrupt a built list and see it fail.
  dkq::test::fake_dma_memory mem;
  auto lists = list_pages(mem, 4096, 2);
  const auto c = cfg(4096);
  const std::vector<dma_segment> d{seg(0x100'0000, 600 * 4096)};
  auto r = dkq::nvme::build_prp(c, d, lists);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(dkq::test::check_prp(mem, 4096, r->prp1, r->prp2, d), "");
  auto* l0 = lists[0].cpu_at<std::uint64_t>();
  const std::uint64_t saved = l0[3];
  l0[3] += 8;
  EXPECT_NE(dkq::test::check_prp(mem, 4096, r->prp1, r->prp2, d), "");
  l0[3] = saved + 4096;
  EXPECT_NE(dkq::test::check_prp(mem, 4096, r->prp1, r->prp2, d), "");
  l0[3] = saved;
  l0[511] = 0x9999'0000;  // chain into unmapped memory
  EXPECT_NE(dkq::test::check_prp(mem, 4096, r->prp1, r->prp2, d), "");
  EXPECT_NE(dkq::test::check_prp(mem, 4096, r->prp1 + 2, r->prp2, d), "");
}
