// The NVMe core driven through the dext's platform adapter
// (examples/nvme/driverkit/dext_platform.hpp) with the DriverKit backend's
// portable pieces standing where the Apple objects stand in the dext: BARs
// through a bar_table resolved from GetBARInfo-style answers (BAR 0 64-bit,
// the MSI-X table in BAR 4 at memory index 1), DMA checked with
// region_from_segments and recorded in a dma_book. Bring-up, I/O through the
// block translator, byte-exact data, and every DMA region freed at the end.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "../../examples/nvme/driverkit/block_translation.hpp"
#include "../../examples/nvme/driverkit/dext_platform.hpp"
#include "dkq/platform/driverkit/driverkit.hpp"
#include "support/fake_nvme_controller.hpp"

namespace {

using dkq::errc;
using dkq::test::fake_nvme_controller;
namespace dk = dkq::driverkit;
namespace drv = dkq::nvme_driver;
namespace dx = dkq::nvme_driver::dext;

// Stands for apple::pci_device: GetBARInfo answers, a mapping per memory index.
struct fake_dk_pci {
  fake_nvme_controller* dev;
  dk::bar_table bars;
  bool bus_master = false;
  int maps = 0;
  dkq::status open() {
    return bars.resolve([](int b) -> dkq::result<dk::bar_report> {
      if (b == 0) return dk::bar_report{true, 0, 0x4000, dk::bar_kind::mem64};
      if (b == 4) return dk::bar_report{true, 1, 0x1000, dk::bar_kind::mem32};
      return dk::bar_report{};
    });
  }
  dkq::result<dkq::mmio_window> map(int bar) {
    auto e = bars.memory_bar(bar);
    if (!e) return e.error();
    ++maps;
    if (e->memory_index != 0) return dkq::status{errc::not_supported, "fake maps memory index 0 only"};
    return dev->window();
  }
  std::uint32_t config_read32(std::uint32_t off) {
    if (dev->removed) return 0xffffffffu;
    if (off == 0) return (std::uint32_t{dev->device_id} << 16) | dev->vendor;
    if (off == 8) return 0x01080200u;
    return 0;
  }
  dkq::status enable_bus_master() {
    bus_master = true;
    return dkq::ok_status;
  }
};

// Stands for apple::dma_allocator: "PrepareForDMA" answers with one segment
// whose address is what the fake controller dereferences (the CPU address).
struct fake_dk_dma {
  dk::dma_book<void*, 256> book;
  unsigned last_bits = 0;
  dkq::result<dkq::dma_region> alloc(std::size_t n, unsigned bits, std::size_t align) {
    last_bits = bits;
    const std::size_t len = (n + 4095) & ~std::size_t{4095};
    void* p = std::aligned_alloc(4096, len);
    if (p == nullptr) return dkq::status{errc::no_memory, "fake"};
    std::memset(p, 0, len);
    const dkq::dma_segment seg{dkq::dev_addr{reinterpret_cast<std::uint64_t>(p)}, len};
    auto r = dk::region_from_segments(p, n, {&seg, 1}, bits, align);
    if (!r) {
      std::free(p);
      return r.error();
    }
    if (dkq::status s = book.add(*r, p); !s) {
      std::free(p);
      return s;
    }
    return *r;
  }
  dkq::status free(const dkq::dma_region& r) {
    auto h = book.remove(r);
    if (!h) return h.error();
    std::free(*h);
    return dkq::ok_status;
  }
  ~fake_dk_dma() {
    book.drain([](const dkq::dma_region&, void* const& p) { std::free(p); });
  }
};

struct fake_clock {
  fake_nvme_controller* dev;
  std::uint64_t now = 1'000'000'000;
  std::uint64_t now_ns() const noexcept { return now; }
  void delay_us(std::uint32_t us) noexcept {
    now += std::uint64_t{us} * 1000;
    dev->step();
  }
};

using plat_t = dx::dext_platform<fake_dk_pci, fake_dk_dma, fake_clock>;
static_assert(drv::pci_platform<plat_t>);

TEST(NvmeDextPlatform, CoreRunsThroughTheDriverKitBackendPieces) {
  fake_nvme_controller dev;
  fake_dk_pci pci{&dev, {}};
  ASSERT_TRUE(pci.open());
  fake_dk_dma dma;
  fake_clock clock{&dev};
  plat_t plat{&pci, &dma, &clock};
  {
    drv::controller<plat_t> ctrl;
    ASSERT_TRUE(ctrl.init(plat).ok());
    EXPECT_TRUE(pci.bus_master);
    EXPECT_EQ(pci.maps, 1);
    EXPECT_EQ(dma.last_bits, 64u);
    EXPECT_GT(dma.book.live(), 0u);
    drv::io_queue<plat_t> q;
    ASSERT_TRUE(ctrl.create_io_queue(q, 16, false, 0).ok());
    const drv::namespace_info* ns = ctrl.find_ns(2);
    ASSERT_NE(ns, nullptr);
    auto params = dx::make_device_params(ctrl.info(), *ns, q.max_transfer(), q.depth());
    ASSERT_TRUE(params.ok());
    dx::block_translator<drv::io_queue<plat_t>, 64> t;
    ASSERT_TRUE(t.init(q, 2, *params).ok());

    // The "kernel's" data buffer: any device address the controller can reach.
    auto data = dma.alloc(8192, 64, 4096);
    ASSERT_TRUE(data.ok());
    auto* b = data->cpu_at<std::uint8_t>();
    for (std::size_t i = 0; i < 8192; ++i) b[i] = static_cast<std::uint8_t>(i ^ 0xa5);
    ASSERT_TRUE(t.read_write({false, 1, data->device.value(), 8192, 100, 2, false}).ok());
    ASSERT_TRUE(t.synchronize(2).ok());
    int done = 0;
    t.ring();
    for (int i = 0; i < 50 && done < 2; ++i) {
      dev.step();
      t.poll(16, [&](const dx::block_completion& c) {
        EXPECT_EQ(c.ret, dx::io_return::success) << c.st.message();
        ++done;
      });
    }
    EXPECT_EQ(done, 2);
    EXPECT_EQ(std::memcmp(dev.disk_for(2).data() + 100 * 4096, b, 8192), 0);
    EXPECT_EQ(dev.flushes, 1u);
    ASSERT_TRUE(dma.free(*data));
    EXPECT_EQ(dma.free(*data).code(), errc::invalid_argument);  // twice: refused
    ASSERT_TRUE(ctrl.delete_io_queue(q).ok());
    ASSERT_TRUE(ctrl.shutdown().ok());
    EXPECT_EQ(dev.shutdowns, 1u);
  }
  // Every region the core allocated went back through the book.
  EXPECT_EQ(dma.book.live(), 0u);
}

TEST(NvmeDextPlatform, RemovedDeviceAndUnmappableBarAreErrors) {
  {
    fake_nvme_controller dev;
    dev.removed = true;
    fake_dk_pci pci{&dev, {}};
    ASSERT_TRUE(pci.open());
    fake_dk_dma dma;
    fake_clock clock{&dev};
    plat_t plat{&pci, &dma, &clock};
    drv::controller<plat_t> ctrl;
    EXPECT_EQ(ctrl.init(plat).code(), errc::removed);
  }
  {
    fake_nvme_controller dev;
    fake_dk_pci pci{&dev, {}};  // never resolved: map() must refuse
    fake_dk_dma dma;
    fake_clock clock{&dev};
    plat_t plat{&pci, &dma, &clock};
    drv::controller<plat_t> ctrl;
    EXPECT_EQ(ctrl.init(plat).code(), errc::not_initialized);
    EXPECT_EQ(dma.book.live(), 0u);
  }
}

}  // namespace
