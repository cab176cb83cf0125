// A fake /sys (and /proc, /dev) tree in a temporary directory, shaped the way
// the kernel lays it out, so sysfs.hpp and device::open's early checks can be
// tested without hardware or root.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace dkq_test {

class fake_sysfs {
 public:
  fake_sysfs() {
    char tmpl[] = "/tmp/dkq-fake-sysfs-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    std::filesystem::create_directories(sys() + "/bus/pci/devices");
    std::filesystem::create_directories(sys() + "/bus/pci/drivers");
    std::filesystem::create_directories(sys() + "/kernel/iommu_groups");
    write(sys() + "/bus/pci/drivers_probe", "");
  }
  ~fake_sysfs() { std::filesystem::remove_all(root_); }
  fake_sysfs(const fake_sysfs&) = delete;
  fake_sysfs& operator=(const fake_sysfs&) = delete;

  std::string root() const { return root_; }
  std::string sys() const { return root_ + "/sys"; }
  std::string dev() const { return root_ + "/dev"; }
  std::string proc() const { return root_ + "/proc"; }

  // Adds a PCI function. group < 0: no iommu_group link; driver "": unbound.
  void add_device(const std::string& bdf, const std::string& vendor, const std::string& device,
                  const std::string& cls, const std::string& driver, int group, int numa = -1) {
    const std::string d = sys() + "/devices/pci0000:00/" + bdf;
    std::filesystem::create_directories(d);
    std::filesystem::create_symlink(d, sys() + "/bus/pci/devices/" + bdf);
    write(d + "/vendor", vendor + "\n");
    write(d + "/device", device + "\n");
    write(d + "/class", cls + "\n");
    write(d + "/numa_node", std::to_string(numa) + "\n");
    write(d + "/driver_override", "(null)\n");
    if (!driver.empty()) {
      const std::string drv = sys() + "/bus/pci/drivers/" + driver;
      std::filesystem::create_directories(drv);
      if (!std::filesystem::exists(drv + "/unbind")) write(drv + "/unbind", "");
      std::filesystem::create_symlink("../../../bus/pci/drivers/" + driver, d + "/driver");
    }
    if (group >= 0) {
      const std::string g = sys() + "/kernel/iommu_groups/" + std::to_string(group);
      std::filesystem::create_directories(g + "/devices");
      std::filesystem::create_symlink(d, g + "/devices/" + bdf);
      std::filesystem::create_symlink("../../../kernel/iommu_groups/" + std::to_string(group), d + "/iommu_group");
    }
  }

  static void write(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
  }
  static std::string read(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }

 private:
  std::string root_;
};

}  // namespace dkq_test
