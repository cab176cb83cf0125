// Concurrency stress (label: concurrency, run under ThreadSanitizer): two
// queue pairs with device-model threads share one interrupt vector; submitter
// threads hand requests to the dispatcher thread (the queues' only owner)
// through an MPSC ring; the dispatcher runs hybrid and interrupt modes, drains
// both queues per interrupt, and hands completions to a consumer thread through
// an SPSC ring. Every request must come back exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "dkq/dispatch/dispatcher.hpp"
#include "dkq/dispatch/handoff.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "dkq/ring/mpmc_ring.hpp"
#include "dkq/ring/spsc_ring.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_interrupt_line;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;

#if defined(DKQ_TSAN)
constexpr std::uint32_t per_producer = 5000;
#else
constexpr std::uint32_t per_producer = 50000;
#endif
constexpr std::uint32_t producers = 3;
constexpr std::uint32_t total = producers * per_producer;

struct request {
  std::uint32_t producer;
  std::uint32_t seq;
};

using submit_ring_t = dkq::mpsc_ring<request>;
using done_ring_t = dkq::spsc_ring<request>;
using handoff_t = dkq::completion_handoff<done_ring_t>;

// One queue pair owned by the dispatcher thread: drain reaps into the handoff
// ring, then takes new requests from the shared submit ring.
struct owned_queue {
  owned_queue(std::uint32_t entries, std::uint64_t iova, fake_interrupt_line& line, submit_ring_t& in,
              handoff_t& out, std::uint64_t seed)
      : sq(64u * entries, iova), cq(16u * entries, iova + 0x100000), dev(sq.region(), cq.region(), entries),
        in_(&in), out_(&out) {
    EXPECT_TRUE(qp.init(sq.region(), cq.region(), entries, dev.sq_doorbell(), dev.cq_doorbell()).ok());
    dev.set_interrupt(&line);
    dev.set_shuffle(true, seed);
  }
  std::uint32_t drain(std::uint32_t budget) noexcept {
    const std::uint32_t n = qp.process_completions(
        out_->budget(budget), [&](request& r, const nvme_cqe&) { out_->push(r); },
        [&](dkq::status, const nvme_cqe&) { ++errors; });
    request r[16];
    const std::uint32_t room = qp.tags().available() < 16 ? qp.tags().available() : 16;
    const std::uint32_t got = in_->pop_burst(r, room);
    std::uint8_t e[64] = {};
    for (std::uint32_t i = 0; i < got; ++i) {
      if (!qp.submit(e, r[i]).ok()) ++errors;
    }
    return n;
  }
  void flush() noexcept { qp.flush(); }

  test_dma_buffer sq, cq;
  fake_nvme_device dev;
  dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, request> qp;
  submit_ring_t* in_;
  handoff_t* out_;
  std::uint32_t errors = 0;
};

struct line_waiter {
  fake_interrupt_line* line;
  std::uint64_t arms = 0, disarms = 0;
  void arm(std::uint16_t) noexcept { ++arms; }
  void disarm(std::uint16_t) noexcept { ++disarms; }
  std::uint32_t wait(std::uint16_t) noexcept { return line->wait(std::chrono::milliseconds(2)); }
};

TEST(DispatchStress, SharedVectorHybridAndInterruptModesLoseNothing) {
  submit_ring_t in;
  done_ring_t out;
  ASSERT_TRUE(in.init(512u).ok());
  ASSERT_TRUE(out.init(256u).ok());
  handoff_t handoff(out);
  fake_interrupt_line line;
  owned_queue a(32, 0x1000000, line, in, handoff, 1), b(8, 0x3000000, line, in, handoff, 2);
  dkq::interrupt_dispatcher<2, 4> d;
  d.set_budget(16);
  ASSERT_TRUE(d.bind(0, dkq::completion_target::of(a)).ok());
  ASSERT_TRUE(d.bind(0, dkq::completion_target::of(b)).ok());
  a.dev.start();
  b.dev.start();

  std::vector<std::thread> ts;
  for (std::uint32_t p = 0; p < producers; ++p)
    ts.emplace_back([p, &in, &line] {
      for (std::uint32_t s = 0; s < per_producer; ++s) {
        in.push(request{p, s});
        if ((s & 63) == 0) line.wake();  // new work for a dispatcher that may be blocked
      }
      line.wake();
    });

  std::atomic<std::uint32_t> bad{0};
  std::thread consumer([&] {
    std::vector<std::vector<std::uint8_t>> seen(producers, std::vector<std::uint8_t>(per_producer, 0));
    request buf[32];
    std::uint32_t got = 0;
    while (got < total) {
      const std::uint32_t n = out.pop_burst(buf, 32);
      for (std::uint32_t i = 0; i < n; ++i)
        if (buf[i].producer >= producers || buf[i].seq >= per_producer || seen[buf[i].producer][buf[i].seq]++ != 0)
          bad.fetch_add(1);
      got += n;
      if (n == 0) std::this_thread::yield();
    }
  });

  // The dispatcher thread (this one).
  line_waiter w{&line};
  std::uint64_t rounds = 0;
  while (handoff.pushed() < total) {
    const auto mode = (rounds++ / 256) % 2 == 0 ? dkq::completion_mode::hybrid : dkq::completion_mode::interrupt;
    d.run_once(0, mode, w, 32);
  }
  a.dev.stop();
  b.dev.stop();
  consumer.join();
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(a.errors + b.errors, 0u);
  EXPECT_EQ(handoff.dropped(), 0u);
  EXPECT_EQ(a.qp.tags().in_flight() + b.qp.tags().in_flight(), 0u);
  EXPECT_EQ(a.dev.sq_tail_reg.same_value_writes.load() + b.dev.sq_tail_reg.same_value_writes.load(), 0u);
  EXPECT_EQ(a.dev.cq_head_reg.same_value_writes.load() + b.dev.cq_head_reg.same_value_writes.load(), 0u);
  EXPECT_GT(d.counters(0).interrupts, 0u);
  EXPECT_EQ(w.arms, w.disarms);
}

}  // namespace
