// Tests of the MegaRAID dext's portable half (examples/scsi/driverkit/
// task_translation.hpp and dext_platform.hpp): the core driven the way
// DkqMegaRAID.cpp drives it - registers through an indexed window over a
// memory index, DMA by address bits, tasks in and responses out through the
// task engine - against the software MFI controller model
// (tests/support/fake_mfi_controller.hpp, a test double).
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "scsi_dext/dext_rig.hpp"

using dkq::errc;
using namespace dkq::testing::mr_dext;

namespace {

// ---- platform adapter ----------------------------------------------------------------

TEST(ScsiDextPlatform, RegistersThroughTheMemoryIndexOfBar1) {
  rig r;
  r.start();
  EXPECT_EQ(r.core.info().register_bar, 1);  // BAR 0 is I/O on the 2108
  EXPECT_TRUE(r.pci.bus_master);
  EXPECT_GT(r.pci.writes, 0u);
  EXPECT_GT(r.pci.reads, 0u);
  EXPECT_EQ(r.pci.wrong_index, 0u);
  // Control structures below 4 GiB: IODMACommand maxAddressBits 32.
  EXPECT_GT(r.dad.bits_asked.count(32), 0u);
  EXPECT_EQ(r.dad.bits_asked.count(64), 0u);
  EXPECT_EQ(r.core.info().vectors, 0u);  // completions come from InterruptOccurred, not the core's wait
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(ScsiDextPlatform, AddressBitsForLimit) {
  EXPECT_EQ(dx::address_bits_for_limit(mr::no_address_limit), 64u);
  EXPECT_EQ(dx::address_bits_for_limit(mr::limit_4g), 32u);
  EXPECT_EQ(dx::address_bits_for_limit(mr::limit_4g + 5), 32u);
  EXPECT_EQ(dx::address_bits_for_limit(std::uint64_t{1} << 40), 40u);
}

// ---- constraints ----------------------------------------------------------------------

TEST(ScsiDextConstraints, SixtyFourBit) {
  rig r;
  r.start(false);
  const auto& i = r.core.info();
  auto h = dx::compute_constraints(i);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(i.sgl, dkq::scsi::mfi_sgl_format::sgl64);
  EXPECT_EQ(h->max_segment_count_read, i.max_sge);
  EXPECT_EQ(h->max_segment_count_write, i.max_sge);
  EXPECT_EQ(i.max_sge, 38u);  // (512 - 48) / 12 SGL64 elements fit the frames; firmware allows 80
  EXPECT_EQ(h->max_segment_bytes_read, i.max_transfer);
  EXPECT_EQ(h->max_segment_bytes_write, i.max_transfer);
  EXPECT_EQ(i.max_transfer, 1u << 20);
  EXPECT_EQ(h->min_segment_alignment, 4u);
  EXPECT_EQ(h->address_bits, 64u);
  EXPECT_EQ(h->hba_data_alignment_mask, 0xFFFFFFFFFFFFFFFCull);
  auto d = dx::dma_spec_for(i);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->max_transfer, h->max_segment_bytes_write);
  EXPECT_EQ(d->alignment, h->min_segment_alignment);
  EXPECT_EQ(d->address_bits, h->address_bits);
  EXPECT_EQ(d->segment_type, dx::dma_segment_type::little64);
  EXPECT_EQ(r.eng.max_task_count(), i.queue_depth);
  EXPECT_TRUE(h->as_dma_constraints(i.max_transfer).validate().ok());
}

TEST(ScsiDextConstraints, ForcedThirtyTwoBit) {
  rig r;
  r.start(true);
  const auto& i = r.core.info();
  auto h = dx::compute_constraints(i);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(i.sgl, dkq::scsi::mfi_sgl_format::sgl32);
  EXPECT_EQ(h->address_bits, 32u);
  EXPECT_EQ(h->max_segment_count_write, i.max_sge);
  EXPECT_EQ(i.max_sge, 58u);  // (512 - 48) / 8 SGL32 elements
  EXPECT_EQ(h->max_segment_bytes_write, i.max_transfer);
  auto d = dx::dma_spec_for(i);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->address_bits, 32u);
  EXPECT_EQ(d->max_transfer, i.max_transfer);
  EXPECT_EQ(r.eng.constraints().address_bits, 32u);
}

TEST(ScsiDextConstraints, UnknownBeforeStart) {
  mr::controller_info blank;
  EXPECT_EQ(dx::compute_constraints(blank).error().code(), errc::not_initialized);
  EXPECT_FALSE(dx::dma_spec_for(blank).ok());
}

// ---- task IDs -------------------------------------------------------------------------

TEST(ScsiDextTaskIds, UniqueAndGenerationChecked) {
  dx::task_table<int> t;
  ASSERT_TRUE(t.init(4).ok());
  std::set<std::uint32_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = t.map();
    ASSERT_TRUE(id.ok());
    EXPECT_NE(*id, 0u);
    ids.insert(*id);
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(t.map().error().code(), errc::no_space);  // never reused while mapped

  const std::uint32_t a = *ids.begin();
  ASSERT_TRUE(t.begin(a).ok());
  EXPECT_EQ(t.begin(a).error().code(), errc::busy);  // the same ID twice in flight
  EXPECT_EQ(t.unmap(a).code(), errc::busy);
  ASSERT_TRUE(t.finish(a).ok());
  EXPECT_EQ(t.finish(a).code(), errc::duplicate);  // double completion
  EXPECT_EQ(t.counters().duplicate, 1u);

  ASSERT_TRUE(t.unmap(a).ok());
  EXPECT_EQ(t.begin(a).error().code(), errc::stale);
  auto b = t.map();  // the freed slot, a new generation
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*b, a);
  EXPECT_EQ(*b & ((1u << t.index_bits()) - 1), a & ((1u << t.index_bits()) - 1));
  EXPECT_EQ(t.begin(a).error().code(), errc::stale);  // old generation, same slot
  EXPECT_EQ(t.finish(a).code(), errc::stale);
  EXPECT_TRUE(t.begin(*b).ok());

  auto ix = t.index_of(*b);
  ASSERT_TRUE(ix.ok());
  EXPECT_EQ(*ix, *b & ((1u << t.index_bits()) - 1));
  EXPECT_FALSE(t.index_of(a).ok());
  EXPECT_EQ(t.begin(std::uint64_t{1} << 40).error().code(), errc::out_of_range);
  EXPECT_FALSE(t.begin(0).ok());
  EXPECT_EQ(t.in_flight(), 1u);
}

TEST(ScsiDextTaskIds, NeverHandedOutTwice) {
  dx::task_table<int> t;
  ASSERT_TRUE(t.init(8).ok());
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 20000; ++i) {
    auto id = t.map();
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(seen.insert(*id).second) << "ID handed out twice: " << *id;
    ASSERT_TRUE(t.unmap(*id).ok());
  }
}

// ---- I/O through the engine ------------------------------------------------------------

TEST(ScsiDextEngine, WriteThenReadBack) {
  rig r;
  r.start();
  auto wbuf = r.buffer(64 << 10);
  auto rbuf = r.buffer(64 << 10);
  fill(wbuf.cpu_at<std::uint8_t>(), wbuf.size, 3);
  const std::uint32_t id = r.map();
  int token = 0;
  auto t = rw_task(id, 1, true, 16, 128, wbuf.device.value());
  auto o = r.eng.process(t, {wbuf.cpu, wbuf.size}, &token);
  ASSERT_TRUE(o.in_process) << o.response.why.message();
  EXPECT_TRUE(r.responses.empty());  // completes from service(), not inline
  EXPECT_EQ(r.eng.tasks_in_flight(), 1u);
  EXPECT_GE(r.eng.service(), 1u);
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.tokens[0], &token);
  const auto& w = r.responses[0];
  EXPECT_EQ(w.failure, dx::host_failure::none);
  EXPECT_EQ(w.service, dx::service_response::task_complete);
  EXPECT_EQ(w.scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(w.bytes_transferred, 64u << 10);
  EXPECT_EQ(w.controller_task_id, id);
  EXPECT_EQ(std::memcmp(r.ctl.disk(1)->data.data() + 16 * 512, wbuf.cpu, wbuf.size), 0);

  // The same kernel task (same ID) is used again for the read.
  auto rt = rw_task(id, 1, false, 16, 128, rbuf.device.value());
  ASSERT_TRUE(r.eng.process(rt, {rbuf.cpu, rbuf.size}, &token).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[1].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(std::memcmp(rbuf.cpu, wbuf.cpu, wbuf.size), 0);
  // The frame carried the kernel's IOVM address, not the CPU pointer.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> sgl;
  auto h = r.last_frame(sgl);
  EXPECT_EQ(h.frame_cmd, mfi::cmd::ld_scsi_io);
  ASSERT_EQ(sgl.size(), 1u);
  EXPECT_EQ(sgl[0].first, rbuf.device.value());
  EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(ScsiDextEngine, RejectedTasksAnswerAtOnceAndFreeTheirId) {
  rig r;
  r.start();
  auto buf = r.buffer(4096);
  const std::uint32_t id = r.map();
  auto good = rw_task(id, 0, false, 0, 8, buf.device.value());
  auto expect_failure = [&](dx::task_view t, dx::data_buffer b, errc why) {
    auto o = r.eng.process(t, b, nullptr);
    EXPECT_FALSE(o.in_process);
    EXPECT_EQ(o.response.service, dx::service_response::service_delivery_or_target_failure);
    EXPECT_EQ(o.response.failure, dx::host_failure::delivery_failure);
    EXPECT_EQ(o.response.why.code(), why) << o.response.why.message();
    EXPECT_EQ(o.response.bytes_transferred, 0u);
    EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
  };
  const dx::data_buffer b{buf.cpu, buf.size};
  auto t = good;
  t.version = 7;
  expect_failure(t, b, errc::invalid_argument);
  t = good;
  t.cdb_length = 0;
  expect_failure(t, b, errc::invalid_argument);
  t.cdb_length = 17;
  expect_failure(t, b, errc::invalid_argument);
  t = good;
  t.target_id = 320;  // above the LD (0..63) and SYSTEM PD (64..319) ranges
  expect_failure(t, b, errc::out_of_range);
  t = good;
  t.requested_count = r.core.info().max_transfer + 512;
  expect_failure(t, {buf.cpu, t.requested_count}, errc::constraint);
  t = good;
  t.dir = dx::transfer_dir::none;
  expect_failure(t, b, errc::invalid_argument);
  t = good;
  expect_failure(t, {buf.cpu, 512}, errc::invalid_argument);  // shorter than the count
  t.buffer_iovm_addr = 0;
  expect_failure(t, b, errc::invalid_argument);

  // LUN 1: a SCSI answer, so LUN scans end normally.
  t = good;
  t.lun[1] = 1;
  auto o = r.eng.process(t, b, nullptr);
  EXPECT_FALSE(o.in_process);
  EXPECT_EQ(o.response.service, dx::service_response::task_complete);
  EXPECT_EQ(o.response.scsi_status, dkq::scsi::scsi_status::check_condition);
  ASSERT_EQ(o.response.sense_length, 18u);
  EXPECT_EQ(o.response.sense[0], 0x70);
  EXPECT_EQ(o.response.sense[2], dkq::scsi::sense_key::illegal_request);
  EXPECT_EQ(o.response.sense[12], 0x25);

  // The ID is usable again: nothing leaked.
  ASSERT_TRUE(r.eng.process(good, b, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(r.ctl.c.reads, 1u);  // only the good task reached the device
}

TEST(ScsiDextEngine, BadControllerTaskIdsNeverReachTheDevice) {
  rig r;
  r.start();
  auto t = cdb_task(12345, 0, {0, 0, 0, 0, 0, 0});  // never mapped
  auto o = r.eng.process(t, {}, nullptr);
  EXPECT_FALSE(o.in_process);
  EXPECT_EQ(o.response.service, dx::service_response::service_delivery_or_target_failure);
  EXPECT_EQ(r.eng.stats().bad_ids, 1u);
  // A task still in flight cannot be started a second time with its ID.
  const std::uint32_t id = r.map();
  r.ctl.hold = true;
  auto tur = cdb_task(id, 0, {0, 0, 0, 0, 0, 0});
  ASSERT_TRUE(r.eng.process(tur, {}, nullptr).in_process);
  auto again = r.eng.process(tur, {}, nullptr);
  EXPECT_FALSE(again.in_process);
  EXPECT_EQ(again.response.why.code(), errc::busy);
  r.ctl.hold = false;
  r.ctl.step();
  r.eng.service();
  EXPECT_EQ(r.responses.size(), 1u);
}

// ---- SYNCHRONIZE CACHE -------------------------------------------------------------------

TEST(ScsiDextSync, Sync10ReachesTheDeviceAndCompletesOnItsAnswer) {
  rig r;
  r.start();
  const std::uint32_t id = r.map();
  r.ctl.hold = true;  // the device has not answered yet
  auto t = cdb_task(id, 1, {dkq::scsi::op::synchronize_cache_10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_TRUE(r.eng.process(t, {}, nullptr).in_process);
  r.eng.service();
  EXPECT_TRUE(r.responses.empty());  // never completed locally
  EXPECT_EQ(r.ctl.c.sync10, 0u);
  r.ctl.hold = false;
  r.ctl.step();
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.ctl.c.sync10, 1u);  // the flush reached the device
  EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(r.eng.stats().sync_cache_forwarded, 1u);
}

TEST(ScsiDextSync, Sync16RejectedIsReissuedAs10) {
  rig r;
  r.start();
  ASSERT_TRUE(r.ctl.reject_sync16);  // like QEMU's scsi-disk
  const std::uint32_t id = r.map();
  auto t = sync16_task(id, 1, 100, 8);
  ASSERT_TRUE(r.eng.process(t, {}, nullptr).in_process);
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_TRUE(r.responses.empty());
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);  // exactly one answer: the (10)'s
  EXPECT_EQ(r.ctl.c.sync10, 1u);
  EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(r.responses[0].sense_length, 0u);
  EXPECT_EQ(r.eng.stats().sync16_fallbacks, 1u);
  EXPECT_TRUE(r.eng.sync16_rejected(1));
  // The retry carried LBA 100, 8 blocks, in the 10-byte form.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> sgl;
  r.last_frame(sgl);
  const std::uint8_t* f = r.dma.translate(r.pci.posted.back() & ~0x1fu, 64);
  mfi::pass_frame p;
  std::memcpy(&p, f, sizeof p);
  EXPECT_EQ(p.cdb[0], dkq::scsi::op::synchronize_cache_10);
  EXPECT_EQ(dkq::scsi::get_be32(p.cdb + 2), 100u);
  EXPECT_EQ(dkq::scsi::get_be16(p.cdb + 7), 8u);

  // The LD is remembered: the next (16) goes out as (10) at once.
  ASSERT_TRUE(r.eng.process(sync16_task(id, 1, 0, 0), {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 2u);
  EXPECT_EQ(r.eng.stats().sync16_direct_10, 1u);
  // Another LD still gets the (16) first.
  const std::uint32_t id2 = r.map();
  ASSERT_TRUE(r.eng.process(sync16_task(id2, 0, 0, 0), {}, nullptr).in_process);
  r.eng.service();
  EXPECT_EQ(r.ctl.c.sync16, 2u);
  EXPECT_EQ(r.ctl.c.sync10, 3u);
  EXPECT_EQ(r.eng.stats().sync_cache_forwarded, 5u);
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(ScsiDextSync, Sync16AcceptedIsNotRetried) {
  rig r;
  r.start();
  r.ctl.reject_sync16 = false;
  ASSERT_TRUE(r.eng.process(sync16_task(r.map(), 0, 5, 5), {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.ctl.c.sync16, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 0u);
  EXPECT_EQ(r.eng.stats().sync16_fallbacks, 0u);
}

TEST(ScsiDextSync, SixteenToTenConversion) {
  std::uint8_t c16[16] = {};
  c16[0] = 0x91;
  c16[1] = 0x02;  // IMMED
  dkq::scsi::detail::put_be64(&c16[2], 0x12345678);
  dkq::scsi::detail::put_be32(&c16[10], 0x1234);
  c16[14] = 0x05;  // group
  dkq::scsi::cdb_bytes out{};
  bool widened = true;
  dx::sync16_to_sync10(c16, out, widened);
  EXPECT_FALSE(widened);
  EXPECT_EQ(out[0], 0x35);
  EXPECT_EQ(out[1], 0x02);
  EXPECT_EQ(dkq::scsi::get_be32(&out[2]), 0x12345678u);
  EXPECT_EQ(out[6], 0x05);
  EXPECT_EQ(dkq::scsi::get_be16(&out[7]), 0x1234u);
  // Beyond the 10-byte range: the whole medium (a superset of the range).
  dkq::scsi::detail::put_be64(&c16[2], std::uint64_t{1} << 33);
  dx::sync16_to_sync10(c16, out, widened);
  EXPECT_TRUE(widened);
  EXPECT_EQ(dkq::scsi::get_be32(&out[2]), 0u);
  EXPECT_EQ(dkq::scsi::get_be16(&out[7]), 0u);
  dkq::scsi::detail::put_be64(&c16[2], 0);
  dkq::scsi::detail::put_be32(&c16[10], 0x10000);  // 65536 blocks: too many for (10)
  dx::sync16_to_sync10(c16, out, widened);
  EXPECT_TRUE(widened);
  dkq::scsi::detail::put_be64(&c16[2], 0xFFFFFFF0ull);
  dkq::scsi::detail::put_be32(&c16[10], 0x20);  // range ends above 2^32
  dx::sync16_to_sync10(c16, out, widened);
  EXPECT_TRUE(widened);
}

// ---- completion -> response ------------------------------------------------------------

TEST(ScsiDextResponse, CheckConditionCarriesAutoSense) {
  rig r;
  r.start();
  auto buf = r.buffer(4096);
  // Beyond the end of LD 0 (2048 blocks): ILLEGAL REQUEST, LBA OUT OF RANGE.
  ASSERT_TRUE(r.eng.process(rw_task(r.map(), 0, false, 4000, 8, buf.device.value()), {buf.cpu, buf.size}, nullptr)
                  .in_process);
  // An opcode the device does not know (not a SYNCHRONIZE CACHE: no retry).
  ASSERT_TRUE(r.eng.process(cdb_task(r.map(), 0, {0xc7, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  for (const auto& x : r.responses) {
    EXPECT_EQ(x.service, dx::service_response::task_complete);
    EXPECT_EQ(x.scsi_status, dkq::scsi::scsi_status::check_condition);
    ASSERT_EQ(x.sense_length, 18u);
    EXPECT_EQ(x.sense[0] & 0x7f, 0x70);
    EXPECT_EQ(x.sense[2], dkq::scsi::sense_key::illegal_request);
    EXPECT_EQ(x.sense[7], 10);
    // The device's bytes pass whole: the sense-key specific field pointer too.
    EXPECT_EQ(x.sense[15], 0xc0);
    EXPECT_EQ(x.sense[17], 2);
    EXPECT_EQ(x.bytes_transferred, 0u);
  }
  EXPECT_EQ(r.responses[0].sense[12], 0x21);
  EXPECT_EQ(r.responses[1].sense[12], 0x20);
  EXPECT_EQ(r.eng.stats().sync16_fallbacks, 0u);
}

TEST(ScsiDextResponse, MissingTargetIsDeviceNotPresent) {
  rig r;
  r.start();
  // Not a target the controller presented: answered at once, nothing sent.
  const auto posted = r.pci.posted.size();
  auto o = r.eng.process(cdb_task(r.map(), 9, {0, 0, 0, 0, 0, 0}), {}, nullptr);
  ASSERT_FALSE(o.in_process);
  EXPECT_EQ(o.response.service, dx::service_response::service_delivery_or_target_failure);
  EXPECT_EQ(o.response.failure, dx::host_failure::device_not_present);
  EXPECT_EQ(r.pci.posted.size(), posted);
  // One the firmware says is gone (DEVICE_NOT_FOUND): the same answer.
  r.ctl.force_status.push_back({mfi::stat::device_not_found, 0});
  ASSERT_TRUE(r.eng.process(cdb_task(r.map(), 1, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].service, dx::service_response::service_delivery_or_target_failure);
  EXPECT_EQ(r.responses[0].failure, dx::host_failure::device_not_present);
}

TEST(ScsiDextResponse, StatusMapping) {
  dx::task_view t;
  t.requested_count = 4096;
  t.controller_task_id = 77;
  mr::completion c;
  c.mfi_status = mfi::stat::ok;
  auto x = dx::build_response(t, c);
  EXPECT_EQ(x.scsi_status, 0u);
  EXPECT_EQ(x.bytes_transferred, 4096u);
  EXPECT_EQ(x.controller_task_id, 77u);

  c.mfi_status = mfi::stat::scsi_done_with_error;
  c.scsi_status = dkq::scsi::scsi_status::busy;
  c.st = mr::decode_completion(c.mfi_status, c.scsi_status, false, c.sense);
  x = dx::build_response(t, c);
  EXPECT_EQ(x.scsi_status, dkq::scsi::scsi_status::busy);
  EXPECT_EQ(x.service, dx::service_response::task_complete);
  EXPECT_EQ(x.bytes_transferred, 0u);
  c.scsi_status = dkq::scsi::scsi_status::task_set_full;
  EXPECT_EQ(dx::build_response(t, c).scsi_status, dkq::scsi::scsi_status::task_set_full);

  // RECOVERED ERROR: CHECK CONDITION with sense, but the data is good.
  c.scsi_status = dkq::scsi::scsi_status::check_condition;
  c.sense_valid = true;
  c.sense = {};
  c.sense.key = dkq::scsi::sense_key::recovered_error;
  c.sense.information_valid = true;
  c.sense.information = 0x1234;
  c.st = mr::decode_completion(c.mfi_status, c.scsi_status, true, c.sense);
  x = dx::build_response(t, c);
  EXPECT_EQ(x.bytes_transferred, 4096u);
  ASSERT_EQ(x.sense_length, 18u);
  EXPECT_EQ(x.sense[0], 0xf0);  // VALID + fixed format
  EXPECT_EQ(dkq::scsi::get_be32(&x.sense[3]), 0x1234u);
  EXPECT_EQ(x.sense[2], 1);

  c = {};
  c.mfi_status = mfi::stat::memory_not_available;
  EXPECT_EQ(dx::build_response(t, c).scsi_status, dkq::scsi::scsi_status::busy);
  c.mfi_status = mfi::stat::scsi_reservation_conflict;
  EXPECT_EQ(dx::build_response(t, c).scsi_status, dkq::scsi::scsi_status::reservation_conflict);
  c.mfi_status = mfi::stat::scsi_io_failed;
  x = dx::build_response(t, c);
  EXPECT_EQ(x.service, dx::service_response::service_delivery_or_target_failure);
  EXPECT_EQ(x.failure, dx::host_failure::delivery_failure);
  c.mfi_status = mfi::stat::invalid_status;
  c.st = {errc::timeout, "timed out"};
  EXPECT_EQ(dx::build_response(t, c).failure, dx::host_failure::timeout);
  c.st = {errc::io_error, "reset"};
  EXPECT_EQ(dx::build_response(t, c).failure, dx::host_failure::delivery_failure);
}

// Issue #13 defect 7: SCSI_DONE_WITH_ERROR whose status byte says GOOD (or
// CONDITION MET). The core decided the command failed; passing the byte on
// would tell the OS it succeeded.
TEST(ScsiDextResponse, DoneWithErrorAndAGoodStatusByteIsAFailure) {
  dx::task_view t;
  t.requested_count = 4096;
  for (std::uint8_t lie : {dkq::scsi::scsi_status::good, dkq::scsi::scsi_status::condition_met}) {
    mr::completion c;
    c.mfi_status = mfi::stat::scsi_done_with_error;
    c.scsi_status = lie;
    c.st = mr::decode_completion(c.mfi_status, c.scsi_status, false, c.sense);
    ASSERT_FALSE(c.st.ok());
    const auto x = dx::build_response(t, c);
    EXPECT_EQ(x.service, dx::service_response::service_delivery_or_target_failure);
    EXPECT_EQ(x.failure, dx::host_failure::delivery_failure);
    EXPECT_EQ(x.bytes_transferred, 0u);
  }
}

// The same lie for SYNCHRONIZE CACHE, end to end: the device answers DONE
// WITH ERROR + GOOD without flushing; the OS must not hear GOOD.
TEST(ScsiDextSync, FlushAnsweredDoneWithErrorAndGoodIsNotGood) {
  rig r;
  r.start();
  const std::uint32_t id = r.map();
  r.ctl.error_good_next = 1;
  auto t = cdb_task(id, 1, {dkq::scsi::op::synchronize_cache_10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_TRUE(r.eng.process(t, {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.ctl.c.error_good, 1u);
  EXPECT_EQ(r.ctl.c.sync10, 0u);  // the flush did not happen
  EXPECT_NE(r.responses[0].service, dx::service_response::task_complete);
  EXPECT_NE(r.responses[0].failure, dx::host_failure::none);
}

TEST(ScsiDextResponse, DuplicateCompletionsAreNotDeliveredTwice) {
  rig r;
  r.start();
  r.ctl.duplicate_next = 1;  // the device posts the context twice
  const std::uint32_t id = r.map();
  ASSERT_TRUE(r.eng.process(cdb_task(id, 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  r.eng.service();
  EXPECT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.core.stats().duplicate, 1u);
  // And at the engine: a completion for a task that already completed.
  dx::response_view extra;
  EXPECT_EQ(r.eng.complete_external(id, extra).code(), errc::duplicate);
  EXPECT_EQ(r.responses.size(), 1u);
}

TEST(ScsiDextResponse, TimedOutTaskIsAnsweredOnceAsTimeout) {
  rig r;
  mr::options o;
  o.command_timeout_ns = 50'000'000;
  o.abort_grace_ns = 20'000'000;
  r.start(false, o);
  r.ctl.drop_next = 1;  // the device never answers this one
  ASSERT_TRUE(r.eng.process(cdb_task(r.map(), 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  for (int i = 0; i < 100 && r.responses.empty(); ++i) {
    r.clk.t += 10'000'000;  // the IOTimerDispatchSource fires
    r.eng.on_timer();
  }
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].failure, dx::host_failure::timeout);
  EXPECT_EQ(r.responses[0].service, dx::service_response::service_delivery_or_target_failure);
  EXPECT_GE(r.ctl.c.aborts, 1u);
  EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
}

TEST(ScsiDextResponse, TaskTimeoutFromTheTaskIsTheCommandsDeadline) {
  rig r;
  mr::options o;
  o.command_timeout_ns = 60'000'000'000ull;  // the core's default: a minute
  o.abort_grace_ns = 20'000'000;
  r.start(false, o);
  r.ctl.drop_next = 1;
  auto t = cdb_task(r.map(), 0, {0, 0, 0, 0, 0, 0});
  t.timeout_ms = 100;  // fTimeoutInMilliSec
  ASSERT_TRUE(r.eng.process(t, {}, nullptr).in_process);
  for (int i = 0; i < 30 && r.responses.empty(); ++i) {  // 300 ms of timer ticks
    r.clk.t += 10'000'000;
    r.eng.on_timer();
  }
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].failure, dx::host_failure::timeout);
}

TEST(ScsiDextTaskManagement, AbortTaskEndsTheTaskOnceAsTaskAborted) {
  rig r;
  r.start();
  r.ctl.drop_next = 1;  // the firmware sits on the first task
  auto held = cdb_task(r.map(), 0, {0, 0, 0, 0, 0, 0});
  held.task_tag = 0x77;
  auto other = cdb_task(r.map(), 0, {0, 0, 0, 0, 0, 0});
  other.task_tag = 0x78;
  ASSERT_TRUE(r.eng.process(held, {}, nullptr).in_process);
  ASSERT_TRUE(r.eng.process(other, {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);  // the other one
  EXPECT_EQ(r.eng.abort_task(0, 0x99).code(), errc::invalid_argument);  // no such tag
  EXPECT_EQ(r.eng.abort_task(1, 0x77).code(), errc::invalid_argument);  // wrong target
  ASSERT_TRUE(r.eng.abort_task(0, 0x77).ok());
  for (int i = 0; i < 5; ++i) r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[1].controller_task_id, held.controller_task_id);
  EXPECT_EQ(r.responses[1].scsi_status, dkq::scsi::scsi_status::task_aborted);
  EXPECT_EQ(r.responses[1].bytes_transferred, 0u);
  EXPECT_EQ(r.ctl.c.aborts, 1u);
  EXPECT_EQ(r.eng.stats().abort_requests, 1u);
  EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
  EXPECT_EQ(r.eng.abort_task(0, 0x77).code(), errc::invalid_argument);  // done: nothing to abort
}

// ---- the data segment under the HBA's limits -----------------------------------------------

TEST(ScsiDextSgl, BufferAcross4GiBIsOneSgl64Element) {
  rig r;
  r.start(false);
  std::vector<std::uint8_t> host(64 << 10);
  const std::uint64_t iovm = 0x100000000ull - 0x1000;  // 4 KiB below 4 GiB, 60 KiB above
  auto t = rw_task(r.map(), 0, true, 0, 128, iovm);
  auto req = dx::to_request(t, {host.data(), host.size()}, {1, r.core.info().max_transfer});
  ASSERT_TRUE(req.ok());
  auto plan = dx::plan_data_sgl(*req, r.core.info(), 64u << 10);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->elements, 1u);
  EXPECT_FALSE(plan->bounced);
  EXPECT_EQ(plan->element_bytes, 64u << 10);
  ASSERT_TRUE(r.eng.process(t, {host.data(), host.size()}, nullptr).in_process);
  std::vector<std::pair<std::uint64_t, std::uint32_t>> sgl;
  auto h = r.last_frame(sgl);
  EXPECT_NE(h.flags & dkq::scsi::mfi_frame_sgl64, 0);
  ASSERT_EQ(sgl.size(), 1u);
  EXPECT_EQ(sgl[0].first, iovm);
  EXPECT_EQ(sgl[0].second, 64u << 10);
  EXPECT_EQ(h.data_len, 64u << 10);
  // (The model cannot reach that address, so the command fails there; the
  // SGL is what this test is about.)
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].failure, dx::host_failure::delivery_failure);
}

TEST(ScsiDextSgl, BufferAcross4GiBIsBouncedInThirtyTwoBitMode) {
  rig r;
  r.start(true);
  std::vector<std::uint8_t> host(128 << 10);
  fill(host.data(), host.size(), 9);
  const std::uint64_t iovm = 0x100000000ull - 0x8000;
  const std::uint32_t id = r.map();
  auto t = rw_task(id, 0, true, 8, 256, iovm);
  auto req = dx::to_request(t, {host.data(), host.size()}, {1, r.core.info().max_transfer});
  ASSERT_TRUE(req.ok());
  auto plan = dx::plan_data_sgl(*req, r.core.info(), 64u << 10);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->bounced);
  EXPECT_EQ(plan->elements, 2u);
  ASSERT_TRUE(r.eng.process(t, {host.data(), host.size()}, nullptr).in_process);
  std::vector<std::pair<std::uint64_t, std::uint32_t>> sgl;
  auto h = r.last_frame(sgl);
  EXPECT_EQ(h.flags & dkq::scsi::mfi_frame_sgl64, 0);  // SGL32
  ASSERT_EQ(sgl.size(), plan->elements);
  for (auto [a, l] : sgl) EXPECT_LE(a + l - 1, 0xFFFFFFFFull);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(std::memcmp(r.ctl.disk(0)->data.data() + 8 * 512, host.data(), host.size()), 0);
  EXPECT_LE(r.ctl.c.highest_sge_addr, 0xFFFFFFFFull);
  EXPECT_EQ(r.core.stats().bounced, 1u);
  // Read it back through the same crossing address: copied out of the bounce
  // chunks into the task's CPU mapping at completion.
  std::vector<std::uint8_t> back(host.size());
  ASSERT_TRUE(r.eng.process(rw_task(id, 0, false, 8, 256, iovm), {back.data(), back.size()}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[1].bytes_transferred, host.size());
  EXPECT_EQ(back, host);
  EXPECT_TRUE(r.ctl.c.errors.empty());
}

TEST(ScsiDextSgl, MaximumTransfer) {
  for (bool force32 : {false, true}) {
    SCOPED_TRACE(force32 ? "forced 32-bit" : "64-bit");
    rig r;
    r.start(force32);
    const std::uint32_t max = r.core.info().max_transfer;
    ASSERT_EQ(max, 1u << 20);
    auto buf = r.buffer(max);  // above 16 GiB in the model: bounced in 32-bit mode
    fill(buf.cpu_at<std::uint8_t>(), buf.size, 1);
    auto t = rw_task(r.map(), 0, true, 0, static_cast<std::uint16_t>(max / 512), buf.device.value());
    auto req = dx::to_request(t, {buf.cpu, buf.size}, {1, max});
    ASSERT_TRUE(req.ok());
    auto plan = dx::plan_data_sgl(*req, r.core.info(), 64u << 10);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->elements, force32 ? 16u : 1u);
    EXPECT_LE(plan->elements, r.eng.constraints().max_segment_count_write);
    EXPECT_LE(plan->element_bytes, r.eng.constraints().max_segment_bytes_write);
    ASSERT_TRUE(r.eng.process(t, {buf.cpu, buf.size}, nullptr).in_process);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> sgl;
    r.last_frame(sgl);
    EXPECT_EQ(sgl.size(), plan->elements);
    r.eng.service();
    ASSERT_EQ(r.responses.size(), 1u);
    EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
    EXPECT_EQ(r.responses[0].bytes_transferred, max);
    EXPECT_EQ(std::memcmp(r.ctl.disk(0)->data.data(), buf.cpu, max), 0);
    EXPECT_TRUE(r.ctl.c.errors.empty());
    // One byte more than the maximum never reaches the device.
    auto big = t;
    big.requested_count = max + 512;
    auto o = r.eng.process(big, {buf.cpu, max + 512}, nullptr);
    EXPECT_FALSE(o.in_process);
    EXPECT_EQ(o.response.why.code(), errc::constraint);
  }
}

// UserGetDataBuffer only where the core bounces: a task reachable through
// fBufferIOVMAddr runs without the CPU mapping; a bounced one without it is
// refused before the device sees it.
TEST(ScsiDextSgl, DataBufferOnlyForBouncedTasks) {
  for (bool force32 : {false, true}) {
    SCOPED_TRACE(force32 ? "forced 32-bit" : "64-bit");
    rig r;
    r.start(force32);
    auto buf = r.buffer(64 << 10);  // above 16 GiB in the model
    fill(buf.cpu_at<std::uint8_t>(), buf.size, 5);
    auto t = rw_task(r.map(), 0, true, 0, 128, buf.device.value());
    EXPECT_EQ(r.eng.needs_data_buffer(t), force32);
    auto o = r.eng.process(t, {}, nullptr);
    if (force32) {
      EXPECT_FALSE(o.in_process);
      EXPECT_EQ(o.response.why.code(), errc::invalid_argument);
      EXPECT_TRUE(r.ctl.c.errors.empty());
      continue;
    }
    ASSERT_TRUE(o.in_process);
    r.eng.service();
    ASSERT_EQ(r.responses.size(), 1u);
    EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
    EXPECT_EQ(std::memcmp(r.ctl.disk(0)->data.data(), buf.cpu, buf.size), 0);
    EXPECT_TRUE(r.ctl.c.errors.empty());
  }
}

TEST(ScsiDextSgl, PlanRefusesWhatTheCoreCannotCarry) {
  mr::controller_info i;
  i.max_sge = 4;
  i.max_transfer = 1u << 20;
  i.sgl = dkq::scsi::mfi_sgl_format::sgl32;
  std::uint8_t host[16];
  mr::request r;
  r.data = dkq::dma_region{host, dkq::dev_addr{0x1'0000'0000ull}, 512u << 10};
  // 512 KiB above 4 GiB in 64 KiB chunks = 8 > max_sge 4.
  EXPECT_EQ(dx::plan_data_sgl(r, i, 64u << 10).error().code(), errc::constraint);
  EXPECT_EQ(dx::plan_data_sgl(r, i, 0).error().code(), errc::constraint);
  r.data.size = 128u << 10;
  auto p = dx::plan_data_sgl(r, i, 64u << 10);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->elements, 2u);
}

// ---- targets, interrupts, shutdown ----------------------------------------------------------

TEST(ScsiDextTargets, PlanIsOrderedAndOneAtATime) {
  mr::logical_drive lds[4] = {{5, 3, 100, false}, {0, 3, 100, false}, {3, 3, 100, false}, {5, 3, 100, false}};
  auto p = dx::make_target_plan(lds);
  ASSERT_EQ(p.count, 3u);
  EXPECT_EQ(p.highest_device_id, 319u);  // LDs 0..63, SYSTEM PDs 64..319
  EXPECT_EQ(p.initiator_id, 320u);
  EXPECT_FALSE(p.contains(p.initiator_id));
  std::uint64_t t = 0xff;
  std::vector<int> order;
  while (p.next_target(t)) order.push_back(static_cast<int>(t));
  EXPECT_EQ(order, (std::vector<int>{0, 3, 5}));
  EXPECT_FALSE(p.next_target(t));

  rig r(3);
  r.start();
  auto live = r.eng.targets();
  EXPECT_EQ(live.count, 3u);
  EXPECT_TRUE(live.contains(2));
}

// Issue #13 item 11: a JBOD controller's SYSTEM physical drives are dext
// targets (64 + PD target), driven through PD SCSI IO frames; a PD that is
// not a system drive never is.
TEST(ScsiDextTargets, JbodSystemDrivesAreTargetsThroughPdFrames) {
  rig r;
  r.ctl.jbod = true;
  r.start();
  auto plan = r.eng.targets();
  ASSERT_EQ(plan.count, 2u);
  EXPECT_TRUE(plan.contains(dx::pd_target_base + 0));
  EXPECT_TRUE(plan.contains(dx::pd_target_base + 1));
  EXPECT_FALSE(plan.contains(0));
  // WRITE(10) to PD 1 lands on disk 1 through a PD frame.
  auto wbuf = r.buffer(4096);
  fill(wbuf.cpu_at<std::uint8_t>(), wbuf.size, 9);
  const std::uint32_t id = r.map();
  ASSERT_TRUE(r.eng.process(rw_task(id, dx::pd_target_base + 1, true, 40, 8, wbuf.device.value()),
                            {wbuf.cpu, wbuf.size}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(std::memcmp(r.ctl.disk(1)->data.data() + 40 * 512, wbuf.cpu, wbuf.size), 0);
  EXPECT_EQ(r.ctl.c.ld_frames, 0u);
  EXPECT_EQ(r.ctl.c.pd_frames, 1u);
  // The LD target of the same disk does not exist: answered at once, nothing sent.
  const auto frames = r.ctl.c.frames;
  auto o = r.eng.process(cdb_task(r.map(), 1, {0, 0, 0, 0, 0, 0}), {}, nullptr);
  EXPECT_FALSE(o.in_process);
  EXPECT_EQ(o.response.failure, dx::host_failure::device_not_present);
  EXPECT_EQ(r.ctl.c.frames, frames);
  // SYNCHRONIZE CACHE (10) to PD 0 reaches the disk; shutdown flushes both PDs.
  ASSERT_TRUE(r.eng.process(cdb_task(r.map(), dx::pd_target_base + 0,
                                     {dkq::scsi::op::synchronize_cache_10, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
                            {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[1].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_EQ(r.ctl.c.sync10, 1u);
  EXPECT_TRUE(r.eng.shutdown(r.clk.t + 1'000'000).ok());
  EXPECT_EQ(r.ctl.c.sync10, 3u);
  EXPECT_EQ(r.ctl.c.ld_frames, 0u);
}

TEST(ScsiDextTargets, RaidModePhysicalDrivesAreNotTargets) {
  rig r;
  r.start();
  auto plan = r.eng.targets();
  EXPECT_EQ(plan.count, 2u);  // the two LDs only
  EXPECT_FALSE(plan.contains(dx::pd_target_base + 0));
  const auto frames = r.ctl.c.frames;
  auto o = r.eng.process(cdb_task(r.map(), dx::pd_target_base + 0, {0, 0, 0, 0, 0, 0}), {}, nullptr);
  EXPECT_FALSE(o.in_process);
  EXPECT_EQ(o.response.failure, dx::host_failure::device_not_present);
  EXPECT_EQ(r.ctl.c.frames, frames);
}

TEST(ScsiDextInterrupts, BridgeDrainsThroughTheEngine) {
  rig r;
  r.start();
  dk::interrupt_bridge<dx::task_engine<platform>> bridge(r.eng);
  ASSERT_TRUE(bridge.attach(0, 0).ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(r.eng.process(cdb_task(r.map(), 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  // One coalesced InterruptOccurred(count = 2) drains all three.
  EXPECT_EQ(bridge.occurred(0, 2, 1234), 3u);
  EXPECT_EQ(r.responses.size(), 3u);
  EXPECT_EQ(bridge.counters().coalesced, 1u);
}

TEST(ScsiDextShutdown, FlushesEveryLdThenStops) {
  rig r;
  r.start();
  r.ctl.hold = true;
  const std::uint32_t id = r.map();
  ASSERT_TRUE(r.eng.process(cdb_task(id, 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  r.ctl.hold = false;  // later frames are answered; the held one never is
  const std::uint64_t deadline = r.clk.t + 50'000'000;
  EXPECT_TRUE(r.eng.shutdown(deadline).ok());
  EXPECT_EQ(r.ctl.c.sync10, 2u);  // SYNCHRONIZE CACHE to each LD
  EXPECT_EQ(r.ctl.c.cache_flushes, 1u);
  EXPECT_EQ(r.ctl.c.shutdowns, 1u);
  EXPECT_EQ(r.ctl.intr_mask(), 0xffffffffu);
  ASSERT_EQ(r.responses.size(), 1u);  // the held task: answered, once
  EXPECT_EQ(r.responses[0].failure, dx::host_failure::device_not_present);
  EXPECT_EQ(r.eng.stats().failed_at_stop, 1u);
  EXPECT_EQ(r.eng.tasks_in_flight(), 0u);
  EXPECT_EQ(r.dma.live(), 0u);
  // After stop, tasks are refused (the kernel's IDs stay valid).
  auto o = r.eng.process(cdb_task(id, 0, {0, 0, 0, 0, 0, 0}), {}, nullptr);
  EXPECT_FALSE(o.in_process);
  EXPECT_EQ(o.response.failure, dx::host_failure::device_not_present);
  // Power on again: the same engine, IDs and core object (a stopped
  // controller<> starts again; tests/scsi_driver checks the core alone).
  const dkq::status again = r.core.start(r.plat, {});
  ASSERT_TRUE(again.ok()) << again.message();
  ASSERT_TRUE(r.eng.attach(r.core, r.plat, &rig::sink, &r).ok());
  ASSERT_TRUE(r.eng.process(cdb_task(id, 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).in_process);
  r.eng.service();
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[1].scsi_status, dkq::scsi::scsi_status::good);
  EXPECT_TRUE(r.eng.shutdown(r.clk.t + 1'000'000).ok());
  r.eng.detach();  // the dext frees the core object after shutdown
  EXPECT_FALSE(r.eng.attached());
  EXPECT_EQ(r.eng.process(cdb_task(id, 0, {0, 0, 0, 0, 0, 0}), {}, nullptr).response.failure,
            dx::host_failure::device_not_present);
  EXPECT_EQ(r.eng.dma_spec().max_transfer, 0u);
  EXPECT_EQ(r.eng.targets().count, 0u);
}

}  // namespace
