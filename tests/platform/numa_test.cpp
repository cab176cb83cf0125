// allocate_pages(): zeroed, page-aligned memory; a node policy only when more
// than one node is online and the node is known. (Placement on a second node
// is checked in the VM, which has two; this host may have one.)
#include "dkq/platform/vfio/numa.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace vfio = dkq::vfio;

TEST(NumaPages, SingleNodeAppliesNoPolicy) {
  auto a = vfio::allocate_pages(3 * 4096, 0, 1);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->placed);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a->ptr) % 4096, 0u);
  const auto* b = static_cast<const unsigned char*>(a->ptr);
  for (std::size_t i = 0; i < a->size; ++i) ASSERT_EQ(b[i], 0) << i;
  vfio::release_pages(*a);
}

TEST(NumaPages, UnknownNodeAppliesNoPolicy) {
  auto a = vfio::allocate_pages(4096, -1, 4);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->placed);
  vfio::release_pages(*a);
}

TEST(NumaPages, NodeZeroAlwaysExists) {
  // Pretend two nodes are online; node 0 exists on every Linux machine, so the
  // policy call itself must succeed.
  auto a = vfio::allocate_pages(2 * 4096, 0, 2);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->placed);
  vfio::release_pages(*a);
  vfio::release_pages(vfio::page_allocation{});  // empty: no-op
}
