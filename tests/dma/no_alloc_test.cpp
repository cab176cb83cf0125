// The hot path never allocates: every per-I/O operation of the DMA layer and
// the builders runs between two reads of a global allocation counter (this
// binary replaces operator new) and must leave it unchanged. Setup (init) is
// allowed to allocate and is outside the measured windows.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "dkq/dma/bounce.hpp"
#include "dkq/dma/constraints.hpp"
#include "dkq/dma/iova.hpp"
#include "dkq/dma/pool.hpp"
#include "dkq/nvme/prp.hpp"
#include "dkq/nvme/sgl.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "dma/sg_testutil.hpp"

namespace {
std::atomic<std::uint64_t> g_allocs{0};
}

// noinline: inlined into callers, GCC pairs the builtin new it sees with our
// free() and reports -Wmismatched-new-delete; out of line they are one pair.

[[gnu::noinline]] void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::aligned_alloc(static_cast<std::size_t>(a), (n + static_cast<std::size_t>(a) - 1) /
                                                             static_cast<std::size_t>(a) *
                                                             static_cast<std::size_t>(a));
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;

TEST(NoAlloc, HotPathsDoNotAllocate) {
  dkq::test::fake_dma_memory mem;
  auto backing = mem.map(0x100000, 16 * 4096);
  auto low = mem.map(0x200000, 8 * 4096);
  dkq::dma_pool pages, chunks;
  ASSERT_TRUE(pages.init(backing, 4096, 4096, 4096).ok());
  ASSERT_TRUE(chunks.init(low, 4096, 4096).ok());
  dkq::dma_constraints c;
  c.addressable_bits = 32;
  c.boundary = 65536;
  c.max_segment_bytes = 65536;
  dkq::bounce_buffer bb;
  ASSERT_TRUE(bb.init(chunks, c).ok());
  dkq::iova_allocator iova;
  ASSERT_TRUE(iova.init(dev_addr{0x10000000}, 1u << 30).ok());

  std::vector<dma_segment> data;
  data.push_back({dev_addr{0x1000'0200}, 4096 - 0x200});
  for (int i = 1; i < 64; ++i) data.push_back({dev_addr{0x1000'0000ull + i * 0x3000ull}, 8192});
  std::vector<dma_segment> out(256);
  std::vector<std::byte> frame(4096);
  std::vector<std::uint8_t> host(3 * 4096, 7);
  dkq::dma_pool::object slots[4];
  dma_segment bsegs[4];

  const std::vector<dma_segment> high{{dev_addr{0x1'0000'0000ull}, 8}};  // beyond 32 bits

  const std::uint64_t before = g_allocs.load();
  for (int round = 0; round < 3; ++round) {
    auto p1 = pages.get();
    auto p2 = pages.get();
    ASSERT_TRUE(p1.ok() && p2.ok());
    const dma_region lists[2] = {p1->mem, p2->mem};
    ASSERT_TRUE(dkq::nvme::build_prp(dkq::nvme::prp_config{}, data, lists).ok());
    ASSERT_TRUE(dkq::nvme::prp_mdts_chunk(dkq::nvme::prp_config{4096, 65536}, data, 0, 512).ok());
    ASSERT_TRUE(dkq::nvme::build_sgl(dkq::nvme::sgl_caps::from_sgls(2), data, lists).ok());
    ASSERT_TRUE(dkq::nvme::choose_data_pointer({}, {}, data).ok());
    ASSERT_TRUE(dkq::scsi::build_mfi_sgl(dkq::scsi::mfi_sgl_format::sgl64, data, frame, 128).ok());
    ASSERT_TRUE(dkq::scsi::build_ieee_sgl(data, frame, 8, lists).ok());
    ASSERT_TRUE(dkq::split_segments(c, data, out).ok());
    auto m = bb.map(host.data(), host.size(), dkq::dma_direction::bidirectional, slots, bsegs);
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(bb.complete(*m, slots).ok());
    auto a = iova.alloc(1 << 20, 1 << 16);
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(iova.free(*a, 1 << 20).ok());
    ASSERT_TRUE(pages.put(*p1).ok());
    ASSERT_TRUE(pages.put(*p2).ok());
    // Error paths too: a failed build must not allocate a message.
    ASSERT_FALSE(dkq::split_segments(c, high, out).ok());
  }
  EXPECT_EQ(g_allocs.load() - before, 0u) << "a hot-path call allocated";

  // The counter does see the library's own (setup-time) allocations.
  const std::uint64_t setup_before = g_allocs.load();
  dkq::dma_pool extra;
  ASSERT_TRUE(extra.init(backing, 512, 512).ok());
  EXPECT_GE(g_allocs.load() - setup_before, 3u);
}
