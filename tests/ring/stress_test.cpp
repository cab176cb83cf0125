// Multi-threaded stress tests for the host rings. Every element carries
// (producer, sequence); consumers check that nothing is lost, nothing is
// duplicated and each producer's elements arrive in order. Small capacities
// force the full and empty transitions constantly. Run under ThreadSanitizer
// in CI (label `concurrency`).
//
// DKQ_STRESS_ITEMS (environment) sets the elements per producer; the default
// is sized for a 2-core machine under TSan and qemu-aarch64.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "dkq/ring/fan_in.hpp"
#include "dkq/ring/mpmc_ring.hpp"
#include "dkq/ring/spsc_ring.hpp"

namespace {

constexpr unsigned seq_bits = 40;
constexpr std::uint64_t seq_mask = (std::uint64_t{1} << seq_bits) - 1;

std::uint64_t tag(std::uint64_t producer, std::uint64_t seq) { return (producer << seq_bits) | seq; }
std::uint64_t producer_of(std::uint64_t v) { return v >> seq_bits; }
std::uint64_t seq_of(std::uint64_t v) { return v & seq_mask; }

std::uint64_t items_per_producer() {
  if (const char* e = std::getenv("DKQ_STRESS_ITEMS")) {
    const long long n = std::atoll(e);
    if (n > 0) return static_cast<std::uint64_t>(n);
  }
#if defined(DKQ_TSAN)
  return 100000;
#else
  return 200000;
#endif
}

// ---- SPSC: mixed single, bulk, burst and zero-copy on both sides -----------

void spsc_run(std::uint32_t capacity, unsigned seed) {
  dkq::spsc_ring<std::uint64_t> r;
  ASSERT_TRUE(r.init(capacity));
  const std::uint64_t n = items_per_producer();
  std::atomic<bool> failed{false};

  std::thread producer([&] {
    std::mt19937 rng(seed);
    std::uint64_t next = 0, buf[64];
    std::uint32_t spins = 0;
    dkq::default_wait w;
    while (next < n) {
      const unsigned mode = rng() % 4;
      const std::uint32_t want =
          static_cast<std::uint32_t>(std::min<std::uint64_t>(1 + rng() % 64, n - next));
      std::uint32_t done = 0;
      if (mode == 0) {
        done = r.try_push(next) ? 1 : 0;
      } else if (mode == 1 || mode == 2) {
        for (std::uint32_t i = 0; i < want; ++i) buf[i] = next + i;
        done = mode == 1 ? r.push_bulk(buf, want) : r.push_burst(buf, want);
      } else {
        auto s = r.reserve_burst(want);
        for (std::uint32_t i = 0; i < s.size(); ++i) s[i] = next + i;
        if (!r.commit(s.size())) failed = true;
        done = s.size();
      }
      next += done;
      if (done == 0) w(spins++); else spins = 0;
    }
  });

  std::mt19937 rng(seed * 7 + 1);
  std::uint64_t expect = 0, buf[64];
  std::uint32_t spins = 0;
  dkq::default_wait w;
  while (expect < n && !failed) {
    const unsigned mode = rng() % 4;
    const std::uint32_t want = 1 + rng() % 64;
    std::uint32_t got = 0;
    if (mode == 0) {
      got = r.try_pop(buf[0]) ? 1 : 0;
    } else if (mode == 1) {
      got = r.pop_bulk(buf, want);
    } else if (mode == 2) {
      got = r.pop_burst(buf, want);
    } else {
      auto s = r.peek_burst(want);
      for (std::uint32_t i = 0; i < s.size(); ++i) buf[i] = s[i];
      got = s.size();
      if (!r.consume(got)) failed = true;
    }
    for (std::uint32_t i = 0; i < got; ++i) {
      if (buf[i] != expect) {
        ADD_FAILURE() << "expected " << expect << " got " << buf[i];
        failed = true;
        break;
      }
      ++expect;
    }
    if (got == 0) w(spins++); else spins = 0;
  }
  producer.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(expect, n);
  EXPECT_TRUE(r.empty_approx());
}

TEST(SpscStress, Capacity1) { spsc_run(1, 1); }
TEST(SpscStress, Capacity2) { spsc_run(2, 2); }
TEST(SpscStress, Capacity64) { spsc_run(64, 3); }
TEST(SpscStress, Capacity4096) { spsc_run(4096, 4); }

// ---- multi-producer / multi-consumer ----------------------------------------

// Shared checker: per-(consumer, producer) order, and a global seen-bitmap per
// producer that catches duplicates and, at the end, losses.
struct checker {
  checker(unsigned producers, std::uint64_t n) : n_(n), seen(producers) {
    for (auto& v : seen) v = std::vector<std::atomic<std::uint8_t>>(n);
  }
  // Called by a consumer with its own last-seen vector.
  bool take(std::uint64_t v, std::vector<std::int64_t>& last) {
    const std::uint64_t p = producer_of(v), s = seq_of(v);
    if (p >= seen.size() || s >= n_) {
      ADD_FAILURE() << "corrupt element " << v;
      return false;
    }
    if (static_cast<std::int64_t>(s) <= last[p]) {
      ADD_FAILURE() << "producer " << p << " out of order: " << s << " after " << last[p];
      return false;
    }
    last[p] = static_cast<std::int64_t>(s);
    if (seen[p][s].exchange(1, std::memory_order_relaxed) != 0) {
      ADD_FAILURE() << "duplicate element producer " << p << " seq " << s;
      return false;
    }
    return true;
  }
  void expect_all() {
    for (std::size_t p = 0; p < seen.size(); ++p)
      for (std::uint64_t s = 0; s < n_; ++s)
        if (seen[p][s].load() == 0) {
          ADD_FAILURE() << "lost element producer " << p << " seq " << s;
          return;
        }
  }
  std::uint64_t n_;
  std::vector<std::vector<std::atomic<std::uint8_t>>> seen;
};

template <class Ring>
void mp_run(std::uint32_t capacity, unsigned producers, unsigned consumers) {
  Ring r;
  ASSERT_TRUE(r.init(capacity));
  const std::uint64_t n = items_per_producer() / (producers > 1 ? 2 : 1);
  checker chk(producers, n);
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<bool> failed{false};
  const std::uint64_t total = n * producers;

  std::vector<std::thread> threads;
  for (unsigned p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937 rng(p + 11);
      std::uint64_t next = 0, buf[32];
      std::uint32_t spins = 0;
      dkq::default_wait w;
      while (next < n && !failed) {
        const std::uint32_t want =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(1 + rng() % 32, n - next));
        for (std::uint32_t i = 0; i < want; ++i) buf[i] = tag(p, next + i);
        std::uint32_t done;
        switch (rng() % 3) {
          case 0: done = r.try_push(buf[0]) ? 1 : 0; break;
          case 1: done = r.push_bulk(buf, want); break;
          default: done = r.push_burst(buf, want); break;
        }
        next += done;
        if (done == 0) w(spins++); else spins = 0;
      }
    });
  }
  for (unsigned c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(c + 101);
      std::vector<std::int64_t> last(producers, -1);
      std::uint64_t buf[32];
      std::uint32_t spins = 0;
      dkq::default_wait w;
      while (consumed.load(std::memory_order_relaxed) < total && !failed) {
        const std::uint32_t want = 1 + rng() % 32;
        std::uint32_t got;
        switch (rng() % 3) {
          case 0: got = r.try_pop(buf[0]) ? 1 : 0; break;
          case 1: got = r.pop_bulk(buf, want); break;
          default: got = r.pop_burst(buf, want); break;
        }
        for (std::uint32_t i = 0; i < got; ++i)
          if (!chk.take(buf[i], last)) failed = true;
        consumed.fetch_add(got, std::memory_order_relaxed);
        if (got == 0) w(spins++); else spins = 0;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(consumed.load(), total);
  chk.expect_all();
  EXPECT_TRUE(r.empty_approx());
}

using u64 = std::uint64_t;
TEST(MpscStress, TwoProducersCapacity2) { mp_run<dkq::mpsc_ring<u64>>(2, 2, 1); }
TEST(MpscStress, ThreeProducersCapacity64) { mp_run<dkq::mpsc_ring<u64>>(64, 3, 1); }
TEST(SpmcStress, TwoConsumersCapacity16) { mp_run<dkq::spmc_ring<u64>>(16, 1, 2); }
TEST(MpmcStress, TwoByTwoCapacity1) { mp_run<dkq::mpmc_ring<u64>>(1, 2, 2); }
TEST(MpmcStress, TwoByTwoCapacity8) { mp_run<dkq::mpmc_ring<u64>>(8, 2, 2); }
TEST(MpmcStress, ThreeByTwoCapacity1024) { mp_run<dkq::mpmc_ring<u64>>(1024, 3, 2); }

// ---- fan-in: three producers on their own lanes, one consumer ---------------

TEST(RingStress, FanInThreeProducersOneConsumer) {
  dkq::fan_in_ring<std::uint64_t, 4> q;
  ASSERT_TRUE(q.init(3, 16));  // small lanes: full and empty all the time
  const std::uint64_t n = items_per_producer();
  constexpr unsigned producers = 3;
  std::vector<std::thread> ts;
  for (unsigned p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      auto lane = q.attach_producer();
      ASSERT_TRUE(lane.ok());
      std::uint64_t next = 0, buf[8];
      while (next < n) {
        const std::uint32_t want = static_cast<std::uint32_t>(std::min<std::uint64_t>(1 + next % 8, n - next));
        for (std::uint32_t i = 0; i < want; ++i) buf[i] = tag(p, next + i);
        const std::uint32_t done = (*lane)->push_burst(buf, want);
        next += done;
        if (done == 0) std::this_thread::yield();
      }
    });
  }
  std::vector<std::uint64_t> expect(producers, 0);
  std::uint64_t total = 0, out[16];
  bool order_ok = true;
  while (total < n * producers) {
    const std::uint32_t got = q.pop_burst(out, 1 + static_cast<std::uint32_t>(total % 16));
    if (got == 0) {
      std::this_thread::yield();
      continue;
    }
    for (std::uint32_t i = 0; i < got; ++i) {
      const std::uint64_t p = producer_of(out[i]);
      if (p >= producers || seq_of(out[i]) != expect[p]) order_ok = false;  // lost, duplicated or reordered
      if (p < producers) expect[p] = seq_of(out[i]) + 1;
    }
    total += got;
  }
  for (auto& t : ts) t.join();
  EXPECT_TRUE(order_ok);
  for (unsigned p = 0; p < producers; ++p) EXPECT_EQ(expect[p], n);
  std::uint64_t extra = 0;
  EXPECT_FALSE(q.try_pop(extra));
}

}  // namespace
