// Tests of the MegaRAID (MFI) example driver core (examples/scsi/driver)
// against the software controller model in tests/support/fake_mfi_controller.hpp.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "examples/scsi/driver/megaraid.hpp"
#include "support/fake_mfi_controller.hpp"

namespace mr = dkq::examples::megaraid;
using dkq::errc;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;

namespace {

struct rig {
  fake_dma_space dma;
  fake_mfi_controller ctl;
  fake_mfi_platform plat;
  mr::controller<fake_mfi_platform> drv;
  explicit rig(std::uint32_t max_cmds = 64, std::uint32_t disks = 2) : ctl(dma, max_cmds), plat(dma, ctl) {
    for (std::uint32_t i = 0; i < disks; ++i) ctl.add_disk(static_cast<std::uint8_t>(i), 2048 + i * 1024);
  }
  dkq::dma_region buffer(std::size_t n, std::uint64_t limit = mr::no_address_limit) {
    auto r = dma.alloc(n, limit);
    EXPECT_TRUE(r.ok());
    return *r;
  }
};

struct counter {
  int calls = 0;
  dkq::status last{};
  static void done(void* u, const mr::completion& c) noexcept {
    auto* self = static_cast<counter*>(u);
    ++self->calls;
    self->last = c.st;
  }
};

TEST(MegaraidDriver, BringUpReadsLimitsAndDrives) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_TRUE(r.plat.bus_master);
  const auto& i = r.drv.info();
  EXPECT_EQ(i.register_bar, 1);  // BAR 0 is I/O on the 2108
  EXPECT_EQ(i.fw_max_cmds, 64u);
  EXPECT_EQ(i.info_max_cmds, 64u);
  EXPECT_EQ(i.reply_entries, 64u);
  EXPECT_EQ(i.queue_depth, 64u - 1 - 2);  // never fill the reply queue; 2 internal
  EXPECT_STREQ(i.product, "Fake MegaRAID 9260-8i");
  EXPECT_EQ(i.sgl, dkq::scsi::mfi_sgl_format::sgl64);
  ASSERT_EQ(r.drv.logical_drives().size(), 2u);
  EXPECT_EQ(r.drv.logical_drives()[1].target, 1);
  EXPECT_EQ(r.drv.logical_drives()[1].sectors, 3072u);
  EXPECT_EQ(r.drv.physical_drives().size(), 2u);
  EXPECT_EQ(r.ctl.c.inits, 1u);
  EXPECT_EQ(r.ctl.state(), dkq::scsi::mfi::fw_state::operational);
  EXPECT_NE(r.ctl.intr_mask(), 0xffffffffu);
  EXPECT_TRUE(r.ctl.c.errors.empty()) << r.ctl.c.errors.front();
  ASSERT_TRUE(r.drv.stop().ok());
  EXPECT_EQ(r.ctl.c.cache_flushes, 1u);
  EXPECT_EQ(r.ctl.c.shutdowns, 1u);
  EXPECT_EQ(r.ctl.intr_mask(), 0xffffffffu);  // masked at stop (QEMU: soft reset)
  EXPECT_EQ(r.dma.live(), 0u);
}

// A power cycle (the dext's SetPowerState off/on) stops and starts the same
// controller object: the second start must bring it up again and move data.
TEST(MegaraidDriver, StopThenStartAgainOnTheSameObject) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  ASSERT_TRUE(r.drv.stop().ok());
  EXPECT_EQ(r.dma.live(), 0u);
  dkq::status again = r.drv.start(r.plat, o);
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_TRUE(r.drv.operational());
  ASSERT_EQ(r.drv.logical_drives().size(), 2u);
  auto buf = r.buffer(4096);
  std::memset(buf.cpu, 0x3c, 4096);
  mr::request w;
  w.kind = mr::op::ld_write;
  w.target = 1;
  w.lba = 16;
  w.blocks = 8;
  w.dir = dkq::dma_direction::to_device;
  w.data = buf;
  mr::completion c = r.drv.execute(w);
  ASSERT_TRUE(c.st.ok()) << c.st.message();
  EXPECT_EQ(r.ctl.disk(1)->data[16 * 512 + 100], 0x3c);
  ASSERT_TRUE(r.drv.stop().ok());
  EXPECT_EQ(r.ctl.c.shutdowns, 2u);
}

TEST(MegaraidDriver, Sas1078RegistersInBar0AndPdFrames) {
  rig r;
  r.plat.device_id = 0x0060;
  r.ctl.pci_device = 0x0060;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_EQ(r.drv.info().register_bar, 0);
  EXPECT_NE(std::strstr(r.drv.info().model, "1078"), nullptr);
  auto inq = r.drv.inquiry(1, true);  // physical drive 1 through a PD SCSI IO frame
  ASSERT_TRUE(inq.ok());
  EXPECT_STREQ(inq->vendor, "FAKE");
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(MegaraidDriver, FirmwareStatesToReady) {
  rig r;
  r.ctl.boot_states = {0x1, 0x4, 0x6, 0x9, 0x8};
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(MegaraidDriver, FaultIsAClearError) {
  rig r;
  r.ctl.fault = true;
  dkq::status s = r.drv.start(r.plat, {});
  EXPECT_EQ(s.code(), errc::device_error);
  EXPECT_NE(std::strstr(s.message(), "FAULT"), nullptr);
  EXPECT_EQ(r.dma.live(), 0u);
}

TEST(MegaraidDriver, StuckFirmwareTimesOut) {
  rig r;
  r.ctl.boot_states = {0x4};
  r.ctl.stuck = true;
  mr::options o;
  o.ready_timeout_ns = 50'000'000;
  dkq::status s = r.drv.start(r.plat, o);
  EXPECT_EQ(s.code(), errc::timeout);
}

TEST(MegaraidDriver, RemovedControllerReadsAllOnes) {
  rig r;
  r.ctl.removed = true;
  EXPECT_EQ(r.drv.start(r.plat, {}).code(), errc::removed);
}

TEST(MegaraidDriver, OperationalFirmwareIsResetFirst) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  // A second driver instance finds the firmware OPERATIONAL (no stop()).
  mr::controller<fake_mfi_platform> again;
  fake_mfi_platform plat2(r.dma, r.ctl);
  ASSERT_TRUE(again.start(plat2, o).ok());
  EXPECT_GE(r.ctl.c.resets, 1u);
  EXPECT_EQ(r.ctl.c.inits, 2u);
}

TEST(MegaraidDriver, ScsiCommandsOnEveryTarget) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  for (const auto& ld : r.drv.logical_drives()) {
    auto inq = r.drv.inquiry(ld.target);
    ASSERT_TRUE(inq.ok());
    EXPECT_STREQ(inq->vendor, "FAKE");
    auto cap = r.drv.read_capacity(ld.target);
    ASSERT_TRUE(cap.ok());
    EXPECT_EQ(cap->blocks, ld.sectors);
    EXPECT_EQ(cap->block_size, 512u);
    auto cap16 = r.drv.read_capacity_16(ld.target);
    ASSERT_TRUE(cap16.ok());
    EXPECT_EQ(cap16->blocks, ld.sectors);
    EXPECT_TRUE(r.drv.test_unit_ready(ld.target).ok());
    std::uint8_t page[64];
    auto n = r.drv.vpd(ld.target, 0x80, page);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 8u);
    EXPECT_EQ(page[7], '0' + ld.target);
    auto sense = r.drv.request_sense(ld.target);
    ASSERT_TRUE(sense.ok());
    EXPECT_EQ(sense->key, 0);
  }
  // A target the controller did not present: refused before anything is sent.
  dkq::scsi::cdb_bytes c;
  const auto frames = r.ctl.c.frames;
  auto bad = r.drv.scsi_command(9, c, dkq::scsi::test_unit_ready(c), 0);
  EXPECT_EQ(bad.st.code(), errc::not_found);
  EXPECT_EQ(r.ctl.c.frames, frames);
  // One the firmware says is not there (after the list was read): MFI
  // DEVICE_NOT_FOUND decoded as a not-found error.
  r.ctl.force_status.push_back({dkq::scsi::mfi::stat::device_not_found, 0});
  bad = r.drv.scsi_command(0, c, dkq::scsi::test_unit_ready(c), 0);
  EXPECT_EQ(bad.mfi_status, dkq::scsi::mfi::stat::device_not_found);
  EXPECT_EQ(bad.st.code(), errc::not_found);
  // Unknown opcode: CHECK CONDITION with sense decoded to text.
  c = {};
  c[0] = 0xc7;
  auto inv = r.drv.scsi_command(0, c, 6, 0);
  EXPECT_EQ(inv.mfi_status, dkq::scsi::mfi::stat::scsi_done_with_error);
  ASSERT_TRUE(inv.sense_valid);
  EXPECT_EQ(inv.st.code(), errc::not_supported);
  char text[128];
  dkq::scsi::describe(inv.sense, text, sizeof text);
  EXPECT_NE(std::strstr(text, "ILLEGAL REQUEST"), nullptr) << text;
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

void check_roundtrip(rig& r, bool pass_through) {
  const std::uint32_t bs = 512, blocks = 24;
  auto out = r.buffer(bs * blocks);
  auto in = r.buffer(bs * blocks);
  for (std::uint8_t t = 0; t < 2; ++t) {
    for (std::size_t i = 0; i < out.size; ++i) out.cpu_at<std::uint8_t>()[i] = static_cast<std::uint8_t>(i * 13 + t + 1);
    mr::request w;
    w.target = t;
    w.data = dkq::dma_region{out.cpu, out.device, bs * blocks};
    if (pass_through) {
      w.kind = mr::op::ld_scsi;
      w.cdb_len = dkq::scsi::read_write(w.cdb, true, 100, blocks, t == 1).value();
    } else {
      w.kind = mr::op::ld_write;
      w.lba = 100;
      w.blocks = blocks;
    }
    w.dir = dkq::dma_direction::to_device;
    ASSERT_TRUE(r.drv.execute(w).st.ok());
    EXPECT_EQ(std::memcmp(r.ctl.disk(t)->data.data() + 100 * bs, out.cpu, bs * blocks), 0);
    mr::request rd = w;
    rd.dir = dkq::dma_direction::from_device;
    rd.data = dkq::dma_region{in.cpu, in.device, bs * blocks};
    if (pass_through) rd.cdb_len = dkq::scsi::read_write(rd.cdb, false, 100, blocks, t == 1).value();
    else rd.kind = mr::op::ld_read;
    std::memset(in.cpu, 0, in.size);
    ASSERT_TRUE(r.drv.execute(rd).st.ok());
    EXPECT_EQ(std::memcmp(in.cpu, out.cpu, bs * blocks), 0);
  }
}

TEST(MegaraidDriver, LdFramesAndPassThroughMoveData) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  check_roundtrip(r, false);
  check_roundtrip(r, true);
  EXPECT_GT(r.ctl.c.sgl64_frames, 0u);
  EXPECT_TRUE(r.ctl.c.errors.empty()) << r.ctl.c.errors.front();
}

TEST(MegaraidDriver, Forced32BitBouncesHighBuffersAndUsesSgl32) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.force_32bit = true;
  o.bounce_chunk = 4096;  // several chunks per command: a multi-element SGL32
  o.bounce_chunks = 64;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_EQ(r.drv.info().sgl, dkq::scsi::mfi_sgl_format::sgl32);
  check_roundtrip(r, false);
  check_roundtrip(r, true);
  EXPECT_GT(r.drv.stats().bounced, 0u);
  EXPECT_GT(r.ctl.c.sgl32_frames, 0u);
  EXPECT_EQ(r.ctl.c.sgl64_frames, 0u);
  EXPECT_GT(r.ctl.c.max_sge_seen, 1u);
  EXPECT_LT(r.ctl.c.highest_sge_addr, std::uint64_t{1} << 32);  // the device never saw a high address
  EXPECT_TRUE(r.ctl.c.errors.empty()) << r.ctl.c.errors.front();
}

TEST(MegaraidDriver, SyncCache16RejectedIsRetriedAs10AndReachesDevice) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto c = r.drv.synchronize_cache(0, true);
  EXPECT_TRUE(c.st.ok());
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 1u);
  EXPECT_EQ(r.drv.stats().sync16_fallbacks, 1u);
  EXPECT_TRUE(r.drv.logical_drives()[0].sync16_rejected);
  // Next time straight to the 10-byte form; never acknowledged locally.
  EXPECT_TRUE(r.drv.synchronize_cache(0, true).st.ok());
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 2u);
  // A device that accepts the 16-byte form gets it.
  r.ctl.reject_sync16 = false;
  EXPECT_TRUE(r.drv.synchronize_cache(1, true).st.ok());
  EXPECT_EQ(r.ctl.c.sync16, 2u);
  EXPECT_EQ(r.ctl.c.sync10, 2u);
  EXPECT_EQ(r.drv.stats().sync_cache_sent, 4u);
}

TEST(MegaraidDriver, SustainedLoadWrapsReplyQueueWithoutLoss) {
  rig r(32);
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  r.ctl.hold = true;  // completions arrive in bursts, as on a real device
  auto buf = r.buffer(512 * 64);
  constexpr int total = 5000;
  std::vector<int> seen(total, 0);
  struct ctx_t {
    std::vector<int>* seen;
    int idx;
  };
  std::vector<ctx_t> ctxs(total);
  int submitted = 0, completed = 0;
  auto done = [](void* u, const mr::completion& c) noexcept {
    auto* x = static_cast<ctx_t*>(u);
    EXPECT_TRUE(c.st.ok());
    ++(*x->seen)[static_cast<std::size_t>(x->idx)];
  };
  while (completed < total) {
    while (submitted < total) {
      mr::request q;
      q.kind = (submitted & 1) ? mr::op::ld_read : mr::op::ld_write;
      q.dir = (submitted & 1) ? dkq::dma_direction::from_device : dkq::dma_direction::to_device;
      q.target = static_cast<std::uint8_t>(submitted % 2);
      q.lba = static_cast<std::uint64_t>(submitted % 1000);
      q.blocks = 1;
      q.data = dkq::dma_region{buf.cpu_at(static_cast<std::size_t>(submitted % 64) * 512),
                               buf.device_at(static_cast<std::size_t>(submitted % 64) * 512), 512};
      ctxs[static_cast<std::size_t>(submitted)] = {&seen, submitted};
      q.done = done;
      q.user = &ctxs[static_cast<std::size_t>(submitted)];
      dkq::status s = r.drv.submit(q);
      if (s.code() == errc::no_space) break;
      ASSERT_TRUE(s.ok()) << s.message();
      ++submitted;
    }
    r.ctl.step(7);
    completed += static_cast<int>(r.drv.poll());
  }
  for (int i = 0; i < total; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], 1) << i;
  EXPECT_GT(r.drv.stats().reply_wraps, total / 32 - 2);
  EXPECT_LT(r.drv.stats().ci_writes, static_cast<std::uint64_t>(total));  // one per batch, not per entry
  EXPECT_EQ(r.drv.in_flight(), 0u);
  EXPECT_TRUE(r.ctl.c.errors.empty()) << r.ctl.c.errors.front();
}

TEST(MegaraidDriver, InterruptModeGoesThroughTheDispatcher) {
  rig r;
  r.plat.vectors = 1;
  mr::options o;
  o.mode = dkq::completion_mode::interrupt;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_EQ(r.drv.info().vectors, 1u);
  EXPECT_GT(r.plat.irq_waits, 0u);
  check_roundtrip(r, false);
}

TEST(MegaraidDriver, DuplicateCompletionIsNotDeliveredTwice) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(512);
  counter k;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &k;
  r.ctl.duplicate_next = 1;
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 10; ++i) r.drv.poll();
  EXPECT_EQ(k.calls, 1);
  EXPECT_EQ(r.drv.stats().duplicate, 1u);
}

TEST(MegaraidDriver, BadProducerIndexIsAProtocolError) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(512);
  counter k;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &k;
  r.ctl.corrupt_producer = true;
  ASSERT_TRUE(r.drv.submit(q).ok());
  r.drv.poll();
  EXPECT_EQ(k.calls, 0);
  EXPECT_EQ(r.drv.last_error().code(), errc::protocol_error);
}

TEST(MegaraidDriver, TimeoutAbortsAndCompletesOnceAsTimeout) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 100'000'000;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  counter lost, fine;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &lost;
  r.ctl.drop_next = 1;
  ASSERT_TRUE(r.drv.submit(q).ok());
  q.user = &fine;
  q.data = dkq::dma_region{buf.cpu_at(512), buf.device_at(512), 512};
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 200 && lost.calls == 0; ++i) r.drv.wait(10);
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(lost.last.code(), errc::timeout);
  EXPECT_EQ(fine.calls, 1);
  EXPECT_TRUE(fine.last.ok());
  EXPECT_EQ(r.drv.stats().aborts, 1u);
  EXPECT_EQ(r.drv.stats().resets, 0u);
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

// abort(user): task management from the caller (the dext's
// UserAbortTaskRequest), not from the timeout scan.
TEST(MegaraidDriver, CallerAbortEndsTheCommandOnce) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  counter held, other;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &held;
  r.ctl.drop_next = 1;  // the firmware sits on this one
  ASSERT_TRUE(r.drv.submit(q).ok());
  q.user = &other;
  q.data = dkq::dma_region{buf.cpu_at(512), buf.device_at(512), 512};
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 5; ++i) r.drv.poll();
  EXPECT_EQ(other.calls, 1);
  EXPECT_EQ(held.calls, 0);
  ASSERT_TRUE(r.drv.abort(&held).ok());
  EXPECT_EQ(r.drv.abort(&held).code(), errc::busy);             // one ABORT at a time
  EXPECT_EQ(r.drv.abort(&other).code(), errc::invalid_argument); // already completed
  EXPECT_EQ(r.drv.abort(nullptr).code(), errc::invalid_argument);
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(held.calls, 1);
  EXPECT_FALSE(held.last.ok());
  EXPECT_EQ(r.ctl.c.aborts, 1u);
  EXPECT_EQ(r.drv.stats().aborts_requested, 1u);
  EXPECT_EQ(r.drv.stats().resets, 0u);
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

TEST(MegaraidDriver, CallerAbortIgnoredEndsInResetNotReissue) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.abort_grace_ns = 50'000'000;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(512);
  struct seen {
    int calls = 0;
    bool aborted = false;
    static void done(void* u, const mr::completion& c) noexcept {
      auto* self = static_cast<seen*>(u);
      ++self->calls;
      self->aborted = c.aborted;
    }
  } held;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = buf;
  q.done = seen::done;
  q.user = &held;
  r.ctl.drop_next = 1;
  r.ctl.ignore_aborts = true;
  ASSERT_TRUE(r.drv.submit(q).ok());
  r.drv.poll();
  ASSERT_TRUE(r.drv.abort(&held).ok());
  for (int i = 0; i < 400 && held.calls == 0; ++i) r.drv.wait(10);
  EXPECT_EQ(held.calls, 1);
  EXPECT_TRUE(held.aborted);
  EXPECT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(r.drv.stats().reissued, 0u);
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(held.calls, 1);
}

TEST(MegaraidDriver, PerRequestTimeoutOverridesTheDefault) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 60'000'000'000ull;  // a minute by default
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(512);
  counter lost;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = buf;
  q.timeout_ms = 100;  // this one: 100 ms
  q.done = counter::done;
  q.user = &lost;
  r.ctl.drop_next = 1;
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 100 && lost.calls == 0; ++i) r.drv.wait(10);
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(lost.last.code(), errc::timeout);
  EXPECT_EQ(r.drv.stats().aborts, 1u);
}

TEST(MegaraidDriver, AbortIgnoredLeadsToResetAndReissue) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 100'000'000;
  o.abort_grace_ns = 50'000'000;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  counter lost, held;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &lost;
  r.ctl.drop_next = 1;
  r.ctl.ignore_aborts = true;
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 400 && r.drv.stats().aborts == 0; ++i) r.drv.wait(10);
  ASSERT_EQ(r.drv.stats().aborts, 1u);
  // A second command the device holds, posted after the abort and before the
  // grace period ends: it is in flight at the reset, so it is re-posted (with
  // a fresh tag) and completes once, successfully.
  r.ctl.hold = true;
  q.user = &held;
  q.data = dkq::dma_region{buf.cpu_at(512), buf.device_at(512), 512};
  ASSERT_TRUE(r.drv.submit(q).ok());
  for (int i = 0; i < 400 && r.drv.stats().resets == 0; ++i) r.drv.wait(10);
  ASSERT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(held.calls, 0);
  r.ctl.hold = false;
  r.ctl.step();
  for (int i = 0; i < 400 && (lost.calls == 0 || held.calls == 0); ++i) r.drv.wait(10);
  EXPECT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(lost.last.code(), errc::timeout);
  EXPECT_EQ(held.calls, 1);
  EXPECT_TRUE(held.last.ok());
  EXPECT_EQ(r.drv.stats().reissued, 1u);
  EXPECT_EQ(r.ctl.c.inits, 2u);
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(held.calls, 1);
  // Still usable after the reset.
  check_roundtrip(r, false);
}

TEST(MegaraidDriver, CommandReissuedOnceThenFailed) {
  // A command the device holds through two controller resets: the first
  // re-posts it (fresh tag), the second fails it (max_reissues = 1), so a
  // controller that keeps needing resets cannot keep a command alive forever.
  // It completes exactly once either way.
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  counter k;
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu, buf.device, 512};
  q.done = counter::done;
  q.user = &k;
  r.ctl.hold = true;
  ASSERT_TRUE(r.drv.submit(q).ok());
  ASSERT_TRUE(r.drv.reset().ok());
  EXPECT_EQ(r.drv.stats().reissued, 1u);
  EXPECT_EQ(k.calls, 0);
  EXPECT_EQ(r.drv.in_flight(), 1u);
  ASSERT_TRUE(r.drv.reset().ok());
  EXPECT_EQ(k.calls, 1);
  EXPECT_EQ(k.last.code(), errc::io_error);
  EXPECT_EQ(r.drv.stats().reissued, 1u);
  EXPECT_EQ(r.drv.stats().failed_by_reset, 1u);
  EXPECT_EQ(r.drv.in_flight(), 0u);
  r.ctl.hold = false;
  r.ctl.step();
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(k.calls, 1);
  check_roundtrip(r, false);  // usable after two resets
}

TEST(MegaraidDriver, BadRequestsAreErrorsNotUb) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  mr::request q;
  q.kind = mr::op::ld_scsi;
  q.cdb_len = 0;
  EXPECT_EQ(r.drv.submit(q).code(), errc::invalid_argument);
  q.cdb_len = 17;
  EXPECT_EQ(r.drv.submit(q).code(), errc::invalid_argument);
  q.cdb_len = 6;
  q.target = 64;
  EXPECT_EQ(r.drv.submit(q).code(), errc::invalid_argument);
  q.target = 0;
  q.kind = mr::op::ld_read;
  q.blocks = 0;
  EXPECT_EQ(r.drv.submit(q).code(), errc::invalid_argument);
  auto big = r.buffer(4u << 20);
  q.blocks = 8192;
  q.data = big;
  EXPECT_EQ(r.drv.submit(q).code(), errc::invalid_argument);  // beyond max transfer
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

// ---- a reset that fails, stop() with I/O in flight, a frame post() cannot name ----

// Every completion of one request: how many, the last one, and how many
// frames the device still owned (could still DMA to) when it was delivered.
struct recorder {
  fake_mfi_controller* ctl = nullptr;
  int calls = 0;
  mr::completion last{};
  std::size_t device_owned_at_done = 0;
  static void done(void* u, const mr::completion& c) noexcept {
    auto* self = static_cast<recorder*>(u);
    ++self->calls;
    self->last = c;
    self->device_owned_at_done = self->ctl->owned();
  }
};

mr::request read_into(const dkq::dma_region& buf, std::size_t slot, recorder& k) {
  mr::request q;
  q.kind = mr::op::ld_read;
  q.blocks = 1;
  q.data = dkq::dma_region{buf.cpu_at(slot * 512), buf.device_at(slot * 512), 512};
  q.done = recorder::done;
  q.user = &k;
  return q;
}

// Issue #13 defect 5: the firmware does not come back to READY after a reset.
TEST(MegaraidDriver, FailedResetCompletesEveryRequestOnceWithAnError) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  recorder k[3];
  r.ctl.hold = true;
  for (int i = 0; i < 3; ++i) {
    k[i].ctl = &r.ctl;
    ASSERT_TRUE(r.drv.submit(read_into(buf, static_cast<std::size_t>(i), k[i])).ok());
  }
  ASSERT_EQ(r.drv.in_flight(), 3u);
  r.ctl.fault_after_reset = true;
  EXPECT_EQ(r.drv.reset().code(), errc::device_error);
  for (auto& x : k) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.last.st.code(), errc::io_error);
    EXPECT_FALSE(x.last.reissued);
  }
  EXPECT_EQ(r.drv.in_flight(), 0u);
  EXPECT_EQ(r.drv.stats().failed_by_reset, 3u);
  EXPECT_EQ(r.drv.stats().reissued, 0u);
  EXPECT_FALSE(r.drv.operational());
  // The firmware never came back: the device is cut off from memory before
  // the buffers are handed back.
  EXPECT_EQ(r.plat.bus_master_disables, 1u);
  EXPECT_FALSE(r.ctl.bus_master());
  EXPECT_EQ(r.drv.submit(read_into(buf, 4, k[0])).code(), errc::not_initialized);
  for (int i = 0; i < 10; ++i) r.drv.poll();
  for (auto& x : k) EXPECT_EQ(x.calls, 1);
  // The firmware recovers: a later reset brings the controller back.
  r.ctl.fault = false;
  r.ctl.fault_after_reset = false;
  r.ctl.hold = false;
  ASSERT_TRUE(r.drv.reset().ok());
  EXPECT_TRUE(r.drv.operational());
  EXPECT_TRUE(r.ctl.bus_master());
  check_roundtrip(r, false);
  EXPECT_TRUE(r.drv.stop().ok());
}

// Defect 5, second half: READY comes back but INIT is refused. The re-issue
// candidates had already given up their tags.
TEST(MegaraidDriver, ResetWhoseInitFailsCompletesReissueCandidatesOnce) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 100'000'000;
  o.abort_grace_ns = 50'000'000;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  recorder k[2];
  r.ctl.hold = true;
  for (int i = 0; i < 2; ++i) {
    k[i].ctl = &r.ctl;
    ASSERT_TRUE(r.drv.submit(read_into(buf, static_cast<std::size_t>(i), k[i])).ok());
  }
  r.ctl.fail_inits = 1;
  EXPECT_FALSE(r.drv.reset().ok());
  for (auto& x : k) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.last.st.code(), errc::io_error);
  }
  EXPECT_EQ(r.drv.in_flight(), 0u);
  EXPECT_EQ(r.drv.stats().reissued, 0u);
  EXPECT_FALSE(r.drv.operational());
  for (int i = 0; i < 10; ++i) r.drv.poll();
  for (auto& x : k) EXPECT_EQ(x.calls, 1);
  r.ctl.hold = false;
  ASSERT_TRUE(r.drv.reset().ok());
  check_roundtrip(r, false);
  for (auto& x : k) EXPECT_EQ(x.calls, 1);
}

// Defect 5 through the recovery path: a command the device sits on, an ABORT
// it ignores, and the reset that follows fails. The command still completes
// (as a timeout), once; the timeout scan does not leave it hanging.
TEST(MegaraidDriver, TimeoutWhoseResetFailsStillCompletesOnce) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 100'000'000;
  o.abort_grace_ns = 50'000'000;
  o.ready_timeout_ns = 200'000'000;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  recorder lost, held;
  lost.ctl = held.ctl = &r.ctl;
  r.ctl.drop_next = 1;
  r.ctl.ignore_aborts = true;
  ASSERT_TRUE(r.drv.submit(read_into(buf, 0, lost)).ok());
  r.ctl.hold = true;
  mr::request h = read_into(buf, 1, held);
  h.timeout_ms = 60'000;  // not expired itself: in flight when the reset fails
  ASSERT_TRUE(r.drv.submit(h).ok());
  r.ctl.fault_after_reset = true;
  for (int i = 0; i < 400 && (lost.calls == 0 || held.calls == 0); ++i) r.drv.wait(10);
  EXPECT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(lost.last.st.code(), errc::timeout);
  EXPECT_EQ(held.calls, 1);
  EXPECT_EQ(held.last.st.code(), errc::io_error);
  EXPECT_EQ(r.drv.in_flight(), 0u);
  EXPECT_EQ(r.drv.last_error().code(), errc::device_error);
  for (int i = 0; i < 20; ++i) r.drv.wait(10);
  EXPECT_EQ(lost.calls, 1);
  EXPECT_EQ(held.calls, 1);
}

// Issue #13 defect 6: stop() with requests in flight completes each once,
// with an error, after the device was told to drop them.
TEST(MegaraidDriver, StopCompletesInFlightRequestsOnceAfterTheDeviceDropsThem) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  auto buf = r.buffer(4096);
  recorder k[3];
  r.ctl.hold = true;     // two held in the device's queue
  for (int i = 0; i < 2; ++i) {
    k[i].ctl = &r.ctl;
    ASSERT_TRUE(r.drv.submit(read_into(buf, static_cast<std::size_t>(i), k[i])).ok());
  }
  r.ctl.hold = false;
  r.ctl.drop_next = 1;   // and one the firmware sits on
  k[2].ctl = &r.ctl;
  ASSERT_TRUE(r.drv.submit(read_into(buf, 2, k[2])).ok());
  ASSERT_EQ(r.ctl.owned(), 3u);
  EXPECT_TRUE(r.drv.stop().ok());
  EXPECT_EQ(r.ctl.c.cache_flushes, 1u);
  EXPECT_EQ(r.ctl.c.shutdowns, 1u);
  for (auto& x : k) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_FALSE(x.last.st.ok());
    EXPECT_TRUE(x.last.stopped);
    EXPECT_EQ(x.device_owned_at_done, 0u);  // no buffer handed back while the device held it
  }
  EXPECT_EQ(r.dma.live(), 1u);
  EXPECT_EQ(r.drv.in_flight(), 0u);
  // Started again on the same object: nothing old comes back.
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  check_roundtrip(r, false);
  for (auto& x : k) EXPECT_EQ(x.calls, 1);
}

// Issue #13 defect 10 (MegaRAID half): a frame address the 32-bit queue port
// cannot name (here: an allocator that ignored the 4 GiB limit) is an error;
// nothing is posted, least of all frame address 0.
TEST(MegaraidDriver, FrameAboveTheQueuePortsReachIsNeverPosted) {
  rig r;
  r.dma.ignore_limits = true;
  mr::options o;
  o.use_interrupts = false;
  o.command_timeout_ns = 100'000'000;
  o.abort_grace_ns = 50'000'000;
  const dkq::status s = r.drv.start(r.plat, o);
  EXPECT_EQ(s.code(), errc::constraint);
  EXPECT_EQ(r.ctl.c.frames, 0u);
  EXPECT_EQ(r.ctl.c.queue_port_zero, 0u);
  EXPECT_TRUE(r.ctl.c.errors.empty());
  EXPECT_EQ(r.dma.live(), 0u);
  EXPECT_FALSE(r.drv.operational());
}

// ---- issue #13 item 11: targets the controller presented, JBOD drives --------------

mr::request pd_rw(std::uint8_t target, bool write, std::uint32_t lba, std::uint16_t blocks, const dkq::dma_region& b) {
  mr::request q;
  q.kind = mr::op::pd_scsi;
  q.target = target;
  q.cdb_len = dkq::scsi::read_write(q.cdb, write, lba, blocks, false).value_or(0);
  q.dir = write ? dkq::dma_direction::to_device : dkq::dma_direction::from_device;
  q.data = dkq::dma_region{b.cpu, b.device, std::size_t{blocks} * 512};
  return q;
}

// QEMU megasas use_jbod=on (and MegaRAID firmware in JBOD mode): no logical
// drives, every disk a SYSTEM physical drive, driven through PD SCSI IO frames.
TEST(MegaraidDriver, JbodSystemDrivesAreTargetsThroughPdFrames) {
  rig r;
  r.ctl.jbod = true;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  EXPECT_TRUE(r.drv.logical_drives().empty());
  ASSERT_EQ(r.drv.physical_drives().size(), 2u);
  for (std::uint8_t t = 0; t < 2; ++t) {
    const mr::physical_drive* pd = r.drv.physical_drive_at(t);
    ASSERT_NE(pd, nullptr);
    EXPECT_TRUE(pd->system);
    EXPECT_EQ(pd->fw_state, dkq::scsi::mfi::pd_state::system);
    EXPECT_EQ(pd->device_id, t << 8);  // QEMU's encoding: SCSI id << 8 | LUN
  }
  EXPECT_EQ(r.ctl.c.pd_queries, 1u);
  auto buf = r.buffer(8192);
  // An LD frame to a disk that is not a logical drive: refused, nothing sent.
  const auto frames = r.ctl.c.frames;
  mr::request ld;
  ld.kind = mr::op::ld_write;
  ld.target = 1;
  ld.blocks = 1;
  ld.data = dkq::dma_region{buf.cpu, buf.device, 512};
  EXPECT_EQ(r.drv.submit(ld).code(), errc::not_found);
  EXPECT_EQ(r.drv.read_capacity(1).error().code(), errc::not_found);
  EXPECT_EQ(r.drv.synchronize_cache(1, true).st.code(), errc::not_found);
  EXPECT_EQ(r.ctl.c.frames, frames);
  EXPECT_EQ(r.ctl.c.ld_frames, 0u);
  // Through PD frames: write, read back, capacity, SYNCHRONIZE CACHE.
  std::vector<std::uint8_t> pattern(4096);
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<std::uint8_t>(i * 31 + 7);
  std::memcpy(buf.cpu, pattern.data(), pattern.size());
  auto w = r.drv.execute(pd_rw(1, true, 100, 8, buf));
  ASSERT_TRUE(w.st.ok()) << w.st.message();
  EXPECT_EQ(std::memcmp(r.ctl.disk(1)->data.data() + 100 * 512, pattern.data(), pattern.size()), 0);
  std::memset(buf.cpu, 0, 8192);
  auto rd = r.drv.execute(pd_rw(1, false, 100, 8, buf));
  ASSERT_TRUE(rd.st.ok());
  EXPECT_EQ(std::memcmp(buf.cpu, pattern.data(), pattern.size()), 0);
  auto cap = r.drv.read_capacity(1, true);
  ASSERT_TRUE(cap.ok());
  EXPECT_EQ(cap->blocks, 3072u);
  EXPECT_TRUE(r.drv.synchronize_cache(1, true, true).st.ok());  // (16) rejected, (10) reaches the disk
  EXPECT_TRUE(r.drv.synchronize_cache(1, true, true).st.ok());  // remembered: (10) at once
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 2u);
  EXPECT_EQ(r.ctl.c.ld_frames, 0u);
  EXPECT_GE(r.ctl.c.pd_frames, 5u);
  // A PD the controller did not list: refused before anything is sent.
  EXPECT_EQ(r.drv.execute(pd_rw(7, false, 0, 1, buf)).st.code(), errc::not_found);
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(MegaraidDriver, RaidModePhysicalDrivesAreNotSystemDrives) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  ASSERT_EQ(r.drv.physical_drives().size(), 2u);
  for (const auto& pd : r.drv.physical_drives()) EXPECT_FALSE(pd.system);
  EXPECT_EQ(r.ctl.c.pd_queries, 1u);
  // A controller that does not know the query: no system drives, bring-up unaffected.
  rig q;
  q.ctl.jbod = true;
  q.ctl.pd_list_query_supported = false;
  ASSERT_TRUE(q.drv.start(q.plat, o).ok());
  ASSERT_EQ(q.drv.physical_drives().size(), 2u);
  for (const auto& pd : q.drv.physical_drives()) {
    EXPECT_FALSE(pd.system);
    EXPECT_EQ(pd.fw_state, 0xffffu);
  }
}

}  // namespace

namespace {
// SCSI commands the core sends itself go through dkq/scsi/command.hpp: a
// UNIT ATTENTION from the target (here after a "reset") is sent again once.
TEST(MegaraidDriver, UnitAttentionOnAnInternalCommandIsRetried) {
  rig r;
  mr::options o;
  o.use_interrupts = false;
  ASSERT_TRUE(r.drv.start(r.plat, o).ok());
  fake_mfi_controller::forced_sense ua;
  ua.bytes = std::vector<std::uint8_t>(18, 0);
  ua.bytes[0] = 0x70;
  ua.bytes[2] = dkq::scsi::sense_key::unit_attention;
  ua.bytes[7] = 10;
  ua.bytes[12] = 0x29;  // power on, reset or bus device reset occurred
  ua.sense_len_said = 18;
  r.ctl.force_sense.push_back(ua);
  auto inq = r.drv.inquiry(0);
  ASSERT_TRUE(inq.ok()) << inq.error().message();
  EXPECT_EQ(r.drv.stats().scsi_retries, 1u);
  // A second one is retried too, a bounded number of times.
  for (int i = 0; i < 5; ++i) r.ctl.force_sense.push_back(ua);
  auto again = r.drv.inquiry(0);
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(r.drv.stats().scsi_retries, 1u + 3u);
  r.ctl.force_sense.clear();
  EXPECT_TRUE(r.drv.inquiry(0).ok());
}
}  // namespace
