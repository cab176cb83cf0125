// The NVMe dext's translation layer against the software NVMe controller:
// requests as IOUserBlockStorageDevice gives them (requestID, dmaAddr, size,
// lba, blocks), byte-exact data, Flush reaching the device, unmap as
// deallocate, statuses as IOReturns, and every bad request refused before a
// command is built.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "../../examples/nvme/driverkit/block_translation.hpp"
#include "support/fake_nvme_controller.hpp"

namespace {

using dkq::errc;
using dkq::test::fake_nvme_controller;
using dkq::test::fake_platform;
namespace drv = dkq::nvme_driver;
namespace dx = dkq::nvme_driver::dext;
using queue_t = drv::io_queue<fake_platform>;
using translator_t = dx::block_translator<queue_t, 64>;

struct rig {
  fake_nvme_controller dev;
  fake_platform plat{dev};
  drv::controller<fake_platform> ctrl;
  queue_t q;
  translator_t t;
  dx::device_params p{};
  std::map<std::uint32_t, dx::block_completion> done;
  int completions = 0;

  // Namespace 2: 1024 blocks of 4 KiB; MDTS 16 KiB on the fake.
  void start(std::uint32_t nsid = 2, std::uint32_t depth = 16, drv::options o = {}) {
    ASSERT_TRUE(ctrl.init(plat, o).ok());
    ASSERT_TRUE(ctrl.create_io_queue(q, depth, false, 0).ok());
    const drv::namespace_info* ns = ctrl.find_ns(nsid);
    ASSERT_NE(ns, nullptr);
    auto pr = dx::make_device_params(ctrl.info(), *ns, ctrl.max_transfer(), q.depth());
    ASSERT_TRUE(pr.ok());
    p = *pr;
    ASSERT_TRUE(t.init(q, nsid, p).ok());
  }
  void run(int rounds = 50) {
    t.ring();
    for (int i = 0; i < rounds; ++i) {
      dev.step();
      t.poll(64, [&](const dx::block_completion& c) {
        EXPECT_EQ(done.count(c.request_id), 0u) << "request completed twice";
        done[c.request_id] = c;
        ++completions;
      });
    }
  }
};

TEST(NvmeDextParams, FromIdentify) {
  rig r;
  r.start();
  EXPECT_EQ(r.p.block_size, 4096u);
  EXPECT_EQ(r.p.num_blocks, 1024u);
  EXPECT_EQ(r.p.max_io_bytes, 16384u);  // MDTS 2 x 4 KiB pages
  EXPECT_EQ(r.p.max_outstanding, r.q.depth());
  EXPECT_EQ(r.p.max_outstanding, 15u);  // 16 entries, one kept empty
  EXPECT_GT(r.p.max_unmap_regions, 0u); // fake reports ONCS DSM
  drv::namespace_info bad;
  EXPECT_EQ(dx::make_device_params(r.ctrl.info(), bad, 16384, 16).error().code(), errc::not_supported);
  EXPECT_EQ(dx::make_device_params(r.ctrl.info(), *r.ctrl.find_ns(2), 16384, 0).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(dx::make_device_params(r.ctrl.info(), *r.ctrl.find_ns(2), 2048, 16).error().code(),
            errc::protocol_error);
}

TEST(NvmeDextTranslation, WriteThenReadIsByteExact) {
  rig r;
  r.start();
  auto buf = r.plat.dma_alloc(16384);
  ASSERT_TRUE(buf.ok());
  auto* b = buf->cpu_at<std::uint8_t>();
  for (std::size_t i = 0; i < 16384; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + 3);
  dx::rw_request w{false, 100, buf->device.value(), 16384, 10, 4, false};
  ASSERT_TRUE(r.t.read_write(w).ok());
  r.run();
  ASSERT_EQ(r.done.count(100), 1u);
  EXPECT_EQ(r.done[100].ret, dx::io_return::success);
  EXPECT_EQ(r.done[100].bytes, 16384u);
  EXPECT_EQ(r.done[100].kind, dx::request_kind::write);
  // What reached the backing store, byte for byte.
  EXPECT_EQ(std::memcmp(r.dev.disk_for(2).data() + 10 * 4096, b, 16384), 0);
  std::memset(b, 0, 16384);
  dx::rw_request rd{true, 101, buf->device.value(), 16384, 10, 4, false};
  ASSERT_TRUE(r.t.read_write(rd).ok());
  r.run();
  EXPECT_EQ(r.done[101].ret, dx::io_return::success);
  for (std::size_t i = 0; i < 16384; ++i) ASSERT_EQ(b[i], static_cast<std::uint8_t>(i * 7 + 3)) << i;
  EXPECT_EQ(r.dev.writes, 1u);
  EXPECT_EQ(r.dev.reads, 1u);
  EXPECT_EQ(r.t.in_flight(), 0u);
}

TEST(NvmeDextTranslation, SynchronizeIsAFlushTheDeviceAnswers) {
  rig r;
  r.start();
  ASSERT_TRUE(r.t.synchronize(7).ok());
  EXPECT_EQ(r.done.count(7), 0u);  // not completed locally
  r.t.ring();
  r.t.poll(8, [&](const dx::block_completion&) { ADD_FAILURE() << "completed before the device ran"; });
  EXPECT_EQ(r.dev.flushes, 0u);
  r.run();
  EXPECT_EQ(r.dev.flushes, 1u);
  ASSERT_EQ(r.done.count(7), 1u);
  EXPECT_EQ(r.done[7].ret, dx::io_return::success);
  EXPECT_EQ(r.done[7].bytes, 0u);
  EXPECT_EQ(r.done[7].kind, dx::request_kind::synchronize);
  EXPECT_EQ(r.t.counters().flushes, 1u);
}

TEST(NvmeDextTranslation, InternalFlushStaysOutOfTheKernelsIdSpace) {
  rig r;
  r.start();
  ASSERT_TRUE(r.t.synchronize(0).ok());  // a kernel request with ID 0
  ASSERT_TRUE(r.t.flush_internal().ok()); // does not collide with it
  std::vector<dx::block_completion> all;
  r.t.ring();
  for (int i = 0; i < 20; ++i) {
    r.dev.step();
    r.t.poll(8, [&](const dx::block_completion& c) { all.push_back(c); });
  }
  ASSERT_EQ(all.size(), 2u);
  int internal = 0, kernel = 0;
  for (const auto& c : all) {
    if (c.kind == dx::request_kind::internal_flush) ++internal;
    if (c.kind == dx::request_kind::synchronize && c.request_id == 0) ++kernel;
  }
  EXPECT_EQ(internal, 1);
  EXPECT_EQ(kernel, 1);
  EXPECT_EQ(r.dev.flushes, 2u);
  ASSERT_TRUE(r.t.synchronize(0).ok());  // ID 0 is free again, the bitmap untouched by the internal one
}

TEST(NvmeDextTranslation, UnmapFailingPartWayCompletesOnceWithTheError) {
  rig r;
  r.start(2, 4);  // 3 command slots in the queue
  // The first two deallocates take the queue's slots; the third cannot be
  // posted, so the request completes once after the two, with that error.
  ASSERT_TRUE(r.t.synchronize(90).ok());  // occupy one queue slot first
  const dx::unmap_range ranges[3] = {{0, 1}, {4, 1}, {8, 1}};
  ASSERT_TRUE(r.t.unmap(91, ranges).ok());
  r.run();
  ASSERT_EQ(r.done.count(91), 1u);
  EXPECT_NE(r.done[91].ret, dx::io_return::success);
  EXPECT_EQ(r.dev.deallocates, 2u);
  EXPECT_EQ(r.done.count(90), 1u);
  EXPECT_EQ(r.t.in_flight(), 0u);
}

TEST(NvmeDextTranslation, UnmapOfSeveralRangesCompletesOnceAfterAll) {
  rig r;
  r.start();
  auto& disk = r.dev.disk_for(2);
  std::memset(disk.data(), 0xee, 64 * 4096);
  const dx::unmap_range ranges[3] = {{0, 2}, {8, 1}, {20, 4}};
  ASSERT_TRUE(r.t.unmap(55, ranges).ok());
  r.run();
  EXPECT_EQ(r.completions, 1);
  ASSERT_EQ(r.done.count(55), 1u);
  EXPECT_EQ(r.done[55].ret, dx::io_return::success);
  EXPECT_EQ(r.done[55].kind, dx::request_kind::unmap);
  EXPECT_EQ(r.dev.deallocates, 3u);
  EXPECT_EQ(disk[0], 0);
  EXPECT_EQ(disk[8 * 4096], 0);
  EXPECT_EQ(disk[23 * 4096 + 4095], 0);
  EXPECT_EQ(disk[2 * 4096], 0xee);  // between ranges: untouched
  EXPECT_EQ(r.t.counters().unmap_commands, 3u);
}

TEST(NvmeDextTranslation, MediaErrorBecomesIOErrorWithNoBytes) {
  rig r;
  r.start();
  r.dev.media_error_lba = 33;
  auto buf = r.plat.dma_alloc(8192);
  ASSERT_TRUE(r.t.read_write({true, 9, buf->device.value(), 8192, 32, 2, false}).ok());
  r.run();
  ASSERT_EQ(r.done.count(9), 1u);
  EXPECT_EQ(r.done[9].ret, dx::io_return::io_error);
  EXPECT_EQ(r.done[9].bytes, 0u);
  EXPECT_EQ(r.t.counters().failed, 1u);
}

TEST(NvmeDextTranslation, TimeoutCompletesTheRequestOnceWithTimeout) {
  rig r;
  drv::options o;
  o.io_timeout_ms = 100;
  r.start(2, 16, o);
  r.dev.drop_io = 1;
  auto buf = r.plat.dma_alloc(4096);
  ASSERT_TRUE(r.t.read_write({true, 77, buf->device.value(), 4096, 1, 1, false}).ok());
  r.run(10);
  EXPECT_EQ(r.done.count(77), 0u);
  r.plat.advance_ms(200);
  std::vector<dx::block_completion> late;
  r.t.check_timeouts([&](const dx::block_completion& c) { late.push_back(c); });
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_id, 77u);
  EXPECT_EQ(late[0].ret, dx::io_return::timeout);
  r.run(10);
  EXPECT_EQ(r.done.count(77), 0u);  // never a second completion
  EXPECT_EQ(r.t.in_flight(), 0u);
}

TEST(NvmeDextTranslation, BadRequestsAreRefusedBeforeAnyCommand) {
  rig r;
  r.start();
  auto buf = r.plat.dma_alloc(32768);
  const std::uint64_t a = buf->device.value();
  struct bad {
    dx::rw_request rq;
    errc want;
  } cases[] = {
      {{true, 1, a, 0, 0, 0, false}, errc::invalid_argument},            // 0 blocks
      {{true, 1, a, 4096, 0, 2, false}, errc::invalid_argument},         // size != blocks x bs
      {{true, 1, a, 4095, 0, 1, false}, errc::invalid_argument},
      {{true, 1, a, 4096, 1024, 1, false}, errc::out_of_range},          // past the end
      {{true, 1, a, 8192, 1023, 2, false}, errc::out_of_range},          // straddles the end
      {{true, 1, a, 8192, ~0ull, 2, false}, errc::out_of_range},         // lba + blocks overflows
      {{true, 1, a, 32768, 0, 8, false}, errc::invalid_argument},        // above max_io_bytes
      {{true, 1, a + 2, 4096, 0, 1, false}, errc::invalid_argument},     // not dword aligned
      {{true, 1, 0, 4096, 0, 1, false}, errc::invalid_argument},         // zero address
      {{true, 1, a, 65537ull * 4096, 0, 65537, false}, errc::invalid_argument},
  };
  for (const auto& c : cases) {
    auto s = r.t.read_write(c.rq);
    EXPECT_EQ(s.code(), c.want) << s.message();
  }
  const dx::unmap_range past{1020, 8}, zero{0, 0};
  EXPECT_EQ(r.t.unmap(2, {&past, 1}).code(), errc::out_of_range);
  EXPECT_EQ(r.t.unmap(2, {&zero, 1}).code(), errc::invalid_argument);
  EXPECT_EQ(r.t.unmap(2, {}).code(), errc::invalid_argument);
  r.run(5);
  EXPECT_EQ(r.dev.reads + r.dev.writes + r.dev.deallocates, 0u);
  EXPECT_EQ(r.completions, 0);
  EXPECT_EQ(r.t.in_flight(), 0u);
  EXPECT_EQ(dx::to_io_return(r.t.read_write(cases[0].rq)), dx::io_return::bad_argument);
}

TEST(NvmeDextTranslation, RequestIdInFlightIsRefusedAndFreedAfterCompletion) {
  rig r;
  r.start();
  auto buf = r.plat.dma_alloc(8192);
  ASSERT_TRUE(r.t.read_write({true, 5, buf->device.value(), 4096, 0, 1, false}).ok());
  EXPECT_EQ(r.t.read_write({true, 5, buf->device.value() + 4096, 4096, 1, 1, false}).code(), errc::duplicate);
  EXPECT_EQ(r.t.synchronize(5).code(), errc::duplicate);
  const std::uint32_t big_id = 0x8000'0001u;  // above the bitmap: the slow path
  ASSERT_TRUE(r.t.synchronize(big_id).ok());
  EXPECT_EQ(r.t.synchronize(big_id).code(), errc::duplicate);
  r.run();
  EXPECT_EQ(r.completions, 2);
  EXPECT_EQ(r.dev.reads, 1u);
  r.done.clear();  // the IDs are reused on purpose below
  ASSERT_TRUE(r.t.read_write({true, 5, buf->device.value(), 4096, 0, 1, false}).ok());  // reusable now
  ASSERT_TRUE(r.t.synchronize(big_id).ok());
  r.run();
  EXPECT_EQ(r.completions, 4);
}

TEST(NvmeDextTranslation, MoreThanOutstandingIsBusyNotLost) {
  rig r;
  r.start(2, 4);  // 4 entries: 3 commands at once
  ASSERT_EQ(r.p.max_outstanding, 3u);
  for (std::uint32_t id = 0; id < 3; ++id) ASSERT_TRUE(r.t.synchronize(id).ok());
  EXPECT_EQ(r.t.synchronize(3).code(), errc::busy);
  r.run();
  EXPECT_EQ(r.completions, 3);
  ASSERT_TRUE(r.t.synchronize(3).ok());
  r.run();
  EXPECT_EQ(r.completions, 4);
  EXPECT_EQ(r.dev.flushes, 4u);
}

TEST(NvmeDextTranslation, UnmapUnsupportedWithoutDsm) {
  rig r;
  r.start();
  dx::device_params p = r.p;
  p.max_unmap_regions = 0;
  translator_t t2;
  ASSERT_TRUE(t2.init(r.q, 2, p).ok());
  const dx::unmap_range u{0, 1};
  EXPECT_EQ(dx::to_io_return(t2.unmap(1, {&u, 1})), dx::io_return::unsupported);
  translator_t t3;
  p.max_outstanding = 65;
  EXPECT_EQ(t3.init(r.q, 2, p).code(), errc::invalid_argument);  // > MaxSlots
}

TEST(NvmeDextTranslation, StatusMapping) {
  EXPECT_EQ(dx::to_io_return(dkq::ok_status), dx::io_return::success);
  EXPECT_EQ(dx::to_io_return({errc::removed, "x"}), dx::io_return::no_device);
  EXPECT_EQ(dx::to_io_return({errc::timeout, "x"}), dx::io_return::timeout);
  EXPECT_EQ(dx::to_io_return({errc::io_error, "x"}), dx::io_return::io_error);
  EXPECT_EQ(dx::to_io_return({errc::protocol_error, "x"}), dx::io_return::device_error);
  EXPECT_EQ(dx::to_io_return({errc::device_error, "x"}), dx::io_return::device_error);
  EXPECT_STREQ(dx::io_return_name(dx::io_return::bad_argument), "kIOReturnBadArgument");
}

}  // namespace

// Stop after its bounded wait (DkqNVMe.cpp): requests the device never
// finished are still completed, once each, with an error, after the
// controller is stopped; nothing that arrives later is delivered.
TEST(NvmeDextStop, RequestsUnfinishedAtStopCompleteOnceWithAnError) {
  rig r;
  r.start();
  auto buf = r.plat.dma_alloc(3 * 4096);
  r.dev.drop_io = 2;  // the device holds the two reads
  ASSERT_TRUE(r.t.read_write({true, 5, buf->device.value(), 4096, 1, 1, false}).ok());
  ASSERT_TRUE(r.t.read_write({true, 6, buf->device.value() + 4096, 4096, 2, 1, false}).ok());
  ASSERT_TRUE(r.t.read_write({false, 7, buf->device.value() + 8192, 4096, 3, 1, false}).ok());
  ASSERT_TRUE(r.t.flush_internal().ok());
  r.run(10);
  ASSERT_EQ(r.done.count(7), 1u);  // the write finished
  EXPECT_EQ(r.t.in_flight(), 2u);
  // What Stop does after the wait: queue deleted, controller shut down
  // (CC.EN = 0), then every request left is failed.
  (void)r.ctrl.delete_io_queue(r.q);
  (void)r.ctrl.shutdown();
  std::vector<dx::block_completion> ended;
  EXPECT_EQ(r.t.fail_all({errc::timeout, "stopped"}, [&](const dx::block_completion& c) { ended.push_back(c); }), 2u);
  ASSERT_EQ(ended.size(), 2u);
  for (auto& c : ended) {
    EXPECT_TRUE(c.request_id == 5 || c.request_id == 6) << c.request_id;
    EXPECT_EQ(c.ret, dx::io_return::timeout);
    EXPECT_EQ(c.bytes, 0u);
    EXPECT_EQ(r.done.count(c.request_id), 0u);
  }
  EXPECT_NE(ended[0].request_id, ended[1].request_id);
  EXPECT_EQ(r.t.in_flight(), 0u);
  EXPECT_EQ(r.t.fail_all({errc::timeout, "again"}, [&](const dx::block_completion&) { ADD_FAILURE(); }), 0u);
  r.run(5);
  EXPECT_EQ(r.done.count(5) + r.done.count(6), 0u);
}

// ublk's WRITE_ZEROES (the Linux serve shell): one Write Zeroes command,
// completed on the device's answer, and the blocks read back as zeroes;
// bad ranges are refused before a command is built.
TEST(NvmeDextTranslation, WriteZeroesZeroesTheRangeOnTheDevice) {
  rig r;
  r.start();
  ASSERT_TRUE(r.p.write_zeroes);
  auto& disk = r.dev.disk_for(2);
  std::memset(disk.data() + 20 * 4096, 0xab, 6 * 4096);
  ASSERT_TRUE(r.t.write_zeroes(33, 21, 4).ok());
  EXPECT_EQ(r.done.count(33), 0u);  // not completed locally
  r.run();
  ASSERT_EQ(r.done.count(33), 1u);
  EXPECT_EQ(r.done[33].ret, dx::io_return::success);
  EXPECT_EQ(r.done[33].kind, dx::request_kind::write_zeroes);
  EXPECT_EQ(r.dev.write_zeroes, 1u);
  for (std::size_t i = 0; i < 4 * 4096; ++i) ASSERT_EQ(disk[21 * 4096 + i], 0) << i;
  EXPECT_EQ(disk[20 * 4096 + 4095], 0xab);  // neighbours untouched
  EXPECT_EQ(disk[25 * 4096], 0xab);
  EXPECT_EQ(r.t.write_zeroes(34, 1022, 4).code(), errc::out_of_range);
  EXPECT_EQ(r.t.write_zeroes(34, 0, 0).code(), errc::invalid_argument);
  EXPECT_EQ(r.t.write_zeroes(34, 0, 65537).code(), errc::invalid_argument);
  EXPECT_EQ(r.dev.write_zeroes, 1u);
  dx::device_params p = r.p;
  p.write_zeroes = false;
  translator_t t2;
  ASSERT_TRUE(t2.init(r.q, 2, p).ok());
  EXPECT_EQ(t2.write_zeroes(1, 0, 1).code(), errc::not_supported);
}

// A FUA write (ublk's UBLK_IO_F_FUA, kIOStorageOptionForceUnitAccess) reaches
// the device with FUA set in CDW12; a plain one without it.
TEST(NvmeDextTranslation, FuaWritesCarryFuaToTheDevice) {
  rig r;
  r.start();
  auto buf = r.plat.dma_alloc(4096);
  ASSERT_TRUE(buf.ok());
  dx::rw_request w{false, 1, buf->device.value(), 4096, 3, 1, false};
  ASSERT_TRUE(r.t.read_write(w).ok());
  r.run();
  EXPECT_EQ(r.dev.fua_writes, 0u);
  w.request_id = 2;
  w.fua = true;
  ASSERT_TRUE(r.t.read_write(w).ok());
  r.run();
  EXPECT_EQ(r.dev.writes, 2u);
  EXPECT_EQ(r.dev.fua_writes, 1u);
  EXPECT_EQ(r.q.fua_writes_posted(), 1u);
}
