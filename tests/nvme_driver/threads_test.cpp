// NVMe driver core with several submitting threads (label concurrency, run
// under ThreadSanitizer in CI): one io_queue per thread, as dkq-nvme perf
// --threads runs them, on one controller whose admin queue they share. The
// device holds some commands, so threads time out and send Abort through the
// shared admin queue at the same time (the core's spinlock). Checks: every
// command completes exactly once, on its own thread, with its data; the
// aborted ones with errc::timeout; TSan reports no race.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <thread>
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

TEST(NvmeDriverThreads, QueuePerThreadWithConcurrentAbortsLosesNothing) {
  constexpr int threads = 3;
  constexpr std::uint32_t per_thread = 400;
  fake_nvme_controller dev;
  dev.io_by_owner = true;
  fake_platform plat(dev);
  ctrl_t ctrl;
  drv::options o;
  o.io_timeout_ms = 30;
  ASSERT_TRUE(ctrl.init(plat, o).ok());
  queue_t qs[threads];
  std::vector<dkq::dma_region> bufs;
  for (int t = 0; t < threads; ++t) {
    ASSERT_TRUE(ctrl.create_io_queue(qs[t], 16, false, 0).ok());
    bufs.push_back(*plat.dma_alloc(16 * 4096));
  }
  dev.drop_io = 9;  // held by the device: those commands time out and are aborted
  struct result {
    std::uint32_t accepted = 0, once = 0, twice = 0, unknown = 0, timeouts = 0, bad_data = 0;
  } res[threads];
  std::atomic<int> go{0};
  auto worker = [&](int t) {
    queue_t& q = qs[t];
    const dkq::dma_region& b = bufs[t];
    std::map<std::uint64_t, int> seen;
    std::map<std::uint64_t, errc> write_result;  // pair -> how its write ended
    std::uint32_t next = 0;
    while (go.load(std::memory_order_acquire) == 0) {
    }
    auto handler = [&](const drv::io_completion& c) {
      auto it = seen.find(c.user);
      if (it == seen.end()) {
        ++res[t].unknown;
        return;
      }
      if (++it->second > 1) ++res[t].twice;
      if (c.st.code() == errc::timeout) ++res[t].timeouts;
      if ((c.user & 1) == 0) write_result[c.user >> 1] = c.st.code();
      // Reads (odd users) check the pattern their write left, if it landed.
      if (c.st.ok() && (c.user & 1) != 0 && write_result[c.user >> 1] == errc::ok) {
        const std::uint32_t slot = static_cast<std::uint32_t>((c.user >> 1) % 16);
        const auto* p = b.cpu_at<std::uint8_t>(std::size_t{slot} * 4096);
        if (p[0] != static_cast<std::uint8_t>(t * 16 + slot)) ++res[t].bad_data;
      }
    };
    for (int spins = 0; spins < 200000 && (next < per_thread || q.in_flight() > 0); ++spins) {
      // A read is posted only once its write has completed.
      while (next < per_thread && q.in_flight() < 8 && ((next & 1) == 0 || write_result.count(next / 2) != 0)) {
        const std::uint32_t slot = (next / 2) % 16;
        const std::uint64_t lba = 100u * static_cast<std::uint64_t>(t) + slot;
        const dkq::dma_segment seg{b.device + std::size_t{slot} * 4096, 4096};
        const std::uint64_t user = (std::uint64_t{next / 2} << 1) | (next & 1);
        dkq::status st;
        if ((next & 1) == 0) {
          std::memset(b.cpu_at<std::uint8_t>(std::size_t{slot} * 4096), t * 16 + static_cast<int>(slot), 4096);
          st = q.write(2, lba, 1, seg, user);
        } else {
          std::memset(b.cpu_at<std::uint8_t>(std::size_t{slot} * 4096), 0xee, 4096);  // the read must fill it
          st = q.read(2, lba, 1, seg, user);
        }
        if (!st.ok()) break;
        seen.emplace(user, 0);
        ++res[t].accepted;
        ++next;
      }
      // Admin traffic from every thread at once: an Abort for an identifier
      // not in flight (the controller answers "not aborted").
      if (spins % 16 == 0) (void)ctrl.abort_command(q.qid(), 0x3fff);
      q.ring();
      dev.step_queue(q.qid());
      if (q.poll(64, handler) == 0) {
        plat.advance_ms(1);
        q.check_timeouts(handler);  // Abort through the shared admin queue
      }
    }
    for (auto& [u, n] : seen) res[t].once += n == 1;
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back(worker, t);
  go.store(1, std::memory_order_release);
  for (auto& th : ts) th.join();
  std::uint32_t timeouts = 0;
  for (int t = 0; t < threads; ++t) {
    EXPECT_EQ(res[t].accepted, per_thread) << t;
    EXPECT_EQ(res[t].once, res[t].accepted) << t;
    EXPECT_EQ(res[t].twice + res[t].unknown, 0u) << t;
    EXPECT_EQ(res[t].bad_data, 0u) << t;
    EXPECT_EQ(qs[t].in_flight(), 0u) << t;
    timeouts += res[t].timeouts;
  }
  EXPECT_EQ(timeouts, 9u);  // each held command aborted once, by its own thread
  EXPECT_GE(dev.aborts, 9u + threads);
  EXPECT_EQ(dev.protocol_errors, 0u);
}

}  // namespace
