// SCSI protocol layer: CDB bytes, sense decoding (fixed and descriptor
// formats, truncated and malformed device data), INQUIRY/VPD/READ CAPACITY.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/data.hpp"
#include "dkq/scsi/sense.hpp"

namespace sc = dkq::scsi;
using bytes = std::vector<std::uint8_t>;

static bytes cdb_prefix(const sc::cdb_bytes& c, std::size_t n) { return bytes(c.begin(), c.begin() + n); }

TEST(ScsiCdb, SixByteCommands) {
  sc::cdb_bytes c;
  c.fill(0xee);
  EXPECT_EQ(sc::test_unit_ready(c), 6);
  EXPECT_EQ(cdb_prefix(c, 16), bytes(16, 0));
  EXPECT_EQ(sc::request_sense(c, 96), 6);
  EXPECT_EQ(cdb_prefix(c, 6), (bytes{0x03, 0, 0, 0, 96, 0}));
  auto n = sc::inquiry(c, true, 0x80, 0x1234);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 6);
  EXPECT_EQ(cdb_prefix(c, 6), (bytes{0x12, 0x01, 0x80, 0x12, 0x34, 0}));
  EXPECT_FALSE(sc::inquiry(c, false, 0x80, 36).ok());
}

TEST(ScsiCdb, ReadCapacity) {
  sc::cdb_bytes c;
  EXPECT_EQ(sc::read_capacity_10(c), 10);
  EXPECT_EQ(c[0], 0x25);
  EXPECT_EQ(sc::read_capacity_16(c), 16);
  EXPECT_EQ(cdb_prefix(c, 16), (bytes{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}));
}

TEST(ScsiCdb, ReadWrite10And16) {
  sc::cdb_bytes c;
  auto n = sc::read_write(c, false, 0x01020304, 0x0506, false);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10);
  EXPECT_EQ(cdb_prefix(c, 10), (bytes{0x28, 0, 1, 2, 3, 4, 0, 0x05, 0x06, 0}));
  n = sc::read_write(c, true, 0x0102030405060708ull, 0x0a0b0c0d, true, true);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 16);
  EXPECT_EQ(cdb_prefix(c, 16), (bytes{0x8a, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0}));
  using dkq::errc;
  EXPECT_EQ(sc::read_write(c, false, 0x1'0000'0000ull, 1, false).error().code(), errc::out_of_range);
  EXPECT_EQ(sc::read_write(c, false, 0xffffffffull, 2, false).error().code(), errc::out_of_range);
  EXPECT_TRUE(sc::read_write(c, false, 0xffffffffull, 1, false).ok());
  EXPECT_EQ(sc::read_write(c, false, 0, 0x10000, false).error().code(), errc::invalid_argument);
  EXPECT_EQ(sc::read_write(c, false, 0, 0, true).error().code(), errc::invalid_argument);
  EXPECT_EQ(sc::read_write(c, true, ~0ull, 2, true).error().code(), errc::out_of_range);
}

TEST(ScsiCdb, SynchronizeCacheNeverImmediate) {
  sc::cdb_bytes c;
  auto n = sc::synchronize_cache(c, false);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10);
  EXPECT_EQ(cdb_prefix(c, 10), (bytes{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  n = sc::synchronize_cache(c, true, 0x100, 8);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(cdb_prefix(c, 16), (bytes{0x91, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 8, 0, 0}));
  EXPECT_EQ(c[1] & 0x02, 0) << "IMMED must be clear";
  EXPECT_FALSE(sc::synchronize_cache(c, false, 0x1'0000'0000ull).ok());
  EXPECT_FALSE(sc::synchronize_cache(c, false, 0, 0x10000).ok());
}

TEST(ScsiCdb, StatusNames) {
  EXPECT_STREQ(sc::status_name(0x02), "CHECK CONDITION");
  EXPECT_STREQ(sc::status_name(0x28), "TASK SET FULL");
  EXPECT_STREQ(sc::status_name(0x01), "reserved SCSI status");
}

TEST(ScsiSense, FixedFormat) {
  // Current error, ILLEGAL REQUEST, invalid command operation code (the answer
  // a device gives to SYNCHRONIZE CACHE (16) it does not implement).
  bytes s(18, 0);
  s[0] = 0x70;
  s[2] = 0x05;
  s[7] = 10;
  s[12] = 0x20;
  auto r = sc::parse_sense(s.data(), s.size());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->descriptor_format);
  EXPECT_EQ(r->key, 5);
  EXPECT_EQ(r->asc, 0x20);
  EXPECT_EQ(r->ascq, 0);
  char text[128];
  sc::describe(*r, text, sizeof text);
  EXPECT_STREQ(text, "ILLEGAL REQUEST: invalid command operation code (asc 0x20 ascq 0x00)");
  EXPECT_EQ(sc::to_status(*r).code(), dkq::errc::not_supported);
}

TEST(ScsiSense, FixedFormatWithInformationAndDeferred) {
  bytes s(18, 0);
  s[0] = 0xf1;  // valid + deferred
  s[2] = 0x03;
  s[3] = 0x00; s[4] = 0x00; s[5] = 0x12; s[6] = 0x34;
  s[7] = 10;
  s[12] = 0x11;
  auto r = sc::parse_sense(s.data(), s.size());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->deferred);
  EXPECT_TRUE(r->information_valid);
  EXPECT_EQ(r->information, 0x1234u);
  char text[160];
  sc::describe(*r, text, sizeof text);
  EXPECT_EQ(std::string(text),
            "deferred MEDIUM ERROR: unrecovered read error (asc 0x11 ascq 0x00) information 0x0000000000001234");
  EXPECT_EQ(sc::to_status(*r).code(), dkq::errc::io_error);
}

TEST(ScsiSense, FixedFormatShortAdditionalLengthHasNoAsc) {
  bytes s(18, 0xff);
  s[0] = 0x70;
  s[2] = 0x06;
  s[7] = 0;  // device says only 8 bytes are valid
  auto r = sc::parse_sense(s.data(), s.size());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->key, 6);
  EXPECT_EQ(r->asc, 0) << "bytes beyond the additional length are not sense data";
}

TEST(ScsiSense, DescriptorFormatWithInformationDescriptor) {
  bytes s = {0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12,
             0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x20};
  auto r = sc::parse_sense(s.data(), s.size());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->descriptor_format);
  EXPECT_EQ(r->key, 3);
  EXPECT_EQ(r->asc, 0x11);
  EXPECT_TRUE(r->information_valid);
  EXPECT_EQ(r->information, 0x1020u);
}

TEST(ScsiSense, MalformedDeviceDataIsAnError) {
  using dkq::errc;
  EXPECT_EQ(sc::parse_sense(nullptr, 18).error().code(), errc::protocol_error);
  bytes s = {0x70, 0, 5};
  EXPECT_EQ(sc::parse_sense(s.data(), s.size()).error().code(), errc::protocol_error);
  bytes bad = {0x7f, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(sc::parse_sense(bad.data(), bad.size()).error().code(), errc::protocol_error);
  // A descriptor claiming more bytes than were sent.
  bytes over = {0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12, 0x00, 0x40, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(sc::parse_sense(over.data(), over.size()).error().code(), errc::protocol_error);
}

TEST(ScsiSense, DescribeTruncatesSafely) {
  sc::sense_data d;
  d.key = 2;
  d.asc = 0x04;
  d.ascq = 0x01;
  char small[8];
  const std::size_t want = sc::describe(d, small, sizeof small);
  EXPECT_EQ(std::strlen(small), 7u);
  EXPECT_GT(want, 7u);
  EXPECT_EQ(std::string(small), "NOT REA");
  EXPECT_EQ(sc::describe(d, nullptr, 0), want);
}

TEST(ScsiSense, RandomBytesNeverOverRead) {
  // Device data is untrusted: any bytes of any length parse to a value or an
  // error without reading past the buffer (ASan checks the reads).
  std::mt19937 rng(1234);
  for (int i = 0; i < 20000; ++i) {
    const std::size_t len = rng() % 40;
    std::vector<std::uint8_t> buf(len);
    for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
    if (len > 0 && (rng() & 1)) buf[0] = static_cast<std::uint8_t>(0x70 + (rng() % 4));
    auto r = sc::parse_sense(len ? buf.data() : nullptr, len);
    if (r.ok()) {
      char t[200];
      sc::describe(*r, t, sizeof t);
      EXPECT_LT(r->key, 16);
    }
    (void)sc::parse_inquiry(len ? buf.data() : nullptr, len);
    (void)sc::parse_vpd(len ? buf.data() : nullptr, len, 0x83);
    (void)sc::parse_read_capacity_10(len ? buf.data() : nullptr, len);
    (void)sc::parse_read_capacity_16(len ? buf.data() : nullptr, len);
  }
}

TEST(ScsiData, Inquiry) {
  bytes d(36, 0);
  d[0] = 0x00;
  d[1] = 0x80;
  d[2] = 0x05;
  std::memcpy(&d[8], "QEMU    ", 8);
  std::memcpy(&d[16], "QEMU HARDDISK   ", 16);
  std::memcpy(&d[32], "2.5+", 4);
  auto r = sc::parse_inquiry(d.data(), d.size());
  ASSERT_TRUE(r.ok());
  EXPECT_STREQ(r->vendor, "QEMU");
  EXPECT_STREQ(r->product, "QEMU HARDDISK");
  EXPECT_STREQ(r->revision, "2.5+");
  EXPECT_TRUE(r->removable);
  EXPECT_EQ(r->version, 5);
  d[16] = 0x07;  // non-printable byte is shown, not trusted
  EXPECT_EQ(sc::parse_inquiry(d.data(), d.size())->product[0], '?');
  d[0] = 0x7f;
  EXPECT_EQ(sc::parse_inquiry(d.data(), d.size())->qualifier, 3);
  EXPECT_FALSE(sc::parse_inquiry(d.data(), 35).ok());
}

TEST(ScsiData, Vpd) {
  bytes d = {0x00, 0x80, 0x00, 0x04, 'S', 'N', '0', '1'};
  auto r = sc::parse_vpd(d.data(), d.size(), 0x80);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->payload.size(), 4u);
  EXPECT_EQ(r->payload[0], 'S');
  EXPECT_FALSE(sc::parse_vpd(d.data(), d.size(), 0x83).ok()) << "wrong page";
  d[3] = 5;
  EXPECT_FALSE(sc::parse_vpd(d.data(), d.size(), 0x80).ok()) << "length past the data";
}

TEST(ScsiData, ReadCapacity) {
  bytes c10 = {0x00, 0x01, 0xff, 0xff, 0x00, 0x00, 0x02, 0x00};
  auto r = sc::parse_read_capacity_10(c10.data(), c10.size());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks, 0x20000u);
  EXPECT_EQ(r->block_size, 512u);
  EXPECT_FALSE(r->needs_16);
  bytes big = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x10, 0x00};
  r = sc::parse_read_capacity_10(big.data(), big.size());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->needs_16);
  bytes zero_bs = {0, 0, 0, 1, 0, 0, 0, 0};
  EXPECT_FALSE(sc::parse_read_capacity_10(zero_bs.data(), zero_bs.size()).ok());
  bytes c16(32, 0);
  c16[3] = 0x01;  // last LBA 0x0000000100000000
  c16[7] = 0x00;
  c16[10] = 0x10;  // 4096
  c16[12] = 0x01;
  c16[13] = 0x03;
  r = sc::parse_read_capacity_16(c16.data(), c16.size());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks, 0x1'0000'0001ull);
  EXPECT_EQ(r->block_size, 4096u);
  EXPECT_TRUE(r->protection);
  EXPECT_EQ(r->lbppbe, 3);
  EXPECT_FALSE(sc::parse_read_capacity_16(c16.data(), 11).ok());
}

#include "dkq/scsi/mfi.hpp"

namespace mfi = dkq::scsi::mfi;

TEST(Mfi, FirmwareStatusDecode) {
  // QEMU megasas-gen2 defaults: READY, MSI-X capable, 80 SGEs (0x50), 1008 commands.
  const auto s = mfi::fw_status::decode(0xB0000000u | 0x04000000u | (0x50u << 16) | 1008u);
  EXPECT_EQ(s.state, mfi::fw_state::ready);
  EXPECT_TRUE(s.msix_supported);
  EXPECT_EQ(s.max_sge, 0x50u);
  EXPECT_EQ(s.max_cmds, 1008u);
  EXPECT_STREQ(mfi::fw_state_name(mfi::fw_status::decode(0xF0000000u).state), "FAULT");
  EXPECT_STREQ(mfi::fw_state_name(mfi::fw_state::operational), "OPERATIONAL");
}

TEST(Mfi, QueuePortValue) {
  auto v = mfi::queue_port_value(dkq::dev_addr{0x12345640}, 2);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x12345640u | (2u << 1) | 1u);
  EXPECT_EQ(mfi::queue_port_value(dkq::dev_addr{0x12345650}, 0).error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(mfi::queue_port_value(dkq::dev_addr{0x1'0000'0000ull}, 0).error().code(), dkq::errc::constraint);
  EXPECT_EQ(mfi::queue_port_value(dkq::dev_addr{0x1000}, 16).error().code(), dkq::errc::invalid_argument);
}

TEST(Mfi, StatusMapping) {
  EXPECT_TRUE(mfi::to_status(mfi::stat::ok, 0).ok());
  auto s = mfi::to_status(mfi::stat::scsi_done_with_error, 0x02);
  EXPECT_EQ(s.code(), dkq::errc::device_error);
  EXPECT_STREQ(s.message(), "MFI_STAT_SCSI_DONE_WITH_ERROR");
  EXPECT_EQ(s.detail(), 0x2d02u);
  EXPECT_EQ(mfi::to_status(mfi::stat::ld_lba_out_of_range, 0).code(), dkq::errc::out_of_range);
  // "device not found" is a not-found error (issue #13 item 11), not "not supported".
  EXPECT_EQ(mfi::to_status(mfi::stat::device_not_found, 0).code(), dkq::errc::not_found);
  EXPECT_EQ(mfi::to_status(mfi::stat::not_found, 0).code(), dkq::errc::not_found);
  EXPECT_EQ(mfi::to_status(mfi::stat::invalid_status, 0).code(), dkq::errc::protocol_error);
  for (unsigned c = 0; c <= 0x38; ++c)
    EXPECT_STRNE(mfi::status_name(static_cast<std::uint8_t>(c)), "unknown MFI status") << c;
}
