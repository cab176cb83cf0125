// The MegaRAID dext's portable half (examples/scsi/driverkit/task_translation.hpp
// and dext_platform.hpp) compiled the way the dext compiles it: clang++
// -stdlib=libc++ -std=gnu++20 -fno-exceptions -fno-rtti. Every template the
// dext instantiates is instantiated here over a platform of the same shape as
// DkqMegaRAID.cpp's (bar_table + indexed_window registers, DMA by address
// bits), and the pure functions are checked at run time.
#include "dkq/platform/driverkit/bar_table.hpp"
#include "dkq/platform/driverkit/indexed_window.hpp"
#include "dkq/platform/driverkit/interrupts.hpp"
#include "examples/scsi/driverkit/dext_platform.hpp"
#include "examples/scsi/driverkit/task_translation.hpp"

#if defined(__cpp_exceptions) || defined(__cpp_rtti)
#error "this translation unit must be built with -fno-exceptions -fno-rtti"
#endif

namespace mr = dkq::examples::megaraid;
namespace dx = dkq::examples::megaraid::dext;
namespace dk = dkq::driverkit;

namespace {
struct regs_accessor {
  std::uint32_t* regs;
  std::uint32_t read32(std::uint8_t, std::uint64_t off) const { return regs[off / 4]; }
  void write32(std::uint8_t, std::uint64_t off, std::uint32_t v) const { regs[off / 4] = v; }
};
struct mini_pci {
  std::uint32_t regs[64] = {};
  regs_accessor acc{regs};
  dk::bar_table bars_;
  std::uint16_t config_read16(std::uint32_t off) const {
    return off == 0 ? std::uint16_t{0x1000} : off == 2 ? std::uint16_t{0x0079} : std::uint16_t{0};
  }
  const dk::bar_table& bars() const { return bars_; }
  dkq::result<dk::indexed_window<regs_accessor>> window(int bar) const {
    return dk::indexed_window<regs_accessor>::make(&acc, bars_, bar);
  }
  dkq::status enable_bus_master() { return dkq::ok_status; }
};
struct mini_dma {
  unsigned allocs = 0;
  dkq::result<dkq::dma_region> alloc(std::size_t, unsigned, std::size_t) {
    ++allocs;
    return dkq::status{dkq::errc::no_memory, "no DMA here"};
  }
  dkq::status free(const dkq::dma_region&) { return dkq::ok_status; }
};
struct mini_clock {
  std::uint64_t t = 0;
  std::uint64_t now_ns() { return t += 1000; }
  void delay_us(std::uint32_t us) { t += us * 1000ull; }
};
using plat_t = dx::dext_platform<mini_pci, mini_dma, mini_clock>;
static_assert(mr::mfi_platform<plat_t>);

void sink(void*, void*, const dx::response_view&) noexcept {}
}  // namespace

int main() {
  mini_pci pci;
  dkq::status s = pci.bars_.resolve([](int b) -> dkq::result<dk::bar_report> {
    if (b == 0) return dk::bar_report{true, 1, 256, dk::bar_kind::io};
    if (b == 1) return dk::bar_report{true, 0, 256, dk::bar_kind::mem32};
    return dk::bar_report{};
  });
  if (!s) return 1;
  mini_dma dma;
  mini_clock clk;
  plat_t plat(pci, dma, clk);
  pci.regs[dkq::scsi::mfi::reg::outbound_scratch_pad / 4] = 0xb0000000u | (64u << 16) | 32u;  // READY
  mr::controller<plat_t> core;
  s = core.start(plat, {});
  if (s.code() != dkq::errc::no_memory || dma.allocs == 0) return 2;  // got as far as allocating

  dx::task_engine<plat_t> eng;
  if (eng.attach(core, plat, &sink, nullptr).ok()) return 3;  // not operational: refused
  dk::interrupt_bridge<dx::task_engine<plat_t>> bridge(eng);
  if (!bridge.attach(0, 0)) return 4;
  if (bridge.occurred(0, 1, 0) != 0) return 5;

  dx::task_table<int> ids;
  if (!ids.init(8)) return 6;
  auto id = ids.map();
  if (!id || !ids.begin(*id) || !ids.finish(*id) || ids.finish(*id).code() != dkq::errc::duplicate) return 7;

  mr::controller_info info;
  info.max_sge = 38;
  info.max_transfer = 1u << 20;
  auto h = dx::compute_constraints(info);
  if (!h || h->address_bits != 64 || h->max_segment_count_write != 38) return 8;

  std::uint8_t c16[16] = {0x91};
  dkq::scsi::cdb_bytes c10{};
  bool widened = true;
  dx::sync16_to_sync10(c16, c10, widened);
  if (c10[0] != 0x35 || widened) return 9;

  dx::task_view t;
  mr::completion c;
  c.mfi_status = dkq::scsi::mfi::stat::ok;
  if (dx::build_response(t, c).service != dx::service_response::task_complete) return 10;
  mr::logical_drive lds[2] = {{3, 3, 1, false}, {1, 3, 1, false}};
  auto plan = dx::make_target_plan(lds);
  return plan.count == 2 && plan.targets[0] == 1 ? 0 : 11;
}
