// device::open's checks before any ioctl: each failure a user can fix comes
// with a text that says what to do.
#include <gtest/gtest.h>

#include <filesystem>

#include "dkq/platform/vfio/device.hpp"
#include "platform/fake_sysfs.hpp"

namespace vfio = dkq::vfio;
using dkq::errc;
using dkq_test::fake_sysfs;

namespace {
vfio::open_options opts(const fake_sysfs& t) {
  vfio::open_options o;
  o.sysfs_root = t.sys();
  o.dev_root = t.dev();
  o.backend = vfio::iommu_backend::container;
  return o;
}
}  // namespace

TEST(OpenErrors, BadAddressAndMissingDevice) {
  fake_sysfs t;
  std::string why;
  auto a = vfio::device::open("nvme0", opts(t), &why);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code(), errc::invalid_argument);
  EXPECT_NE(why.find("0000:01:00.0"), std::string::npos) << why;
  auto b = vfio::device::open("0000:00:09.0", opts(t), &why);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(why.find("no PCI device 0000:00:09.0"), std::string::npos) << why;
}

TEST(OpenErrors, NoIommuGroup) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "nvme", -1);
  std::string why;
  auto d = vfio::device::open("0000:00:04.0", opts(t), &why);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code(), errc::not_supported);
  EXPECT_NE(why.find("no IOMMU group"), std::string::npos) << why;
}

TEST(OpenErrors, NotBoundToVfioPrintsBindCommands) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "nvme", 3);
  std::string why;
  auto d = vfio::device::open("0000:00:04.0", opts(t), &why);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code(), errc::invalid_argument);
  EXPECT_STREQ(d.error().message(), "device is not bound to vfio-pci");
  EXPECT_NE(why.find("echo vfio-pci | sudo tee /sys/bus/pci/devices/0000:00:04.0/driver_override"), std::string::npos) << why;
}

TEST(OpenErrors, VfioNotLoaded) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 3);
  std::string why;
  auto d = vfio::device::open("0000:00:04.0", opts(t), &why);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code(), errc::not_supported);
  EXPECT_NE(why.find("modprobe vfio-pci"), std::string::npos) << why;
}

TEST(OpenErrors, DmaConstraintsBelow4G) {
  constexpr auto c = vfio::dma_placement::below_4g();
  static_assert(c.limit == (1ull << 32));
  static_assert(c.align == 4096);
  SUCCEED();
}

// The VFIO waiter is what the dispatch layer waits through.
#if __has_include("dkq/dispatch/dispatcher.hpp")
#include "dkq/dispatch/dispatcher.hpp"
static_assert(dkq::interrupt_waiter<dkq::vfio::eventfd_waiter>);
#endif

TEST(Interrupts, NotEnabledIsAnError) {
  dkq::vfio::interrupts irq;  // no device
  std::uint32_t fired[1];
  EXPECT_EQ(irq.wait(fired, 0).error().code(), errc::not_initialized);
  EXPECT_EQ(irq.wait_vector(0, 0).error().code(), errc::out_of_range);
  EXPECT_EQ(irq.enable(1).code(), errc::not_initialized);
  irq.wake();  // harmless without eventfds
  dkq::vfio::eventfd_waiter w(irq, 0);
  EXPECT_EQ(w.wait(0), 0u);
  EXPECT_EQ(irq.kind(), dkq::vfio::irq_kind::none);
}

TEST(Placement, FromDmaLayerConstraints) {
  dkq::dma_constraints c;
  c.addressable_bits = 32;
  c.alignment = 4;
  auto p = vfio::placement_for(c, 8192);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->limit, 1ull << 32);
  EXPECT_EQ(p->align, 4096u);  // never below a page
  c.boundary = 64 * 1024;
  p = vfio::placement_for(c, 12 * 1024);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->align, 16 * 1024u);  // a 16 KiB-aligned 12 KiB region cannot cross 64 KiB
  EXPECT_EQ(vfio::placement_for(c, 128 * 1024).error().code(), errc::constraint);
  c.alignment = 3;
  EXPECT_EQ(vfio::placement_for(c, 4096).error().code(), errc::invalid_argument);
  c = dkq::dma_constraints{};
  EXPECT_EQ(vfio::placement_for(c, 4096)->limit, ~0ull);
}

// Where sysfs offers a vfio cdev and /dev/iommu exists, the iommufd path is
// tried first; when it fails (here: the fake nodes are plain files, so the
// bind ioctl fails) open falls back to the container path and reports that
// path's error. Forcing iommufd reports the iommufd failure itself.
TEST(OpenErrors, CdevPathFallsBackToContainer) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 3);
  std::filesystem::create_directories(t.sys() + "/bus/pci/devices/0000:00:04.0/vfio-dev/vfio3");
  std::filesystem::create_directories(t.dev() + "/vfio/devices");
  fake_sysfs::write(t.dev() + "/iommu", "");
  fake_sysfs::write(t.dev() + "/vfio/devices/vfio3", "");
  vfio::open_options o = opts(t);
  o.backend = vfio::iommu_backend::automatic;
  ::unsetenv("DKQ_VFIO_BACKEND");
  std::string why;
  auto d = vfio::device::open("0000:00:04.0", o, &why);
  ASSERT_FALSE(d.ok());
  EXPECT_STREQ(d.error().message(), "VFIO is not available (/dev/vfio/vfio cannot be opened)");
  EXPECT_NE(why.find("modprobe vfio-pci"), std::string::npos) << why;

  o.backend = vfio::iommu_backend::iommufd;
  auto forced = vfio::device::open("0000:00:04.0", o, &why);
  ASSERT_FALSE(forced.ok());
  EXPECT_STREQ(forced.error().message(), "VFIO_DEVICE_BIND_IOMMUFD failed");
}
