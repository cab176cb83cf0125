// The MegaRAID dext's threads, as DkqMegaRAID.cpp has them: tasks arrive on
// the Default queue (UserProcessParallelTask), interrupts and the timer drain
// on InterruptQueue, ABORT TASK (UserAbortTaskRequest) comes from yet another
// thread; every call into the engine or the core is under one lock
// (ivars->lock). Three std::threads stand in for the three queues, a
// std::mutex for the IOLock, the software MFI controller for the hardware.
// Run under ThreadSanitizer in CI (label concurrency): the lock must be all
// the synchronisation the engine, the core and their callbacks need, and
// every task must be answered exactly once - those the firmware sits on by
// the cross-thread abort, the rest by the drain.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "scsi_dext/dext_rig.hpp"

using dkq::errc;
using namespace dkq::testing::mr_dext;

namespace {

struct kernel_task {
  std::uint32_t id = 0;
  bool busy = false;
  bool abort_me = false;
  bool abort_sent = false;
  std::uint64_t tag = 0;
};

struct threaded_rig : rig {
  std::mutex lock;  // ivars->lock
  std::vector<kernel_task> slots;
  std::vector<int> answers;  // per task tag
  std::uint64_t aborted = 0, good = 0, other = 0;

  static void sink(void* ctx, void* token, const dx::response_view& r) noexcept {
    // Called from inside service(), under the lock (as ParallelTaskCompletion is).
    auto* self = static_cast<threaded_rig*>(ctx);
    auto* k = static_cast<kernel_task*>(token);
    ++self->answers[k->tag];
    if (r.scsi_status == dkq::scsi::scsi_status::task_aborted) ++self->aborted;
    else if (r.failure == dx::host_failure::none && r.scsi_status == dkq::scsi::scsi_status::good) ++self->good;
    else ++self->other;
    k->busy = false;
  }
};

TEST(ScsiDextThreads, CrossThreadAbortWhileTheInterruptQueueDrains) {
  constexpr std::uint64_t tasks = 1200;
  constexpr std::size_t kernel_ids = 24;
  threaded_rig r;
  ASSERT_TRUE(r.core.start(r.plat, {}).ok());
  ASSERT_TRUE(r.eng.attach(r.core, r.plat, &threaded_rig::sink, &r).ok());
  r.answers.assign(tasks, 0);
  r.slots.resize(kernel_ids);
  for (auto& s : r.slots) s.id = r.map();

  std::atomic<bool> submitted_all{false}, stop{false};
  std::atomic<std::uint64_t> refused{0}, aborts_sent{0};

  // Default queue: UserProcessParallelTask. Every third task is one the
  // firmware will sit on (it never answers it without an ABORT).
  std::thread submitter([&] {
    std::uint64_t next = 0;
    while (next < tasks) {
      std::lock_guard<std::mutex> g(r.lock);
      kernel_task* k = nullptr;
      for (auto& s : r.slots)
        if (!s.busy) {
          k = &s;
          break;
        }
      if (k == nullptr) continue;
      auto t = cdb_task(k->id, static_cast<std::uint8_t>(next % 2), {0, 0, 0, 0, 0, 0});  // TEST UNIT READY
      t.task_tag = next;
      k->tag = next;
      k->abort_me = next % 3 == 0;
      k->abort_sent = false;
      k->busy = true;
      if (k->abort_me) r.ctl.drop_next = 1;
      const auto o = r.eng.process(t, {}, k);
      if (!o.in_process) {  // refused at once (queue full): the kernel would retry it
        ++refused;
        r.ctl.drop_next = 0;
        k->busy = false;
        continue;
      }
      ++next;
    }
    submitted_all = true;
  });
  // InterruptQueue: InterruptOccurred / TimerOccurred drain the reply queue.
  std::thread interrupts([&] {
    while (!stop) {
      {
        std::lock_guard<std::mutex> g(r.lock);
        r.eng.service();
      }
      std::this_thread::yield();
    }
  });
  // UserAbortTaskRequest, from its own thread: ABORT TASK for every task the
  // firmware sits on, as soon as it is in flight.
  std::thread aborter([&] {
    while (!stop) {
      {
        std::lock_guard<std::mutex> g(r.lock);
        for (auto& s : r.slots) {
          if (!s.busy || !s.abort_me || s.abort_sent) continue;
          const dkq::status st = r.eng.abort_task(s.tag % 2, s.tag);
          if (st.ok()) {
            s.abort_sent = true;
            ++aborts_sent;
          } else {
            ADD_FAILURE() << "abort_task: " << st.message();
          }
        }
      }
      std::this_thread::yield();
    }
  });

  submitter.join();
  for (int i = 0; i < 200000; ++i) {
    {
      std::lock_guard<std::mutex> g(r.lock);
      if (r.eng.tasks_in_flight() == 0) break;
    }
    std::this_thread::yield();
  }
  stop = true;
  interrupts.join();
  aborter.join();

  std::lock_guard<std::mutex> g(r.lock);
  EXPECT_TRUE(submitted_all);
  EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
  std::uint64_t once = 0;
  for (int n : r.answers) once += n == 1;
  EXPECT_EQ(once, tasks);  // every task answered, none twice
  EXPECT_EQ(r.aborted, tasks / 3);
  EXPECT_EQ(aborts_sent.load(), tasks / 3);
  EXPECT_EQ(r.good, tasks - tasks / 3);
  EXPECT_EQ(r.other, 0u);
  EXPECT_EQ(r.ctl.c.aborts, tasks / 3);
  EXPECT_EQ(r.eng.id_counters().duplicate, 0u);
  EXPECT_EQ(r.eng.id_counters().stale, 0u);
  EXPECT_EQ(r.core.stats().resets, 0u);
  std::printf("@@MR-THREADS tasks=%llu aborted_cross_thread=%llu good=%llu refused_then_retried=%llu double=0\n",
              static_cast<unsigned long long>(tasks), static_cast<unsigned long long>(r.aborted),
              static_cast<unsigned long long>(r.good), static_cast<unsigned long long>(refused.load()));
  EXPECT_TRUE(r.eng.shutdown(r.clk.t + 1'000'000).ok());
}

}  // namespace
