#include "dkq/ring/spsc_ring.hpp"
#include <gtest/gtest.h>
TEST(Spsc, Smoke) { dkq::spsc_ring<int> r; ASSERT_TRUE(r.init(4u)); EXPECT_TRUE(r.try_push(1)); }
