// dkq/platform/vfio/sysfs.hpp - PCI addresses, sysfs facts and the help text users need.
//
// Everything here is plain file reading under a configurable root ("/sys" by
// default), so the unit tests run it against a fake tree in a temporary
// directory (tests/platform/). No ioctl, no /dev access: the VFIO side lives in
// device.hpp and only asks this file for paths and facts.
//
// Layout relied on (Documentation/ABI/testing/sysfs-bus-pci, sysfs-kernel-iommu_groups):
//   <root>/bus/pci/devices/<bdf>/{vendor,device,class,numa_node}  "0x1b36\n", "-1\n"
//   <root>/bus/pci/devices/<bdf>/driver -> ../../../bus/pci/drivers/<name>
//   <root>/bus/pci/devices/<bdf>/iommu_group -> ../../../kernel/iommu_groups/<n>
//   <root>/bus/pci/devices/<bdf>/driver_override                  "(null)\n" when unset
//   <root>/bus/pci/devices/<bdf>/vfio-dev/vfio<k>                  vfio cdev (Linux 6.6+)
//   <root>/kernel/iommu_groups/<n>/devices/<bdf>
//   <root>/devices/system/node/online                             "0-1\n"
//   <root>/bus/pci/drivers_probe, <root>/bus/pci/drivers/<name>/unbind
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dkq/base/status.hpp"

namespace dkq::vfio {

// ---- PCI address ------------------------------------------------------------

// domain:bus:device.function, as sysfs names devices ("0000:00:04.0").
struct pci_address {
  std::uint32_t domain = 0;
  std::uint8_t bus = 0;
  std::uint8_t dev = 0;  // 0..31
  std::uint8_t fn = 0;   // 0..7

  friend constexpr bool operator==(const pci_address&, const pci_address&) noexcept = default;
  friend constexpr auto operator<=>(const pci_address&, const pci_address&) noexcept = default;
};

namespace detail {
constexpr int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// Parses exactly `s` as hex (no prefix); false on empty, bad digit or overflow past `max`.
constexpr bool parse_hex_exact(std::string_view s, std::uint64_t max, std::uint64_t& out) noexcept {
  if (s.empty() || s.size() > 16) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    int d = hex_digit(c);
    if (d < 0) return false;
    v = (v << 4) | static_cast<std::uint64_t>(d);
    if (v > max) return false;
  }
  out = v;
  return true;
}
constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\0'))
    s.remove_suffix(1);
  return s;
}
}  // namespace detail

// Accepts "DDDD:BB:DD.F" and the short "BB:DD.F" that lspci prints (domain 0).
inline result<pci_address> parse_pci_address(std::string_view s) noexcept {
  s = detail::trim(s);
  constexpr status bad{errc::invalid_argument,
                       "PCI address must look like 0000:01:00.0 (domain:bus:device.function)"};
  std::uint64_t domain = 0, bus = 0, dev = 0, fn = 0;
  std::size_t dot = s.rfind('.');
  if (dot == std::string_view::npos || dot + 2 != s.size()) return bad;
  if (!detail::parse_hex_exact(s.substr(dot + 1), 7, fn)) return bad;
  std::string_view head = s.substr(0, dot);  // [DDDD:]BB:DD
  std::size_t c2 = head.rfind(':');
  if (c2 == std::string_view::npos || head.size() - c2 - 1 != 2) return bad;
  if (!detail::parse_hex_exact(head.substr(c2 + 1), 0x1f, dev)) return bad;
  head = head.substr(0, c2);
  std::size_t c1 = head.rfind(':');
  std::string_view bus_s = c1 == std::string_view::npos ? head : head.substr(c1 + 1);
  if (bus_s.size() != 2 || !detail::parse_hex_exact(bus_s, 0xff, bus)) return bad;
  if (c1 != std::string_view::npos) {
    std::string_view dom_s = head.substr(0, c1);
    if (dom_s.size() < 4 || !detail::parse_hex_exact(dom_s, 0xffffffffu, domain)) return bad;
  }
  return pci_address{static_cast<std::uint32_t>(domain), static_cast<std::uint8_t>(bus),
                     static_cast<std::uint8_t>(dev), static_cast<std::uint8_t>(fn)};
}

inline std::string to_string(const pci_address& a) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", a.domain, a.bus, a.dev, a.fn);
  return buf;
}

// ---- small parsers for sysfs attribute files (unit-tested) --------------------

// "0x1b36\n" -> 0x1b36. The kernel always prints these with a 0x prefix.
inline result<std::uint32_t> parse_sysfs_hex(std::string_view s) noexcept {
  s = detail::trim(s);
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  std::uint64_t v = 0;
  if (!detail::parse_hex_exact(s, 0xffffffffu, v))
    return status{errc::protocol_error, "sysfs attribute is not a hexadecimal number"};
  return static_cast<std::uint32_t>(v);
}

// "-1\n" or "3\n" -> int.
inline result<int> parse_sysfs_int(std::string_view s) noexcept {
  s = detail::trim(s);
  bool neg = !s.empty() && s.front() == '-';
  if (neg) s.remove_prefix(1);
  if (s.empty() || s.size() > 9) return status{errc::protocol_error, "sysfs attribute is not a decimal number"};
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return status{errc::protocol_error, "sysfs attribute is not a decimal number"};
    v = v * 10 + (c - '0');
  }
  return neg ? -v : v;
}

// A kernel cpulist/nodelist ("0", "0-3", "0,2-3") -> number of entries.
inline result<int> count_list_entries(std::string_view s) noexcept {
  s = detail::trim(s);
  if (s.empty()) return 0;
  int total = 0;
  while (!s.empty()) {
    std::size_t comma = s.find(',');
    std::string_view part = s.substr(0, comma);
    std::size_t dash = part.find('-');
    auto lo = parse_sysfs_int(part.substr(0, dash));
    if (!lo) return lo.error();
    int hi = *lo;
    if (dash != std::string_view::npos) {
      auto h = parse_sysfs_int(part.substr(dash + 1));
      if (!h) return h.error();
      hi = *h;
    }
    if (*lo < 0 || hi < *lo) return status{errc::protocol_error, "malformed kernel list (expected 0-3,5)"};
    total += hi - *lo + 1;
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return total;
}

// Human name of a PCI class code (the top byte pair), enough for a device list.
constexpr const char* pci_class_name(std::uint32_t class_code) noexcept {
  switch (class_code >> 8) {
    case 0x0100: return "SCSI controller";
    case 0x0101: return "IDE controller";
    case 0x0104: return "RAID controller";
    case 0x0106: return "SATA controller";
    case 0x0107: return "SAS controller";
    case 0x0108: return "NVM controller";
    case 0x0200: return "Ethernet controller";
    case 0x0300: return "VGA controller";
    case 0x0600: return "Host bridge";
    case 0x0601: return "ISA bridge";
    case 0x0604: return "PCI bridge";
    case 0x0c03: return "USB controller";
    case 0x0c05: return "SMBus controller";
    default: break;
  }
  switch (class_code >> 16) {
    case 0x01: return "Mass storage controller";
    case 0x02: return "Network controller";
    case 0x03: return "Display controller";
    case 0x06: return "Bridge";
    default: return "Other";
  }
}

// ---- file helpers -------------------------------------------------------------

namespace detail {
// Reads a small attribute file whole. sysfs attributes are at most a page.
inline result<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return status{errc::io_error, "cannot open sysfs file", static_cast<std::uint64_t>(errno)};
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return status{errc::io_error, "cannot read sysfs file", static_cast<std::uint64_t>(e)};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// Writes `text` in one write(), as sysfs store handlers expect.
inline status write_small_file(const std::string& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return {errc::io_error, "cannot open sysfs file for writing (are you root?)", static_cast<std::uint64_t>(errno)};
  ssize_t n = ::write(fd, text.data(), text.size());
  int e = errno;
  ::close(fd);
  if (n < 0 || static_cast<std::size_t>(n) != text.size())
    return {errc::io_error, "sysfs write was refused", static_cast<std::uint64_t>(n < 0 ? e : 0)};
  return ok_status;
}

// Basename of a symlink's target ("../../kernel/iommu_groups/7" -> "7").
inline result<std::string> link_basename(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) return status{errc::io_error, "symlink missing", static_cast<std::uint64_t>(errno)};
  std::string_view t(buf, static_cast<std::size_t>(n));
  std::size_t slash = t.rfind('/');
  return std::string(slash == std::string_view::npos ? t : t.substr(slash + 1));
}

inline std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

inline bool path_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
}  // namespace detail

// ---- sysfs facts ----------------------------------------------------------------

// What sysfs says about one PCI function.
struct pci_device_info {
  pci_address addr{};
  std::uint16_t vendor = 0;
  std::uint16_t device = 0;
  std::uint32_t class_code = 0;  // 24-bit class/subclass/prog-if
  std::string driver;            // bound driver ("" when none)
  std::string driver_override;   // "" when unset
  int iommu_group = -1;          // -1: no IOMMU group (no IOMMU, or IOMMU off)
  int numa_node = -1;            // -1: unknown or single-node machine
};

class sysfs {
 public:
  explicit sysfs(std::string root = "/sys") : root_(std::move(root)) {}

  const std::string& root() const noexcept { return root_; }
  std::string device_dir(const pci_address& a) const { return root_ + "/bus/pci/devices/" + to_string(a); }
  std::string group_dir(int group) const { return root_ + "/kernel/iommu_groups/" + std::to_string(group); }

  bool device_exists(const pci_address& a) const { return detail::path_exists(device_dir(a)); }

  result<pci_device_info> read_device(const pci_address& a) const {
    const std::string dir = device_dir(a);
    if (!detail::path_exists(dir))
      return status{errc::invalid_argument, "no PCI device at this address (see `dkq-pci` or `lspci -D`)"};
    pci_device_info info;
    info.addr = a;
    auto vendor = read_hex(dir + "/vendor");
    if (!vendor) return vendor.error();
    auto device = read_hex(dir + "/device");
    if (!device) return device.error();
    auto cls = read_hex(dir + "/class");
    if (!cls) return cls.error();
    info.vendor = static_cast<std::uint16_t>(*vendor);
    info.device = static_cast<std::uint16_t>(*device);
    info.class_code = *cls;
    if (auto drv = detail::link_basename(dir + "/driver")) info.driver = *drv;
    if (auto grp = detail::link_basename(dir + "/iommu_group")) {
      if (auto g = parse_sysfs_int(*grp)) info.iommu_group = *g;
    }
    if (auto node = detail::read_small_file(dir + "/numa_node")) {
      if (auto n = parse_sysfs_int(*node)) info.numa_node = *n;
    }
    if (auto ovr = detail::read_small_file(dir + "/driver_override")) {
      std::string_view v = detail::trim(*ovr);
      if (v != "(null)") info.driver_override = std::string(v);
    }
    return info;
  }

  // Every PCI function, sorted by address.
  std::vector<pci_device_info> list_devices() const {
    std::vector<pci_device_info> out;
    for (const std::string& name : detail::list_dir(root_ + "/bus/pci/devices")) {
      auto a = parse_pci_address(name);
      if (!a) continue;
      if (auto info = read_device(*a)) out.push_back(std::move(*info));
    }
    return out;
  }

  // Members of an IOMMU group, sorted.
  std::vector<pci_address> group_devices(int group) const {
    std::vector<pci_address> out;
    for (const std::string& name : detail::list_dir(group_dir(group) + "/devices")) {
      if (auto a = parse_pci_address(name)) out.push_back(*a);
    }
    return out;
  }

  // True when the kernel has an IOMMU driver active (it then creates groups).
  bool iommu_active() const {
    return !detail::list_dir(root_ + "/kernel/iommu_groups").empty() ||
           !detail::list_dir(root_ + "/class/iommu").empty();
  }

  // Number of online NUMA nodes (1 when the file is missing: non-NUMA kernel).
  int online_numa_nodes() const {
    auto text = detail::read_small_file(root_ + "/devices/system/node/online");
    if (!text) return 1;
    auto n = count_list_entries(*text);
    return n && *n > 0 ? *n : 1;
  }

  // The vfio cdev name ("vfio3") when the kernel offers per-device cdevs (6.6+).
  result<std::string> vfio_cdev(const pci_address& a) const {
    auto names = detail::list_dir(device_dir(a) + "/vfio-dev");
    for (const std::string& n : names)
      if (n.rfind("vfio", 0) == 0) return n;
    return status{errc::not_supported, "kernel offers no vfio device cdev for this device"};
  }

  // ---- binding (driver_override + drivers_probe), used by dkq-pci --------------

  // Binds to vfio-pci: set driver_override, unbind the current driver, probe.
  status bind_vfio(const pci_address& a) const {
    auto info = read_device(a);
    if (!info) return info.error();
    if (info->driver == "vfio-pci") return ok_status;
    if (!detail::path_exists(root_ + "/bus/pci/drivers/vfio-pci"))
      return {errc::not_supported, "vfio-pci is not loaded: run `modprobe vfio-pci` first"};
    DKQ_TRY(detail::write_small_file(device_dir(a) + "/driver_override", "vfio-pci"));
    if (!info->driver.empty())
      DKQ_TRY(detail::write_small_file(device_dir(a) + "/driver/unbind", to_string(a)));
    DKQ_TRY(detail::write_small_file(root_ + "/bus/pci/drivers_probe", to_string(a)));
    auto after = read_device(a);
    if (!after) return after.error();
    if (after->driver != "vfio-pci")
      return {errc::io_error, "vfio-pci did not take the device (see dmesg)"};
    return ok_status;
  }

  // Hands the device back to its normal driver: clear driver_override, unbind
  // from vfio-pci, probe. A device some other driver owns is left alone: that
  // unbind could pull a mounted disk from under the system.
  status unbind_vfio(const pci_address& a) const {
    auto info = read_device(a);
    if (!info) return info.error();
    if (!info->driver.empty() && info->driver != "vfio-pci")
      return {errc::invalid_argument, "device is bound to another driver, not vfio-pci; nothing to release"};
    // An empty line clears driver_override (the kernel stores NULL for "\n").
    DKQ_TRY(detail::write_small_file(device_dir(a) + "/driver_override", "\n"));
    if (!info->driver.empty())
      DKQ_TRY(detail::write_small_file(device_dir(a) + "/driver/unbind", to_string(a)));
    // drivers_probe may fail with ENODEV when no driver wants the device; that is fine.
    (void)detail::write_small_file(root_ + "/bus/pci/drivers_probe", to_string(a));
    return ok_status;
  }

 private:
  static result<std::uint32_t> read_hex(const std::string& path) {
    auto text = detail::read_small_file(path);
    if (!text) return text.error();
    return parse_sysfs_hex(*text);
  }

  std::string root_;
};

// ---- text that tells the user what to do (status messages are static) --------

// The exact shell commands that bind `a` to vfio-pci.
inline std::string bind_commands(const pci_address& a, std::string_view current_driver) {
  const std::string bdf = to_string(a);
  std::string s;
  s += "  sudo modprobe vfio-pci\n";
  s += "  echo vfio-pci | sudo tee /sys/bus/pci/devices/" + bdf + "/driver_override\n";
  if (!current_driver.empty())
    s += "  echo " + bdf + " | sudo tee /sys/bus/pci/devices/" + bdf + "/driver/unbind\n";
  s += "  echo " + bdf + " | sudo tee /sys/bus/pci/drivers_probe\n";
  s += "or: sudo dkq-pci bind " + bdf + "\n";
  return s;
}

inline std::string explain_not_bound(const pci_device_info& info) {
  std::string s = "device " + to_string(info.addr) + " is ";
  s += info.driver.empty() ? std::string("not bound to any driver") : "bound to " + info.driver;
  s += ", not to vfio-pci. Bind it with:\n";
  s += bind_commands(info.addr, info.driver);
  if (!info.driver.empty() && info.driver != "vfio-pci")
    s += "(unbinding takes the device away from " + info.driver +
         ": unmount its filesystems first)\n";
  return s;
}

// Lists the group members that keep the group from being viable: every device
// in a group must be bound to vfio-pci (or to no driver, or be a bridge).
inline std::string explain_group_not_viable(const sysfs& fs, int group, const pci_address& self) {
  std::string s = "IOMMU group " + std::to_string(group) +
                  " is not viable: every device in the group must be bound to vfio-pci "
                  "(or have no driver) before any of them can be used.\nOther devices in the group:\n";
  for (const pci_address& a : fs.group_devices(group)) {
    if (a == self) continue;
    auto info = fs.read_device(a);
    s += "  " + to_string(a);
    if (info) {
      char ids[32];
      std::snprintf(ids, sizeof ids, " [%04x:%04x]", info->vendor, info->device);
      s += ids;
      s += " driver: " + (info->driver.empty() ? std::string("(none)") : info->driver);
      if (!info->driver.empty() && info->driver != "vfio-pci") s += "  <- bind with: sudo dkq-pci bind " + to_string(a);
    }
    s += "\n";
  }
  s += "(or move the device to a slot with its own group; ACS decides grouping)\n";
  return s;
}

inline std::string explain_no_iommu(const pci_address& a) {
  return "device " + to_string(a) +
         " has no IOMMU group: the IOMMU is off or absent. Enable VT-d / AMD-Vi in the firmware "
         "setup and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD; usually default), "
         "then check `dmesg | grep -i -e DMAR -e IOMMU` and `ls /sys/kernel/iommu_groups`.\n"
         "(dkq does not support VFIO no-IOMMU mode: without an IOMMU the device could DMA anywhere.)\n";
}

inline std::string explain_memlock(std::uint64_t limit_bytes, std::uint64_t wanted_bytes) {
  std::string s = "VFIO could not pin " + std::to_string(wanted_bytes) +
                  " more bytes of DMA memory: RLIMIT_MEMLOCK is ";
  s += limit_bytes == ~std::uint64_t{0} ? std::string("unlimited") : std::to_string(limit_bytes / 1024) + " KiB";
  s += ". Every DMA buffer is pinned and counts against this limit. Raise it:\n"
       "  ulimit -l unlimited            (in the shell, as root), or\n"
       "  /etc/security/limits.conf:     <user> - memlock unlimited\n"
       "  systemd service:               LimitMEMLOCK=infinity\n"
       "  container:                     --ulimit memlock=-1:-1\n";
  return s;
}

// Who holds /dev/vfio/<group> open (scans /proc/*/fd); "" when nobody visible.
inline std::string vfio_group_holders(int group, const std::string& proc_root = "/proc") {
  const std::string target = "/dev/vfio/" + std::to_string(group);
  std::string out;
  for (const std::string& pid : detail::list_dir(proc_root)) {
    if (pid.empty() || pid[0] < '0' || pid[0] > '9') continue;
    const std::string fd_dir = proc_root + "/" + pid + "/fd";
    for (const std::string& fd : detail::list_dir(fd_dir)) {
      char buf[256];
      ssize_t n = ::readlink((fd_dir + "/" + fd).c_str(), buf, sizeof buf - 1);
      if (n <= 0 || std::string_view(buf, static_cast<std::size_t>(n)) != target) continue;
      std::string comm;
      if (auto c = detail::read_small_file(proc_root + "/" + pid + "/comm")) comm = std::string(detail::trim(*c));
      out += "  pid " + pid + " (" + comm + ")\n";
      break;
    }
  }
  return out;
}

inline std::string explain_busy(int group, const pci_address& a, const std::string& holders) {
  std::string s = "device " + to_string(a) + " is busy: IOMMU group " + std::to_string(group) +
                  " (/dev/vfio/" + std::to_string(group) + ") is already open. VFIO lets one process "
                  "own a group at a time.\n";
  if (!holders.empty()) s += "Held by:\n" + holders;
  else s += "(the holder is not visible to this user; try as root: fuser -v /dev/vfio/" + std::to_string(group) + ")\n";
  return s;
}

}  // namespace dkq::vfio
