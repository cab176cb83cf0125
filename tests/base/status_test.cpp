#include "dkq/base/status.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

dkq::result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return dkq::status{dkq::errc::invalid_argument, "not a digit", static_cast<unsigned char>(c)};
  return c - '0';
}

dkq::status chain(char c, int& out) {
  auto r = parse_digit(c);
  if (!r) return r.error();
  out = *r;
  return dkq::ok_status;
}

dkq::status try_chain(bool fail) {
  DKQ_TRY(fail ? dkq::status{dkq::errc::timeout, "late"} : dkq::ok_status);
  return dkq::status{dkq::errc::busy, "reached the end"};
}

TEST(Status, DefaultIsOk) {
  dkq::status s;
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(static_cast<bool>(s));
  EXPECT_EQ(s.code(), dkq::errc::ok);
  EXPECT_STREQ(s.message(), "ok");
}

TEST(Status, CarriesCodeMessageAndDetail) {
  dkq::status s{dkq::errc::out_of_range, "lba beyond the namespace", 1234};
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s == dkq::errc::out_of_range);
  EXPECT_STREQ(s.message(), "lba beyond the namespace");
  EXPECT_EQ(s.detail(), 1234u);
  dkq::status bare{dkq::errc::removed, nullptr};
  EXPECT_STREQ(bare.message(), "removed");
}

TEST(Status, EveryCodeHasAName) {
  for (unsigned i = 0; i <= static_cast<unsigned>(dkq::errc::not_found); ++i) {
    std::string n = dkq::errc_name(static_cast<dkq::errc>(i));
    EXPECT_NE(n, "unknown") << i;
    EXPECT_FALSE(n.empty());
  }
}

TEST(Result, ValueAndError) {
  auto good = parse_digit('7');
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.value(), 7);
  EXPECT_EQ(good.value_or(-1), 7);
  auto bad = parse_digit('x');
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), dkq::errc::invalid_argument);
  EXPECT_EQ(bad.error().detail(), static_cast<unsigned>('x'));
  EXPECT_EQ(bad.value_or(-1), -1);
}

TEST(Result, SuccessStatusWithoutValueIsAnError) {
  dkq::result<int> r = dkq::ok_status;
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), dkq::errc::invalid_argument);
}

TEST(Result, CopyMoveAndAssignKeepState) {
  dkq::result<std::string> a = std::string("frame");
  dkq::result<std::string> b = a;
  EXPECT_EQ(*b, "frame");
  dkq::result<std::string> c = std::move(b);
  EXPECT_EQ(*c, "frame");
  c = dkq::status{dkq::errc::timeout, "t"};
  EXPECT_FALSE(c.ok());
  c = a;
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size(), 5u);
}

TEST(Result, PropagationHelpers) {
  int out = 0;
  EXPECT_TRUE(chain('3', out).ok());
  EXPECT_EQ(out, 3);
  EXPECT_EQ(chain('q', out).code(), dkq::errc::invalid_argument);
  EXPECT_EQ(try_chain(true).code(), dkq::errc::timeout);
  EXPECT_EQ(try_chain(false).code(), dkq::errc::busy);
}

TEST(ResultDeathTest, ValueOfErrorTraps) {
  dkq::result<int> r = dkq::status{dkq::errc::empty, "nothing"};
  EXPECT_DEATH({ volatile int v = r.value(); (void)v; }, "");
}

}  // namespace
