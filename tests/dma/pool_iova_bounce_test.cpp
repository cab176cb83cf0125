#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "dkq/dma/bounce.hpp"
#include "dkq/dma/iova.hpp"
#include "dkq/dma/pool.hpp"
#include "dma/sg_testutil.hpp"

using dkq::dev_addr;
using dkq::dma_pool;
using dkq::dma_segment;
using dkq::errc;

// ---- dma_pool ---------------------------------------------------------------

TEST(DmaPool, AlignmentAndBoundaryHoldForEveryObject) {
  dkq::test::fake_dma_memory mem;
  // Backing starts 24 bytes into a page so the first object must be pushed.
  auto backing = mem.map(0x8000'0018, 64 * 1024);
  for (std::size_t size : {24u, 100u, 256u, 1000u, 4096u})
    for (std::size_t align : {8u, 32u, 256u, 4096u})
      for (std::size_t boundary : {0u, 4096u}) {
        dma_pool p;
        ASSERT_TRUE(p.init(backing, size, align, boundary).ok());
        std::set<std::uint64_t> seen;
        std::uint64_t prev_end = 0;
        for (std::uint32_t i = 0; i < p.capacity(); ++i) {
          auto o = p.get();
          ASSERT_TRUE(o.ok());
          const std::uint64_t d = o->mem.device.value();
          EXPECT_EQ(d % align, 0u);
          if (boundary != 0) {
            EXPECT_EQ(d / boundary, (d + size - 1) / boundary);
          }
          EXPECT_GE(d, backing.device.value());
          EXPECT_LE(d + size, backing.device.value() + backing.size);
          EXPECT_GE(d, prev_end);  // no overlap, ascending on a fresh pool
          prev_end = d + size;
          EXPECT_EQ(static_cast<std::uint8_t*>(o->mem.cpu) - static_cast<std::uint8_t*>(backing.cpu),
                    static_cast<std::ptrdiff_t>(d - backing.device.value()));
          EXPECT_TRUE(seen.insert(d).second);
        }
        EXPECT_EQ(p.get().error().code(), errc::empty);
      }
}

TEST(DmaPool, GetPutReuseAndMisuse) {
  dkq::test::fake_dma_memory mem;
  auto backing = mem.map(0x10000, 16 * 4096);
  dma_pool p;
  ASSERT_TRUE(p.init(backing, 4096, 4096, 4096).ok());
  EXPECT_EQ(p.capacity(), 16u);
  auto a = p.get();
  auto b = p.get();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(p.available(), 14u);
  ASSERT_TRUE(p.put(*b).ok());
  auto c = p.get();
  EXPECT_EQ(c->mem.device, b->mem.device);  // LIFO: the warm object comes back
  ASSERT_TRUE(p.put(*c).ok());
  EXPECT_EQ(p.put(*c).code(), errc::invalid_argument);  // double put
  dma_pool::object forged = *a;
  forged.index = 5;
  EXPECT_EQ(p.put(forged).code(), errc::invalid_argument);  // memory does not match index
  forged.index = 1000;
  EXPECT_EQ(p.put(forged).code(), errc::invalid_argument);
  ASSERT_TRUE(p.put(*a).ok());
  EXPECT_EQ(p.available(), 16u);
}

TEST(DmaPool, SetupErrors) {
  dkq::test::fake_dma_memory mem;
  auto backing = mem.map(0x10000, 4096);
  dma_pool p;
  EXPECT_EQ(p.get().error().code(), errc::not_initialized);
  EXPECT_EQ(p.init(dkq::dma_region{}, 64, 64).code(), errc::invalid_argument);
  EXPECT_EQ(p.init(backing, 0, 64).code(), errc::invalid_argument);
  EXPECT_EQ(p.init(backing, 64, 48).code(), errc::invalid_argument);
  EXPECT_EQ(p.init(backing, 8192, 64).code(), errc::invalid_argument);       // holds none
  EXPECT_EQ(p.init(backing, 8192, 64, 4096).code(), errc::invalid_argument); // larger than boundary
  EXPECT_TRUE(p.init(backing, 64, 64, 0, 3).ok());
  EXPECT_EQ(p.capacity(), 3u);
}

// ---- iova_allocator ----------------------------------------------------------

TEST(Iova, AlignmentRangesAndBelow4G) {
  dkq::iova_allocator a;
  ASSERT_TRUE(a.init(dev_addr{0x1000}, (std::uint64_t{1} << 40) - 0x1000).ok());
  auto low = a.alloc_below_bits(1 << 20, 32, 1 << 20);
  ASSERT_TRUE(low.ok());
  EXPECT_EQ(low->value() % (1 << 20), 0u);
  EXPECT_LT(low->value() + (1 << 20), std::uint64_t{1} << 32);
  auto high = a.alloc(8192, 0, std::uint64_t{1} << 32);
  ASSERT_TRUE(high.ok());
  EXPECT_GE(high->value(), std::uint64_t{1} << 32);
  auto odd = a.alloc(100);  // rounded to the granule
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(a.free_bytes(), a.space_bytes() - (1 << 20) - 8192 - 4096);
  // A window too small for the request.
  EXPECT_EQ(a.alloc(0x10000, 0, 0x1000, 0x8000).error().code(), errc::no_space);
  EXPECT_EQ(a.alloc(0).error().code(), errc::invalid_argument);
  EXPECT_EQ(a.alloc(4096, 3).error().code(), errc::invalid_argument);
  ASSERT_TRUE(a.free(*low, 1 << 20).ok());
  ASSERT_TRUE(a.free(*high, 8192).ok());
  ASSERT_TRUE(a.free(*odd, 100).ok());
  EXPECT_EQ(a.free_extents(), 1u);
  EXPECT_EQ(a.free_bytes(), a.space_bytes());
}

TEST(Iova, FreeErrorsDetectDoubleFreeAndStrangers) {
  dkq::iova_allocator a;
  ASSERT_TRUE(a.init(dev_addr{0x10000}, 0x100000).ok());
  auto x = a.alloc(0x4000);
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE(a.free(*x, 0x4000).ok());
  EXPECT_EQ(a.free(*x, 0x4000).code(), errc::invalid_argument);           // double free
  EXPECT_EQ(a.free(dev_addr{0x8000}, 0x1000).code(), errc::out_of_range);  // below the space
  EXPECT_EQ(a.free(dev_addr{0x10001}, 0x1000).code(), errc::invalid_argument);
  auto y = a.alloc(0x2000);
  ASSERT_TRUE(y.ok());
  // Partly free: [y, y+0x3000) overlaps free space after y.
  EXPECT_EQ(a.free(*y, 0x3000).code(), errc::invalid_argument);
  dkq::iova_allocator u;
  EXPECT_EQ(u.alloc(4096).error().code(), errc::not_initialized);
  EXPECT_EQ(u.init(dev_addr{0x1001}, 0x1000).code(), errc::invalid_argument);
  EXPECT_EQ(u.init(dev_addr{~std::uint64_t{0} - 0xFFF}, 0x1000).code(), errc::out_of_range);
}

TEST(Iova, AllocAtTakesExactlyThatRangeAndRefusesOverlap) {
  dkq::iova_allocator a;
  ASSERT_TRUE(a.init(dev_addr{0x10000}, 0x100000).ok());  // [0x10000, 0x110000)
  auto fixed = a.alloc_at(dev_addr{0x80000}, 0x3000);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->value(), 0x80000u);
  EXPECT_EQ(a.free_extents(), 2u);
  EXPECT_EQ(a.free_bytes(), 0x100000u - 0x3000u);
  // Overlap at either end, or inside: busy; nothing changed.
  EXPECT_EQ(a.alloc_at(dev_addr{0x7f000}, 0x2000).error().code(), errc::busy);
  EXPECT_EQ(a.alloc_at(dev_addr{0x82000}, 0x2000).error().code(), errc::busy);
  EXPECT_EQ(a.alloc_at(dev_addr{0x81000}, 0x1000).error().code(), errc::busy);
  EXPECT_EQ(a.free_bytes(), 0x100000u - 0x3000u);
  // Outside the space, unaligned, empty.
  EXPECT_EQ(a.alloc_at(dev_addr{0x8000}, 0x1000).error().code(), errc::out_of_range);
  EXPECT_EQ(a.alloc_at(dev_addr{0x10f000}, 0x2000).error().code(), errc::out_of_range);
  EXPECT_EQ(a.alloc_at(dev_addr{0x20800}, 0x1000).error().code(), errc::invalid_argument);
  EXPECT_EQ(a.alloc_at(dev_addr{0x20000}, 0).error().code(), errc::invalid_argument);
  // Exactly at the edges of free extents: fine (head-only, tail-only, whole).
  EXPECT_TRUE(a.alloc_at(dev_addr{0x10000}, 0x1000).ok());
  EXPECT_TRUE(a.alloc_at(dev_addr{0x83000}, 0x1000).ok());
  EXPECT_TRUE(a.alloc_at(dev_addr{0x10f000}, 0x1000).ok());
  // First fit never hands out a taken range.
  for (;;) {
    auto r = a.alloc(0x1000);
    if (!r) break;
    EXPECT_FALSE(r->value() >= 0x80000 && r->value() < 0x84000) << std::hex << r->value();
  }
  EXPECT_EQ(a.free_bytes(), 0u);
  ASSERT_TRUE(a.free(*fixed, 0x3000).ok());
  EXPECT_TRUE(a.alloc_at(dev_addr{0x80000}, 0x3000).ok());  // freed like any allocation
  dkq::iova_allocator u;
  EXPECT_EQ(u.alloc_at(dev_addr{0x1000}, 0x1000).error().code(), errc::not_initialized);
}

TEST(Iova, ReservationsAreNeverHandedOut) {
  dkq::iova_allocator a;
  ASSERT_TRUE(a.init(dev_addr{0}, 0x40000).ok());
  ASSERT_TRUE(a.reserve(dev_addr{0}, 0x10000).ok());      // device address 0 looks like "unset"
  ASSERT_TRUE(a.reserve(dev_addr{0x20000}, 0x8000).ok());  // a window the device owns
  EXPECT_EQ(a.reserve(dev_addr{0x24000}, 0x8000).code(), errc::busy);
  std::uint64_t got = 0;
  for (;;) {
    auto r = a.alloc(0x1000);
    if (!r) break;
    EXPECT_GE(r->value(), 0x10000u);
    EXPECT_FALSE(r->value() >= 0x20000 && r->value() < 0x28000) << std::hex << r->value();
    got += 0x1000;
  }
  EXPECT_EQ(got, 0x40000u - 0x10000u - 0x8000u);
  EXPECT_EQ(a.alloc_at(dev_addr{0x20000}, 0x1000).error().code(), errc::busy);
}

TEST(Iova, FragmentationChurnAndFullCoalescing) {
  // Long-running process: random alloc/free churn. Invariants after every step:
  // allocations never overlap, free + allocated == space, extents sorted and
  // disjoint; at the end, freeing everything coalesces back to one extent.
  dkq::iova_allocator a;
  const std::uint64_t base = 0x1'0000'0000ull, size = 256ull << 20;
  ASSERT_TRUE(a.init(dev_addr{base}, size, 4096, 4096).ok());
  std::mt19937_64 rng(42);
  std::map<std::uint64_t, std::uint64_t> live;
  std::uint64_t live_bytes = 0;
  std::uint32_t max_extents = 0;
  int fails = 0;
  for (int step = 0; step < 40000; ++step) {
    // Hover around half full: allocate below the target, mostly free above it.
    const bool do_alloc = live.empty() || (live_bytes < size / 2 ? rng() % 100 < 70 : rng() % 100 < 30);
    if (do_alloc) {
      const std::uint64_t sz = (1 + rng() % (rng() % 8 == 0 ? 512 : 16)) * 4096;
      const std::uint64_t al = std::uint64_t{4096} << (rng() % 4);
      auto r = a.alloc(sz, al);
      if (!r) {
        ++fails;
        ASSERT_EQ(r.error().code(), errc::no_space);
        continue;
      }
      ASSERT_EQ(r->value() % al, 0u);
      auto it = live.lower_bound(r->value());
      if (it != live.end()) {
        ASSERT_GE(it->first, r->value() + sz);
      }
      if (it != live.begin()) {
        --it;
        ASSERT_LE(it->first + it->second, r->value());
      }
      live[r->value()] = sz;
      live_bytes += sz;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(a.free(dev_addr{it->first}, it->second).ok());
      live_bytes -= it->second;
      live.erase(it);
    }
    ASSERT_EQ(a.free_bytes() + live_bytes, size);
    max_extents = std::max(max_extents, a.free_extents());
    // Free space is always coalesced: at most one extent per gap between allocations.
    ASSERT_LE(a.free_extents(), live.size() + 1);
    if (step % 1000 == 0) {
      for (std::uint32_t i = 1; i < a.free_extents(); ++i) {
        const dma_segment p = a.free_extent(i - 1), q = a.free_extent(i);
        ASSERT_LT(p.addr.value() + p.len, q.addr.value());  // sorted, disjoint, coalesced
      }
    }
  }
  // External fragmentation stays low with address-ordered first fit: the
  // largest hole is a good share of the free space even after 40k operations.
  EXPECT_GE(a.largest_free() * 4, a.free_bytes());
  // ... and a large, aligned allocation still succeeds at half occupancy.
  auto big = a.alloc(16ull << 20, 1ull << 20);
  ASSERT_TRUE(big.ok()) << big.error().message();
  ASSERT_TRUE(a.free(*big, 16ull << 20).ok());
  for (auto& [addr, sz] : live) ASSERT_TRUE(a.free(dev_addr{addr}, sz).ok());
  EXPECT_EQ(a.free_extents(), 1u);
  EXPECT_EQ(a.largest_free(), size);
  RecordProperty("alloc_failures", fails);
  RecordProperty("max_free_extents", static_cast<int>(max_extents));
}

TEST(Iova, ExtentTableFullIsReportedNotCorrupted) {
  dkq::iova_allocator a;
  ASSERT_TRUE(a.init(dev_addr{0x100000}, 64 * 4096, 4096, 4).ok());
  std::vector<dev_addr> v;
  for (int i = 0; i < 64; ++i) v.push_back(*a.alloc(4096));
  EXPECT_EQ(a.free_extents(), 0u);
  // Free every other page: needs a new extent each time, the table holds 4.
  int full = 0;
  for (int i = 0; i < 64; i += 2) {
    auto s = a.free(v[static_cast<std::size_t>(i)], 4096);
    if (!s) {
      EXPECT_EQ(s.code(), errc::no_space);
      ++full;
    }
  }
  EXPECT_EQ(a.free_extents(), 4u);
  EXPECT_EQ(full, 28);
  EXPECT_EQ(a.free_bytes(), 4u * 4096);
}

// ---- bounce_buffer -------------------------------------------------------------

TEST(Bounce, CopyInBeforeWriteCopyOutAfterRead) {
  dkq::test::fake_dma_memory mem;
  auto low = mem.map(0x10'0000, 8 * 4096);  // below 4 GiB
  dma_pool chunks;
  ASSERT_TRUE(chunks.init(low, 4096, 4096).ok());
  dkq::dma_constraints c;
  c.addressable_bits = 32;
  dkq::bounce_buffer bb;
  ASSERT_TRUE(bb.init(chunks, c).ok());

  // The user buffer sits above 4 GiB: the device cannot reach it.
  const std::vector<dma_segment> user_dev{{dev_addr{0x5'0000'0000ull}, 10000}};
  ASSERT_TRUE(dkq::needs_bounce(c, user_dev));

  std::vector<std::uint8_t> host(10000);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<dma_pool::object> slots(8);
  std::vector<dma_segment> segs(8);

  // Write: data must be in the chunks when map() returns (before posting).
  auto w = bb.map(host.data(), host.size(), dkq::dma_direction::to_device, slots, segs);
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(w->chunks, 3u);
  EXPECT_FALSE(dkq::needs_bounce(c, std::vector<dma_segment>(segs.begin(), segs.begin() + 3)));
  std::uint64_t covered = 0;
  for (std::uint32_t i = 0; i < w->chunks; ++i) {
    const std::uint8_t* dev = mem.translate(segs[i].addr.value(), segs[i].len);
    ASSERT_NE(dev, nullptr);
    EXPECT_EQ(std::memcmp(dev, host.data() + covered, segs[i].len), 0);
    covered += segs[i].len;
  }
  EXPECT_EQ(covered, host.size());
  ASSERT_TRUE(bb.complete(*w, slots).ok());
  EXPECT_EQ(chunks.available(), 8u);

  // Read: the host must be untouched until complete(), then hold device data.
  std::vector<std::uint8_t> dst(5000, 0xEE);
  auto r = bb.map(dst.data(), dst.size(), dkq::dma_direction::from_device, slots, segs);
  ASSERT_TRUE(r.ok());
  for (std::uint32_t i = 0; i < r->chunks; ++i)  // the "device" writes the chunks
    std::memset(slots[i].mem.cpu, 0x40 + static_cast<int>(i), segs[i].len);
  EXPECT_EQ(dst[0], 0xEE);
  ASSERT_TRUE(bb.complete(*r, slots).ok());
  EXPECT_EQ(dst[0], 0x40);
  EXPECT_EQ(dst[4096], 0x41);
  EXPECT_EQ(dst[4999], 0x41);
  EXPECT_EQ(chunks.available(), 8u);
}

TEST(Bounce, Errors) {
  dkq::test::fake_dma_memory mem;
  auto high = mem.map(0x2'0000'0000ull, 4 * 4096);
  dma_pool hp;
  ASSERT_TRUE(hp.init(high, 4096, 4096).ok());
  dkq::dma_constraints c;
  c.addressable_bits = 32;
  dkq::bounce_buffer bb;
  EXPECT_EQ(bb.init(hp, c).code(), errc::constraint);  // bouncing into unreachable memory

  auto odd = mem.map(0x20'0000, 4 * 4096);
  dma_pool op;
  ASSERT_TRUE(op.init(odd, 1000, 8).ok());  // chunks 8-byte aligned only
  dkq::dma_constraints page_aligned = c;
  page_aligned.alignment = 4096;
  EXPECT_EQ(bb.init(op, page_aligned).code(), errc::constraint);

  auto low = mem.map(0x10'0000, 2 * 4096);
  dma_pool lp;
  ASSERT_TRUE(lp.init(low, 4096, 4096).ok());
  ASSERT_TRUE(bb.init(lp, c).ok());
  std::vector<std::uint8_t> host(3 * 4096);
  std::vector<dma_pool::object> slots(8);
  std::vector<dma_segment> segs(8);
  EXPECT_EQ(bb.map(host.data(), host.size(), dkq::dma_direction::to_device, slots, segs).error().code(),
            errc::empty);
  EXPECT_EQ(lp.available(), 2u);  // nothing leaked
  EXPECT_EQ(bb.map(host.data(), 0, dkq::dma_direction::to_device, slots, segs).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(bb.map(nullptr, 10, dkq::dma_direction::to_device, slots, segs).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(bb.map(host.data(), 8192, dkq::dma_direction::to_device,
                   std::span<dma_pool::object>(slots.data(), 1), segs)
                .error()
                .code(),
            errc::no_space);
}
