// Cost of building data descriptors for one I/O, in ns per I/O (the time per
// iteration), for NVMe PRP, NVMe SGL, MegaRAID MFI SGL64 and the MPI 2.5 IEEE
// SGL, plus the constraint splitter on DriverKit's one-long-segment input.
//
// Names: BM_<format>/<bytes>/<layout>, bytes in {4096, 131072, 1048576}:
//   contiguous  one device-contiguous segment, page aligned
//   scattered   the transfer in max(2, min(bytes/4096, 128)) equal pieces on
//               non-adjacent pages; the first piece ends on a page boundary and
//               the rest start on one, so PRPs can describe it (4 KiB: two 2 KiB
//               halves in different pages; 128 KiB: 32 x 4 KiB; 1 MiB: 128 x 8 KiB,
//               MegaRAID's 128-SGE limit)
// Descriptor memory (PRP list pages, SGL segments, chain frames) is taken once
// from a dma_pool, as a driver does per command; only the build is timed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dkq/dma/constraints.hpp"
#include "dkq/dma/pool.hpp"
#include "dkq/nvme/prp.hpp"
#include "dkq/nvme/sgl.hpp"
#include "dkq/scsi/mfi_sgl.hpp"

namespace {

using dkq::dev_addr;
using dkq::dma_region;
using dkq::dma_segment;

constexpr std::uint64_t page = 4096;

std::vector<dma_segment> make_data(std::uint64_t bytes, bool scattered) {
  const std::uint64_t base = 0x1'2340'0000ull;  // page aligned, above 4 GiB
  if (!scattered) return {dma_segment{dev_addr{base}, bytes}};
  std::uint64_t pieces = bytes / page;
  if (pieces < 2) pieces = 2;
  if (pieces > 128) pieces = 128;
  const std::uint64_t len = bytes / pieces;
  std::vector<dma_segment> v;
  for (std::uint64_t i = 0; i < pieces; ++i) {
    // Piece i lives in its own run of pages, with a one-page hole before the next.
    const std::uint64_t run = base + i * ((len + page - 1) / page + 1) * page;
    const std::uint64_t start = i == 0 ? run + ((page - len % page) % page) : run;
    v.push_back(dma_segment{dev_addr{start}, len});
  }
  return v;
}

// Descriptor memory: a pool of page-sized, page-aligned objects.
struct descriptor_memory {
  void* raw = nullptr;
  dkq::dma_pool pool;
  std::vector<dma_region> pages;
  explicit descriptor_memory(unsigned n) {
    raw = std::aligned_alloc(page, n * page);
    std::memset(raw, 0, n * page);
    if (!pool.init(dma_region{raw, dev_addr{0x7000'0000}, n * page}, page, page, page).ok()) std::abort();
    for (unsigned i = 0; i < n; ++i) pages.push_back(pool.get()->mem);
  }
  ~descriptor_memory() { std::free(raw); }
};

void bm_prp(benchmark::State& st, std::uint64_t bytes, bool scattered) {
  const auto data = make_data(bytes, scattered);
  descriptor_memory mem(2);
  const dkq::nvme::prp_config cfg{};
  for (auto _ : st) {
    auto r = dkq::nvme::build_prp(cfg, data, mem.pages);
    if (!r.ok()) st.SkipWithError(r.error().message());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void bm_nvme_sgl(benchmark::State& st, std::uint64_t bytes, bool scattered) {
  const auto data = make_data(bytes, scattered);
  descriptor_memory mem(2);
  const auto caps = dkq::nvme::sgl_caps::from_sgls(0x2);
  for (auto _ : st) {
    auto r = dkq::nvme::build_sgl(caps, data, mem.pages);
    if (!r.ok()) st.SkipWithError(r.error().message());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void bm_mfi_sgl64(benchmark::State& st, std::uint64_t bytes, bool scattered) {
  const auto data = make_data(bytes, scattered);
  // The SGL area of a pass-through frame and the frames after it (QEMU maps
  // 128 x 16 bytes behind every frame).
  alignas(64) static std::byte frames[2048];
  for (auto _ : st) {
    auto r = dkq::scsi::build_mfi_sgl(dkq::scsi::mfi_sgl_format::sgl64, data, frames, 128);
    if (!r.ok()) st.SkipWithError(r.error().message());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void bm_ieee_sgl(benchmark::State& st, std::uint64_t bytes, bool scattered) {
  const auto data = make_data(bytes, scattered);
  descriptor_memory mem(1);
  // A 256-byte Fusion request frame: the SGL starts at 0x60, 10 slots.
  alignas(64) static std::byte frame[256];
  for (auto _ : st) {
    auto r = dkq::scsi::build_ieee_sgl(data, std::span<std::byte>(frame + 0x60, 160), 10, mem.pages);
    if (!r.ok()) st.SkipWithError(r.error().message());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

// DriverKit hands a SCSI task one long segment; a 3108-class HBA wants 64 KiB
// pieces that do not cross 64 KiB and 32-bit addresses (scattered 1 MiB input
// crosses 64 KiB lines often enough to need more than 129 pieces, so the count
// limit is the MFI header's 255).
void bm_split(benchmark::State& st, std::uint64_t bytes, bool scattered) {
  auto data = make_data(bytes, scattered);
  for (auto& s : data) s.addr = dev_addr{s.addr.value() & 0xFFFF'FFFFull};
  dkq::dma_constraints c;
  c.max_segment_bytes = 64 * 1024;
  c.boundary = 64 * 1024;
  c.alignment = 4;
  c.addressable_bits = 32;
  c.max_segments = 255;
  std::vector<dma_segment> out(255);
  for (auto _ : st) {
    auto r = dkq::split_segments(c, data, out);
    if (!r.ok()) st.SkipWithError(r.error().message());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

int register_all() {
  using fn = void (*)(benchmark::State&, std::uint64_t, bool);
  const struct {
    const char* name;
    fn f;
  } families[] = {{"BM_prp", bm_prp},
                  {"BM_nvme_sgl", bm_nvme_sgl},
                  {"BM_mfi_sgl64", bm_mfi_sgl64},
                  {"BM_ieee_sgl", bm_ieee_sgl},
                  {"BM_split", bm_split}};
  for (const auto& fam : families)
    for (std::uint64_t bytes : {4096ull, 131072ull, 1048576ull})
      for (bool scattered : {false, true}) {
        const std::string name =
            std::string(fam.name) + "/" + std::to_string(bytes) + (scattered ? "/scattered" : "/contiguous");
        benchmark::RegisterBenchmark(name.c_str(), fam.f, bytes, scattered);
      }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
