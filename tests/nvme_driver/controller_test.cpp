// NVMe driver core (examples/nvme/driver) against the software controller
// model (tests/support/fake_nvme_controller.hpp): bring-up and its bounds,
// Identify, I/O with PRP lists and SGLs, MDTS, batching, shadow doorbells,
// status names, timeout -> abort -> reset with nothing lost, shutdown.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "../../examples/nvme/driver/controller.hpp"
#include "support/fake_nvme_controller.hpp"

namespace {

using dkq::errc;
using dkq::test::fake_nvme_controller;
using dkq::test::fake_platform;
namespace drv = dkq::nvme_driver;
using ctrl_t = drv::controller<fake_platform>;
using queue_t = drv::io_queue<fake_platform>;

static_assert(drv::pci_platform<fake_platform>);

struct rig {
  fake_nvme_controller dev;
  fake_platform plat{dev};
  ctrl_t ctrl;
  dkq::status init(drv::options o = {}) { return ctrl.init(plat, o); }
};

// Step the device and reap until `n` completions arrived (or give up).
template <class Q>
std::vector<drv::io_completion> run(fake_nvme_controller& dev, Q& q, std::size_t n, int rounds = 100) {
  std::vector<drv::io_completion> out;
  q.ring();
  for (int i = 0; i < rounds && out.size() < n; ++i) {
    dev.step();
    q.poll(1024, [&](const drv::io_completion& c) { out.push_back(c); });
  }
  return out;
}

TEST(NvmeDriver, BringUpIdentifiesControllerAndNamespaces) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  EXPECT_TRUE(r.plat.bus_master);
  EXPECT_STREQ(r.ctrl.info().sn, "FAKE0001");
  EXPECT_EQ(r.ctrl.info().mdts, 2);
  EXPECT_EQ(r.ctrl.max_transfer(), 16384u);
  EXPECT_EQ(r.ctrl.io_queues_granted(), 8u);
  ASSERT_EQ(r.ctrl.namespace_count(), 2u);
  EXPECT_EQ(r.ctrl.ns(0)->block_size, 512u);
  EXPECT_EQ(r.ctrl.ns(0)->nsze, 4096u);
  EXPECT_EQ(r.ctrl.ns(1)->block_size, 4096u);
  EXPECT_TRUE(r.ctrl.ns(1)->usable);
  // CC as programmed: 64/16-byte entries, 4 KiB pages, NVM command set, enabled.
  const std::uint32_t cc = r.dev.reg(dkq::nvme::reg::cc);
  EXPECT_EQ((cc >> 16) & 0xf, 6u);
  EXPECT_EQ((cc >> 20) & 0xf, 4u);
  EXPECT_EQ((cc >> 7) & 0xf, 0u);
  EXPECT_EQ(cc & 1u, 1u);
  EXPECT_TRUE(r.ctrl.shadow_doorbells());  // not QEMU, OACS bit 8 set
  EXPECT_EQ(r.dev.dbbuf_configs, 1u);
}

TEST(NvmeDriver, EnableWaitIsBoundedByCapTimeout) {
  rig r;
  r.dev.never_ready = true;
  r.dev.to_500ms = 4;
  r.dev.finalize_config();
  const std::uint64_t t0 = r.plat.now_ns();
  dkq::status s = r.init();
  EXPECT_EQ(s.code(), errc::timeout);
  const std::uint64_t waited_ms = (r.plat.now_ns() - t0) / 1000000;
  EXPECT_GE(waited_ms, 2000u);  // CAP.TO = 4 x 500 ms
  EXPECT_LE(waited_ms, 2100u);
}

TEST(NvmeDriver, FatalStatusDuringEnableIsAnError) {
  rig r;
  r.dev.fatal_on_enable = true;
  dkq::status s = r.init();
  EXPECT_EQ(s.code(), errc::device_error);
  EXPECT_NE(std::strstr(s.message(), "CSTS.CFS"), nullptr);
}

TEST(NvmeDriver, AllOnesMeansRemoved) {
  rig r;
  r.dev.removed = true;
  r.dev.step();
  EXPECT_EQ(r.init().code(), errc::removed);
}

TEST(NvmeDriver, SecondInitDisablesFirstAndStillWorks) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  ctrl_t again;
  ASSERT_TRUE(again.init(r.plat).ok());  // controller was enabled: disable, wait, enable
  EXPECT_GE(r.dev.resets, 1u);
}

TEST(NvmeDriver, WriteReadRoundTripWithPrpListsAndMdts) {
  rig r;
  drv::options o;
  o.use_sgl = false;
  ASSERT_TRUE(r.init(o).ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 64, false, 0).ok());
  auto buf = r.plat.dma_alloc(64 * 1024);
  ASSERT_TRUE(buf.ok());
  auto* p = buf->cpu_at<std::uint8_t>();
  for (int i = 0; i < 64 * 1024; ++i) p[i] = static_cast<std::uint8_t>(i * 7 + 3);
  // A 16 KiB command is the MDTS limit; 20 KiB is refused before it reaches the wire.
  EXPECT_EQ(q.write(1, 0, 40, {buf->device, 20480}, 9).code(), errc::constraint);
  // 64 KiB of 512-byte blocks at LBA 100 as four 16 KiB commands (PRP lists).
  for (int c = 0; c < 4; ++c)
    ASSERT_TRUE(q.write(1, 100 + 32u * c, 32, {buf->device + 16384u * c, 16384}, c).ok());
  auto done = run(r.dev, q, 4);
  ASSERT_EQ(done.size(), 4u);
  for (auto& d : done) EXPECT_TRUE(d.st.ok()) << d.st.message();
  EXPECT_EQ(std::memcmp(r.dev.disk_for(1).data() + 100 * 512, p, 65536), 0);
  EXPECT_EQ(r.dev.prp_list_commands, 4u);
  std::memset(p, 0, 65536);
  for (int c = 0; c < 4; ++c)
    ASSERT_TRUE(q.read(1, 100 + 32u * c, 32, {buf->device + 16384u * c, 16384}, c).ok());
  ASSERT_EQ(run(r.dev, q, 4).size(), 4u);
  EXPECT_EQ(std::memcmp(r.dev.disk_for(1).data() + 100 * 512, p, 65536), 0);
  EXPECT_EQ(r.dev.protocol_errors, 0u);
}

TEST(NvmeDriver, SglWhenPolicySaysSo) {
  rig r;
  drv::options o;
  o.sgl_threshold = 4096;
  ASSERT_TRUE(r.init(o).ok());
  EXPECT_TRUE(r.ctrl.uses_sgl());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(16384);
  std::memset(buf->cpu, 0x5a, 16384);
  ASSERT_TRUE(q.write(2, 3, 4, {buf->device, 16384}, 1).ok());
  auto done = run(r.dev, q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].st.ok());
  EXPECT_EQ(r.dev.sgl_commands, 1u);
  EXPECT_EQ(r.dev.disk_for(2)[3 * 4096], 0x5a);
  // One page: PRP1 alone is cheapest, even with SGLs available.
  ASSERT_TRUE(q.read(2, 3, 1, {buf->device, 4096}, 2).ok());
  ASSERT_EQ(run(r.dev, q, 1).size(), 1u);
  EXPECT_EQ(r.dev.sgl_commands, 1u);
}

TEST(NvmeDriver, BatchedPostingRingsOncePerBatch) {
  for (bool batched : {true, false}) {
    rig r;
    drv::options o;
    o.shadow = drv::shadow_mode::off;
    ASSERT_TRUE(r.init(o).ok());
    queue_t q;
    ASSERT_TRUE(r.ctrl.create_io_queue(q, 64, false, 0,
                                       batched ? dkq::ring_policy::batched : dkq::ring_policy::immediate)
                    .ok());
    auto buf = r.plat.dma_alloc(32 * 4096);
    // The device model looks between posts, so it sees every register write.
    for (std::uint32_t i = 0; i < 32; ++i) {
      ASSERT_TRUE(q.read(2, i, 1, {buf->device + 4096u * i, 4096}, i).ok());
      r.dev.step();
    }
    ASSERT_EQ(run(r.dev, q, 32).size(), 32u);
    EXPECT_EQ(r.dev.sq_mmio_writes[1], batched ? 1u : 32u);
    EXPECT_EQ(q.sq_mmio_writes(), batched ? 1u : 32u);
  }
}

TEST(NvmeDriver, ShadowDoorbellsAbsorbRegisterWrites) {
  rig r;
  ASSERT_TRUE(r.init().ok());  // shadow on by default for a non-QEMU controller
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 64, false, 0, dkq::ring_policy::immediate).ok());
  auto buf = r.plat.dma_alloc(4096);
  // Posting while the device has not caught up: EventIdx says it already
  // knows about an earlier tail, so later tails need no register write.
  for (std::uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(q.read(2, i, 1, {buf->device, 4096}, i).ok());
  auto done = run(r.dev, q, 8);
  ASSERT_EQ(done.size(), 8u);
  EXPECT_LT(q.sq_mmio_writes(), 8u);
  EXPECT_EQ(r.dev.protocol_errors, 0u);
  // Many more rounds: nothing is lost when EventIdx says "no register write".
  for (int round = 0; round < 50; ++round) {
    for (std::uint32_t i = 0; i < 20; ++i) ASSERT_TRUE(q.read(2, i, 1, {buf->device, 4096}, i).ok());
    ASSERT_EQ(run(r.dev, q, 20).size(), 20u) << "round " << round;
  }
}

TEST(NvmeDriver, FlushReachesTheDeviceAndStatusesHaveNames) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  ASSERT_TRUE(q.flush(1, 1).ok());
  auto done = run(r.dev, q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].st.ok());
  EXPECT_EQ(r.dev.flushes, 1u);
  // The device says LBA Out of Range: a named error, and the queue goes on.
  auto buf = r.plat.dma_alloc(4096);
  ASSERT_TRUE(q.read(2, 5000, 1, {buf->device, 4096}, 2).ok());
  done = run(r.dev, q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_STREQ(done[0].st.message(), "LBA Out of Range");
  EXPECT_EQ(done[0].st.code(), errc::out_of_range);
  r.dev.media_error_lba = 7;
  ASSERT_TRUE(q.read(2, 7, 1, {buf->device, 4096}, 3).ok());
  done = run(r.dev, q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_STREQ(done[0].st.message(), "Unrecovered Read Error");
  ASSERT_TRUE(q.read(2, 7, 1, {buf->device, 4096}, 4).ok());
  done = run(r.dev, q, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].st.ok());
}

TEST(NvmeDriver, WriteZeroesAndDeallocate) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  std::memset(r.dev.disk_for(1).data(), 0xee, r.dev.disk_for(1).size());
  ASSERT_TRUE(q.write_zeroes(1, 10, 4, 1).ok());
  ASSERT_TRUE(q.deallocate(1, 20, 2, 2).ok());
  auto done = run(r.dev, q, 2);
  ASSERT_EQ(done.size(), 2u);
  for (auto& d : done) EXPECT_TRUE(d.st.ok());
  const auto& d = r.dev.disk_for(1);
  EXPECT_EQ(d[10 * 512], 0);
  EXPECT_EQ(d[14 * 512 - 1], 0);
  EXPECT_EQ(d[14 * 512], 0xee);
  EXPECT_EQ(d[20 * 512], 0);
  EXPECT_EQ(d[22 * 512], 0xee);
  EXPECT_EQ(r.dev.write_zeroes, 1u);
  EXPECT_EQ(r.dev.deallocates, 1u);
}

TEST(NvmeDriver, TimeoutAbortCompletesTheCommandOnce) {
  rig r;
  drv::options o;
  o.io_timeout_ms = 100;
  ASSERT_TRUE(r.init(o).ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(8192);
  r.dev.drop_io = 1;
  ASSERT_TRUE(q.read(2, 1, 1, {buf->device, 4096}, 1).ok());
  ASSERT_TRUE(q.read(2, 2, 1, {buf->device + 4096, 4096}, 2).ok());
  auto done = run(r.dev, q, 2, 10);
  ASSERT_EQ(done.size(), 1u);  // the dropped one is still out
  EXPECT_EQ(done[0].user, 2u);
  r.plat.advance_ms(200);
  std::vector<drv::io_completion> late;
  EXPECT_EQ(q.check_timeouts([&](const drv::io_completion& c) { late.push_back(c); }), 1u);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].user, 1u);
  EXPECT_EQ(late[0].st.code(), errc::timeout);
  EXPECT_EQ(r.dev.aborts, 1u);
  EXPECT_FALSE(q.needs_reset());
  EXPECT_EQ(q.in_flight(), 0u);
  // The queue keeps working.
  ASSERT_TRUE(q.read(2, 3, 1, {buf->device, 4096}, 3).ok());
  EXPECT_EQ(run(r.dev, q, 1).size(), 1u);
}

TEST(NvmeDriver, UnabortableCommandLeadsToResetAndRequeue) {
  rig r;
  drv::options o;
  o.io_timeout_ms = 100;
  ASSERT_TRUE(r.init(o).ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(3 * 4096);
  std::memset(r.dev.disk_for(2).data() + 4096, 0x11, 4096);
  std::memset(r.dev.disk_for(2).data() + 8192, 0x22, 4096);
  r.dev.drop_io = 2;
  r.dev.abort_works = false;
  ASSERT_TRUE(q.read(2, 1, 1, {buf->device, 4096}, 1).ok());  // dropped, times out
  auto none = run(r.dev, q, 1, 5);
  EXPECT_TRUE(none.empty());
  r.plat.advance_ms(80);
  ASSERT_TRUE(q.read(2, 2, 1, {buf->device + 4096, 4096}, 2).ok());  // dropped, not yet timed out
  (void)run(r.dev, q, 1, 5);
  r.plat.advance_ms(50);  // first is 130 ms old, second 50 ms
  std::vector<drv::io_completion> got;
  auto h = [&](const drv::io_completion& c) { got.push_back(c); };
  EXPECT_EQ(q.check_timeouts(h), 1u);
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(q.needs_reset());
  EXPECT_EQ(q.read(2, 3, 1, {buf->device, 4096}, 9).code(), errc::busy);
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  EXPECT_FALSE(q.needs_reset());
  EXPECT_EQ(r.ctrl.resets(), 1u);
  // The timed-out command fails with timeout; the other one is re-posted on
  // the re-created queue and completes with its data. Each exactly once.
  for (int i = 0; i < 20 && got.size() < 2; ++i) {
    r.dev.step();
    q.poll(64, h);
  }
  ASSERT_EQ(got.size(), 2u);
  int timeouts = 0, oks = 0;
  for (auto& c : got) {
    if (c.user == 1) {
      EXPECT_EQ(c.st.code(), errc::timeout);
      ++timeouts;
    }
    if (c.user == 2) {
      EXPECT_TRUE(c.st.ok()) << c.st.message();
      ++oks;
    }
  }
  EXPECT_EQ(timeouts, 1);
  EXPECT_EQ(oks, 1);
  EXPECT_EQ(buf->cpu_at<std::uint8_t>()[4096], 0x22);
  EXPECT_EQ(q.in_flight(), 0u);
  // After the reset the queue and the shadow doorbells work again.
  ASSERT_TRUE(q.read(2, 1, 1, {buf->device, 4096}, 5).ok());
  auto after = run(r.dev, q, 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(buf->cpu_at<std::uint8_t>()[0], 0x11);
  EXPECT_EQ(r.dev.dbbuf_configs, 2u);
}

TEST(NvmeDriver, OrderlyShutdown) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  EXPECT_TRUE(r.ctrl.delete_io_queue(q).ok());
  EXPECT_TRUE(r.ctrl.shutdown().ok());
  EXPECT_EQ(r.dev.shutdowns, 1u);
  EXPECT_EQ(r.dev.reg(dkq::nvme::reg::cc) & 1u, 0u);
  EXPECT_TRUE(r.ctrl.shutdown().ok());  // twice is fine
}

TEST(NvmeDriver, QemuDefaultsShadowDoorbellsOff) {
  rig r;
  r.dev.vendor = 0x1b36;
  r.dev.device_id = 0x0010;
  ASSERT_TRUE(r.init().ok());
  EXPECT_FALSE(r.ctrl.shadow_doorbells());
  EXPECT_NE(std::strstr(r.ctrl.shadow_reason(), "QEMU"), nullptr);
  EXPECT_EQ(r.dev.dbbuf_configs, 0u);
  rig f;
  f.dev.vendor = 0x1b36;
  f.dev.device_id = 0x0010;
  drv::options o;
  o.shadow = drv::shadow_mode::on;
  ASSERT_TRUE(f.init(o).ok());
  EXPECT_TRUE(f.ctrl.shadow_doorbells());
  // On QEMU the CQ head register is written every time (shadow_always).
  queue_t q;
  ASSERT_TRUE(f.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = f.plat.dma_alloc(4096);
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(q.read(2, 0, 1, {buf->device, 4096}, 1).ok());
    ASSERT_EQ(run(f.dev, q, 1).size(), 1u);
  }
  EXPECT_EQ(q.cq_mmio_writes(), 3u);
  EXPECT_EQ(f.dev.cq_head_register(1), 3u);
}

TEST(NvmeDriver, BadArgumentsAreClearErrors) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  EXPECT_EQ(r.ctrl.create_io_queue(q, 5000, false, 0).code(), errc::invalid_argument);  // > MQES+1
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 4, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  EXPECT_EQ(q.read(2, 0, 0, {buf->device, 4096}, 0).code(), errc::invalid_argument);
  EXPECT_EQ(q.read(0, 0, 1, {buf->device, 4096}, 0).code(), errc::invalid_argument);
  // Queue of 4 entries: 3 commands fit, the 4th is no_space, not a hang.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.read(2, 0, 1, {buf->device, 4096}, 0).ok());
  EXPECT_EQ(q.read(2, 0, 1, {buf->device, 4096}, 0).code(), errc::no_space);
  EXPECT_EQ(run(r.dev, q, 3).size(), 3u);
}

}  // namespace
