// dkq/platform/ublk without a ublk kernel: request decoding from the kernel's
// descriptor, the errno a status completes with, the device-limit checks that
// mirror ublk_validate_params, and the io_uring wrapper itself (an eventfd
// read through the ring: submit, wait with a timeout, reap). The ublk paths
// proper run in the VM tests (tests/vm/scenarios/ublk_*.py, Linux 6.12).
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <chrono>

#include "dkq/platform/ublk/ublk.hpp"

namespace ublk = dkq::ublk;
using dkq::errc;

TEST(UblkDecode, OperationsFlagsAndSectors) {
  ublksrv_io_desc d{};
  d.op_flags = UBLK_IO_OP_WRITE | UBLK_IO_F_FUA;
  d.nr_sectors = 16;
  d.start_sector = 1024;
  auto r = ublk::decode(d);
  EXPECT_EQ(r.op, ublk::block_op::write);
  EXPECT_TRUE(r.fua);
  EXPECT_FALSE(r.no_unmap);
  EXPECT_EQ(r.sector, 1024u);
  EXPECT_EQ(r.bytes(), 8192u);
  d.op_flags = UBLK_IO_OP_WRITE_ZEROES | UBLK_IO_F_NOUNMAP;
  r = ublk::decode(d);
  EXPECT_EQ(r.op, ublk::block_op::write_zeroes);
  EXPECT_TRUE(r.no_unmap);
  d.op_flags = UBLK_IO_OP_READ;
  EXPECT_EQ(ublk::decode(d).op, ublk::block_op::read);
  d.op_flags = UBLK_IO_OP_FLUSH;
  EXPECT_EQ(ublk::decode(d).op, ublk::block_op::flush);
  d.op_flags = UBLK_IO_OP_DISCARD;
  EXPECT_EQ(ublk::decode(d).op, ublk::block_op::discard);
  d.op_flags = UBLK_IO_OP_WRITE_SAME;  // never advertised: served as "other" (refused)
  EXPECT_EQ(ublk::decode(d).op, ublk::block_op::other);
  d.op_flags = 0x7f;
  EXPECT_EQ(ublk::decode(d).op, ublk::block_op::other);
}

TEST(UblkDecode, StatusToErrno) {
  EXPECT_EQ(ublk::to_errno(dkq::ok_status), 0);
  EXPECT_EQ(ublk::to_errno({errc::device_error, "x"}), -EIO);
  EXPECT_EQ(ublk::to_errno({errc::io_error, "x"}), -EIO);
  EXPECT_EQ(ublk::to_errno({errc::protocol_error, "x"}), -EIO);
  EXPECT_EQ(ublk::to_errno({errc::invalid_argument, "x"}), -EINVAL);
  EXPECT_EQ(ublk::to_errno({errc::out_of_range, "x"}), -EINVAL);
  EXPECT_EQ(ublk::to_errno({errc::timeout, "x"}), -ETIMEDOUT);
  EXPECT_EQ(ublk::to_errno({errc::not_supported, "x"}), -EOPNOTSUPP);
  EXPECT_EQ(ublk::to_errno({errc::removed, "x"}), -ENODEV);
}

TEST(UblkLimits, TheKernelsRulesAreCheckedFirst) {
  ublk::device_limits l;
  l.logical_block = 4096;
  l.physical_block = 4096;
  l.sectors = 131072;
  l.max_io_bytes = 512 * 1024;
  l.volatile_cache = l.fua = true;
  EXPECT_TRUE(ublk::check_limits(l).ok());
  auto bad = l;
  bad.logical_block = 8192;  // above PAGE_SIZE: ublk refuses
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::not_supported);
  bad = l;
  bad.logical_block = 520;
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::not_supported);
  bad = l;
  bad.physical_block = 512;  // below the logical block
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::invalid_argument);
  bad = l;
  bad.sectors = 131071;  // not whole 4 KiB blocks
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::invalid_argument);
  bad = l;
  bad.max_io_bytes = 6000;
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::invalid_argument);
  bad = l;
  bad.volatile_cache = false;  // FUA means nothing without a cache
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::invalid_argument);
  bad = l;
  bad.sectors = 0;
  EXPECT_EQ(ublk::check_limits(bad).code(), errc::invalid_argument);
  EXPECT_EQ(ublk::log2_exact(4096), 12);
  EXPECT_EQ(ublk::log2_exact(512), 9);
}

// The ring the server waits in: a read of an eventfd, a wait that times out
// while nothing is ready, then the completion once the eventfd is written.
TEST(UblkUring, EventfdReadThroughTheRingWithTimeout) {
  ublk::uring ring;
  const dkq::status s = ring.init(8, false);
  ASSERT_TRUE(s.ok()) << "io_uring_setup: " << s.message() << " errno " << s.detail()
                      << " (this test needs io_uring, Linux 5.11+, not disabled by sysctl kernel.io_uring_disabled)";
  const int efd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  std::uint64_t value = 0;
  io_uring_sqe* e = ring.sqe();
  ASSERT_NE(e, nullptr);
  e->opcode = IORING_OP_READ;
  e->fd = efd;
  e->addr = reinterpret_cast<std::uint64_t>(&value);
  e->len = sizeof value;
  e->off = static_cast<std::uint64_t>(-1);
  e->user_data = 77;
  EXPECT_EQ(ring.unsubmitted(), 1u);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ring.submit(1, 50'000'000);  // 50 ms, nothing to read yet
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
  EXPECT_EQ(ring.ready(), 0u);
  EXPECT_EQ(ring.unsubmitted(), 0u);
  const std::uint64_t seven = 7;
  ASSERT_EQ(::write(efd, &seven, sizeof seven), 8);
  ASSERT_TRUE(ring.submit(1, 1'000'000'000).ok());
  int got = 0;
  ring.reap([&](const io_uring_cqe& c) {
    EXPECT_EQ(c.user_data, 77u);
    EXPECT_EQ(c.res, 8);
    ++got;
  });
  EXPECT_EQ(got, 1);
  EXPECT_EQ(value, 7u);
  EXPECT_EQ(ring.ready(), 0u);
  // A full submission ring says so instead of overwriting.
  int prepared = 0;
  while (ring.sqe() != nullptr && prepared < 64) ++prepared;
  EXPECT_EQ(static_cast<unsigned>(prepared), ring.sq_entries());
  ::close(efd);
}

TEST(UblkControl, NoUblkIsAClearError) {
  // A control node that does not exist: what a kernel without ublk_drv shows
  // (vm_ublk_errors checks the real case, with the module unloaded).
  ublk::control c;
  const dkq::status s = c.open("/nonexistent-dkq-test/ublk-control");
  EXPECT_EQ(s.code(), errc::not_supported);
  EXPECT_NE(std::string(s.message()).find("no ublk driver"), std::string::npos);
  // Commands on a control that never opened are refused, not sent.
  auto inf = c.info(0);
  ASSERT_FALSE(inf.ok());
  EXPECT_EQ(inf.error().code(), errc::not_initialized);
}
