// The coroutine layer on its own: frames from a fixed arena (and the clear
// error when it runs out), tasks awaiting tasks, one / all / any / deadline
// awaits resumed exactly once, and commands on a queue_pair against the
// software device model (tests/support/fake_nvme_device.hpp) with batching,
// timeouts and a queue reset.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "dkq/coro.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::errc;
using dkq::status;
namespace coro = dkq::coro;

// A hand-driven operation: start() records, complete() from the test.
struct manual_op {
  coro::completion<int> c;
  bool refuse = false;
  int starts = 0;
  coro::completion<int>& sink() { return c; }
  bool start() {
    ++starts;
    if (refuse) {
      c.refused(-1);
      return false;
    }
    c.posted();
    return true;
  }
  auto operator co_await() { return coro::op_awaiter<manual_op>{*this}; }
};

alignas(16) unsigned char storage[8 * 512];

struct CoroTask : ::testing::Test {
  coro::frame_arena arena;
  void SetUp() override { ASSERT_TRUE(arena.init(storage, sizeof storage, 512).ok()); }
};

coro::task<dkq::result<int>> one(coro::frame_arena&, manual_op& op, int* resumed) {
  const int v = co_await op;
  ++*resumed;
  co_return v * 2;
}

TEST_F(CoroTask, AwaitOneOperationResumesOnceWithItsResult) {
  manual_op op;
  int resumed = 0;
  auto t = one(arena, op, &resumed);
  ASSERT_TRUE(t.valid());
  EXPECT_EQ(arena.in_use(), 1u);
  EXPECT_EQ(op.starts, 0);  // lazy
  t.start();
  EXPECT_EQ(op.starts, 1);
  EXPECT_FALSE(t.done());
  op.c.complete(21);
  EXPECT_TRUE(t.done());
  EXPECT_EQ(resumed, 1);
  ASSERT_TRUE(t.value().ok());
  EXPECT_EQ(*t.value(), 42);
  t = {};
  EXPECT_EQ(arena.in_use(), 0u);
}

TEST_F(CoroTask, RefusedOperationDoesNotSuspend) {
  manual_op op;
  op.refuse = true;
  int resumed = 0;
  auto t = one(arena, op, &resumed);
  t.start();
  EXPECT_TRUE(t.done());
  EXPECT_EQ(*t.value(), -2);
}

coro::task<status> sleeper(coro::frame_arena&, manual_op& op) {
  (void)co_await op;
  co_return dkq::ok_status;
}

TEST_F(CoroTask, ExhaustedArenaIsAClearErrorNotACrash) {
  std::vector<manual_op> ops(9);
  std::vector<coro::task<status>> ts;
  for (int i = 0; i < 8; ++i) {
    ts.push_back(sleeper(arena, ops[i]));
    ASSERT_TRUE(ts.back().valid()) << i;
    ts.back().start();
  }
  EXPECT_EQ(arena.in_use(), 8u);
  auto extra = sleeper(arena, ops[8]);
  EXPECT_FALSE(extra.valid());
  EXPECT_EQ(arena.failures(), 1u);
  extra.start();  // harmless
  EXPECT_TRUE(extra.done());
  EXPECT_EQ(extra.value().code(), errc::no_memory);
  EXPECT_EQ(ops[8].starts, 0);
  for (int i = 0; i < 8; ++i) ops[i].c.complete(0);
  for (auto& t : ts) EXPECT_TRUE(t.done());
  ts.clear();
  EXPECT_EQ(arena.in_use(), 0u);
  EXPECT_EQ(arena.high_water(), 8u);
}

coro::task<status> big_frame(coro::frame_arena&, manual_op& op) {
  volatile unsigned char pad[2048];
  pad[0] = 1;
  (void)co_await op;
  pad[1] = pad[0];
  co_return dkq::ok_status;
}

TEST_F(CoroTask, FrameLargerThanASlotIsRefused) {
  manual_op op;
  auto t = big_frame(arena, op);
  EXPECT_FALSE(t.valid());
  EXPECT_EQ(t.value().code(), errc::no_memory);
}

coro::task<dkq::result<int>> inner(coro::frame_arena&, manual_op& op) {
  const int v = co_await op;
  co_return v + 1;
}
coro::task<dkq::result<int>> outer(coro::frame_arena& a, manual_op& x, manual_op& y) {
  auto r1 = co_await inner(a, x);
  auto r2 = co_await inner(a, y);
  if (!r1 || !r2) co_return status{errc::io_error, "inner failed"};
  co_return *r1 + *r2;
}

TEST_F(CoroTask, TaskAwaitsTaskBySymmetricTransfer) {
  manual_op x, y;
  auto t = outer(arena, x, y);
  t.start();
  EXPECT_EQ(arena.in_use(), 2u);  // outer + first inner
  x.c.complete(10);
  EXPECT_EQ(y.starts, 1);
  y.c.complete(20);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(*t.value(), 32);
}

coro::task<dkq::result<int>> all_of(coro::frame_arena&, manual_op& a, manual_op& b, manual_op& c) {
  auto r = co_await coro::when_all(a, b, c);
  co_return r[0] + r[1] + r[2];
}

TEST_F(CoroTask, WhenAllResumesOnceAfterTheLast) {
  manual_op a, b, c;
  b.refuse = true;  // refused at start: counts as done with its value
  auto t = all_of(arena, a, b, c);
  t.start();
  EXPECT_EQ(a.starts + b.starts + c.starts, 3);
  c.c.complete(100);
  EXPECT_FALSE(t.done());
  a.c.complete(5);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(*t.value(), 104);
}

coro::task<dkq::result<int>> first_of(coro::frame_arena&, manual_op& a, manual_op& b, int* after) {
  const std::size_t i = co_await coro::when_any(a, b);
  // The other one is still in flight: wait for it too before leaving.
  const int other = i == 0 ? co_await b : co_await a;
  *after = other;
  co_return static_cast<int>(i);
}

TEST_F(CoroTask, WhenAnyGivesTheFirstAndTheOtherCanStillBeAwaited) {
  manual_op a, b;
  int after = 0;
  auto t = first_of(arena, a, b, &after);
  t.start();
  b.c.complete(7);
  EXPECT_FALSE(t.done());  // now waiting for a
  a.c.complete(3);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(*t.value(), 1);
  EXPECT_EQ(after, 3);
}

coro::task<dkq::result<int>> bounded(coro::frame_arena&, coro::timer_queue& tq, std::uint64_t now, manual_op& op) {
  coro::deadline d = tq.after(now, 1000);
  const std::size_t i = co_await coro::when_any(op, d);
  if (i == 1) {
    // Deadline first: the operation is still the device's; wait it out.
    (void)co_await op;
    co_return status{errc::timeout, "late"};
  }
  co_return op.c.value();
}

TEST_F(CoroTask, DeadlineBoundsAWaitAndIsCancelledWhenTheOperationWins) {
  coro::deadline* slots[4];
  coro::timer_queue tq;
  ASSERT_TRUE(tq.init(slots).ok());
  {
    manual_op op;
    auto t = bounded(arena, tq, 0, op);
    t.start();
    EXPECT_EQ(tq.armed(), 1u);
    EXPECT_EQ(tq.fire(999), 0u);
    op.c.complete(5);
    ASSERT_TRUE(t.done());
    EXPECT_EQ(*t.value(), 5);
    t = {};
    EXPECT_EQ(tq.armed(), 0u);  // the deadline left the queue with the frame
  }
  {
    manual_op op;
    auto t = bounded(arena, tq, 0, op);
    t.start();
    EXPECT_EQ(tq.fire(1000), 1u);
    EXPECT_FALSE(t.done());  // resumed by the deadline, now waiting for op
    op.c.complete(1);
    ASSERT_TRUE(t.done());
    EXPECT_EQ(t.value().error().code(), errc::timeout);
  }
}

// ---- queue_pair commands -----------------------------------------------------------

using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using result_t = coro::queue_completion<nvme_cqe>;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, coro::completion<result_t>*>;
using cmd_t = coro::queue_command<qp_t>;

struct qrig {
  static constexpr std::uint32_t entries = 16;
  test_dma_buffer sq{64u * entries}, cq{16u * entries};
  fake_nvme_device dev{sq.region(), cq.region(), entries};
  qp_t qp;
  coro::frame_arena arena;
  std::uint64_t protocol_errors = 0;
  qrig() {
    EXPECT_TRUE(qp.init(sq.region(), cq.region(), entries, dev.sq_doorbell(), dev.cq_doorbell()).ok());
    EXPECT_TRUE(arena.init(8, 1024).ok());
  }
  coro::frame_arena& coro_frame_arena() { return arena; }
  void turn() {
    qp.flush();
    dev.step();
    coro::resume_completions(qp, 64, &protocol_errors);
  }
};

struct sqe {
  std::uint8_t b[64]{};
  explicit sqe(std::uint32_t v) { std::memcpy(b + 40, &v, 4); }  // the model echoes CDW10 in DW0
};

coro::task<dkq::result<std::uint32_t>> worker(qrig& r, std::uint32_t base, std::uint32_t n) {
  std::uint32_t sum = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    sqe e(base + i);
    result_t c = co_await cmd_t(r.qp, &e);
    if (!c.st.ok()) co_return c.st;
    sum += c.entry.dw0;
  }
  co_return sum;
}

TEST(CoroQueue, WorkersShareOneQueueWithBatchedDoorbells) {
  qrig r;
  std::vector<coro::task<dkq::result<std::uint32_t>>> ws;
  for (std::uint32_t w = 0; w < 8; ++w) ws.push_back(worker(r, w * 1000, 100));  // member of r: its arena
  for (auto& w : ws) w.start();
  for (int turns = 0; turns < 1000; ++turns) {
    bool all = true;
    for (auto& w : ws) all &= w.done();
    if (all) break;
    r.turn();
  }
  for (std::uint32_t w = 0; w < 8; ++w) {
    ASSERT_TRUE(ws[w].done()) << w;
    ASSERT_TRUE(ws[w].value().ok()) << w;
    EXPECT_EQ(*ws[w].value(), 100u * w * 1000 + 4950u) << w;
  }
  // 800 commands; 8 in flight per turn, one SQ doorbell per turn.
  EXPECT_EQ(r.dev.commands.load(), 800u);
  EXPECT_LE(r.dev.sq_tail_reg.writes.load(), 101u);
  EXPECT_EQ(r.protocol_errors, 0u);
}

coro::task<dkq::result<std::uint32_t>> one_cmd(qrig& r, std::uint32_t v, std::uint64_t deadline) {
  sqe e(v);
  result_t c = co_await cmd_t(r.qp, &e, deadline);
  if (!c.st.ok()) co_return c.st;
  co_return c.entry.dw0;
}

TEST(CoroQueue, TimedOutCommandResumesOnceThroughTheResetPath) {
  qrig r;
  r.dev.inject_drop(1);
  auto t = one_cmd(r, 5, 100);
  t.start();
  r.turn();
  EXPECT_FALSE(t.done());
  // The queue's timeout scan finds it; the driver (here the test) resets the
  // queue pair, which hands every outstanding command back exactly once.
  std::uint32_t expired = 0;
  r.qp.timeout_scan(200, [&](std::uint16_t, coro::completion<result_t>*&) { ++expired; });
  EXPECT_EQ(expired, 1u);
  int handed = 0;
  r.qp.reset([&](std::uint16_t, coro::completion<result_t>*& c, bool timed_out) {
    ++handed;
    c->complete({timed_out ? status{errc::timeout, "timed out"} : status{errc::io_error, "reset"}, {}});
  });
  EXPECT_EQ(handed, 1);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(t.value().error().code(), errc::timeout);
}

}  // namespace
