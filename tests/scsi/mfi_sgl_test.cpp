#include "dkq/scsi/mfi_sgl.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dma/sg_testutil.hpp"
#include "scsi/mfi_checker.hpp"

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;
using dkq::errc;
using dkq::scsi::mfi_sgl_format;

namespace {

dma_segment seg(std::uint64_t a, std::uint64_t l) { return dma_segment{dev_addr{a}, l}; }

int fmt_id(mfi_sgl_format f) { return f == mfi_sgl_format::sgl32 ? 0 : f == mfi_sgl_format::sgl64 ? 1 : 2; }

std::vector<dma_segment> scattered(std::mt19937_64& rng, int n, bool low) {
  std::vector<dma_segment> v;
  for (int i = 0; i < n; ++i) {
    const std::uint64_t base = low ? 0x1000 : 0x1'0000'0000ull;
    v.push_back(seg(base + (rng() % 0x1000'0000) * 4, 1 + rng() % 65536));
  }
  return v;
}

std::string build_and_check_mfi(mfi_sgl_format f, const std::vector<dma_segment>& d, unsigned max_sge) {
  std::vector<std::byte> area(16 * 256 + 64);
  auto r = dkq::scsi::build_mfi_sgl(f, d, area, max_sge);
  if (!r) return std::string("build failed: ") + r.error().message();
  return dkq::test::check_mfi_sgl(reinterpret_cast<const std::uint8_t*>(area.data()), fmt_id(f), r->sge_count,
                                  r->frame_flags, r->data_len, max_sge, d);
}

std::vector<dma_region> chain_buffers(dkq::test::fake_dma_memory& mem, std::size_t bytes, int n,
                                      std::uint64_t base = 0x7B00'0000'0000ull) {
  std::vector<dma_region> v;
  for (int i = 0; i < n; ++i) v.push_back(mem.map(base + static_cast<std::uint64_t>(i) * 0x10000, bytes));
  return v;
}

std::string build_and_check_ieee(dkq::test::fake_dma_memory& mem, const std::vector<dma_segment>& d,
                                 unsigned main_slots, const std::vector<dma_region>& chains,
                                 dkq::scsi::ieee_sgl_options opt = {}, std::uint32_t* frames = nullptr) {
  std::vector<std::byte> main(16 * main_slots);
  auto r = dkq::scsi::build_ieee_sgl(d, main, main_slots, chains, opt);
  if (!r) return std::string("build failed: ") + r.error().message();
  if (frames != nullptr) *frames = r->chain_frames;
  return dkq::test::check_ieee_sgl(mem, reinterpret_cast<const std::uint8_t*>(main.data()), main_slots,
                                   opt.end_of_list, opt.chain_iocplbnta, r->main_chain_index, d);
}

bool has(const dkq::status& s, const char* words) { return std::strstr(s.message(), words) != nullptr; }

}  // namespace

TEST(MfiSgl, WireLayout) {
  std::vector<std::byte> area(64);
  const std::vector<dma_segment> d{seg(0x1122'3344'5566'7788ull, 0x200), seg(0x10000, 0x1000)};
  auto r = dkq::scsi::build_mfi_sgl(mfi_sgl_format::sgl64, d, area, 128);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->frame_flags, 0x2);
  EXPECT_EQ(r->sge_count, 2);
  EXPECT_EQ(r->sgl_bytes, 24u);
  const auto* b = reinterpret_cast<const std::uint8_t*>(area.data());
  EXPECT_EQ(b[0], 0x88);  // little-endian address at byte 0
  EXPECT_EQ(b[7], 0x11);
  EXPECT_EQ(b[8], 0x00);  // length at byte 8
  EXPECT_EQ(b[9], 0x02);
  EXPECT_EQ(b[12], 0x00);  // second element starts at byte 12 (packed)
  EXPECT_EQ(b[14], 0x01);
  EXPECT_EQ(dkq::scsi::mfi_sgl_flags(mfi_sgl_format::ieee), 0x20);
}

TEST(MfiSgl, FrameCount) {
  // I/O frame: SGL at 40. SGL64: two elements fit in the first 64-byte frame.
  EXPECT_EQ(*dkq::scsi::mfi_frame_count(40, mfi_sgl_format::sgl64, 2), 1u);
  EXPECT_EQ(*dkq::scsi::mfi_frame_count(40, mfi_sgl_format::sgl64, 3), 2u);
  EXPECT_EQ(*dkq::scsi::mfi_frame_count(40, mfi_sgl_format::sgl32, 3), 1u);
  EXPECT_EQ(*dkq::scsi::mfi_frame_count(48, mfi_sgl_format::ieee, 1), 1u);
  EXPECT_EQ(*dkq::scsi::mfi_frame_count(48, mfi_sgl_format::ieee, 29), 8u);
  EXPECT_EQ(dkq::scsi::mfi_frame_count(48, mfi_sgl_format::ieee, 30).error().code(), errc::constraint);
}

// Every count 1..max_sge in every format.
TEST(MfiSgl, ExhaustiveCountsAllFormats) {
  std::mt19937_64 rng(11);
  for (auto f : {mfi_sgl_format::sgl32, mfi_sgl_format::sgl64, mfi_sgl_format::ieee})
    for (int n = 1; n <= 255; ++n) {
      const auto d = scattered(rng, n, f == mfi_sgl_format::sgl32);
      ASSERT_EQ(build_and_check_mfi(f, d, 255), "") << "fmt " << fmt_id(f) << " n " << n;
    }
}

TEST(MfiSgl, EveryBadInputIsAClearError) {
  std::vector<std::byte> area(256);
  auto build = [&](mfi_sgl_format f, std::vector<dma_segment> d, std::uint32_t max_sge = 128) {
    return dkq::scsi::build_mfi_sgl(f, d, area, max_sge);
  };
  EXPECT_EQ(build(mfi_sgl_format::sgl64, {}).error().code(), errc::invalid_argument);
  auto zero = build(mfi_sgl_format::sgl64, {seg(0x1000, 8), seg(0x2000, 0)});
  EXPECT_EQ(zero.error().code(), errc::invalid_argument);
  EXPECT_EQ(zero.error().detail(), 1u);
  auto null_addr = build(mfi_sgl_format::sgl64, {seg(0, 8)});
  EXPECT_EQ(null_addr.error().code(), errc::constraint);
  auto high = build(mfi_sgl_format::sgl32, {seg(0xFFFF'F000, 0x2000)});
  EXPECT_EQ(high.error().code(), errc::constraint);
  EXPECT_TRUE(has(high.error(), "SGL32"));
  EXPECT_TRUE(build(mfi_sgl_format::sgl32, {seg(0xFFFF'F000, 0x1000)}).ok());  // ends exactly at 4 GiB
  std::vector<dma_segment> many(5, seg(0x1000, 8));
  auto too_many = build(mfi_sgl_format::sgl64, many, 4);
  EXPECT_EQ(too_many.error().code(), errc::constraint);
  EXPECT_TRUE(has(too_many.error(), "max SGE"));
  EXPECT_EQ(too_many.error().detail(), 5u);
  EXPECT_EQ(build(mfi_sgl_format::sgl64, many, 0).error().code(), errc::invalid_argument);
  EXPECT_EQ(build(mfi_sgl_format::sgl64, many, 256).error().code(), errc::invalid_argument);
  std::vector<dma_segment> thirty(30, seg(0x1000, 8));
  auto small = dkq::scsi::build_mfi_sgl(mfi_sgl_format::ieee, thirty, std::span<std::byte>(area.data(), 64), 128);
  EXPECT_EQ(small.error().code(), errc::no_space);
  EXPECT_EQ(small.error().detail(), 480u);
  auto long_one = build(mfi_sgl_format::sgl64, {seg(0x1000, std::uint64_t{1} << 32)});
  EXPECT_EQ(long_one.error().code(), errc::constraint);
  std::vector<dma_segment> big(2, seg(0x1000, 0xFFFF'FFFFull));
  EXPECT_EQ(build(mfi_sgl_format::sgl64, big).error().code(), errc::constraint);  // data_xferlen overflow
  EXPECT_EQ(build(mfi_sgl_format::sgl64, {seg(~std::uint64_t{0}, 2)}).error().code(), errc::out_of_range);
}

// ---- MPI 2.5 IEEE SGL with chains ---------------------------------------------

TEST(IeeeSgl, FitsInFrameWithEndOfList) {
  dkq::test::fake_dma_memory mem;
  std::vector<std::byte> main(16 * 8);
  const std::vector<dma_segment> d{seg(0x10000, 512), seg(0x30000, 4096)};
  auto r = dkq::scsi::build_ieee_sgl(d, main, 8, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->main_elements, 2u);
  EXPECT_EQ(r->main_chain_index, -1);
  EXPECT_EQ(static_cast<std::uint8_t>(main[15]), 0x00);
  EXPECT_EQ(static_cast<std::uint8_t>(main[31]), 0x40);  // END_OF_LIST on the last
}

TEST(IeeeSgl, ChainsLikeMegaraidFusion) {
  // 8 slots in the frame, 20 elements: 7 + chain in the frame, 13 in one chain buffer.
  dkq::test::fake_dma_memory mem;
  auto chains = chain_buffers(mem, 4096, 2);
  std::vector<std::byte> main(16 * 8);
  std::vector<dma_segment> d;
  for (int i = 0; i < 20; ++i) d.push_back(seg(0x100000 * (i + 1), 4096));
  auto r = dkq::scsi::build_ieee_sgl(d, main, 8, chains);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->main_chain_index, 7);
  EXPECT_EQ(r->chain_frames, 1u);
  dkq::scsi::ieee_sge ch{};
  std::memcpy(&ch, main.data() + 7 * 16, 16);
  EXPECT_EQ(ch.flags, 0x80);
  EXPECT_EQ(ch.address, chains[0].device.value());
  EXPECT_EQ(ch.length, 13u * 16);
  EXPECT_EQ(ch.next_chain_offset, 0);
  EXPECT_EQ(dkq::test::check_ieee_sgl(mem, reinterpret_cast<const std::uint8_t*>(main.data()), 8, true, false,
                                      r->main_chain_index, d),
            "");
}

TEST(IeeeSgl, ExhaustiveSlotsAndChainDepths) {
  dkq::test::fake_dma_memory mem;
  std::mt19937_64 rng(13);
  for (std::size_t cbytes : {32u, 48u, 128u})
    for (unsigned slots = 1; slots <= 6; ++slots)
      for (int n = 1; n <= 80; ++n) {
        auto chains = chain_buffers(mem, cbytes, 80, 0x7000'0000'0000ull + (cbytes << 32) + (slots << 24));
        const auto d = scattered(rng, n, false);
        for (bool eol : {true, false})
          for (bool ioc : {false, true}) {
            dkq::scsi::ieee_sgl_options opt{eol, ioc};
            ASSERT_EQ(build_and_check_ieee(mem, d, slots, chains, opt), "")
                << "cbytes " << cbytes << " slots " << slots << " n " << n;
          }
        mem.clear();
      }
}

TEST(IeeeSgl, EveryBadInputIsAClearError) {
  dkq::test::fake_dma_memory mem;
  std::vector<std::byte> main(16 * 4);
  auto one = chain_buffers(mem, 64, 1);
  std::vector<dma_segment> d;
  for (int i = 0; i < 8; ++i) d.push_back(seg(0x10000 * (i + 1), 16));
  EXPECT_EQ(dkq::scsi::build_ieee_sgl({}, main, 4, one).error().code(), errc::invalid_argument);
  EXPECT_EQ(dkq::scsi::build_ieee_sgl(d, main, 0, one).error().code(), errc::invalid_argument);
  EXPECT_EQ(dkq::scsi::build_ieee_sgl(d, main, 5, one).error().code(), errc::invalid_argument);
  // 3 in the frame + 4 in the one buffer = 7 < 8.
  EXPECT_EQ(dkq::scsi::build_ieee_sgl(d, main, 4, one).error().code(), errc::no_space);
  d.pop_back();
  EXPECT_EQ(build_and_check_ieee(mem, d, 4, one), "");
  std::vector<dma_segment> z{seg(0x1000, 0)};
  EXPECT_EQ(dkq::scsi::build_ieee_sgl(z, main, 4, one).error().code(), errc::invalid_argument);
  std::vector<dma_segment> huge{seg(0x1000, std::uint64_t{1} << 32)};
  EXPECT_EQ(dkq::scsi::build_ieee_sgl(huge, main, 4, one).error().code(), errc::constraint);
}

TEST(IeeeSgl, CheckerCatchesBrokenChains) {
  dkq::test::fake_dma_memory mem;
  auto chains = chain_buffers(mem, 48, 10);
  std::vector<std::byte> main(16 * 4);
  std::vector<dma_segment> d;
  for (int i = 0; i < 12; ++i) d.push_back(seg(0x10000 * (i + 1), 64));
  auto r = dkq::scsi::build_ieee_sgl(d, main, 4, chains);
  ASSERT_TRUE(r.ok());
  auto check = [&] {
    return dkq::test::check_ieee_sgl(mem, reinterpret_cast<const std::uint8_t*>(main.data()), 4, true, false,
                                     r->main_chain_index, d);
  };
  ASSERT_EQ(check(), "");
  dkq::scsi::ieee_sge ch{};
  std::memcpy(&ch, main.data() + 48, 16);
  ch.next_chain_offset = 1;  // wrong: the chain in buffer 0 is at index 2
  std::memcpy(main.data() + 48, &ch, 16);
  EXPECT_NE(check(), "");
  ch.next_chain_offset = 2;
  ch.length = 40;  // not a multiple of 16
  std::memcpy(main.data() + 48, &ch, 16);
  EXPECT_NE(check(), "");
}
