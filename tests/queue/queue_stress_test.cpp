// Concurrency stress (label: concurrency, run under ThreadSanitizer):
//  1. several submitting threads, each with its own queue pair and its own
//     device-model thread: nothing lost, nothing delivered twice, order of
//     delivery per queue irrelevant but each command exactly once;
//  2. the shared case: several producer threads hand requests to one queue
//     owner through an MPSC host ring; the owner submits and reaps, and hands
//     completions to a consumer thread through an SPSC ring; per producer,
//     every request comes back exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "dkq/dispatch/handoff.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "dkq/ring/mpmc_ring.hpp"
#include "dkq/ring/spsc_ring.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint32_t>;

#if defined(DKQ_TSAN)
constexpr std::uint32_t per_thread = 20000;
#else
constexpr std::uint32_t per_thread = 60000;
#endif

void fill(std::uint8_t* sqe, std::uint32_t seq) {
  std::memset(sqe, 0, 64);
  std::memcpy(sqe + 40, &seq, 4);
}

TEST(QueueStress, ThreadPerQueuePairWithDeviceThreads) {
  constexpr int threads = 3;
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([t, &failures] {
      const std::uint32_t entries = t == 0 ? 4 : (t == 1 ? 32 : 256);  // tiny queue wraps constantly
      test_dma_buffer sq(64u * entries), cq(16u * entries);
      fake_nvme_device dev(sq.region(), cq.region(), entries);
      qp_t qp;
      if (!qp.init(sq.region(), cq.region(), entries, dev.sq_doorbell(), dev.cq_doorbell(),
                   t == 1 ? dkq::ring_policy::immediate : dkq::ring_policy::batched)
               .ok()) {
        ++failures;
        return;
      }
      if (t == 2) dev.set_shuffle(true, 5);
      dev.start();
      std::vector<std::uint8_t> seen(per_thread, 0);
      std::mt19937 rng(static_cast<unsigned>(t));
      std::uint32_t next = 0, done = 0, errors = 0;
      std::uint8_t sqe[64];
      while (done < per_thread) {
        const std::uint32_t burst = 1 + static_cast<std::uint32_t>(rng()) % 16;
        for (std::uint32_t i = 0; i < burst && next < per_thread && qp.tags().available() != 0; ++i) {
          fill(sqe, next);
          if (!qp.submit(sqe, next).ok()) break;
          ++next;
        }
        qp.flush();
        // Yield when idle: CI machines run these with fewer cores than threads.
        if (qp.tags().in_flight() != 0 && !qp.cq().pending()) std::this_thread::yield();
        qp.process_completions(
            64,
            [&](std::uint32_t& seq, const nvme_cqe& e) {
              if (e.dw0 != seq || seq >= per_thread || seen[seq]++ != 0) ++errors;
              ++done;
            },
            [&](dkq::status, const nvme_cqe&) { ++errors; });
      }
      dev.stop();
      for (auto s : seen) errors += s != 1;
      errors += static_cast<std::uint32_t>(dev.sq_tail_reg.same_value_writes.load() +
                                           dev.cq_head_reg.same_value_writes.load() + dev.protocol_errors.load());
      if (errors != 0) failures += static_cast<int>(errors);
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// Request as handed between threads: producer id and per-producer sequence.
struct request {
  std::uint32_t producer;
  std::uint32_t seq;
};

TEST(QueueStress, SharedQueueThroughHostRings) {
  constexpr std::uint32_t producers = 3;
  constexpr std::uint32_t per_producer = per_thread / 4;
  constexpr std::uint32_t total = producers * per_producer;
  constexpr std::uint32_t entries = 64;

  dkq::mpsc_ring<request> submit_ring;
  dkq::spsc_ring<request> done_ring;
  ASSERT_TRUE(submit_ring.init(256u).ok());
  ASSERT_TRUE(done_ring.init(128u).ok());

  std::vector<std::thread> ts;
  for (std::uint32_t p = 0; p < producers; ++p)
    ts.emplace_back([p, &submit_ring] {
      for (std::uint32_t s = 0; s < per_producer; ++s) submit_ring.push(request{p, s});
    });

  // Consumer: checks each producer's requests come back exactly once.
  std::atomic<std::uint32_t> bad{0};
  std::thread consumer([&] {
    std::vector<std::vector<std::uint8_t>> seen(producers, std::vector<std::uint8_t>(per_producer, 0));
    request buf[32];
    std::uint32_t got = 0;
    while (got < total) {
      const std::uint32_t n = done_ring.pop_burst(buf, 32);
      for (std::uint32_t i = 0; i < n; ++i) {
        if (buf[i].producer >= producers || buf[i].seq >= per_producer || seen[buf[i].producer][buf[i].seq]++ != 0)
          bad.fetch_add(1);
      }
      got += n;
      if (n == 0) std::this_thread::yield();
    }
  });

  // Owner: the only thread touching the queue pair.
  test_dma_buffer sq(64u * entries), cq(16u * entries);
  fake_nvme_device dev(sq.region(), cq.region(), entries);
  dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, request> qp;
  ASSERT_TRUE(qp.init(sq.region(), cq.region(), entries, dev.sq_doorbell(), dev.cq_doorbell()).ok());
  dev.set_shuffle(true, 11);
  dev.start();
  dkq::completion_handoff<dkq::spsc_ring<request>> handoff(done_ring);
  std::uint32_t completed = 0;
  std::uint8_t sqe[64];
  while (completed < total) {
    request r[16];
    const std::uint32_t room = qp.tags().available() < 16 ? qp.tags().available() : 16;
    const std::uint32_t n = submit_ring.pop_burst(r, room);
    for (std::uint32_t i = 0; i < n; ++i) {
      fill(sqe, r[i].producer * per_producer + r[i].seq);
      ASSERT_TRUE(qp.submit(sqe, r[i]).ok());
    }
    qp.flush();
    if (n == 0 && !qp.cq().pending()) std::this_thread::yield();
    completed += qp.process_completions(
        handoff.budget(32), [&](request& req, const nvme_cqe&) { handoff.push(req); },
        [&](dkq::status, const nvme_cqe&) { bad.fetch_add(1); });
  }
  dev.stop();
  consumer.join();
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(handoff.dropped(), 0u);
  EXPECT_EQ(handoff.pushed(), total);
  EXPECT_EQ(dev.sq_tail_reg.same_value_writes.load(), 0u);
}

// MFI-style reply queue with the controller in another thread: context words
// and the producer index written by the "device", the consumer index by the
// host (a host_word_doorbell); every context arrives once, in order.
TEST(QueueStress, ReplyQueueProducerIndexAcrossThreads) {
  constexpr std::uint32_t entries = 13;  // MFI sizes need not be powers of two
  constexpr std::uint32_t n = per_thread;
  test_dma_buffer mem(8u * entries);
  std::uint32_t producer = 0, consumer = 0;
  dkq::index_reply_queue<std::uint64_t, dkq::host_word_doorbell> rq;
  ASSERT_TRUE(rq.init(mem.region(), entries, &producer, dkq::host_word_doorbell{&consumer}).ok());
  auto* ring = mem.region().cpu_at<std::uint64_t>();
  std::thread device([&] {
    std::uint32_t tail = 0;
    for (std::uint64_t ctx = 0; ctx < n;) {
      const std::uint32_t next = tail + 1 == entries ? 0 : tail + 1;
      if (next == dkq::load_acquire(&consumer)) {  // full: one slot stays empty
        std::this_thread::yield();
        continue;
      }
      dkq::store_relaxed(&ring[tail], static_cast<std::uint64_t>(0xc0de000000000000ull | ctx));
      tail = next;
      dkq::store_release(&producer, tail);
      ++ctx;
    }
  });
  std::uint64_t expect = 0, bad = 0;
  while (expect < n) {
    auto got = rq.reap(7, [&](std::uint64_t ctx) {
      if (ctx != (0xc0de000000000000ull | expect)) ++bad;
      ++expect;
    });
    if (!got.ok()) ++bad;
    if (got.ok() && *got == 0) std::this_thread::yield();
  }
  device.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(rq.counters().entries_reaped, n);
}

}  // namespace
