// dkq-pci: list PCI functions and hand them to / take them from vfio-pci.
//
//   dkq-pci [list]          every function: address, vendor:device, class, driver, IOMMU group, NUMA node
//   dkq-pci bind <bdf>      bind to vfio-pci (driver_override + drivers_probe)
//   dkq-pci unbind <bdf>    give it back to its usual driver
//   --sysfs <dir>           read another sysfs root (tests use a fake tree)
//
// Binding is the step every user of a VFIO driver needs before the first run,
// so it is a program, not a paragraph in the docs. driver_override is used
// rather than vfio-pci's new_id because new_id binds *every* device with that
// vendor:device pair, including the disk the system boots from.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "dkq/platform/vfio/sysfs.hpp"

namespace vfio = dkq::vfio;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: dkq-pci [--sysfs DIR] [list]\n"
               "       dkq-pci [--sysfs DIR] bind <bdf>\n"
               "       dkq-pci [--sysfs DIR] unbind <bdf>\n");
  return 2;
}

int list(const vfio::sysfs& fs) {
  std::printf("%-13s %-9s %-24s %-12s %-5s %s\n", "ADDRESS", "ID", "CLASS", "DRIVER", "GROUP", "NODE");
  for (const vfio::pci_device_info& d : fs.list_devices()) {
    char id[16];
    std::snprintf(id, sizeof id, "%04x:%04x", d.vendor, d.device);
    const std::string group = d.iommu_group < 0 ? "-" : std::to_string(d.iommu_group);
    const std::string node = d.numa_node < 0 ? "-" : std::to_string(d.numa_node);
    std::printf("%-13s %-9s %-24s %-12s %-5s %s\n", vfio::to_string(d.addr).c_str(), id,
                vfio::pci_class_name(d.class_code), d.driver.empty() ? "-" : d.driver.c_str(), group.c_str(),
                node.c_str());
  }
  if (!fs.iommu_active())
    std::printf("\nno IOMMU groups: the IOMMU is off, so VFIO cannot be used "
                "(enable VT-d/AMD-Vi and boot with intel_iommu=on or amd_iommu=on)\n");
  return 0;
}

int bind(const vfio::sysfs& fs, const vfio::pci_address& a) {
  auto info = fs.read_device(a);
  if (!info) {
    std::fprintf(stderr, "dkq-pci: %s: %s\n", vfio::to_string(a).c_str(), info.error().message());
    return 1;
  }
  if (info->iommu_group < 0) {
    std::fprintf(stderr, "dkq-pci: %s", vfio::explain_no_iommu(a).c_str());
    return 1;
  }
  // Load vfio-pci first when it is missing (the one step users forget).
  if (!vfio::detail::path_exists(fs.root() + "/bus/pci/drivers/vfio-pci") && fs.root() == "/sys")
    (void)std::system("modprobe vfio-pci");
  dkq::status s = fs.bind_vfio(a);
  if (!s) {
    std::fprintf(stderr, "dkq-pci: bind %s: %s\n", vfio::to_string(a).c_str(), s.message());
    return 1;
  }
  std::printf("%s bound to vfio-pci (was %s); IOMMU group %d -> /dev/vfio/%d\n", vfio::to_string(a).c_str(),
              info->driver.empty() ? "unbound" : info->driver.c_str(), info->iommu_group, info->iommu_group);
  // Every member of the group must leave its host driver before the group is usable.
  for (const vfio::pci_address& other : fs.group_devices(info->iommu_group)) {
    if (other == a) continue;
    auto o = fs.read_device(other);
    if (o && !o->driver.empty() && o->driver != "vfio-pci")
      std::printf("note: %s in the same group is bound to %s; bind it too (dkq-pci bind %s)\n",
                  vfio::to_string(other).c_str(), o->driver.c_str(), vfio::to_string(other).c_str());
  }
  return 0;
}

int unbind(const vfio::sysfs& fs, const vfio::pci_address& a) {
  dkq::status s = fs.unbind_vfio(a);
  if (!s) {
    std::fprintf(stderr, "dkq-pci: unbind %s: %s\n", vfio::to_string(a).c_str(), s.message());
    return 1;
  }
  auto info = fs.read_device(a);
  std::printf("%s released from vfio-pci; now %s\n", vfio::to_string(a).c_str(),
              info && !info->driver.empty() ? info->driver.c_str() : "unbound");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root = "/sys";
  int i = 1;
  if (i + 1 < argc && std::strcmp(argv[i], "--sysfs") == 0) {
    root = argv[i + 1];
    i += 2;
  }
  vfio::sysfs fs(root);
  if (i == argc) return list(fs);
  const std::string_view cmd = argv[i];
  if (cmd == "list" && i + 1 == argc) return list(fs);
  if ((cmd == "bind" || cmd == "unbind") && i + 2 == argc) {
    auto a = vfio::parse_pci_address(argv[i + 1]);
    if (!a) {
      std::fprintf(stderr, "dkq-pci: %s\n", a.error().message());
      return 2;
    }
    return cmd == "bind" ? bind(fs, *a) : unbind(fs, *a);
  }
  return usage();
}
