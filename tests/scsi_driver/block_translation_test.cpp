// dkq-scsi serve's request translation (examples/scsi/driver/block_translation.hpp)
// against the software MFI controller: each block request becomes the frame
// and CDB it must (FUA -> WRITE (16) with FUA, flush -> SYNCHRONIZE CACHE (10)
// that the drive answers, discard -> UNMAP, write zeroes -> WRITE SAME (16)),
// the data lands byte for byte, and bad requests never reach the controller.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "examples/scsi/driver/block_translation.hpp"
#include "support/fake_mfi_controller.hpp"

namespace mr = dkq::examples::megaraid;
using dkq::errc;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;

namespace {

struct rig {
  fake_dma_space dma;
  fake_mfi_controller ctl{dma, 64};
  fake_mfi_platform plat{dma, ctl};
  mr::controller<fake_mfi_platform> drv;
  mr::block_limits lim{};
  int calls = 0;
  dkq::status last{};
  rig() {
    ctl.add_disk(0, 4096);  // 4096 blocks of 512 bytes
    mr::options o;
    o.use_interrupts = false;
    EXPECT_TRUE(drv.start(plat, o).ok());
    // B0: max unmap 2048 blocks, 1 descriptor, max write same 256; B2: LBPU.
    std::uint8_t b0[60] = {};
    dkq::scsi::detail::put_be32(&b0[16], 2048);
    dkq::scsi::detail::put_be32(&b0[20], 1);
    dkq::scsi::detail::put_be64(&b0[32], 256);
    const std::uint8_t b2[4] = {0, 0x80, 0, 0};
    auto l = mr::make_block_limits(512, 4096, 64 * 1024, b0, b2);
    EXPECT_TRUE(l.ok());
    lim = *l;
  }
  static void done(void* u, const mr::completion& c) noexcept {
    auto* self = static_cast<rig*>(u);
    ++self->calls;
    self->last = c.st;
  }
  dkq::status run(mr::block_kind k, std::uint64_t lba, std::uint64_t blocks, bool fua, const dkq::dma_region& buf) {
    auto r = mr::build_block_request(0, lim, k, lba, blocks, fua, buf);
    if (!r) return r.error();
    r->done = &done;
    r->user = this;
    const int before = calls;
    DKQ_TRY(drv.submit(*r));
    for (int i = 0; i < 100 && calls == before; ++i) drv.poll();
    EXPECT_EQ(calls, before + 1) << "completed exactly once";
    return last;
  }
  dkq::dma_region buffer(std::size_t n) {
    auto r = dma.alloc(n, mr::no_address_limit);
    EXPECT_TRUE(r.ok());
    return *r;
  }
  const std::uint8_t* disk() { return ctl.disk(0)->data.data(); }
};

TEST(ScsiBlockTranslation, LimitsFromVpdPages) {
  rig r;
  EXPECT_EQ(r.lim.block_size, 512u);
  EXPECT_EQ(r.lim.blocks, 4096u);
  EXPECT_EQ(r.lim.max_transfer, 64u * 1024);
  EXPECT_EQ(r.lim.max_unmap_blocks, 2048u);
  EXPECT_EQ(r.lim.max_write_same_blocks, 256u);
  // No B2 (or LBPU clear): no discard, whatever B0 says.
  std::uint8_t b0[60] = {};
  dkq::scsi::detail::put_be32(&b0[16], 2048);
  dkq::scsi::detail::put_be32(&b0[20], 1);
  auto l = mr::make_block_limits(512, 4096, 64 * 1024, b0, {});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->max_unmap_blocks, 0u);
  EXPECT_EQ(mr::make_block_limits(520, 4096, 65536, {}, {}).error().code(), errc::not_supported);
  EXPECT_EQ(mr::make_block_limits(512, 0, 65536, {}, {}).error().code(), errc::protocol_error);
  EXPECT_EQ(mr::make_block_limits(4096, 10, 1024, {}, {}).error().code(), errc::protocol_error);
}

TEST(ScsiBlockTranslation, WritesReadsAndFuaReachTheDriveByteForByte) {
  rig r;
  auto buf = r.buffer(8 * 512);
  auto* b = buf.cpu_at<std::uint8_t>();
  for (std::size_t i = 0; i < 8 * 512; ++i) b[i] = static_cast<std::uint8_t>(i * 13 + 1);
  ASSERT_TRUE(r.run(mr::block_kind::write, 100, 8, false, buf).ok());
  EXPECT_EQ(std::memcmp(r.disk() + 100 * 512, b, 8 * 512), 0);
  EXPECT_EQ(r.ctl.c.fua_writes, 0u);  // an LD WRITE frame
  for (std::size_t i = 0; i < 8 * 512; ++i) b[i] = static_cast<std::uint8_t>(i * 5 + 9);
  ASSERT_TRUE(r.run(mr::block_kind::write, 200, 8, true, buf).ok());
  EXPECT_EQ(r.ctl.c.fua_writes, 1u);  // WRITE (16) with the FUA bit, through an LD SCSI IO frame
  EXPECT_EQ(std::memcmp(r.disk() + 200 * 512, b, 8 * 512), 0);
  std::memset(b, 0, 8 * 512);
  ASSERT_TRUE(r.run(mr::block_kind::read, 200, 8, false, buf).ok());
  for (std::size_t i = 0; i < 8 * 512; ++i) ASSERT_EQ(b[i], static_cast<std::uint8_t>(i * 5 + 9)) << i;
  auto req = mr::build_block_request(0, r.lim, mr::block_kind::write, 200, 8, true, buf);
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->kind, mr::op::ld_scsi);
  EXPECT_EQ(req->cdb[0], 0x8a);
  EXPECT_EQ(req->cdb[1], 0x08);
}

TEST(ScsiBlockTranslation, FlushIsSynchronizeCacheTheDriveAnswers) {
  rig r;
  const auto before = r.ctl.c.sync10;
  ASSERT_TRUE(r.run(mr::block_kind::flush, 0, 0, false, {}).ok());
  EXPECT_EQ(r.ctl.c.sync10, before + 1);
  auto req = mr::build_block_request(0, r.lim, mr::block_kind::flush, 0, 0, false, {});
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->cdb[0], 0x35);
  EXPECT_EQ(req->cdb[1] & 0x02, 0);  // IMMED clear: complete when the data is on media
}

TEST(ScsiBlockTranslation, DiscardIsUnmapAndWriteZeroesIsWriteSame) {
  rig r;
  auto buf = r.buffer(4096);
  ASSERT_NE(r.disk()[300 * 512 + 1], 0);  // the model fills the disk with a pattern
  ASSERT_TRUE(r.run(mr::block_kind::discard, 300, 16, false, buf).ok());
  EXPECT_EQ(r.ctl.c.unmaps, 1u);
  for (std::size_t i = 0; i < 16 * 512; ++i) ASSERT_EQ(r.disk()[300 * 512 + i], 0) << i;
  std::memset(buf.cpu, 0x5a, 4096);  // the zero block is written by the translation, not assumed
  ASSERT_TRUE(r.run(mr::block_kind::write_zeroes, 500, 40, false, buf).ok());
  EXPECT_EQ(r.ctl.c.write_sames, 1u);
  for (std::size_t i = 0; i < 40 * 512; ++i) ASSERT_EQ(r.disk()[500 * 512 + i], 0) << i;
  EXPECT_NE(r.disk()[540 * 512 + 1], 0);  // the next block untouched
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(ScsiBlockTranslation, BadRequestsNeverReachTheController) {
  rig r;
  auto buf = r.buffer(4096);
  const auto posted = r.drv.stats().frames_posted;
  auto code = [&](mr::block_kind k, std::uint64_t lba, std::uint64_t n) {
    auto q = mr::build_block_request(0, r.lim, k, lba, n, false, buf);
    return q ? errc::ok : q.error().code();
  };
  EXPECT_EQ(code(mr::block_kind::read, 0, 0), errc::invalid_argument);
  EXPECT_EQ(code(mr::block_kind::read, 4090, 8), errc::out_of_range);
  EXPECT_EQ(code(mr::block_kind::read, 0, 9), errc::invalid_argument);  // larger than the 4 KiB buffer
  EXPECT_EQ(code(mr::block_kind::discard, 0, 2049), errc::invalid_argument);
  EXPECT_EQ(code(mr::block_kind::write_zeroes, 0, 257), errc::invalid_argument);
  mr::block_limits none = r.lim;
  none.max_unmap_blocks = 0;
  auto q = mr::build_block_request(0, none, mr::block_kind::discard, 0, 1, false, buf);
  EXPECT_EQ(q.error().code(), errc::not_supported);
  EXPECT_EQ(r.drv.stats().frames_posted, posted);
}

}  // namespace
