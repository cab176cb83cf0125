// libFuzzer target for the scatter-gather splitter and every descriptor
// builder. Each input picks a builder, a configuration and a segment list;
// whatever the builder accepts is read back by the same independent checkers
// the unit tests use (tests/*/..._checker.hpp) and any rule violation traps.
// Rejections must be one of the documented error codes.
//
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined (see run_fuzz.sh).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <vector>

#include "dkq/dma/constraints.hpp"
#include "dkq/dma/iova.hpp"
#include "dkq/nvme/prp.hpp"
#include "dkq/nvme/sgl.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "dma/sg_testutil.hpp"
#include "dma/split_checker.hpp"
#include "nvme/prp_checker.hpp"
#include "nvme/sgl_checker.hpp"
#include "scsi/mfi_checker.hpp"

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;
using dkq::errc;

namespace {

// Accepted/total inputs per builder; printed at exit when DKQ_FUZZ_STATS is
// set, to confirm the fuzzer reaches the success paths the checkers inspect.
struct stats {
  unsigned long accepted[7] = {}, total[7] = {};
  ~stats() {
    if (std::getenv("DKQ_FUZZ_STATS") == nullptr) return;
    const char* names[7] = {"split", "prp", "sgl", "policy", "mfi", "ieee", "iova"};
    for (int i = 0; i < 7; ++i) std::fprintf(stderr, "%-7s accepted %lu of %lu\n", names[i], accepted[i], total[i]);
  }
} g_stats;
int g_which = 0;
void accepted() { ++g_stats.accepted[g_which]; }

[[noreturn]] void violation(const char* what, const std::string& why) {
  std::fprintf(stderr, "fuzz_sg: %s: %s\n", what, why.c_str());
  __builtin_trap();
}

void expect_code(const dkq::status& s, std::initializer_list<errc> allowed, const char* what) {
  for (errc e : allowed)
    if (s.code() == e) return;
  violation(what, std::string("unexpected error ") + dkq::errc_name(s.code()) + ": " + s.message());
}

// Descriptor memory the device can read, mapped once.
struct memory {
  dkq::test::fake_dma_memory mem;
  std::vector<dma_region> prp_pages[5];  // page sizes 4K..64K, 6 pages each
  std::vector<dma_region> sgl_regions[4];
  std::vector<dma_region> chain_bufs[4];
  memory() {
    for (unsigned p = 0; p < 5; ++p) {
      const std::uint64_t ps = 4096ull << p;
      for (unsigned i = 0; i < 6; ++i)
        prp_pages[p].push_back(mem.map(0x7F00'0000'0000ull + (std::uint64_t{p} << 36) + i * 4 * ps, ps));
    }
    const std::size_t sizes[4] = {16, 48, 256, 4096};
    for (unsigned k = 0; k < 4; ++k)
      for (unsigned i = 0; i < 40; ++i) {
        sgl_regions[k].push_back(mem.map(0x7E00'0000'0000ull + (std::uint64_t{k} << 32) + i * 0x10000, sizes[k]));
        chain_bufs[k].push_back(mem.map(0x7D00'0000'0000ull + (std::uint64_t{k} << 32) + i * 0x10000, sizes[k]));
      }
  }
};
memory& mem() {
  static memory m;
  return m;
}

std::vector<dma_segment> segments(FuzzedDataProvider& in, std::size_t max_n, std::uint64_t page) {
  std::vector<dma_segment> v;
  const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, max_n);
  // Shapes: 0 arbitrary, 1 page-structured (PRP-friendly), 2 small addresses.
  const int shape = in.ConsumeIntegralInRange<int>(0, 2);
  for (std::size_t i = 0; i < n && in.remaining_bytes() > 0; ++i) {
    std::uint64_t a = 0, l = 0;
    switch (shape) {
      case 0:
        a = in.ConsumeIntegral<std::uint64_t>();
        l = in.ConsumeBool() ? in.ConsumeIntegral<std::uint64_t>() : in.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 20);
        break;
      case 1: {
        const std::uint64_t pg = in.ConsumeIntegralInRange<std::uint64_t>(1, 1 << 24) * page;
        const std::uint64_t off = i == 0 ? in.ConsumeIntegralInRange<std::uint64_t>(0, page - 1) & ~std::uint64_t{3} : 0;
        a = pg + off;
        l = in.ConsumeIntegralInRange<std::uint64_t>(1, 8) * page - off;
        if (in.ConsumeBool()) l = in.ConsumeIntegralInRange<std::uint64_t>(1, 8 * page);
        break;
      }
      default:
        a = in.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 16);
        l = in.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 12);
        break;
    }
    v.push_back(dma_segment{dev_addr{a}, l});
  }
  return v;
}

void fuzz_split(FuzzedDataProvider& in) {
  dkq::dma_constraints c;
  c.alignment = std::uint64_t{1} << in.ConsumeIntegralInRange<unsigned>(0, 12);
  c.length_granularity = std::uint64_t{1} << in.ConsumeIntegralInRange<unsigned>(0, 6);
  c.boundary = in.ConsumeBool() ? 0 : std::uint64_t{1} << in.ConsumeIntegralInRange<unsigned>(0, 40);
  c.max_segment_bytes = in.ConsumeBool() ? ~std::uint64_t{0} : in.ConsumeIntegral<std::uint64_t>();
  c.max_segments = in.ConsumeIntegral<std::uint32_t>();
  c.addressable_bits = in.ConsumeIntegralInRange<unsigned>(0, 65);
  c.max_transfer = in.ConsumeBool() ? ~std::uint64_t{0} : in.ConsumeIntegral<std::uint64_t>();
  const std::size_t cap = in.ConsumeIntegralInRange<std::size_t>(0, 512);
  const bool merge = in.ConsumeBool();
  const auto segs = segments(in, 16, 4096);
  std::vector<dma_segment> out(cap);
  auto r = dkq::split_segments(c, segs, out, dkq::split_options{merge});
  if (!r) {
    expect_code(r.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint, errc::no_space}, "split");
    return;
  }
  out.resize(r->count);
  if (std::string e = dkq::test::check_split(c, segs, out); !e.empty()) violation("split", e);
  accepted();
}

void fuzz_prp(FuzzedDataProvider& in) {
  const unsigned p = in.ConsumeIntegralInRange<unsigned>(0, 4);
  dkq::nvme::prp_config cfg;
  cfg.page_size = 4096u << p;
  cfg.max_transfer = in.ConsumeBool() ? 0 : std::uint64_t{cfg.page_size} << in.ConsumeIntegralInRange<unsigned>(0, 10);
  const auto& pages = mem().prp_pages[p];
  std::vector<dma_region> lists;
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0: {
      // A small first list region somewhere in the first page.
      const std::size_t off = in.ConsumeIntegralInRange<std::size_t>(0, cfg.page_size / 8 - 1) * 8;
      const std::size_t len = in.ConsumeIntegralInRange<std::size_t>(1, (cfg.page_size - off) / 8) * 8;
      lists.push_back(*pages[0].slice(off, len));
      break;
    }
    case 1: {
      // A few slots at the very end of the page, so lists that exactly fill a
      // region (the chain-or-data edge, libvfn PR #67) are common.
      const std::size_t slots = in.ConsumeIntegralInRange<std::size_t>(1, 64);
      lists.push_back(*pages[0].slice(cfg.page_size - 8 * slots, 8 * slots));
      break;
    }
    default:
      break;
  }
  const std::size_t npages = in.ConsumeIntegralInRange<std::size_t>(0, 5);
  for (std::size_t i = 1; i <= npages; ++i) lists.push_back(pages[i]);
  const auto segs = segments(in, 10, cfg.page_size);
  const std::uint32_t bs = 512u << in.ConsumeIntegralInRange<unsigned>(0, 5);
  const std::uint64_t total = dkq::test::total_bytes(segs);

  // Whole transfer, or MDTS-sized pieces when the policy would split.
  std::uint64_t off = 0;
  for (int piece = 0; piece < 64; ++piece) {
    std::uint64_t len = ~std::uint64_t{0};
    if (cfg.max_transfer != 0 && !segs.empty() && off < total) {
      auto n = dkq::nvme::prp_mdts_chunk(cfg, segs, off, bs);
      if (!n) {
        expect_code(n.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint}, "mdts_chunk");
        return;
      }
      if (*n == 0 || *n > cfg.max_transfer || off + *n > total) violation("mdts_chunk", "bad share");
      if (off + *n < total && *n % bs != 0) violation("mdts_chunk", "share not a block multiple");
      len = *n;
    }
    auto r = dkq::nvme::build_prp(cfg, segs, lists, off, len);
    if (!r) {
      expect_code(r.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint, errc::no_space}, "prp");
      return;
    }
    if (len == ~std::uint64_t{0}) len = total - off;
    if (std::string e = dkq::test::check_prp(mem().mem, cfg.page_size, r->prp1, r->prp2,
                                             dkq::test::window(segs, off, len));
        !e.empty())
      violation("prp", e);
    if (piece == 0) accepted();
    off += len;
    if (off >= total) return;
  }
}

void fuzz_sgl(FuzzedDataProvider& in) {
  const auto caps = dkq::nvme::sgl_caps::from_sgls(in.ConsumeIntegral<std::uint32_t>());
  const auto& regions = mem().sgl_regions[in.ConsumeIntegralInRange<unsigned>(0, 3)];
  const std::size_t nreg = in.ConsumeIntegralInRange<std::size_t>(0, regions.size());
  const std::vector<dma_region> use(regions.begin(), regions.begin() + static_cast<long>(nreg));
  const std::uint64_t mdts = in.ConsumeBool() ? 0 : in.ConsumeIntegral<std::uint32_t>();
  const auto segs = segments(in, 200, 4096);
  auto r = dkq::nvme::build_sgl(caps, segs, use, mdts);
  if (!r) {
    expect_code(r.error(),
                {errc::invalid_argument, errc::out_of_range, errc::constraint, errc::no_space, errc::not_supported},
                "sgl");
    return;
  }
  if (std::string e = dkq::test::check_sgl(mem().mem, &r->sgl1, caps.dword_aligned, segs); !e.empty())
    violation("sgl", e);
  if (mdts != 0 && dkq::test::total_bytes(segs) > mdts) violation("sgl", "accepted beyond MDTS");
  accepted();
}

void fuzz_policy(FuzzedDataProvider& in) {
  dkq::nvme::dptr_policy pol{dkq::nvme::sgl_caps::from_sgls(in.ConsumeIntegral<std::uint8_t>()),
                             in.ConsumeIntegral<std::uint32_t>()};
  dkq::nvme::prp_config cfg;
  dkq::nvme::dptr_request req{in.ConsumeBool(), in.ConsumeBool()};
  const auto segs = segments(in, 12, 4096);
  auto r = dkq::nvme::choose_data_pointer(pol, cfg, segs, req);
  if (!r) {
    expect_code(r.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint}, "policy");
    return;
  }
  // Whatever was chosen must build (given enough descriptor memory) and check.
  if (*r == dkq::nvme::data_pointer::prp) {
    auto b = dkq::nvme::build_prp(cfg, segs, mem().prp_pages[0]);
    if (!b) {
      expect_code(b.error(), {errc::no_space}, "policy->prp");
      return;
    }
    if (std::string e = dkq::test::check_prp(mem().mem, 4096, b->prp1, b->prp2, segs); !e.empty())
      violation("policy->prp", e);
    accepted();
  } else {
    if (req.admin_queue || !pol.caps.supported) violation("policy", "SGL chosen where it is not allowed");
    auto b = dkq::nvme::build_sgl(pol.caps, segs, mem().sgl_regions[3]);
    if (!b) {
      expect_code(b.error(), {errc::no_space, errc::constraint}, "policy->sgl");
      return;
    }
    if (std::string e = dkq::test::check_sgl(mem().mem, &b->sgl1, pol.caps.dword_aligned, segs); !e.empty())
      violation("policy->sgl", e);
    accepted();
  }
}

void fuzz_mfi(FuzzedDataProvider& in) {
  const int f = in.ConsumeIntegralInRange<int>(0, 2);
  const auto fmt = f == 0 ? dkq::scsi::mfi_sgl_format::sgl32
                   : f == 1 ? dkq::scsi::mfi_sgl_format::sgl64
                            : dkq::scsi::mfi_sgl_format::ieee;
  const std::uint32_t max_sge = in.ConsumeIntegralInRange<std::uint32_t>(0, 300);
  std::vector<std::byte> area(in.ConsumeIntegralInRange<std::size_t>(0, 4096));
  const auto segs = segments(in, 260, 4096);
  auto r = dkq::scsi::build_mfi_sgl(fmt, segs, area, max_sge);
  if (!r) {
    expect_code(r.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint, errc::no_space}, "mfi");
    return;
  }
  if (std::string e = dkq::test::check_mfi_sgl(reinterpret_cast<const std::uint8_t*>(area.data()), f, r->sge_count,
                                               r->frame_flags, r->data_len, max_sge, segs);
      !e.empty())
    violation("mfi", e);
  accepted();
}

void fuzz_ieee(FuzzedDataProvider& in) {
  const unsigned slots = in.ConsumeIntegralInRange<unsigned>(0, 16);
  std::vector<std::byte> main(16 * in.ConsumeIntegralInRange<std::size_t>(0, 16));
  const auto& bufs = mem().chain_bufs[in.ConsumeIntegralInRange<unsigned>(0, 3)];
  const std::size_t nb = in.ConsumeIntegralInRange<std::size_t>(0, bufs.size());
  const std::vector<dma_region> use(bufs.begin(), bufs.begin() + static_cast<long>(nb));
  dkq::scsi::ieee_sgl_options opt{in.ConsumeBool(), in.ConsumeBool()};
  const auto segs = segments(in, 300, 4096);
  auto r = dkq::scsi::build_ieee_sgl(segs, main, slots, use, opt);
  if (!r) {
    expect_code(r.error(), {errc::invalid_argument, errc::out_of_range, errc::constraint, errc::no_space}, "ieee");
    return;
  }
  if (std::string e = dkq::test::check_ieee_sgl(mem().mem, reinterpret_cast<const std::uint8_t*>(main.data()), slots,
                                                opt.end_of_list, opt.chain_iocplbnta, r->main_chain_index, segs);
      !e.empty())
    violation("ieee", e);
  accepted();
}

// IOVA allocator under arbitrary alloc/free sequences, against a model of
// the live ranges: alignment, window, no overlap, exact byte accounting,
// sorted/disjoint/coalesced free extents, double frees rejected.
void fuzz_iova(FuzzedDataProvider& in) {
  const std::uint64_t g = 4096;
  const std::uint64_t base = in.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 20) * g;
  const std::uint64_t size = in.ConsumeIntegralInRange<std::uint64_t>(1, 4096) * g;
  dkq::iova_allocator a;
  if (!a.init(dev_addr{base}, size, g, in.ConsumeIntegralInRange<std::uint32_t>(1, 64)).ok())
    violation("iova", "init of a valid space failed");
  std::map<std::uint64_t, std::uint64_t> live;
  std::uint64_t live_bytes = 0;
  for (int op = 0; op < 400 && in.remaining_bytes() > 0; ++op) {
    const int kind = in.ConsumeIntegralInRange<int>(0, 3);
    if (kind <= 1 || live.empty()) {
      const std::uint64_t sz = in.ConsumeIntegralInRange<std::uint64_t>(1, 64 * g);
      const std::uint64_t al = g << in.ConsumeIntegralInRange<unsigned>(0, 6);
      const std::uint64_t lo = in.ConsumeBool() ? 0 : base + in.ConsumeIntegralInRange<std::uint64_t>(0, size);
      const std::uint64_t hi = in.ConsumeBool() ? dkq::iova_allocator::no_limit
                                                : base + in.ConsumeIntegralInRange<std::uint64_t>(0, size);
      auto r = a.alloc(sz, al, lo, hi);
      if (!r) {
        expect_code(r.error(), {errc::no_space}, "iova alloc");
        continue;
      }
      const std::uint64_t at = r->value(), len = (sz + g - 1) / g * g;
      if (at % al != 0) violation("iova", "allocation not aligned");
      if (at < lo || at + len > hi) violation("iova", "allocation outside the window");
      if (at < base || at + len > base + size) violation("iova", "allocation outside the space");
      auto it = live.lower_bound(at);
      if (it != live.end() && it->first < at + len) violation("iova", "allocation overlaps a live range");
      if (it != live.begin() && std::prev(it)->first + std::prev(it)->second > at)
        violation("iova", "allocation overlaps a live range");
      live[at] = len;
      live_bytes += len;
    } else if (kind == 2) {
      auto it = live.begin();
      std::advance(it, static_cast<long>(in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1)));
      const std::uint64_t at = it->first, len = it->second;
      auto s = a.free(dev_addr{at}, len);
      if (!s) {
        expect_code(s, {errc::no_space}, "iova free");  // extent table full: still allocated
        continue;
      }
      live.erase(it);
      live_bytes -= len;
      if (a.free(dev_addr{at}, len).ok()) violation("iova", "double free accepted");
    } else {
      // A free of a range that is (partly) free already must be refused.
      const std::uint32_t n = a.free_extents();
      if (n == 0) continue;
      const dma_segment e = a.free_extent(in.ConsumeIntegralInRange<std::uint32_t>(0, n - 1));
      if (a.free(e.addr, g).ok()) violation("iova", "free of free space accepted");
    }
    if (a.free_bytes() + live_bytes != size) violation("iova", "byte accounting");
    std::uint64_t prev_end = 0;
    for (std::uint32_t i = 0; i < a.free_extents(); ++i) {
      const dma_segment e = a.free_extent(i);
      const std::uint64_t s0 = e.addr.value(), e0 = s0 + e.len;
      if (e.len == 0 || s0 < base || e0 > base + size) violation("iova", "free extent outside the space");
      if (i > 0 && s0 <= prev_end) violation("iova", "free extents unsorted, overlapping or not coalesced");
      auto it = live.lower_bound(s0);
      if (it != live.end() && it->first < e0) violation("iova", "free extent overlaps a live range");
      if (it != live.begin() && std::prev(it)->first + std::prev(it)->second > s0)
        violation("iova", "free extent overlaps a live range");
      prev_end = e0;
    }
  }
  accepted();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  g_which = in.ConsumeIntegralInRange<int>(0, 6);
  ++g_stats.total[g_which];
  switch (g_which) {
    case 0: fuzz_split(in); break;
    case 1: fuzz_prp(in); break;
    case 2: fuzz_sgl(in); break;
    case 3: fuzz_policy(in); break;
    case 4: fuzz_mfi(in); break;
    case 5: fuzz_ieee(in); break;
    default: fuzz_iova(in); break;
  }
  return 0;
}
