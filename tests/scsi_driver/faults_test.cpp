// MegaRAID (MFI) driver core against a controller that lies or a reset that
// fails, one test per fault class (tests/support/fake_mfi_controller.hpp's
// fault knobs). The ledger checks the rule that matters: every request the
// core accepted completes exactly once, and nothing completes that was not in
// flight. Each test prints its counts at the end of the run ("mfi-faults:")
// for docs/device-faults.md.
#include <gtest/gtest.h>

#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "examples/scsi/driver/megaraid.hpp"
#include "support/fake_mfi_controller.hpp"
#include "support/fault_tally.hpp"

namespace mr = dkq::examples::megaraid;
namespace mfi = dkq::scsi::mfi;
using dkq::errc;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;

namespace {

struct ledger {
  std::map<const void*, int> done;
  std::map<const void*, mr::completion> last;
  std::uint64_t accepted = 0, unknown = 0;
  static void on_done(void* u, const mr::completion& c) noexcept {
    auto* self = *static_cast<ledger**>(u);
    auto it = self->done.find(u);
    if (it == self->done.end()) {
      ++self->unknown;
      return;
    }
    ++it->second;
    self->last[u] = c;
  }
  std::uint64_t once() const {
    std::uint64_t n = 0;
    for (auto& [u, k] : done) n += k == 1;
    return n;
  }
  std::uint64_t twice() const {
    std::uint64_t n = 0;
    for (auto& [u, k] : done) n += k > 1;
    return n;
  }
  std::uint64_t with(errc e) const {
    std::uint64_t n = 0;
    for (auto& [u, c] : last) n += c.st.code() == e;
    return n;
  }
};

DKQ_FAULT_TALLY("mfi-faults");

struct rig {
  fake_dma_space dma;
  fake_mfi_controller ctl;
  fake_mfi_platform plat;
  mr::controller<fake_mfi_platform> drv;
  ledger book;
  std::deque<ledger*> users;  // one slot per request: its address is the request's user pointer
  dkq::dma_region buf{};
  std::uint64_t faults = 0;
  explicit rig(std::uint32_t max_cmds = 64) : ctl(dma, max_cmds), plat(dma, ctl) {
    ctl.add_disk(0, 4096);
    ctl.add_disk(1, 4096);
  }
  dkq::status start(mr::options o = {}) {
    o.use_interrupts = false;
    o.command_timeout_ns = 50'000'000;
    o.abort_grace_ns = 20'000'000;
    o.ready_timeout_ns = 30'000'000;
    const dkq::status s = drv.start(plat, o);
    if (s) {
      auto b = dma.alloc(256 * 4096, mr::no_address_limit);
      EXPECT_TRUE(b.ok());
      buf = *b;
    }
    return s;
  }
  // A 4 KiB READ of target `t` into its own slice of the buffer.
  dkq::status read(std::uint8_t t = 0, bool pass = false) {
    users.push_back(&book);
    void* u = &users.back();
    const std::size_t i = users.size() - 1;
    mr::request q;
    q.target = t;
    q.data = dkq::dma_region{buf.cpu_at(i * 4096), buf.device_at(i * 4096), 4096};
    q.dir = dkq::dma_direction::from_device;
    if (pass) {
      q.kind = mr::op::ld_scsi;
      q.cdb_len = dkq::scsi::read_write(q.cdb, false, i * 8, 8, false).value_or(0);
    } else {
      q.kind = mr::op::ld_read;
      q.lba = i * 8;
      q.blocks = 8;
    }
    q.done = ledger::on_done;
    q.user = u;
    const dkq::status s = drv.submit(q);
    if (s) {
      book.done.emplace(u, 0);
      ++book.accepted;
    }
    return s;
  }
  // Virtual time past every deadline (timeout, abort grace, reset, re-issue).
  void settle(int rounds = 400) {
    for (int i = 0; i < rounds && drv.in_flight() != 0; ++i) drv.wait(5);
    for (int i = 0; i < 10; ++i) drv.poll();
  }
  ~rig() {
    dkq::test::fault_tally().push_back({dkq::test::current_test_name(), faults, book.accepted,
                       book.once(), book.accepted - book.once() - book.twice(), book.twice(), book.unknown});
    EXPECT_EQ(book.once(), book.accepted);
    EXPECT_EQ(book.twice(), 0u);
    EXPECT_EQ(book.unknown, 0u);
  }
};

// The firmware posts a context twice: the second is counted, never delivered.
TEST(MfiFaults, DuplicateReplyContextsAreCountedNotDelivered) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.duplicate_next = 16;
  r.faults = 16;
  for (int i = 0; i < 48; ++i) {
    ASSERT_TRUE(r.read().ok());
    r.drv.poll();
  }
  r.settle();
  EXPECT_EQ(r.drv.stats().duplicate, 16u);
  EXPECT_EQ(r.book.with(errc::ok), 48u);
}

// Duplicates that push the reply queue past its end: 48 commands posted
// without a poll, 16 of them answered twice - 64 entries into a 64-entry
// queue, so the producer laps the consumer and entries are overwritten. The
// lost completions come back through timeout -> ABORT (-> reset); nothing
// completes twice.
TEST(MfiFaults, DuplicatesThatOverrunTheReplyQueueLoseNothing) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.duplicate_next = 16;
  r.faults = 16;
  for (int i = 0; i < 48; ++i) ASSERT_TRUE(r.read().ok());
  r.settle();
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

// Contexts the firmware invents: a context of a command already completed
// (stale generation), one outside the tag table, one wider than our 16-bit
// tags, and 0. None completes anything.
TEST(MfiFaults, StaleOutOfRangeAndInventedContextsAreNeverDelivered) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  for (int i = 0; i < 32; ++i) {
    ASSERT_TRUE(r.read().ok());
    r.drv.poll();
    // Before the next request's completion: the previous one's (now stale)
    // context, an index outside the table, a value wider than 16 bits.
    r.ctl.inject_contexts.push_back(r.ctl.last_context);
    r.ctl.inject_contexts.push_back(0x3fff);
    r.ctl.inject_contexts.push_back(0xdead0000u | static_cast<std::uint32_t>(i));
    r.faults += 3;
  }
  ASSERT_TRUE(r.read().ok());
  r.settle();
  const auto& s = r.drv.stats();
  EXPECT_EQ(s.bad_context, 32u);                     // wider than 16 bits
  EXPECT_EQ(r.drv.tag_stats().out_of_range, 32u);     // index outside the table
  EXPECT_EQ(s.stale + s.duplicate, 64u);              // those, and a completed command's context again
  EXPECT_EQ(r.book.with(errc::ok), 33u);
}

// A producer index beyond the reply queue: a protocol error, the entries are
// not trusted; the commands behind it come back through timeout -> ABORT.
TEST(MfiFaults, ImpossibleProducerIndexIsAProtocolErrorAndNothingIsLost) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.hold = true;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.corrupt_producer = true;
  r.faults = 1;
  r.ctl.step(1);
  r.drv.poll();
  EXPECT_EQ(r.drv.last_error().code(), errc::protocol_error);
  r.ctl.hold = false;
  r.ctl.step();
  r.settle();
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

// Surprise removal: every register reads all-ones, writes go nowhere. The
// held commands time out, the ABORTs vanish, the reset finds the controller
// gone: every command completes once with an error, bus mastering is cut.
TEST(MfiFaults, SurpriseRemovalFailsEveryRequestOnce) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.hold = true;
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.removed = true;
  r.faults = 1;
  r.settle();
  EXPECT_EQ(r.drv.in_flight(), 0u);
  EXPECT_EQ(r.book.with(errc::ok), 0u);
  EXPECT_FALSE(r.drv.operational());
  EXPECT_EQ(r.drv.last_error().code(), errc::removed);
  EXPECT_GE(r.plat.bus_master_disables, 1u);
}

// Defect 5: the firmware does not come back to READY after the reset that
// a timed-out command needs. Everything in flight completes once.
TEST(MfiFaults, FirmwareFaultDuringResetFailsEveryRequestOnce) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.drop_next = 4;
  r.ctl.ignore_aborts = true;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.hold = true;
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.fault_after_reset = true;
  r.faults = 4 + 4 + 1;  // 4 dropped, 4 ABORTs ignored, FAULT at the reset
  r.settle();
  EXPECT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(r.book.with(errc::timeout) + r.book.with(errc::io_error), 16u);
  EXPECT_FALSE(r.drv.operational());
}

// Defect 5, second half: READY comes back, INIT is refused.
TEST(MfiFaults, InitRefusedDuringResetFailsEveryRequestOnce) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.hold = true;
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.fail_inits = 1;
  r.faults = 1;
  EXPECT_FALSE(r.drv.reset().ok());
  r.settle();
  EXPECT_EQ(r.book.with(errc::io_error), 16u);
  EXPECT_EQ(r.drv.stats().reissued, 0u);
}

// A firmware that drops commands and ignores the ABORTs: timeout, ABORT,
// grace, reset; the commands are re-posted once with fresh tags and succeed.
TEST(MfiFaults, DroppedCommandsAndIgnoredAbortsEndInResetAndReissue) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.drop_next = 6;
  r.ctl.ignore_aborts = true;
  r.faults = 6 + 6;
  for (int i = 0; i < 24; ++i) ASSERT_TRUE(r.read().ok());
  r.settle();
  EXPECT_EQ(r.drv.stats().resets, 1u);
  EXPECT_EQ(r.book.with(errc::timeout), 6u);
  EXPECT_EQ(r.book.with(errc::ok), 18u);
}

// Defect 7 at the core: DONE_WITH_ERROR whose SCSI status says GOOD is a
// failure (device_error), never success; the rest of the load is unaffected.
TEST(MfiFaults, DoneWithErrorAndGoodStatusIsAFailure) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.error_good_next = 8;
  r.faults = 8;
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(r.read(static_cast<std::uint8_t>(i % 2), true).ok());
  r.settle();
  EXPECT_EQ(r.ctl.c.error_good, 8u);
  EXPECT_EQ(r.book.with(errc::device_error), 8u);
  EXPECT_EQ(r.book.with(errc::ok), 24u);
}

// Sense that lies: a sense_len above what the frame asked for (inflated to
// 255), one too short to parse (3), none at all (0) with CHECK CONDITION,
// and sense bytes of garbage. Parsing stays inside the 96 bytes the frame
// offered; every command completes once, as a failure.
TEST(MfiFaults, LyingSenseLengthsStayInsideTheSenseBuffer) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  const std::uint8_t lens[] = {255, 3, 0, 96, 200, 18, 1, 254};
  for (int i = 0; i < 32; ++i) {
    fake_mfi_controller::forced_sense fs;
    fs.bytes.assign(static_cast<std::size_t>(i % 3 == 0 ? 140 : 18), static_cast<std::uint8_t>(0x70 + i));
    fs.bytes[0] = i % 4 == 0 ? 0x72 : 0x70;  // descriptor or fixed format
    fs.bytes[2] = static_cast<std::uint8_t>(i % 16);
    fs.sense_len_said = lens[i % 8];
    r.ctl.force_sense.push_back(fs);
    ++r.faults;
    ASSERT_TRUE(r.read(0, true).ok());
  }
  r.settle();
  std::uint64_t valid = 0;
  for (auto& [u, c] : r.book.last) {
    EXPECT_LE(c.sense_bytes_len, 96u);
    valid += c.sense_valid;
  }
  EXPECT_GT(valid, 0u);
  EXPECT_EQ(r.drv.in_flight(), 0u);
}

// DCMD payloads that lie: an LD list count above 64, a PD list count beyond
// its buffer, a controller info naming another PCI device, a truncated one.
// Bring-up fails with a protocol error and frees everything.
TEST(MfiFaults, LyingDcmdPayloadsFailBringUpCleanly) {
  struct lie {
    std::uint32_t opcode;
    std::size_t off;
    std::uint32_t value;
    std::size_t truncate;  // 0: no truncation
    errc expect;
  };
  // A controller info cut after the PCI IDs is tolerated: its limits are 0,
  // which the driver ignores, keeping the (checked) status-word limits.
  const lie lies[] = {{mfi::dcmd::ld_get_list, 0, 200, 0, errc::protocol_error},
                      {mfi::dcmd::pd_get_list, 4, 100000, 0, errc::protocol_error},
                      {mfi::dcmd::ctrl_get_info, mfi::ctrl_info::pci_device, 0x1234, 0, errc::protocol_error},
                      {mfi::dcmd::ctrl_get_info, 0, 0, 2, errc::protocol_error},
                      {mfi::dcmd::ctrl_get_info, 0, 0, 4, errc::ok},
                      {mfi::dcmd::pd_list_query, 4, 70000, 0, errc::protocol_error}};
  rig r;
  for (const lie& l : lies) {
    fake_dma_space dma;
    fake_mfi_controller ctl(dma);
    ctl.add_disk(0, 1024);
    ctl.jbod = l.opcode == mfi::dcmd::pd_list_query;
    ctl.dcmd_hook = [&](std::uint32_t op, std::vector<std::uint8_t>& out, std::uint8_t&) {
      if (op != l.opcode) return;
      if (l.truncate != 0) out.resize(l.truncate);
      else std::memcpy(&out[l.off], &l.value, l.off == mfi::ctrl_info::pci_device ? 2 : 4);
    };
    fake_mfi_platform plat(dma, ctl);
    mr::controller<fake_mfi_platform> drv;
    mr::options o;
    o.use_interrupts = false;
    const dkq::status s = drv.start(plat, o);
    EXPECT_EQ(s.code(), l.expect) << l.opcode << " " << s.message();
    if (s) {
      EXPECT_GT(drv.info().max_sge, 0u);
      EXPECT_LE(drv.info().max_sge, drv.info().fw_max_sge);
      EXPECT_EQ(drv.info().max_transfer, o.max_transfer);
      EXPECT_TRUE(drv.stop().ok());
    }
    EXPECT_EQ(dma.live(), 0u);
    EXPECT_FALSE(drv.operational());
    ++r.faults;
  }
}

// Defect 6: stop() with commands held and sat on by the device: each
// completes once, flagged stopped, after the firmware was told to drop them.
TEST(MfiFaults, StopWithRequestsInFlightCompletesEachOnce) {
  rig r;
  ASSERT_TRUE(r.start().ok());
  r.ctl.hold = true;
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(r.read().ok());
  r.ctl.hold = false;
  r.ctl.drop_next = 4;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(r.read().ok());
  r.faults = 4;
  EXPECT_TRUE(r.drv.stop().ok());
  std::uint64_t stopped = 0;
  for (auto& [u, c] : r.book.last) stopped += c.stopped;
  EXPECT_EQ(stopped, 16u);
  EXPECT_EQ(r.ctl.owned(), 0u);
}

// Defect 10: frames the 32-bit queue port cannot name (an allocator that
// ignored the 4 GiB limit) are never posted - no write naming address 0.
TEST(MfiFaults, FrameTheQueuePortCannotNameIsNeverPosted) {
  rig r;
  r.dma.ignore_limits = true;
  r.faults = 1;
  EXPECT_EQ(r.start().code(), errc::constraint);
  EXPECT_EQ(r.ctl.c.frames, 0u);
  EXPECT_EQ(r.ctl.c.queue_port_zero, 0u);
}

}  // namespace
