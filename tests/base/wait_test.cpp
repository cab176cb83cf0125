#include "dkq/base/wait.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "dkq/base/barrier.hpp"

// The wait policies must let a waiter make progress while another thread
// finishes its work, both below and above the spin limit.
TEST(Wait, SpinThenYieldLetsOtherThreadFinish) {
  std::atomic<bool> done{false};
  std::thread t([&] { done.store(true, std::memory_order_release); });
  dkq::spin_then_yield<4> w;
  std::uint32_t spins = 0;
  while (!done.load(std::memory_order_acquire)) w(spins++);
  t.join();
  EXPECT_TRUE(done.load());
}

TEST(Barrier, AcquireReleaseHelpersRoundTrip) {
  std::uint32_t word = 0;
  dkq::store_release(&word, 5u);
  EXPECT_EQ(dkq::load_acquire(&word), 5u);
  dkq::store_relaxed(&word, 6u);
  EXPECT_EQ(dkq::load_relaxed(&word), 6u);
  dkq::store_seq_cst(&word, 7u);
  EXPECT_EQ(dkq::load_seq_cst(&word), 7u);
  dkq::dma_wmb();
  dkq::dma_rmb();
  dkq::dma_mb();
  dkq::spin_wait{}(0);
}
