// The MegaRAID core's awaitable form (controller::co_submit, co_dcmd;
// dkq/coro) against the software MFI controller: data through LD frames,
// a DCMD into the caller's buffer, timeout -> ABORT, an ignored ABORT ->
// reset -> re-issue, a failed reset, stop() with I/O in flight and abort()
// from the caller. Every awaiting coroutine resumes exactly once.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "dkq/coro.hpp"
#include "examples/scsi/driver/megaraid.hpp"
#include "support/fake_mfi_controller.hpp"

namespace mr = dkq::examples::megaraid;
namespace coro = dkq::coro;
using dkq::errc;
using dkq::status;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;
using ctrl_t = mr::controller<fake_mfi_platform>;

namespace {

struct rig {
  fake_dma_space dma;
  fake_mfi_controller ctl;
  fake_mfi_platform plat;
  ctrl_t drv;
  coro::frame_arena arena;
  explicit rig(std::uint64_t timeout_ns = 0) : ctl(dma, 64), plat(dma, ctl) {
    ctl.add_disk(0, 2048);
    ctl.add_disk(1, 2048);
    mr::options o;
    o.use_interrupts = false;
    if (timeout_ns != 0) o.command_timeout_ns = timeout_ns;
    EXPECT_TRUE(drv.start(plat, o).ok());
    EXPECT_TRUE(arena.init(8, 8192).ok());
  }
  dkq::dma_region buffer(std::size_t n) {
    auto r = dma.alloc(n, mr::no_address_limit);
    EXPECT_TRUE(r.ok());
    return *r;
  }
  coro::frame_arena& coro_frame_arena() { return arena; }
  template <class Done>
  void drive(Done&& done, int rounds = 400) {
    for (int i = 0; i < rounds && !done(); ++i) drv.wait(10);
  }
};

mr::request ld_rw(bool write, std::uint8_t target, std::uint64_t lba, std::uint32_t blocks, dkq::dma_region buf) {
  mr::request r;
  r.kind = write ? mr::op::ld_write : mr::op::ld_read;
  r.target = target;
  r.lba = lba;
  r.blocks = blocks;
  r.dir = write ? dkq::dma_direction::to_device : dkq::dma_direction::from_device;
  r.data = buf;
  return r;
}

// Write, then read back on both drives at once (when_all), reading top to
// bottom like the protocol.
coro::task<status> write_then_read(rig& r, dkq::dma_region w, dkq::dma_region rd) {
  auto wc = co_await coro::when_all(r.drv.co_submit(ld_rw(true, 0, 8, 4, w)), r.drv.co_submit(ld_rw(true, 1, 8, 4, w)));
  for (auto& c : wc)
    if (!c.st.ok()) co_return c.st;
  const mr::completion c0 = co_await r.drv.co_submit(ld_rw(false, 0, 8, 4, rd));
  if (!c0.st.ok()) co_return c0.st;
  if (std::memcmp(w.cpu, rd.cpu, 2048) != 0) co_return status{errc::io_error, "drive 0 data differs"};
  std::memset(rd.cpu, 0, 2048);
  const mr::completion c1 = co_await r.drv.co_submit(ld_rw(false, 1, 8, 4, rd));
  if (!c1.st.ok()) co_return c1.st;
  if (std::memcmp(w.cpu, rd.cpu, 2048) != 0) co_return status{errc::io_error, "drive 1 data differs"};
  co_return dkq::ok_status;
}

TEST(MegaraidCoro, WriteThenReadOnTwoDrives) {
  rig r;
  auto w = r.buffer(2048), rd = r.buffer(2048);
  for (std::size_t i = 0; i < 2048; ++i) w.cpu_at<std::uint8_t>()[i] = static_cast<std::uint8_t>(i * 13 + 1);
  auto t = write_then_read(r, w, rd);
  ASSERT_TRUE(t.valid());
  t.start();
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  EXPECT_TRUE(t.value().ok()) << t.value().message();
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

coro::task<dkq::result<std::uint32_t>> ld_count(rig& r, dkq::dma_region page) {
  const mr::completion c =
      co_await r.drv.co_dcmd(dkq::scsi::mfi::dcmd::ld_get_list, nullptr, page, dkq::dma_direction::from_device);
  if (!c.st.ok()) co_return c.st;
  std::uint32_t n;
  std::memcpy(&n, page.cpu, 4);  // MR_LD_LIST: ldCount first
  co_return n;
}

TEST(MegaraidCoro, DcmdIntoTheCallersBuffer) {
  rig r;
  auto page = r.buffer(4096);
  auto t = ld_count(r, page);
  t.start();
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  ASSERT_TRUE(t.value().ok()) << t.value().error().message();
  EXPECT_EQ(*t.value(), 2u);
}

coro::task<dkq::result<mr::completion>> one_read(rig& r, dkq::dma_region buf, int* resumed) {
  const mr::completion c = co_await r.drv.co_submit(ld_rw(false, 0, 0, 1, buf));
  ++*resumed;
  co_return c;
}

TEST(MegaraidCoro, TimedOutCommandResumesOnceWithTheTimeout) {
  rig r(100'000'000);
  auto buf = r.buffer(512);
  r.ctl.drop_next = 1;
  int resumed = 0;
  auto t = one_read(r, buf, &resumed);
  t.start();
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(t.value()->st.code(), errc::timeout);
  for (int i = 0; i < 20; ++i) r.drv.poll();
  EXPECT_EQ(resumed, 1);
}

TEST(MegaraidCoro, FailedResetResumesEveryWaiterOnce) {
  rig r;
  auto buf = r.buffer(3 * 512);
  r.ctl.hold = true;
  int resumed[3] = {};
  std::vector<coro::task<dkq::result<mr::completion>>> ts;
  for (int i = 0; i < 3; ++i) {
    ts.push_back(one_read(r, dkq::dma_region{buf.cpu_at(512u * i), buf.device_at(512u * i), 512}, &resumed[i]));
    ts.back().start();
  }
  EXPECT_EQ(r.drv.in_flight(), 3u);
  r.ctl.fault_after_reset = true;
  EXPECT_FALSE(r.drv.reset().ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(ts[i].done()) << i;
    EXPECT_EQ(resumed[i], 1) << i;
    EXPECT_EQ(ts[i].value()->st.code(), errc::io_error) << i;
  }
  // Refused at once while the controller is down: no suspension.
  int again = 0;
  auto t = one_read(r, buf, &again);
  t.start();
  ASSERT_TRUE(t.done());
  EXPECT_EQ(t.value()->st.code(), errc::not_initialized);
}

TEST(MegaraidCoro, StopWithIoInFlightResumesEachOnce) {
  rig r;
  auto buf = r.buffer(2 * 512);
  r.ctl.hold = true;
  int resumed[2] = {};
  auto a = one_read(r, dkq::dma_region{buf.cpu, buf.device, 512}, &resumed[0]);
  auto b = one_read(r, dkq::dma_region{buf.cpu_at(512), buf.device_at(512), 512}, &resumed[1]);
  a.start();
  b.start();
  (void)r.drv.stop();
  ASSERT_TRUE(a.done() && b.done());
  EXPECT_EQ(resumed[0] + resumed[1], 2);
  EXPECT_TRUE(a.value()->stopped);
  EXPECT_TRUE(b.value()->stopped);
}

coro::task<dkq::result<mr::completion>> abortable(rig& r, dkq::dma_region buf, const void** user) {
  auto op = r.drv.co_submit(ld_rw(false, 0, 0, 1, buf));
  *user = op.user();
  const mr::completion c = co_await op;
  co_return c;
}

TEST(MegaraidCoro, CallerAbortResumesOnceWithAborted) {
  rig r;
  auto buf = r.buffer(512);
  r.ctl.drop_next = 1;  // held: only the ABORT ends it
  const void* user = nullptr;
  auto t = abortable(r, buf, &user);
  t.start();
  ASSERT_NE(user, nullptr);
  ASSERT_TRUE(r.drv.abort(user).ok());
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  EXPECT_TRUE(t.value()->aborted);
  EXPECT_FALSE(t.value()->st.ok());
}

TEST(MegaraidCoro, ArenaExhaustionIsAnError) {
  rig r;  // its arena has 8 frames
  auto buf = r.buffer(512);
  int resumed = 0;
  std::vector<coro::task<dkq::result<mr::completion>>> many;
  for (int i = 0; i < 9; ++i) many.push_back(one_read(r, buf, &resumed));
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(many[i].valid()) << i;
  EXPECT_FALSE(many[8].valid());
  many[8].start();
  EXPECT_EQ(many[8].value().error().code(), errc::no_memory);
  EXPECT_EQ(r.arena.failures(), 1u);
  EXPECT_EQ(resumed, 0);  // lazy: none of them ran
}

}  // namespace
