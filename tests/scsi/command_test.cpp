// One SCSI command end to end, transport-independent (dkq/scsi/command.hpp):
// classification of transport status, SAM status and sense (sense bytes are
// device input: bounded and parsed, never trusted), and the bounded retries
// of UNIT ATTENTION, BUSY / TASK SET FULL and NOT READY "becoming ready".
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "dkq/scsi/command.hpp"

namespace {

using dkq::errc;
using dkq::status;
namespace scsi = dkq::scsi;

std::vector<std::uint8_t> fixed_sense(std::uint8_t key, std::uint8_t asc, std::uint8_t ascq, bool deferred = false) {
  std::vector<std::uint8_t> s(18, 0);
  s[0] = deferred ? 0x71 : 0x70;
  s[2] = key;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

scsi::raw_result answer(std::uint8_t status_byte, const std::vector<std::uint8_t>* sense = nullptr) {
  scsi::raw_result r;
  r.status_byte = status_byte;
  if (sense != nullptr) r.sense = {sense->data(), sense->size()};
  return r;
}

TEST(ScsiCommand, ClassifiesTransportStatusAndSense) {
  EXPECT_TRUE(scsi::classify(answer(scsi::scsi_status::good)).st.ok());
  EXPECT_TRUE(scsi::classify(answer(scsi::scsi_status::condition_met)).st.ok());
  scsi::raw_result lost;
  lost.transport = status{errc::timeout, "no answer"};
  lost.status_byte = scsi::scsi_status::good;  // ignored: the command never came back
  EXPECT_EQ(scsi::classify(lost).st.code(), errc::timeout);
  const auto medium = fixed_sense(scsi::sense_key::medium_error, 0x11, 0);
  auto o = scsi::classify(answer(scsi::scsi_status::check_condition, &medium));
  EXPECT_EQ(o.st.code(), errc::io_error);
  ASSERT_TRUE(o.sense_valid);
  EXPECT_EQ(o.sense.asc, 0x11);
  const auto recovered = fixed_sense(scsi::sense_key::recovered_error, 0x17, 0);
  EXPECT_TRUE(scsi::classify(answer(scsi::scsi_status::check_condition, &recovered)).st.ok());
  // CHECK CONDITION with no sense, or sense that does not parse: an error.
  EXPECT_EQ(scsi::classify(answer(scsi::scsi_status::check_condition)).st.code(), errc::device_error);
  const std::vector<std::uint8_t> junk = {0x7f, 0, 0};
  auto j = scsi::classify(answer(scsi::scsi_status::check_condition, &junk));
  EXPECT_EQ(j.st.code(), errc::device_error);
  EXPECT_FALSE(j.sense_valid);
  const std::vector<std::uint8_t> truncated = {0x70, 0, scsi::sense_key::medium_error};  // 3 bytes
  EXPECT_FALSE(scsi::classify(answer(scsi::scsi_status::check_condition, &truncated)).st.ok());
  EXPECT_EQ(scsi::classify(answer(scsi::scsi_status::busy)).st.code(), errc::busy);
  EXPECT_EQ(scsi::classify(answer(scsi::scsi_status::task_set_full)).st.code(), errc::busy);
  EXPECT_EQ(scsi::classify(answer(scsi::scsi_status::reservation_conflict)).st.code(), errc::device_error);
}

TEST(ScsiCommand, UnitAttentionIsRetriedOnceThenSucceeds) {
  const auto ua = fixed_sense(scsi::sense_key::unit_attention, 0x29, 0x00);  // power on / reset occurred
  int calls = 0;
  auto o = scsi::run_command([&]() noexcept {
    return ++calls == 1 ? answer(scsi::scsi_status::check_condition, &ua) : answer(scsi::scsi_status::good);
  });
  EXPECT_TRUE(o.st.ok());
  EXPECT_EQ(o.attempts, 2u);
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(o.unit_attention_seen);
}

TEST(ScsiCommand, RetriesAreBounded) {
  const auto ua = fixed_sense(scsi::sense_key::unit_attention, 0x2a, 0x09);
  int calls = 0;
  auto o = scsi::run_command([&]() noexcept {
    ++calls;
    return answer(scsi::scsi_status::check_condition, &ua);
  });
  EXPECT_EQ(o.st.code(), errc::busy);  // UNIT ATTENTION as a status
  EXPECT_EQ(calls, 4);                 // 1 + 3 retries
  calls = 0;
  auto b = scsi::run_command([&]() noexcept {
    ++calls;
    return answer(scsi::scsi_status::busy);
  }, scsi::retry_policy{0, 1, 0});
  EXPECT_EQ(b.st.code(), errc::busy);
  EXPECT_EQ(calls, 2);
}

TEST(ScsiCommand, BecomingReadyIsRetriedOtherErrorsAreNot) {
  const auto becoming = fixed_sense(scsi::sense_key::not_ready, 0x04, 0x01);
  int calls = 0;
  auto o = scsi::run_command([&]() noexcept {
    return ++calls < 3 ? answer(scsi::scsi_status::check_condition, &becoming) : answer(scsi::scsi_status::good);
  });
  EXPECT_TRUE(o.st.ok());
  EXPECT_EQ(o.attempts, 3u);
  // NOT READY, medium not present: not retried.
  const auto no_medium = fixed_sense(scsi::sense_key::not_ready, 0x3a, 0x00);
  calls = 0;
  auto n = scsi::run_command([&]() noexcept {
    ++calls;
    return answer(scsi::scsi_status::check_condition, &no_medium);
  });
  EXPECT_FALSE(n.st.ok());
  EXPECT_EQ(calls, 1);
  // A deferred UNIT ATTENTION reports an earlier command: not retried.
  const auto deferred = fixed_sense(scsi::sense_key::unit_attention, 0x29, 0, true);
  calls = 0;
  (void)scsi::run_command([&]() noexcept {
    ++calls;
    return answer(scsi::scsi_status::check_condition, &deferred);
  });
  EXPECT_EQ(calls, 1);
  // A transport failure is the transport's to recover (timeout, reset).
  calls = 0;
  auto t = scsi::run_command([&]() noexcept {
    ++calls;
    scsi::raw_result r;
    r.transport = status{errc::io_error, "HBA error"};
    return r;
  });
  EXPECT_EQ(t.st.code(), errc::io_error);
  EXPECT_EQ(calls, 1);
}

}  // namespace
