// The NVMe core's awaitable form (io_op, admin_op; dkq/coro) against the
// software controller: data, completion through poll(), timeout -> abort,
// an unabortable command -> reset, a failed reset, arena exhaustion, and
// awaited admin commands. Every awaiting coroutine resumes exactly once.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "../../examples/nvme/driver/controller.hpp"
#include "dkq/coro.hpp"
#include "support/fake_nvme_controller.hpp"

namespace {

using dkq::errc;
using dkq::status;
using dkq::test::fake_nvme_controller;
using dkq::test::fake_platform;
namespace drv = dkq::nvme_driver;
namespace coro = dkq::coro;
using ctrl_t = drv::controller<fake_platform>;
using queue_t = drv::io_queue<fake_platform>;

struct rig {
  fake_nvme_controller dev;
  fake_platform plat{dev};
  ctrl_t ctrl;
  queue_t q;
  std::uint64_t handler_calls = 0;
  explicit rig(std::uint32_t timeout_ms = 5000, std::size_t frames = 8) {
    drv::options o;
    o.io_timeout_ms = timeout_ms;
    EXPECT_TRUE(ctrl.init(plat, o).ok());
    EXPECT_TRUE(ctrl.create_io_queue(q, 16, false, 0).ok());
    EXPECT_TRUE(q.reserve_frames(frames, 2048).ok());
  }
  // The driver's loop: ring, let the device run, reap (coroutines resume
  // from inside poll), admin too. The callback handler must never be
  // called for awaited commands.
  template <class Done>
  int drive(Done&& done, int turns = 200) {
    int t = 0;
    for (; t < turns && !done(); ++t) {
      q.ring();
      dev.step();
      q.poll(64, [&](const drv::io_completion&) { ++handler_calls; });
      ctrl.poll_admin();
    }
    return t;
  }
};

// Write a pattern, flush, read it back with up to `window` commands in
// flight; the coroutine reads top to bottom like the protocol.
coro::task<status> write_flush_read(queue_t& q, std::uint32_t nsid, std::uint32_t bs, dkq::dma_region wbuf,
                                    dkq::dma_region rbuf, std::uint32_t blocks, std::uint32_t window) {
  drv::io_op<fake_platform> ops[4];
  for (int pass = 0; pass < 2; ++pass) {
    const bool write = pass == 0;
    for (std::uint32_t b = 0; b < blocks; ++b) {
      drv::io_op<fake_platform>& slot = ops[b % window];
      if (slot.pending()) {
        const drv::io_completion c = co_await slot;
        if (!c.st.ok()) co_return c.st;
      }
      const dkq::dma_segment seg{(write ? wbuf : rbuf).device + std::uint64_t{b} * bs, bs};
      slot = write ? q.co_write(nsid, b, 1, seg) : q.co_read(nsid, b, 1, seg);
      slot.start();
    }
    for (auto& op : ops)
      if (op.pending() || op.done()) {
        const drv::io_completion c = co_await op;
        if (!c.st.ok()) co_return c.st;
      }
    if (write) {
      const drv::io_completion f = co_await q.co_flush(nsid);
      if (!f.st.ok()) co_return f.st;
    }
    for (auto& op : ops) op = drv::io_op<fake_platform>();
  }
  co_return dkq::ok_status;
}

TEST(NvmeCoro, WriteFlushReadIsByteExactAndBypassesTheHandler) {
  rig r;
  auto w = r.plat.dma_alloc(40 * 512);
  auto rd = r.plat.dma_alloc(40 * 512);
  for (std::uint32_t i = 0; i < 40 * 512; ++i) w->cpu_at<std::uint8_t>()[i] = static_cast<std::uint8_t>(i * 7 + 3);
  auto t = write_flush_read(r.q, 1, 512, *w, *rd, 40, 4);
  ASSERT_TRUE(t.valid());
  t.start();
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  EXPECT_TRUE(t.value().ok()) << t.value().message();
  EXPECT_EQ(std::memcmp(w->cpu, rd->cpu, 40 * 512), 0);
  EXPECT_EQ(r.dev.flushes, 1u);
  EXPECT_EQ(r.dev.writes, 40u);
  EXPECT_EQ(r.dev.reads, 40u);
  EXPECT_EQ(r.handler_calls, 0u);
  EXPECT_EQ(r.q.in_flight(), 0u);
  EXPECT_LE(r.q.coro_frame_arena().high_water(), 1u);
}

coro::task<dkq::result<drv::io_completion>> one_read(queue_t& q, dkq::dma_region buf, int* resumed) {
  const drv::io_completion c = co_await q.co_read(1, 0, 1, {buf.device, 512});
  ++*resumed;
  co_return c;
}

TEST(NvmeCoro, TimedOutCommandResumesOnceWithTheTimeout) {
  rig r(100);
  auto buf = r.plat.dma_alloc(512);
  r.dev.drop_io = 1;  // held; Abort completes it with "Command Abort Requested"
  int resumed = 0;
  auto t = one_read(r.q, *buf, &resumed);
  t.start();
  r.drive([&] { return t.done(); }, 5);
  EXPECT_FALSE(t.done());
  r.plat.advance_ms(150);
  r.q.check_timeouts([&](const drv::io_completion&) { ++r.handler_calls; });
  ASSERT_TRUE(t.done());
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(t.value()->st.code(), errc::timeout);
  EXPECT_EQ(r.dev.aborts, 1u);
  r.drive([] { return false; }, 5);
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(r.handler_calls, 0u);
}

TEST(NvmeCoro, ResetResumesEveryWaiterExactlyOnce) {
  rig r(100);
  auto buf = r.plat.dma_alloc(4 * 512);
  r.dev.drop_io = 4;
  r.dev.abort_works = false;
  int resumed[4] = {};
  std::vector<coro::task<dkq::result<drv::io_completion>>> ts;
  for (int i = 0; i < 4; ++i) {
    ts.push_back(one_read(r.q, dkq::dma_region{buf->cpu_at(i * 512u), buf->device + i * 512u, 512}, &resumed[i]));
    ts.back().start();
  }
  r.drive([] { return false; }, 3);
  r.plat.advance_ms(150);  // all four time out; Abort does nothing
  r.q.check_timeouts([&](const drv::io_completion&) { ++r.handler_calls; });
  EXPECT_TRUE(r.q.needs_reset());
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  r.drive([&] {
    for (auto& t : ts)
      if (!t.done()) return false;
    return true;
  });
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ts[i].done()) << i;
    EXPECT_EQ(resumed[i], 1) << i;
    EXPECT_EQ(ts[i].value()->st.code(), errc::timeout) << i;
  }
  EXPECT_EQ(r.handler_calls, 0u);
}

TEST(NvmeCoro, FailedResetResumesEveryWaiterOnceWithAnError) {
  rig r;
  auto buf = r.plat.dma_alloc(3 * 512);
  r.dev.drop_io = 3;
  int resumed[3] = {};
  std::vector<coro::task<dkq::result<drv::io_completion>>> ts;
  for (int i = 0; i < 3; ++i) {
    ts.push_back(one_read(r.q, dkq::dma_region{buf->cpu_at(i * 512u), buf->device + i * 512u, 512}, &resumed[i]));
    ts.back().start();
  }
  r.drive([] { return false; }, 3);
  r.dev.never_ready = true;
  EXPECT_FALSE(r.ctrl.reset_and_recover().ok());
  r.drive([] { return false; }, 2);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(ts[i].done()) << i;
    EXPECT_EQ(resumed[i], 1) << i;
    EXPECT_EQ(ts[i].value()->st.code(), errc::io_error) << i;
  }
  // Refused at once while the controller is failed: no suspension at all.
  int again = 0;
  auto t = one_read(r.q, *buf, &again);
  t.start();
  ASSERT_TRUE(t.done());
  EXPECT_EQ(t.value()->st.code(), errc::device_error);
}

TEST(NvmeCoro, ArenaExhaustionIsAnErrorAndLeavesTheQueueUsable) {
  rig r(5000, 2);
  auto buf = r.plat.dma_alloc(512);
  int resumed = 0;
  auto a = one_read(r.q, *buf, &resumed);
  auto b = one_read(r.q, *buf, &resumed);
  auto c = one_read(r.q, *buf, &resumed);
  EXPECT_TRUE(a.valid());
  EXPECT_TRUE(b.valid());
  EXPECT_FALSE(c.valid());
  c.start();
  EXPECT_EQ(c.value().error().code(), errc::no_memory);
  a.start();
  b.start();
  r.drive([&] { return a.done() && b.done(); });
  EXPECT_EQ(resumed, 2);
  EXPECT_EQ(r.q.coro_frame_arena().failures(), 1u);
}

coro::task<dkq::result<std::uint32_t>> identify_vid(queue_t&, ctrl_t& c, dkq::dma_region page) {
  const drv::admin_completion a = co_await c.co_admin(dkq::nvme::cmd::identify(dkq::nvme::cns::ctrl, 0, page.device));
  if (!a.st.ok()) co_return a.st;
  std::uint16_t vid;
  std::memcpy(&vid, page.cpu_at<std::uint8_t>() + dkq::nvme::id_ctrl::vid, 2);
  co_return std::uint32_t{vid};
}

TEST(NvmeCoro, AwaitedAdminCommandResumesFromPollAdmin) {
  rig r;
  auto page = r.plat.dma_alloc(4096);
  auto t = identify_vid(r.q, r.ctrl, *page);
  t.start();
  EXPECT_FALSE(t.done());
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  ASSERT_TRUE(t.value().ok()) << t.value().error().message();
  EXPECT_EQ(*t.value(), 0x1234u);
  // Ended by a controller reset: resumed once with an error.
  auto u = identify_vid(r.q, r.ctrl, *page);
  u.start();
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  r.drive([&] { return u.done(); });
  ASSERT_TRUE(u.done());
  EXPECT_FALSE(u.value().ok());
}

coro::task<dkq::result<int>> all_three(queue_t& q, dkq::dma_region buf) {
  auto res = co_await coro::when_all(q.co_read(1, 0, 1, {buf.device, 512}), q.co_read(1, 1, 1, {buf.device + 512, 512}),
                                     q.co_read(2, 0, 1, {buf.device + 1024, 4096}));
  int ok = 0;
  for (auto& c : res) ok += c.st.ok();
  co_return ok;
}

TEST(NvmeCoro, WhenAllOverCommands) {
  rig r;
  auto buf = r.plat.dma_alloc(1024 + 4096);
  auto t = all_three(r.q, *buf);
  t.start();
  EXPECT_EQ(r.q.in_flight(), 3u);
  r.drive([&] { return t.done(); });
  ASSERT_TRUE(t.done());
  EXPECT_EQ(*t.value(), 3);
}

}  // namespace
