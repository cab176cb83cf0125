// sysfs parsing, device facts, binding writes and the help texts, against a
// fake sysfs tree.
#include "dkq/platform/vfio/sysfs.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "platform/fake_sysfs.hpp"

namespace vfio = dkq::vfio;
using dkq::errc;
using dkq_test::fake_sysfs;

TEST(PciAddress, ParsesLongAndShortForms) {
  auto a = vfio::parse_pci_address("0000:00:04.0");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->domain, 0u);
  EXPECT_EQ(a->bus, 0);
  EXPECT_EQ(a->dev, 4);
  EXPECT_EQ(a->fn, 0);
  auto b = vfio::parse_pci_address("10000:af:1f.7\n");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->domain, 0x10000u);
  EXPECT_EQ(b->bus, 0xaf);
  EXPECT_EQ(b->dev, 0x1f);
  EXPECT_EQ(b->fn, 7);
  auto c = vfio::parse_pci_address("03:00.1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(vfio::to_string(*c), "0000:03:00.1");
  EXPECT_EQ(vfio::to_string(*b), "10000:af:1f.7");
}

TEST(PciAddress, RejectsMalformed) {
  for (const char* s : {"", "0000:00:04", "0000:00:20.0", "0000:00:04.8", "0:00:04.0", "0000:0:04.0",
                        "0000:00:4.0", "zz:00.0", "0000:00:04.0x", "0000-00-04.0"}) {
    auto a = vfio::parse_pci_address(s);
    EXPECT_FALSE(a.ok()) << s;
    if (!a.ok()) {
      EXPECT_EQ(a.error().code(), errc::invalid_argument);
    }
  }
}

TEST(SysfsParse, HexIntAndLists) {
  EXPECT_EQ(vfio::parse_sysfs_hex("0x1b36\n").value(), 0x1b36u);
  EXPECT_EQ(vfio::parse_sysfs_hex("0x010802\n").value(), 0x010802u);
  EXPECT_FALSE(vfio::parse_sysfs_hex("0x\n").ok());
  EXPECT_FALSE(vfio::parse_sysfs_hex("hello").ok());
  EXPECT_EQ(vfio::parse_sysfs_int("-1\n").value(), -1);
  EXPECT_EQ(vfio::parse_sysfs_int("12").value(), 12);
  EXPECT_FALSE(vfio::parse_sysfs_int("1a").ok());
  EXPECT_EQ(vfio::count_list_entries("0\n").value(), 1);
  EXPECT_EQ(vfio::count_list_entries("0-3\n").value(), 4);
  EXPECT_EQ(vfio::count_list_entries("0,2-3,7").value(), 4);
  EXPECT_FALSE(vfio::count_list_entries("3-1").ok());
  EXPECT_STREQ(vfio::pci_class_name(0x010802), "NVM controller");
  EXPECT_STREQ(vfio::pci_class_name(0x010400), "RAID controller");
}

TEST(Sysfs, ReadsDeviceFacts) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 5, 1);
  t.add_device("0000:00:05.0", "0x1000", "0x0079", "0x010400", "", -1);
  vfio::sysfs fs(t.sys());
  auto nvme = fs.read_device(vfio::parse_pci_address("0000:00:04.0").value());
  ASSERT_TRUE(nvme.ok());
  EXPECT_EQ(nvme->vendor, 0x1b36);
  EXPECT_EQ(nvme->device, 0x0010);
  EXPECT_EQ(nvme->class_code, 0x010802u);
  EXPECT_EQ(nvme->driver, "vfio-pci");
  EXPECT_EQ(nvme->iommu_group, 5);
  EXPECT_EQ(nvme->numa_node, 1);
  EXPECT_EQ(nvme->driver_override, "");
  auto mega = fs.read_device(vfio::parse_pci_address("0000:00:05.0").value());
  ASSERT_TRUE(mega.ok());
  EXPECT_EQ(mega->driver, "");
  EXPECT_EQ(mega->iommu_group, -1);
  EXPECT_EQ(mega->numa_node, -1);

  auto missing = fs.read_device(vfio::parse_pci_address("0000:00:06.0").value());
  EXPECT_FALSE(missing.ok());

  auto all = fs.list_devices();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(vfio::to_string(all[0].addr), "0000:00:04.0");
  EXPECT_EQ(vfio::to_string(all[1].addr), "0000:00:05.0");
  EXPECT_TRUE(fs.iommu_active());
  EXPECT_EQ(fs.group_devices(5).size(), 1u);
}

TEST(Sysfs, NumaNodesAndCdev) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 5);
  vfio::sysfs fs(t.sys());
  EXPECT_EQ(fs.online_numa_nodes(), 1);  // no file: a non-NUMA kernel
  std::filesystem::create_directories(t.sys() + "/devices/system/node");
  fake_sysfs::write(t.sys() + "/devices/system/node/online", "0-1\n");
  EXPECT_EQ(fs.online_numa_nodes(), 2);
  auto a = vfio::parse_pci_address("0000:00:04.0").value();
  EXPECT_EQ(fs.vfio_cdev(a).error().code(), errc::not_supported);
  std::filesystem::create_directories(fs.device_dir(a) + "/vfio-dev/vfio3");
  EXPECT_EQ(fs.vfio_cdev(a).value(), "vfio3");
}

TEST(Sysfs, BindWritesOverrideUnbindAndProbe) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "nvme", 5);
  vfio::sysfs fs(t.sys());
  auto a = vfio::parse_pci_address("0000:00:04.0").value();
  // vfio-pci not loaded: a clear error that names the fix, nothing written.
  auto s = fs.bind_vfio(a);
  EXPECT_EQ(s.code(), errc::not_supported);
  EXPECT_NE(std::string(s.message()).find("modprobe vfio-pci"), std::string::npos);
  EXPECT_EQ(fake_sysfs::read(fs.device_dir(a) + "/driver_override"), "(null)\n");

  std::filesystem::create_directories(t.sys() + "/bus/pci/drivers/vfio-pci");
  s = fs.bind_vfio(a);
  // The fake kernel does not rebind, so the final check reports it, but the
  // three writes must have happened in the kernel's format.
  EXPECT_EQ(s.code(), errc::io_error);
  EXPECT_EQ(fake_sysfs::read(fs.device_dir(a) + "/driver_override"), "vfio-pci");
  EXPECT_EQ(fake_sysfs::read(t.sys() + "/bus/pci/drivers/nvme/unbind"), "0000:00:04.0");
  EXPECT_EQ(fake_sysfs::read(t.sys() + "/bus/pci/drivers_probe"), "0000:00:04.0");

  // Still owned by nvme in the fake tree: unbind must refuse to touch it.
  EXPECT_EQ(fs.unbind_vfio(a).code(), errc::invalid_argument);
  EXPECT_EQ(fake_sysfs::read(t.sys() + "/bus/pci/drivers/nvme/unbind"), "0000:00:04.0");  // only bind's write

  t.add_device("0000:00:05.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 6);
  a = vfio::parse_pci_address("0000:00:05.0").value();
  EXPECT_TRUE(fs.unbind_vfio(a).ok());
  EXPECT_EQ(fake_sysfs::read(t.sys() + "/bus/pci/drivers/vfio-pci/unbind"), "0000:00:05.0");
  // A lone newline clears driver_override (the file is not truncated in the fake).
  EXPECT_EQ(fake_sysfs::read(fs.device_dir(a) + "/driver_override").substr(0, 1), "\n");
}

TEST(Explain, NotBoundPrintsExactCommands) {
  fake_sysfs t;
  t.add_device("0000:00:04.0", "0x1b36", "0x0010", "0x010802", "nvme", 5);
  vfio::sysfs fs(t.sys());
  auto info = fs.read_device(vfio::parse_pci_address("0000:00:04.0").value()).value();
  std::string text = vfio::explain_not_bound(info);
  EXPECT_NE(text.find("bound to nvme"), std::string::npos) << text;
  EXPECT_NE(text.find("echo vfio-pci | sudo tee /sys/bus/pci/devices/0000:00:04.0/driver_override"), std::string::npos) << text;
  EXPECT_NE(text.find("echo 0000:00:04.0 | sudo tee /sys/bus/pci/devices/0000:00:04.0/driver/unbind"), std::string::npos) << text;
  EXPECT_NE(text.find("echo 0000:00:04.0 | sudo tee /sys/bus/pci/drivers_probe"), std::string::npos) << text;
  EXPECT_NE(text.find("dkq-pci bind 0000:00:04.0"), std::string::npos) << text;
}

TEST(Explain, GroupNotViableListsTheOthers) {
  fake_sysfs t;
  t.add_device("0000:01:00.0", "0x1b36", "0x0010", "0x010802", "vfio-pci", 9);
  t.add_device("0000:01:00.1", "0x8086", "0x10d3", "0x020000", "e1000e", 9);
  t.add_device("0000:01:00.2", "0x8086", "0x10d4", "0x020000", "", 9);
  vfio::sysfs fs(t.sys());
  auto self = vfio::parse_pci_address("0000:01:00.0").value();
  std::string text = vfio::explain_group_not_viable(fs, 9, self);
  EXPECT_NE(text.find("IOMMU group 9 is not viable"), std::string::npos) << text;
  EXPECT_NE(text.find("0000:01:00.1 [8086:10d3] driver: e1000e"), std::string::npos) << text;
  EXPECT_NE(text.find("dkq-pci bind 0000:01:00.1"), std::string::npos) << text;
  EXPECT_NE(text.find("0000:01:00.2 [8086:10d4] driver: (none)"), std::string::npos) << text;
  EXPECT_EQ(text.find("0000:01:00.0"), std::string::npos) << "the device itself is not an obstacle";
}

TEST(Explain, MemlockAndNoIommuAndBusy) {
  auto a = vfio::parse_pci_address("0000:00:04.0").value();
  std::string m = vfio::explain_memlock(64 * 1024, 1 << 20);
  EXPECT_NE(m.find("64 KiB"), std::string::npos) << m;
  EXPECT_NE(m.find("ulimit -l"), std::string::npos) << m;
  EXPECT_NE(m.find("LimitMEMLOCK"), std::string::npos) << m;
  std::string n = vfio::explain_no_iommu(a);
  EXPECT_NE(n.find("intel_iommu=on"), std::string::npos) << n;

  fake_sysfs t;
  std::filesystem::create_directories(t.proc() + "/4242/fd");
  std::filesystem::create_directories(t.proc() + "/77/fd");
  std::filesystem::create_symlink("/dev/vfio/7", t.proc() + "/4242/fd/5");
  std::filesystem::create_symlink("/dev/null", t.proc() + "/77/fd/0");
  fake_sysfs::write(t.proc() + "/4242/comm", "nvme-driver\n");
  std::string holders = vfio::vfio_group_holders(7, t.proc());
  EXPECT_EQ(holders, "  pid 4242 (nvme-driver)\n");
  std::string b = vfio::explain_busy(7, a, holders);
  EXPECT_NE(b.find("/dev/vfio/7"), std::string::npos) << b;
  EXPECT_NE(b.find("pid 4242 (nvme-driver)"), std::string::npos) << b;
}
