// The MegaRAID driver core (examples/scsi/driver) compiled the way a DriverKit
// extension compiles it: clang++ -stdlib=libc++ -std=gnu++20 -fno-exceptions
// -fno-rtti, no STL containers, no threads. The dext reuses the core
// unchanged, so this is the check that it can. The platform here is the
// smallest one that satisfies the concept: registers in ordinary memory that
// report a FAULTed firmware, which start() must turn into a clear error
// without touching DMA.
#include "examples/scsi/driver/megaraid.hpp"

#if defined(__cpp_exceptions) || defined(__cpp_rtti)
#error "this translation unit must be built with -fno-exceptions -fno-rtti"
#endif

namespace mr = dkq::examples::megaraid;

namespace {
struct mini_platform {
  struct window {
    std::uint32_t* regs;
    std::uint32_t read32(std::size_t off) const { return regs[off / 4]; }
    void write32(std::size_t off, std::uint32_t v) const { regs[off / 4] = v; }
  };
  std::uint32_t regs[64] = {};
  std::uint64_t t = 0;
  unsigned allocs = 0;

  dkq::result<std::uint16_t> config_read16(std::uint32_t off) {
    return off == 0 ? std::uint16_t{0x1000} : off == 2 ? std::uint16_t{0x0079} : std::uint16_t{0};
  }
  mr::bar_kind bar_type(int bar) { return bar == 1 ? mr::bar_kind::memory : mr::bar_kind::io; }
  dkq::result<window> map_bar(int) { return window{regs}; }
  dkq::status enable_bus_master() { return dkq::ok_status; }
  dkq::result<dkq::dma_region> dma_alloc(std::size_t, std::uint64_t) {
    ++allocs;
    return dkq::status{dkq::errc::no_memory, "no DMA here"};
  }
  dkq::status dma_free(const dkq::dma_region&) { return dkq::ok_status; }
  dkq::result<std::uint32_t> irq_enable() { return std::uint32_t{1}; }
  std::uint32_t irq_wait(int) { return 0; }
  std::uint64_t now_ns() { return t += 1000; }
  void delay_us(std::uint32_t us) { t += us * 1000ull; }
};
static_assert(mr::mfi_platform<mini_platform>);
}  // namespace

int main() {
  mini_platform p;
  p.regs[dkq::scsi::mfi::reg::outbound_scratch_pad / 4] = 0xf0000000u;  // FAULT
  mr::controller<mini_platform> c;
  dkq::status s = c.start(p, {});
  if (s.code() != dkq::errc::device_error || p.allocs != 0) return 1;
  p.regs[dkq::scsi::mfi::reg::outbound_scratch_pad / 4] = 0xb0000000u | (64u << 16) | 32u;  // READY
  mr::controller<mini_platform> c2;
  s = c2.start(p, {});
  return s.code() == dkq::errc::no_memory ? 0 : 2;  // got as far as allocating
}
