// NVMe driver core against a controller that lies or a reset that fails
// (tests/support/fake_nvme_controller.hpp's fault injection). Each test
// names the defect it pins down; each failed on the core before its fix.
// The ledger checks the rule that matters: every request the core accepted
// completes exactly once, and nothing completes that was not in flight.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "../../examples/nvme/driver/controller.hpp"
#include "support/fake_nvme_controller.hpp"
#include "support/fault_tally.hpp"

namespace {

using dkq::errc;
using dkq::test::fake_nvme_controller;
using dkq::test::fake_platform;
namespace drv = dkq::nvme_driver;
using ctrl_t = drv::controller<fake_platform>;
using queue_t = drv::io_queue<fake_platform>;

// Accepted requests and their completions.
struct ledger {
  std::map<std::uint64_t, int> done;  // user -> completions seen
  std::map<std::uint64_t, errc> last;
  std::uint64_t accepted = 0, unknown = 0;
  void accept(std::uint64_t user) {
    done.emplace(user, 0);
    ++accepted;
  }
  void operator()(const drv::io_completion& c) {
    auto it = done.find(c.user);
    if (it == done.end()) {
      ++unknown;
      return;
    }
    ++it->second;
    last[c.user] = c.st.code();
  }
  std::uint64_t exactly_once() const {
    std::uint64_t n = 0;
    for (auto& [u, k] : done) n += k == 1;
    return n;
  }
  std::uint64_t more_than_once() const {
    std::uint64_t n = 0;
    for (auto& [u, k] : done) n += k > 1;
    return n;
  }
};

DKQ_FAULT_TALLY("nvme-faults");

struct rig {
  fake_nvme_controller dev;
  fake_platform plat{dev};
  ctrl_t ctrl;
  std::deque<ledger> books;
  dkq::status init(drv::options o = {}) { return ctrl.init(plat, o); }
  ledger& book() { return books.emplace_back(); }
  ~rig() {
    dkq::test::fault_tally_row row{dkq::test::current_test_name(), dev.faults_injected, 0, 0, 0, 0, 0};
    for (const ledger& l : books) {
      row.requests += l.accepted;
      row.once += l.exactly_once();
      row.twice += l.more_than_once();
      row.lost += l.accepted - l.exactly_once() - l.more_than_once();
      row.unknown += l.unknown;
    }
    dkq::test::fault_tally().push_back(row);
  }
};



void pump(rig& r, queue_t& q, ledger& l, int rounds = 50) {
  for (int i = 0; i < rounds; ++i) {
    q.ring();
    r.dev.step();
    q.poll(1024, [&](const drv::io_completion& c) { l(c); });
  }
}

// Defect 1: CAP.DSTRD sized the shadow-doorbell offsets without a check
// against the 4 KiB Doorbell Buffer pages (a stride of 512 bytes puts queue
// 4's EventIdx word past the 8 KiB buffer), and the BAR check asked for 64
// queues' doorbells whatever the controller grants.
TEST(NvmeFaults, LargeDoorbellStrideTurnsShadowDoorbellsOffAndKeepsQueuesInTheBar) {
  rig r;
  r.dev.dstrd = 7;  // 512-byte doorbell stride
  r.dev.bar_bytes = 0x10000;
  r.dev.finalize_config();
  ASSERT_TRUE(r.init().ok());
  EXPECT_FALSE(r.ctrl.shadow_doorbells());
  EXPECT_NE(std::string(r.ctrl.shadow_reason()).find("DSTRD"), std::string::npos) << r.ctrl.shadow_reason();
  EXPECT_EQ(r.dev.dbbuf_configs, 0u);
  EXPECT_EQ(r.ctrl.io_queues_granted(), 8u);
  // Every granted queue works through the strided doorbells.
  queue_t qs[8];
  auto buf = r.plat.dma_alloc(8 * 512);
  ledger& l = r.book();
  for (std::uint32_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(r.ctrl.create_io_queue(qs[i], 8, false, 0).ok()) << i;
    std::memset(buf->cpu_at<std::uint8_t>(i * 512), static_cast<int>(0x40 + i), 512);
    ASSERT_TRUE(qs[i].write(1, i, 1, {buf->device + i * 512, 512}, i).ok());
    l.accept(i);
    pump(r, qs[i], l, 5);
  }
  EXPECT_EQ(l.exactly_once(), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) EXPECT_EQ(r.dev.disk_for(1)[i * 512], 0x40 + i);
  EXPECT_EQ(r.dev.protocol_errors, 0u);
}

TEST(NvmeFaults, DoorbellStrideCapsQueuesToWhatTheBarHolds) {
  rig r;
  r.dev.dstrd = 7;
  r.dev.bar_bytes = 0x2000;  // doorbells of queues 1..3 only fit
  r.dev.finalize_config();
  ASSERT_TRUE(r.init().ok());
  EXPECT_EQ(r.ctrl.io_queues_granted(), 3u);
  queue_t qs[4];
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.ctrl.create_io_queue(qs[i], 8, false, 0).ok());
  EXPECT_EQ(r.ctrl.create_io_queue(qs[3], 8, false, 0).code(), errc::no_space);
  // A stride that puts even the admin doorbells outside the BAR is refused.
  rig r2;
  r2.dev.dstrd = 15;
  r2.dev.finalize_config();
  dkq::status st = r2.init();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), errc::out_of_range) << st.message();
}

// Defect 2: a failed reset returned early with every in-flight command on a
// requeue list nobody would read again: never completed, slots leaked.
TEST(NvmeFaults, FailedResetCompletesEveryRequestOnceAndFailsTheController) {
  rig r;
  drv::options o;
  o.io_timeout_ms = 100;
  ASSERT_TRUE(r.init(o).ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(8 * 4096);
  ledger& l = r.book();
  r.dev.drop_io = 6;  // held by the device, never completed
  for (std::uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(q.read(2, i, 1, {buf->device + i * 4096, 4096}, i).ok());
    l.accept(i);
  }
  pump(r, q, l, 5);
  EXPECT_EQ(l.exactly_once(), 2u);
  r.dev.never_ready = true;  // the re-enable never reports CSTS.RDY
  dkq::status st = r.ctrl.reset_and_recover();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), errc::device_error);
  EXPECT_TRUE(r.ctrl.failed());
  EXPECT_EQ(r.ctrl.failed_cause(), errc::timeout);
  pump(r, q, l, 3);
  EXPECT_EQ(l.exactly_once(), 8u);
  EXPECT_EQ(l.more_than_once(), 0u);
  EXPECT_EQ(l.unknown, 0u);
  for (std::uint64_t i = 0; i < 8; ++i)
    if (i < 6) {  // the six the device held
      EXPECT_NE(l.last[i], errc::ok) << i;
    }
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_EQ(q.deferred(), 0u);
  // Refused while failed, with the reason.
  EXPECT_EQ(q.read(2, 0, 1, {buf->device, 4096}, 99).code(), errc::device_error);
  // A later reset that succeeds brings the queue back with every slot.
  r.dev.never_ready = false;
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  EXPECT_FALSE(r.ctrl.failed());
  for (std::uint64_t i = 0; i < 15; ++i) {
    ASSERT_TRUE(q.read(2, i % 8, 1, {buf->device + (i % 8) * 4096, 4096}, 100 + i).ok()) << i;
    l.accept(100 + i);
  }
  pump(r, q, l, 5);
  EXPECT_EQ(l.exactly_once(), 8u + 15u);
}

// Defect 2, part way: the controller comes back but queue creation fails
// (here: Create I/O SQ answered with an error). Commands already taken out
// of the device still complete once, with an error.
TEST(NvmeFaults, ResetFailingAtQueueCreationStillCompletesEverything) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q1, q2;
  ASSERT_TRUE(r.ctrl.create_io_queue(q1, 16, false, 0).ok());
  ASSERT_TRUE(r.ctrl.create_io_queue(q2, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(8 * 4096);
  ledger& l1 = r.book();
  ledger& l2 = r.book();
  r.dev.drop_io = 8;
  for (std::uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(q1.read(2, i, 1, {buf->device + i * 4096, 4096}, i).ok());
    l1.accept(i);
    ASSERT_TRUE(q2.read(2, i, 1, {buf->device + (4 + i) * 4096, 4096}, 10 + i).ok());
    l2.accept(10 + i);
  }
  pump(r, q1, l1, 3);
  pump(r, q2, l2, 3);
  // After the reset, Create I/O SQ for queue 2 fails.
  r.dev.fail_create_sq_qid = 2;
  dkq::status st = r.ctrl.reset_and_recover();
  EXPECT_FALSE(st.ok());
  pump(r, q1, l1, 3);
  pump(r, q2, l2, 3);
  EXPECT_EQ(l1.exactly_once(), 4u);
  EXPECT_EQ(l2.exactly_once(), 4u);
  EXPECT_EQ(l1.more_than_once() + l2.more_than_once() + l1.unknown + l2.unknown, 0u);
  // Queue 1's commands were re-posted before queue 2 failed and the device
  // ran them while the admin commands were waited for: the failure path
  // reaped those completions (they count, with their data) before it
  // disabled the controller. Queue 2's never got back to the device.
  for (auto& [u, e] : l1.last) EXPECT_EQ(e, errc::ok) << u;
  for (auto& [u, e] : l2.last) EXPECT_EQ(e, errc::io_error) << u;
  EXPECT_EQ(q1.in_flight() + q2.in_flight(), 0u);
}

// Defect 3: a device that never advances the SQ head wedged the queue:
// submit answered no_space for ever with nothing in flight.
TEST(NvmeFaults, StuckSubmissionHeadIsAProtocolErrorThatAResetRecovers) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 8, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  r.dev.sq_head = fake_nvme_controller::head_mode::stuck;
  ledger& l = r.book();
  dkq::status last = dkq::ok_status;
  std::uint64_t user = 0;
  for (int round = 0; round < 40 && last.ok(); ++round) {
    last = q.read(1, 0, 1, {buf->device, 512}, user);
    if (last.ok()) l.accept(user++);
    pump(r, q, l, 1);
  }
  EXPECT_EQ(last.code(), errc::protocol_error) << last.message();
  EXPECT_TRUE(q.needs_reset());
  EXPECT_GE(q.protocol_errors(), 1u);
  EXPECT_EQ(q.in_flight(), 0u);  // every command did complete; only the head lied
  EXPECT_EQ(l.exactly_once(), user);
  r.dev.sq_head = fake_nvme_controller::head_mode::honest;
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(q.read(1, 0, 1, {buf->device, 512}, user).ok()) << i;
    l.accept(user++);
    pump(r, q, l, 1);
  }
  EXPECT_EQ(l.exactly_once(), user);
}

// A head outside the ring is reported, never trusted; delivery goes on.
TEST(NvmeFaults, WildSubmissionHeadIsCountedNotTrusted) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 8, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  r.dev.sq_head = fake_nvme_controller::head_mode::wild;
  r.dev.wild_head = 0x7fff;
  ledger& l = r.book();
  for (std::uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.read(1, 0, 1, {buf->device, 512}, i).ok());
    l.accept(i);
  }
  pump(r, q, l, 3);
  EXPECT_EQ(l.exactly_once(), 3u);
  EXPECT_GE(q.protocol_errors(), 3u);
  EXPECT_NE(std::string(q.last_protocol_error()).find("head"), std::string::npos) << q.last_protocol_error();
}

// Defect 4: the CQ was forgotten at reset, so a command the device had
// already completed ran again (a second Deallocate) or was reported lost.
TEST(NvmeFaults, CompletionsPostedBeforeAResetAreDeliveredNotReRun) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  ASSERT_TRUE(q.deallocate(1, 8, 4, 7).ok());
  ledger& l = r.book();
  l.accept(7);
  q.ring();
  r.dev.step();  // the device ran it and posted its completion; not reaped yet
  EXPECT_EQ(r.dev.deallocates, 1u);
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  pump(r, q, l, 5);
  EXPECT_EQ(r.dev.deallocates, 1u);
  EXPECT_EQ(l.exactly_once(), 1u);
  EXPECT_EQ(l.last[7], errc::ok);
}

// Defect 10: read/write never checked the buffer against blocks x LBA size.
TEST(NvmeFaults, BufferLengthMustMatchBlocksTimesLbaSize) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(8192);
  EXPECT_EQ(q.read(1, 0, 2, {buf->device, 512}, 1).code(), errc::invalid_argument);    // short
  EXPECT_EQ(q.write(1, 0, 1, {buf->device, 1024}, 1).code(), errc::invalid_argument);  // long
  EXPECT_EQ(q.read(2, 0, 1, {buf->device, 512}, 1).code(), errc::invalid_argument);    // ns 2: 4 KiB LBAs
  EXPECT_EQ(q.read(9, 0, 1, {buf->device, 512}, 1).code(), errc::invalid_argument);    // no such namespace
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_TRUE(q.read(1, 0, 2, {buf->device, 1024}, 1).ok());
  EXPECT_TRUE(q.read(2, 0, 1, {buf->device, 4096}, 2).ok());
  // ns(i) is bounded.
  EXPECT_NE(r.ctrl.ns(1), nullptr);
  EXPECT_EQ(r.ctrl.ns(2), nullptr);
  EXPECT_EQ(r.ctrl.ns(0xffffffffu), nullptr);
}

// Defect 10: defer() dropped recovery completions once more than a queue's
// worth were waiting (reset failures between polls). Nothing is dropped now:
// a slot stays held until its completion is handed out.
TEST(NvmeFaults, RecoveryCompletionsAreNeverDropped) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 4, false, 0).ok());  // 3 tags
  auto buf = r.plat.dma_alloc(4096);
  ledger& l = r.book();
  std::uint64_t user = 0;
  for (int cycle = 0; cycle < 3; ++cycle) {
    r.dev.drop_io = 100;
    for (int i = 0; i < 3; ++i) {
      if (q.read(1, 0, 1, {buf->device, 512}, user).ok()) l.accept(user++);
    }
    q.ring();
    r.dev.step();
    r.dev.never_ready = true;
    (void)r.ctrl.reset_and_recover();  // fails: every held command is failed
    r.dev.never_ready = false;
    r.dev.drop_io = 0;
    ASSERT_TRUE(r.ctrl.reset_and_recover().ok());  // no poll in between
  }
  pump(r, q, l, 3);
  EXPECT_GE(l.accepted, 3u);
  EXPECT_EQ(l.exactly_once(), l.accepted);
  EXPECT_EQ(l.unknown, 0u);
}

// Duplicate, stale and out-of-range identifiers, and entries with the wrong
// phase, are never delivered; a command whose only completion was bad is
// recovered by timeout -> abort -> reset, once.
TEST(NvmeFaults, BadCompletionEntriesAreNeverDelivered) {
  rig r;
  drv::options o;
  o.io_timeout_ms = 50;
  ASSERT_TRUE(r.init(o).ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  int n = 0;
  r.dev.cqe_hook = [&](dkq::nvme_cqe& e) {
    if (e.sq_id == 0) return 1;
    switch (n++) {
      case 0: return 2;                                                    // duplicate
      case 1: e.cid = static_cast<std::uint16_t>(e.cid ^ 0x4000); return 1;  // stale generation
      case 2: e.cid = 0x3fff; return 1;                                     // out of range
      default: return 1;
    }
  };
  ledger& l = r.book();
  for (std::uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(q.read(1, 0, 1, {buf->device, 512}, i).ok());
    l.accept(i);
  }
  pump(r, q, l, 5);
  EXPECT_EQ(l.more_than_once(), 0u);
  EXPECT_EQ(l.unknown, 0u);
  EXPECT_GE(q.protocol_errors(), 3u);
  // Two commands got a bad CID: their only completions were never delivered.
  // Timeout -> Abort (the device has nothing to abort) -> reset -> re-post.
  r.dev.cqe_hook = nullptr;
  r.plat.advance_ms(60);
  q.check_timeouts([&](const drv::io_completion& c) { l(c); });
  if (q.needs_reset()) {
    ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  }
  pump(r, q, l, 5);
  EXPECT_EQ(l.exactly_once(), 4u);
  EXPECT_EQ(l.more_than_once(), 0u);
}

// All ones (surprise removal) in the middle of I/O: a reset fails with
// errc::removed and every request completes once with an error.
TEST(NvmeFaults, SurpriseRemovalFailsEveryRequestOnce) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  r.dev.drop_io = 5;
  ledger& l = r.book();
  for (std::uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(q.read(1, 0, 1, {buf->device, 512}, i).ok());
    l.accept(i);
  }
  pump(r, q, l, 2);
  r.dev.removed = true;
  r.dev.step();
  EXPECT_EQ(r.ctrl.health().code(), errc::removed);
  EXPECT_FALSE(r.ctrl.reset_and_recover().ok());
  EXPECT_EQ(r.ctrl.failed_cause(), errc::removed);
  q.poll(64, [&](const drv::io_completion& c) { l(c); });
  EXPECT_EQ(l.exactly_once(), 5u);
  for (auto& [u, e] : l.last) EXPECT_EQ(e, errc::removed) << u;
}

// CSTS.CFS while running: health() says so, and the reset recovers.
TEST(NvmeFaults, FatalStatusWhileRunningIsRecoveredByReset) {
  rig r;
  ASSERT_TRUE(r.init().ok());
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  r.dev.fatal();
  EXPECT_EQ(r.ctrl.health().code(), errc::device_error);
  ASSERT_TRUE(r.ctrl.reset_and_recover().ok());
  EXPECT_TRUE(r.ctrl.health().ok());
  ledger& l = r.book();
  ASSERT_TRUE(q.read(1, 0, 1, {buf->device, 512}, 1).ok());
  l.accept(1);
  pump(r, q, l, 3);
  EXPECT_EQ(l.exactly_once(), 1u);
}

// Identify that lies: FLBAS beyond NLBAF, an LBA size of 2^40, NN of 2^32-1
// with an active list full of duplicates and all-ones: nothing unusable is
// offered for I/O and nothing indexes out of bounds.
TEST(NvmeFaults, LyingIdentifyDataIsBounded) {
  rig r;
  r.dev.identify_hook = [](std::uint8_t cns, std::uint8_t* page) {
    if (cns == dkq::nvme::cns::ctrl) {
      const std::uint32_t nn = 0xffffffffu;
      std::memcpy(page + dkq::nvme::id_ctrl::nn, &nn, 4);
      page[dkq::nvme::id_ctrl::mdts] = 0xff;
    } else if (cns == dkq::nvme::cns::active_ns_list) {
      for (std::uint32_t i = 0; i < 1024; ++i) {
        const std::uint32_t v = i % 3 == 0 ? 0xffffffffu : 1u + i % 2;
        std::memcpy(page + 4 * i, &v, 4);
      }
    } else if (cns == dkq::nvme::cns::ns) {
      page[dkq::nvme::id_ns::flbas] = 9;  // beyond NLBAF (1)
    }
  };
  ASSERT_TRUE(r.init().ok());
  EXPECT_LE(r.ctrl.namespace_count(), ctrl_t::max_namespaces);
  for (std::uint32_t i = 0; i < r.ctrl.namespace_count(); ++i) EXPECT_FALSE(r.ctrl.ns(i)->usable);
  EXPECT_LE(r.ctrl.max_transfer(), drv::options{}.max_transfer_cap);
  queue_t q;
  ASSERT_TRUE(r.ctrl.create_io_queue(q, 16, false, 0).ok());
  auto buf = r.plat.dma_alloc(4096);
  EXPECT_EQ(q.read(1, 0, 1, {buf->device, 512}, 1).code(), errc::invalid_argument);
}

}  // namespace
