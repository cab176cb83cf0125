// Dispatcher: vector -> queue binding rules, drain-until-empty on an interrupt
// with one head doorbell per pass, polled / interrupt / hybrid modes, and the
// "flush before waiting" point of batched doorbells.
#include "dkq/dispatch/dispatcher.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "dkq/dispatch/handoff.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "dkq/ring/spsc_ring.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::completion_mode;
using dkq::completion_target;
using dkq::errc;
using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint32_t>;

// A queue pair plus its device model, as a dispatcher target.
struct queue_under_test {
  explicit queue_under_test(std::uint32_t entries, std::uint64_t iova)
      : sq(64u * entries, iova), cq(16u * entries, iova + 0x100000), dev(sq.region(), cq.region(), entries) {
    EXPECT_TRUE(qp.init(sq.region(), cq.region(), entries, dev.sq_doorbell(), dev.cq_doorbell()).ok());
  }
  void submit(std::uint32_t n) {
    std::uint8_t e[64] = {};
    for (std::uint32_t i = 0; i < n; ++i) {
      std::memcpy(e + 40, &next, 4);
      ASSERT_TRUE(qp.submit(e, next).ok());
      ++next;
    }
  }
  std::uint32_t drain(std::uint32_t budget) noexcept {
    ++drains;
    return qp.process_completions(
        budget, [&](std::uint32_t& seq, const nvme_cqe&) { done.push_back(seq); },
        [&](dkq::status, const nvme_cqe&) { ++errors; });
  }
  void flush() noexcept {
    ++flushes;
    qp.flush();
  }

  test_dma_buffer sq, cq;
  fake_nvme_device dev;
  qp_t qp;
  std::uint32_t next = 0, drains = 0, flushes = 0, errors = 0;
  std::vector<std::uint32_t> done;
};

using dispatcher = dkq::interrupt_dispatcher<4, 8>;

TEST(Dispatcher, BindingRules) {
  dispatcher d;
  queue_under_test a(16, 0x100000), b(16, 0x300000);
  auto ha = d.bind(1, completion_target::of(a));
  ASSERT_TRUE(ha.ok());
  EXPECT_EQ(d.bind(2, completion_target::of(a)).error().code(), errc::busy);  // one vector per queue
  EXPECT_EQ(d.bind(4, completion_target::of(b)).error().code(), errc::out_of_range);
  EXPECT_EQ(d.bind(0, completion_target{}).error().code(), errc::invalid_argument);
  ASSERT_TRUE(d.bind(1, completion_target::of(b)).ok());  // two queues share vector 1
  EXPECT_EQ(d.queues_on(1), 2u);
  ASSERT_TRUE(d.unbind(*ha).ok());
  EXPECT_EQ(d.queues_on(1), 1u);
  EXPECT_EQ(d.unbind(*ha).code(), errc::invalid_argument);
  ASSERT_TRUE(d.bind(2, completion_target::of(a)).ok());  // free to bind again
}

TEST(Dispatcher, TableFull) {
  dkq::interrupt_dispatcher<1, 2> d;
  queue_under_test a(4, 0x100000), b(4, 0x300000), c(4, 0x500000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  ASSERT_TRUE(d.bind(0, completion_target::of(b)).ok());
  EXPECT_EQ(d.bind(0, completion_target::of(c)).error().code(), errc::no_space);
}

TEST(Dispatcher, InterruptDrainsEveryBoundQueueUntilEmpty) {
  dispatcher d;
  d.set_budget(8);
  queue_under_test a(64, 0x100000), b(64, 0x300000), other(64, 0x500000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  ASSERT_TRUE(d.bind(0, completion_target::of(b)).ok());
  ASSERT_TRUE(d.bind(1, completion_target::of(other)).ok());
  a.submit(30);
  b.submit(5);
  other.submit(3);
  a.flush();
  b.flush();
  other.flush();
  a.dev.step();
  b.dev.step();
  other.dev.step();
  EXPECT_EQ(d.on_interrupt(0, 2), 35u);
  EXPECT_EQ(a.done.size(), 30u);
  EXPECT_EQ(b.done.size(), 5u);
  EXPECT_EQ(other.done.size(), 0u);  // a different vector
  // 30 entries at budget 8: passes of 8,8,8,6 -> 4 head doorbells, not 30.
  EXPECT_EQ(a.dev.cq_head_reg.writes.load(), 4u);
  EXPECT_EQ(b.dev.cq_head_reg.writes.load(), 1u);
  EXPECT_EQ(d.counters(0).interrupts, 1u);
  EXPECT_EQ(d.counters(0).notifications, 2u);
  EXPECT_EQ(d.counters(0).completions, 35u);
  // Nothing left: a second interrupt is spurious and writes no doorbell.
  EXPECT_EQ(d.on_interrupt(0), 0u);
  EXPECT_EQ(d.counters(0).spurious, 1u);
  EXPECT_EQ(a.dev.cq_head_reg.writes.load(), 4u);
  EXPECT_EQ(d.on_interrupt(1), 3u);
  EXPECT_EQ(d.on_interrupt(3), 0u);  // nothing bound
  EXPECT_EQ(d.on_interrupt(99), 0u);  // out of range: ignored
}

// A queue that never runs dry (a device that keeps posting, or lies).
struct endless_queue {
  std::uint32_t drains = 0;
  std::uint32_t drain(std::uint32_t budget) noexcept {
    ++drains;
    return budget;
  }
};

TEST(Dispatcher, PassLimitBoundsAQueueThatNeverRunsDry) {
  dispatcher d;
  d.set_budget(4);
  d.set_max_passes(3);
  endless_queue e;
  queue_under_test b(16, 0x300000);
  ASSERT_TRUE(d.bind(0, completion_target::of(e)).ok());
  ASSERT_TRUE(d.bind(0, completion_target::of(b)).ok());
  b.submit(2);
  b.flush();
  b.dev.step();
  EXPECT_EQ(d.on_interrupt(0), 3u * 4u + 2u);
  EXPECT_EQ(e.drains, 3u);
  EXPECT_EQ(b.done.size(), 2u);  // the neighbour on the vector still ran
  EXPECT_EQ(d.counters(0).pass_limit_hits, 1u);
}

TEST(Dispatcher, PolledModeOneBudgetPerPass) {
  dispatcher d;
  d.set_budget(4);
  queue_under_test a(32, 0x100000);
  ASSERT_TRUE(d.bind(2, completion_target::of(a)).ok());
  a.submit(10);
  dkq::test::fake_interrupt_line line;
  dkq::test::fake_waiter w{&line};
  // Polled mode flushes the batched doorbell itself before looking.
  EXPECT_EQ(d.run_once(2, completion_mode::polled, w), 0u);
  EXPECT_EQ(a.dev.sq_tail_reg.writes.load(), 1u);
  a.dev.step();
  EXPECT_EQ(d.run_once(2, completion_mode::polled, w), 4u);
  EXPECT_EQ(d.poll_all(), 4u);
  EXPECT_EQ(d.poll(2), 2u);
  EXPECT_EQ(a.done.size(), 10u);
  EXPECT_EQ(w.arms, 0u);
}

// A waiter that "receives the interrupt" by running the device, and checks the
// dispatcher flushed deferred submissions before blocking.
struct stepping_waiter {
  queue_under_test* q;
  std::uint32_t arms = 0, disarms = 0, waits = 0;
  bool flushed_before_wait = true;
  void arm(std::uint16_t) noexcept { ++arms; }
  void disarm(std::uint16_t) noexcept { ++disarms; }
  std::uint32_t wait(std::uint16_t) noexcept {
    ++waits;
    if (q->qp.sq().unrung() != 0) flushed_before_wait = false;
    return q->dev.step() != 0 ? 1u : 0u;
  }
};
static_assert(dkq::interrupt_waiter<stepping_waiter>);

TEST(Dispatcher, InterruptModeFlushesThenWaitsThenDrains) {
  dispatcher d;
  queue_under_test a(32, 0x100000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  a.submit(12);  // batched: not rung yet
  EXPECT_EQ(a.dev.sq_tail_reg.writes.load(), 0u);
  stepping_waiter w{&a};
  EXPECT_EQ(d.run_once(0, completion_mode::interrupt, w), 12u);
  EXPECT_TRUE(w.flushed_before_wait);
  EXPECT_EQ(w.waits, 1u);
  EXPECT_EQ(a.done.size(), 12u);
  EXPECT_EQ(a.dev.sq_tail_reg.writes.load(), 1u);
  EXPECT_EQ(a.dev.cq_head_reg.writes.load(), 1u);
}

TEST(Dispatcher, HybridPollsFirstThenArmsRechecksAndWaits) {
  dispatcher d;
  queue_under_test a(32, 0x100000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  stepping_waiter w{&a};
  // Completions already there: found while polling, no arm, no wait.
  a.submit(3);
  a.flush();
  a.dev.step();
  EXPECT_EQ(d.run_once(0, completion_mode::hybrid, w, 8), 3u);
  EXPECT_EQ(w.arms, 0u);
  EXPECT_EQ(w.waits, 0u);
  // Nothing completes while polling: flush, arm, re-check, wait, disarm.
  a.submit(5);
  EXPECT_EQ(d.run_once(0, completion_mode::hybrid, w, 8), 5u);
  EXPECT_TRUE(w.flushed_before_wait);
  EXPECT_EQ(w.arms, 1u);
  EXPECT_EQ(w.waits, 1u);
  EXPECT_EQ(w.disarms, 1u);
  EXPECT_EQ(d.counters(0).waits, 1u);
  EXPECT_EQ(a.done.size(), 8u);
}

struct racing_waiter {
  queue_under_test* q;
  std::uint32_t arms = 0, disarms = 0, waits = 0;
  // The completion lands exactly when the vector is armed (between the last
  // poll and the wait): the re-check after arming must find it.
  void arm(std::uint16_t) noexcept {
    ++arms;
    q->dev.step();
  }
  void disarm(std::uint16_t) noexcept { ++disarms; }
  std::uint32_t wait(std::uint16_t) noexcept {
    ++waits;
    return 0;
  }
};

TEST(Dispatcher, HybridRecheckAfterArmCatchesTheRace) {
  dispatcher d;
  queue_under_test a(32, 0x100000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  racing_waiter w{&a};
  a.submit(4);
  EXPECT_EQ(d.run_once(0, completion_mode::hybrid, w, 4), 4u);
  EXPECT_EQ(w.waits, 0u);  // never blocked on a completion that was already there
  EXPECT_EQ(w.disarms, 1u);
}

TEST(Handoff, BudgetNeverExceedsRingRoom) {
  dkq::spsc_ring<std::uint32_t> ring;
  ASSERT_TRUE(ring.init(8u).ok());
  dkq::completion_handoff<dkq::spsc_ring<std::uint32_t>> h(ring);
  EXPECT_EQ(h.budget(100), 8u);
  EXPECT_EQ(h.budget(3), 3u);
  for (std::uint32_t i = 0; i < 6; ++i) EXPECT_TRUE(h.push(i));
  EXPECT_EQ(h.budget(100), 2u);
  EXPECT_TRUE(h.push(6));
  EXPECT_TRUE(h.push(7));
  EXPECT_EQ(h.budget(100), 0u);
  EXPECT_FALSE(h.push(8));
  EXPECT_EQ(h.dropped(), 1u);
  EXPECT_EQ(h.pushed(), 8u);
}

TEST(Handoff, DrainIntoRingLosesNothingWhenTheRingIsSmall) {
  queue_under_test a(64, 0x100000);
  dkq::spsc_ring<std::uint32_t> ring;
  ASSERT_TRUE(ring.init(4u).ok());
  dkq::completion_handoff<dkq::spsc_ring<std::uint32_t>> h(ring);
  a.submit(40);
  a.flush();
  a.dev.step();
  std::vector<std::uint32_t> got;
  while (got.size() < 40) {
    a.qp.process_completions(
        h.budget(64), [&](std::uint32_t& seq, const nvme_cqe&) { h.push(seq); },
        [](dkq::status, const nvme_cqe&) { ADD_FAILURE(); });
    std::uint32_t v;
    while (ring.try_pop(v)) got.push_back(v);
  }
  for (std::uint32_t i = 0; i < 40; ++i) EXPECT_EQ(got[i], i);
  EXPECT_EQ(h.dropped(), 0u);
}

}  // namespace

// The adaptive hybrid spin: completions found while spinning double the next
// spin, spins that run out halve it, within the floor and the cap.
TEST(Dispatcher, AdaptiveSpinFollowsTheDevice) {
  dkq::adaptive_spin sp{64, 4, 256};
  sp.won();
  EXPECT_EQ(sp.budget, 128u);
  sp.won();
  sp.won();
  EXPECT_EQ(sp.budget, 256u);  // the cap
  for (int i = 0; i < 10; ++i) sp.lost();
  EXPECT_EQ(sp.budget, 4u);  // the floor
  EXPECT_EQ(sp.wins, 3u);
  EXPECT_EQ(sp.losses, 10u);
}

// run_once(hybrid, adaptive_spin_polls): a completion found spinning grows the
// vector's spin; an empty spin shrinks it and the thread blocks.
TEST(Dispatcher, HybridAdaptiveSpinGrowsOnHitsAndShrinksOnMisses) {
  dispatcher d;
  queue_under_test a(32, 0x100000);
  ASSERT_TRUE(d.bind(0, completion_target::of(a)).ok());
  stepping_waiter w{&a};
  const std::uint32_t start = d.spin(0).budget;
  a.submit(2);
  a.flush();
  a.dev.step();
  EXPECT_EQ(d.run_once(0, completion_mode::hybrid, w, dkq::adaptive_spin_polls), 2u);
  EXPECT_EQ(d.spin(0).budget, start * 2);
  EXPECT_EQ(w.waits, 0u);
  a.submit(1);  // completes only when the waiter steps the device: the spin runs out
  EXPECT_EQ(d.run_once(0, completion_mode::hybrid, w, dkq::adaptive_spin_polls), 1u);
  EXPECT_EQ(d.spin(0).budget, start);
  EXPECT_EQ(w.waits, 1u);
  EXPECT_EQ(d.spin(0).wins, 1u);
  EXPECT_EQ(d.spin(0).losses, 1u);
}
