// dkq/platform/vfio/device.hpp - one PCI function driven from user space through VFIO.
//
//   auto dev = dkq::vfio::device::open("0000:00:04.0", {}, &why);  // why: what to do on failure
//   auto regs = dev->map_bar(0);          // BAR *number*; I/O and absent BARs are errors
//   dev->enable_bus_master();
//   auto q = dev->dma_alloc(4096, dkq::vfio::dma_placement::below_4g());
//   dev->irq().enable(2);                 // MSI-X, else MSI, else INTx; eventfds + epoll
//
// or, as a plain member of a driver object (a default-constructed device is
// empty: every operation on it fails with errc::not_initialized):
//
//   struct my_driver { dkq::vfio::device dev; ... };
//   DKQ_TRY(drv.dev.open_in_place("0000:00:04.0", {}, &why));
//
// (open_in_place is not called open: C++ does not let a static and a
// non-static member function share a name and a parameter list.)
//
// IOMMU access comes in two kernel flavours and open() picks one:
//   - iommufd + per-device cdev (/dev/iommu, /dev/vfio/devices/vfioN; Linux 6.6+),
//   - the classic container (/dev/vfio/vfio, type1v2) + group (/dev/vfio/<group>).
// The cdev path is tried first when both exist; any failure there falls back
// to the container path, whose errors are the ones reported (it is what every
// kernel has). open_options::backend, or else DKQ_VFIO_BACKEND=container|iommufd
// in the environment, forces one.
//
// DMA memory: anonymous pages (on the device's NUMA node when the machine has
// more than one; numa.hpp), mapped at an IOVA this object chooses (iova_space.hpp),
// or at one the caller chooses (dma_map_at / dma_alloc_at, for devices that
// DMA to fixed addresses; reserve_iova keeps ranges out of the allocator). VFIO
// pins the pages when it maps them - that is the "lock", and it counts against
// RLIMIT_MEMLOCK; an extra mlock() would be counted twice, so there is none.
//
// Errors are values. Failures a user can fix also leave a multi-line text in
// `explain` (open) or last_explain() (later calls) that says what to run.
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/constraints.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/platform/vfio/iova_space.hpp"
#include "dkq/platform/vfio/irq.hpp"
#include "dkq/platform/vfio/numa.hpp"
#include "dkq/platform/vfio/sysfs.hpp"
#include "dkq/platform/vfio/uapi.hpp"

namespace dkq::vfio {

// ---- small value types ----------------------------------------------------------

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

enum class bar_kind : std::uint8_t { absent, memory, io, upper_half };

struct bar_info {
  int index = 0;
  bar_kind kind = bar_kind::absent;
  std::uint64_t size = 0;
  bool is_64bit = false;
  bool prefetchable = false;
  bool mappable = false;  // VFIO allows mmap of the region
};

// Where one DMA region may be placed in the device's address space.
// (dkq::dma_constraints, the dma layer's per-I/O description of a device, is
// accepted by dma_alloc too and converted with placement_for().)
struct dma_placement {
  std::uint64_t limit = ~std::uint64_t{0};  // every device address < limit (exclusive)
  std::uint64_t align = min_page_size;      // device-address alignment (power of two, >= 4 KiB)

  static constexpr dma_placement below_4g() noexcept { return {std::uint64_t{1} << 32, min_page_size}; }
};

// The placement that makes a region of `size` bytes satisfy `c` as one
// segment: below the addressable limit, aligned, and inside one `boundary`
// window (a power-of-two-aligned block at least as large as the region never
// crosses a larger power-of-two boundary).
inline result<dma_placement> placement_for(const dkq::dma_constraints& c, std::size_t size) {
  DKQ_TRY(c.validate());
  dma_placement p;
  p.limit = c.addressable_bits >= 64 ? ~std::uint64_t{0} : std::uint64_t{1} << c.addressable_bits;
  p.align = c.alignment > min_page_size ? c.alignment : min_page_size;
  if (c.boundary != 0) {
    if (size > c.boundary) return status{errc::constraint, "DMA region larger than the device's boundary window", size};
    std::uint64_t block = min_page_size;
    while (block < size) block <<= 1;
    if (block > p.align) p.align = block;
  }
  return p;
}

enum class iommu_backend : std::uint8_t { automatic, container, iommufd };

struct open_options {
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";
  iommu_backend backend = iommu_backend::automatic;
};

// ---- the device ------------------------------------------------------------------

class device {
 public:
  // An empty device: is_open() is false, operations fail with not_initialized.
  device() noexcept = default;
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  device(device&& o) noexcept { take(o); }
  device& operator=(device&& o) noexcept {
    if (this != &o) {
      close();
      take(o);
    }
    return *this;
  }
  ~device() { close(); }

  // Opens `bdf` ("0000:00:04.0"). On failure `explain` (if given) receives a
  // text that tells the user what to do.
  static result<device> open(std::string_view bdf, const open_options& opt = {},
                             std::string* explain = nullptr) {
    device d;
    DKQ_TRY(d.open_in_place(bdf, opt, explain));
    return d;
  }

  // The same into this object: closes whatever it had open first, and on
  // failure leaves it empty.
  status open_in_place(std::string_view bdf, const open_options& opt = {}, std::string* explain = nullptr) {
    close();
    std::string dummy;
    std::string& why = explain ? *explain : dummy;
    why.clear();
    status s = open_steps(bdf, opt, why);
    if (!s.ok()) close();
    return s;
  }

  bool is_open() const noexcept { return fd_.valid(); }
  explicit operator bool() const noexcept { return is_open(); }

  void close() noexcept {
    irq_ = interrupts{};
    for (const mapping& m : maps_) {
      (void)iommu_unmap(m.iova, m.size);
      if (m.owned) release_pages(m.pages);
    }
    maps_.clear();
    for (const bar_map& b : bars_)
      if (b.ptr) ::munmap(b.ptr, b.size);
    bars_.clear();
    fd_.reset();
    group_.reset();
    container_.reset();
    iommufd_.reset();
    reset_state();
  }

  // ---- identity -------------------------------------------------------------------
  const pci_device_info& info() const noexcept { return info_; }
  pci_address address() const noexcept { return info_.addr; }
  int numa_node() const noexcept { return info_.numa_node; }
  iommu_backend backend() const noexcept { return backend_; }
  int fd() const noexcept { return fd_.get(); }
  const std::string& last_explain() const noexcept { return explain_; }
  const iova_space& iovas() const noexcept { return iova_; }

  // ---- BARs -------------------------------------------------------------------------
  // What BAR `index` (0..5) is. Reads the BAR's type bits from config space
  // (VFIO virtualises them) and its size and mmap permission from VFIO.
  result<bar_info> bar(int index) const {
    if (!is_open()) return not_open();
    if (index < 0 || index > 5) return status{errc::out_of_range, "PCI BAR number must be 0..5", static_cast<std::uint64_t>(index)};
    bar_info b;
    b.index = index;
    auto reg = region_info(static_cast<std::uint32_t>(VFIO_PCI_BAR0_REGION_INDEX + index));
    if (!reg) return reg.error();
    auto raw = config_read32(0x10 + 4 * static_cast<std::uint32_t>(index));
    if (!raw) return raw.error();
    if (reg->size == 0) {
      // The upper dword of a 64-bit BAR has no region of its own.
      if (index > 0) {
        auto below = bar(index - 1);
        if (below && below->kind == bar_kind::memory && below->is_64bit) b.kind = bar_kind::upper_half;
      }
      return b;
    }
    b.size = reg->size;
    b.mappable = (reg->flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
    if (*raw & 1u) {
      b.kind = bar_kind::io;
    } else {
      b.kind = bar_kind::memory;
      b.is_64bit = ((*raw >> 1) & 3u) == 2u;
      b.prefetchable = (*raw & 8u) != 0;
    }
    return b;
  }

  // Maps memory BAR `index` and returns its register window (mapped once,
  // later calls return the same window). I/O BARs, absent BARs and the upper
  // half of a 64-bit BAR are errors that name the problem.
  result<mmio_window> map_bar(int index) {
    auto b = bar(index);
    if (!b) return b.error();
    for (const bar_map& m : bars_)
      if (m.index == index) return mmio_window{m.ptr, m.size};
    switch (b->kind) {
      case bar_kind::absent:
        explain_ = "BAR " + std::to_string(index) + " of " + to_string(info_.addr) + " is not implemented by the device\n";
        return status{errc::invalid_argument, "this BAR is not implemented by the device", static_cast<std::uint64_t>(index)};
      case bar_kind::upper_half:
        explain_ = "BAR " + std::to_string(index) + " is the upper half of 64-bit BAR " + std::to_string(index - 1) + "; map BAR " + std::to_string(index - 1) + "\n";
        return status{errc::invalid_argument, "this BAR number is the upper half of a 64-bit memory BAR; map the BAR below it", static_cast<std::uint64_t>(index)};
      case bar_kind::io:
        explain_ = "BAR " + std::to_string(index) + " of " + to_string(info_.addr) + " is an I/O port BAR; registers must be reached through a memory BAR (MegaRAID gen2: BAR 1)\n";
        return status{errc::not_supported, "this BAR is an I/O port BAR and cannot be memory-mapped", static_cast<std::uint64_t>(index)};
      case bar_kind::memory: break;
    }
    if (!b->mappable)
      return status{errc::not_supported, "VFIO does not allow mmap of this BAR", static_cast<std::uint64_t>(index)};
    auto reg = region_info(static_cast<std::uint32_t>(VFIO_PCI_BAR0_REGION_INDEX + index));
    if (!reg) return reg.error();
    void* p = ::mmap(nullptr, reg->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(reg->offset));
    if (p == MAP_FAILED) return status{errc::io_error, "mmap of the BAR failed", static_cast<std::uint64_t>(errno)};
    bars_.push_back({index, p, static_cast<std::size_t>(reg->size)});
    return mmio_window{p, static_cast<std::size_t>(reg->size)};
  }

  // ---- config space ---------------------------------------------------------------
  result<std::uint32_t> config_read32(std::uint32_t off) const { return config_read<std::uint32_t>(off); }
  result<std::uint16_t> config_read16(std::uint32_t off) const { return config_read<std::uint16_t>(off); }
  result<std::uint8_t> config_read8(std::uint32_t off) const { return config_read<std::uint8_t>(off); }
  status config_write32(std::uint32_t off, std::uint32_t v) { return config_write(off, v); }
  status config_write16(std::uint32_t off, std::uint16_t v) { return config_write(off, v); }
  status config_write8(std::uint32_t off, std::uint8_t v) { return config_write(off, v); }

  // PCI command register: memory space (bit 1) and bus master (bit 2). Without
  // bus mastering every DMA the device attempts is dropped silently.
  status enable_bus_master() {
    auto cmd = config_read16(0x04);
    if (!cmd) return cmd.error();
    std::uint16_t v = static_cast<std::uint16_t>(*cmd | 0x0006u);
    if (v != *cmd) DKQ_TRY(config_write16(0x04, v));
    return ok_status;
  }

  // Function reset through VFIO (FLR, PM or bus reset, whichever the kernel
  // can do for this device): the recovery path when a controller hangs or
  // reports a fatal status. The kernel saves and restores the config state
  // around it (command register, MSI/MSI-X setup: the same eventfds keep
  // working), BAR mappings stay valid, and the device's own registers are back
  // at their reset values, so the driver brings the controller up again.
  // (VM-tested on QEMU's NVMe, which has FLR.)
  bool can_reset() const noexcept { return can_reset_; }
  status reset() {
    if (!is_open()) return not_open();
    if (!can_reset_) return {errc::not_supported, "the kernel knows no reset for this device (no FLR, PM or bus reset)"};
    if (::ioctl(fd_.get(), VFIO_DEVICE_RESET) != 0)
      return {errc::io_error, "VFIO_DEVICE_RESET failed", static_cast<std::uint64_t>(errno)};
    return ok_status;
  }

  // Finds a PCI capability by id (0x11 MSI-X, 0x05 MSI, 0x10 PCIe); 0 if absent.
  result<std::uint8_t> find_capability(std::uint8_t id) const {
    auto st = config_read16(0x06);
    if (!st) return st.error();
    if (!(*st & 0x10u)) return std::uint8_t{0};
    auto p = config_read8(0x34);
    if (!p) return p.error();
    std::uint8_t pos = static_cast<std::uint8_t>(*p & 0xfcu);
    for (int guard = 0; pos != 0 && guard < 48; ++guard) {
      auto hdr = config_read16(pos);
      if (!hdr) return hdr.error();
      if ((*hdr & 0xffu) == id) return pos;
      pos = static_cast<std::uint8_t>((*hdr >> 8) & 0xfcu);
    }
    return std::uint8_t{0};
  }

  // ---- DMA --------------------------------------------------------------------------
  // Allocates `size` bytes (rounded up to pages) of zeroed memory, on the
  // device's NUMA node when there is more than one, and maps it for the device.
  // A failure leaves nothing behind (no pages, no IOVA range).
  result<dma_region> dma_alloc(std::size_t size, dma_placement c = {}) {
    if (!is_open()) return not_open();
    if (size == 0) return status{errc::invalid_argument, "DMA allocation of zero bytes"};
    auto pages = allocate_pages(round_pages(size), info_.numa_node, numa_nodes_);
    if (!pages) return pages.error();
    auto r = map_into_iommu(pages->ptr, pages->size, c, *pages);
    if (!r) release_pages(*pages);
    return r;
  }

  // The same under the dma layer's constraints (addressable bits, alignment,
  // boundary), e.g. a 32-bit HBA's control structures.
  result<dma_region> dma_alloc(std::size_t size, const dkq::dma_constraints& c) {
    auto p = placement_for(c, round_pages(size ? size : 1));
    if (!p) return p.error();
    return dma_alloc(size, *p);
  }

  // Maps caller-owned memory (page-aligned pointer, whole pages). The caller
  // keeps ownership; dma_unmap() before freeing it.
  result<dma_region> dma_map(void* cpu, std::size_t size, dma_placement c = {}) {
    if (!is_open()) return not_open();
    if (!cpu || size == 0) return status{errc::invalid_argument, "DMA map of a null or empty buffer"};
    if (reinterpret_cast<std::uintptr_t>(cpu) % page_size() != 0 || size % page_size() != 0)
      return status{errc::invalid_argument, "DMA map needs a page-aligned buffer of whole pages"};
    return map_into_iommu(cpu, size, c, page_allocation{});
  }

  // ---- DMA at a chosen device address ------------------------------------------------
  // For devices that DMA to addresses they do not take from a descriptor: a
  // controller whose firmware or boot ROM uses a fixed window, a device that
  // was designed for physical addresses (no IOMMU) and has them burnt in, a
  // shared-memory protocol whose layout the other side fixed. Everything else
  // should let dma_alloc/dma_map choose (docs/vfio.md, "DMA at a fixed IOVA").
  //
  // dma_map_at maps caller memory (page-aligned pointer, whole pages; the
  // caller keeps ownership and calls dma_unmap before freeing it) at exactly
  // `iova`; dma_alloc_at allocates zeroed pages there. The range is taken
  // from this device's IOVA allocator first, so later dma_alloc calls never
  // collide with it. Refused, with nothing changed:
  //   invalid_argument  iova, size or cpu not page-aligned, size 0, null cpu
  //   out_of_range      not inside the IOMMU's usable IOVA ranges (iovas().windows())
  //   busy              overlaps an existing mapping or a reservation
  //                     (status::detail(): the first conflicting address;
  //                     last_explain() lists the usable ranges and reservations)
  //   not_initialized   the device is not open
  // Arguments are checked before whether the device is open.
  result<dma_region> dma_map_at(std::uint64_t iova, void* cpu, std::size_t size) {
    if (!cpu) return status{errc::invalid_argument, "DMA map of a null buffer"};
    if (reinterpret_cast<std::uintptr_t>(cpu) % page_size() != 0)
      return status{errc::invalid_argument, "DMA map needs a page-aligned buffer",
                    static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(cpu))};
    DKQ_TRY(check_fixed(iova, size));
    if (!is_open()) return not_open();
    return map_fixed(iova, cpu, size, page_allocation{});
  }

  result<dma_region> dma_alloc_at(std::uint64_t iova, std::size_t size) {
    DKQ_TRY(check_fixed(iova, size));
    if (!is_open()) return not_open();
    auto pages = allocate_pages(size, info_.numa_node, numa_nodes_);
    if (!pages) return pages.error();
    auto r = map_fixed(iova, pages->ptr, pages->size, *pages);
    if (!r) release_pages(*pages);
    return r;
  }

  // Keeps [iova, iova+size) out of every later dma_alloc/dma_map and refuses
  // dma_map_at/dma_alloc_at there: for addresses the device must never be
  // given (a window its firmware owns, a peer device's BAR it would reach
  // instead of memory). Page-aligned; refused with busy when the range
  // overlaps an existing mapping or reservation. Nothing is mapped. The first
  // 64 KiB are reserved at open (device address 0 looks like "unset").
  status reserve_iova(std::uint64_t iova, std::uint64_t size) {
    if (!is_open()) return not_open();
    status s = iova_.reserve(iova, size, page_size());
    if (!s.ok()) explain_ = explain_iova_conflict("reserve", iova, size, s);
    return s;
  }
  status unreserve_iova(std::uint64_t iova, std::uint64_t size) {
    if (!is_open()) return not_open();
    return iova_.unreserve(iova, size);
  }

  // Unmaps a region from dma_alloc (and frees it) or from dma_map.
  status dma_free(const dma_region& r) {
    for (std::size_t i = 0; i < maps_.size(); ++i) {
      const mapping m = maps_[i];
      if (m.iova != r.device.value() || m.cpu != r.cpu) continue;
      maps_.erase(maps_.begin() + static_cast<std::ptrdiff_t>(i));
      status s = iommu_unmap(m.iova, m.size);
      (void)iova_.free(m.iova, m.size);
      if (m.owned) release_pages(m.pages);
      return s;
    }
    return {errc::invalid_argument, "DMA region was not allocated or mapped by this device"};
  }
  status dma_unmap(const dma_region& r) { return dma_free(r); }

  // ---- interrupts ------------------------------------------------------------------
  interrupts& irq() noexcept { return irq_; }

  static std::size_t page_size() noexcept {
    long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : min_page_size;
  }

 private:
  struct mapping {
    void* cpu;
    std::uint64_t iova;
    std::size_t size;
    bool owned;             // allocated by dma_alloc (freed here), not dma_map
    page_allocation pages;  // valid when owned
  };
  struct bar_map {
    int index;
    void* ptr;
    std::size_t size;
  };

  // Back to the empty state (the fds, mappings and BARs are released by close()).
  void reset_state() noexcept {
    info_ = pci_device_info{};
    backend_ = iommu_backend::automatic;
    ioas_id_ = 0;
    config_offset_ = 0;
    can_reset_ = false;
    iova_ = iova_space{};
    numa_nodes_ = 1;
  }

  static status not_open() noexcept {
    return {errc::not_initialized, "vfio::device is empty (not opened, closed, or moved from)"};
  }

  void take(device& o) noexcept {
    fs_ = std::move(o.fs_);
    info_ = std::move(o.info_);
    backend_ = o.backend_;
    container_ = std::move(o.container_);
    group_ = std::move(o.group_);
    iommufd_ = std::move(o.iommufd_);
    fd_ = std::move(o.fd_);
    ioas_id_ = o.ioas_id_;
    config_offset_ = o.config_offset_;
    can_reset_ = o.can_reset_;
    iova_ = std::move(o.iova_);
    maps_ = std::move(o.maps_);
    bars_ = std::move(o.bars_);
    irq_ = std::move(o.irq_);
    numa_nodes_ = o.numa_nodes_;
    explain_ = std::move(o.explain_);
    o.maps_.clear();
    o.bars_.clear();
    o.explain_.clear();
    o.reset_state();
  }

  static std::size_t round_pages(std::size_t n) noexcept {
    const std::size_t p = page_size();
    return (n + p - 1) / p * p;
  }

  // ---- open paths -----------------------------------------------------------------
  status open_steps(std::string_view bdf, const open_options& opt, std::string& why) {
    auto addr = parse_pci_address(bdf);
    if (!addr) {
      why = "'" + std::string(bdf) + "' is not a PCI address; use the form 0000:01:00.0 (see dkq-pci)\n";
      return addr.error();
    }
    fs_ = sysfs(opt.sysfs_root);
    auto info = fs_.read_device(*addr);
    if (!info) {
      why = "no PCI device " + to_string(*addr) + " in " + opt.sysfs_root + "/bus/pci/devices (list them with dkq-pci)\n";
      return info.error();
    }
    info_ = std::move(*info);
    if (info_.iommu_group < 0) {
      why = explain_no_iommu(*addr);
      return {errc::not_supported, "device has no IOMMU group: the IOMMU is off or absent"};
    }
    if (info_.driver != "vfio-pci") {
      why = explain_not_bound(info_);
      return {errc::invalid_argument, "device is not bound to vfio-pci"};
    }

    // The environment decides only when the program did not.
    iommu_backend want = opt.backend;
    const char* env = want == iommu_backend::automatic ? std::getenv("DKQ_VFIO_BACKEND") : nullptr;
    if (env) {
      std::string_view e = env;
      if (e == "container" || e == "legacy") want = iommu_backend::container;
      else if (e == "iommufd") want = iommu_backend::iommufd;
    }
    if (want != iommu_backend::container) {
      status s = open_iommufd(opt, why);
      if (s.ok()) return finish_open();
      if (want == iommu_backend::iommufd) return s;
      why.clear();
      iommufd_.reset();
      fd_.reset();
    }
    DKQ_TRY(open_container(opt, why));
    return finish_open();
  }

  status open_container(const open_options& opt, std::string& why) {
    const int group = info_.iommu_group;
    const std::string vfio_dir = opt.dev_root + "/vfio";
    container_ = unique_fd(::open((vfio_dir + "/vfio").c_str(), O_RDWR | O_CLOEXEC));
    if (!container_.valid()) {
      why = "cannot open " + vfio_dir + "/vfio (" + std::strerror(errno) + "): load VFIO with `sudo modprobe vfio-pci` and run as root (or give your user access to /dev/vfio)\n";
      return {errc::not_supported, "VFIO is not available (/dev/vfio/vfio cannot be opened)"};
    }
    if (::ioctl(container_.get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION)
      return {errc::not_supported, "unknown VFIO API version"};
    if (::ioctl(container_.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1) {
      why = "the kernel's VFIO has no type1v2 IOMMU backend; load vfio_iommu_type1 (modprobe vfio_iommu_type1) and check the IOMMU is on\n";
      return {errc::not_supported, "VFIO type1v2 IOMMU is not available"};
    }
    const std::string gpath = vfio_dir + "/" + std::to_string(group);
    group_ = unique_fd(::open(gpath.c_str(), O_RDWR | O_CLOEXEC));
    if (!group_.valid()) {
      int e = errno;
      if (e == EBUSY) {
        why = explain_busy(group, info_.addr, vfio_group_holders(group));
        return {errc::busy, "the device's IOMMU group is already open (device busy)", static_cast<std::uint64_t>(group)};
      }
      if (e == ENOENT) {
        why = gpath + " does not exist although the device is bound to vfio-pci; is the group in no-IOMMU mode? (dkq needs a real IOMMU)\n";
        return {errc::not_supported, "VFIO group node is missing"};
      }
      why = "cannot open " + gpath + " (" + std::strerror(e) + "): run as root or `chown $USER " + gpath + "`\n";
      return {errc::io_error, "cannot open the VFIO group", static_cast<std::uint64_t>(e)};
    }
    vfio_group_status gs{};
    gs.argsz = sizeof gs;
    if (::ioctl(group_.get(), VFIO_GROUP_GET_STATUS, &gs) != 0)
      return {errc::io_error, "VFIO_GROUP_GET_STATUS failed", static_cast<std::uint64_t>(errno)};
    if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE)) {
      why = explain_group_not_viable(fs_, group, info_.addr);
      return {errc::busy, "IOMMU group is not viable: other devices in it are bound to host drivers"};
    }
    int cfd = container_.get();
    if (::ioctl(group_.get(), VFIO_GROUP_SET_CONTAINER, &cfd) != 0)
      return {errc::io_error, "VFIO_GROUP_SET_CONTAINER failed", static_cast<std::uint64_t>(errno)};
    if (::ioctl(container_.get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
      int e = errno;
      if (e == EPERM) {
        why = "VFIO refused the IOMMU: the platform has no interrupt remapping. Enable it (intremap, x2APIC) "
              "or, knowing that a device can then forge interrupts, load vfio_iommu_type1 with allow_unsafe_interrupts=1\n";
      }
      return {errc::not_supported, "VFIO_SET_IOMMU(type1v2) failed", static_cast<std::uint64_t>(e)};
    }
    read_type1_ranges();
    int dfd = ::ioctl(group_.get(), VFIO_GROUP_GET_DEVICE_FD, to_string(info_.addr).c_str());
    if (dfd < 0) {
      int e = errno;
      if (e == EBUSY) {
        why = explain_busy(group, info_.addr, vfio_group_holders(group));
        return {errc::busy, "the device is already open (device busy)"};
      }
      return {errc::io_error, "VFIO_GROUP_GET_DEVICE_FD failed", static_cast<std::uint64_t>(e)};
    }
    fd_ = unique_fd(dfd);
    backend_ = iommu_backend::container;
    return ok_status;
  }

  // Reads the usable IOVA windows from VFIO_IOMMU_GET_INFO's capability chain.
  void read_type1_ranges() {
    iova_ = iova_space{};
    std::vector<std::uint8_t> buf(sizeof(vfio_iommu_type1_info));
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
      info->argsz = static_cast<std::uint32_t>(buf.size());
      if (::ioctl(container_.get(), VFIO_IOMMU_GET_INFO, info) != 0) break;
      if (info->argsz > buf.size()) {
        buf.resize(info->argsz);
        continue;
      }
      if (!(info->flags & VFIO_IOMMU_INFO_CAPS) || info->cap_offset == 0) break;
      std::uint32_t off = info->cap_offset;
      for (int guard = 0; off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size() && guard < 16; ++guard) {
        vfio_info_cap_header hdr;
        std::memcpy(&hdr, buf.data() + off, sizeof hdr);
        if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
          vfio_iommu_type1_info_cap_iova_range cap;
          std::memcpy(&cap, buf.data() + off, sizeof cap);
          for (std::uint32_t i = 0; i < cap.nr_iovas; ++i) {
            vfio_iova_range r;
            std::size_t at = off + sizeof cap + i * sizeof r;
            if (at + sizeof r > buf.size()) break;
            std::memcpy(&r, buf.data() + at, sizeof r);
            iova_.add(r.start, r.end + 1);  // the kernel's end is inclusive
          }
        }
        off = hdr.next;
      }
      break;
    }
    if (iova_.free_ranges().empty()) iova_ = iova_space::defaults();
    (void)iova_.reserve(0, 0x10000);  // device address 0 is never handed out: it looks like "unset"
  }

  status open_iommufd(const open_options& opt, std::string& why) {
    auto cdev = fs_.vfio_cdev(info_.addr);
    if (!cdev) return cdev.error();
    iommufd_ = unique_fd(::open((opt.dev_root + "/iommu").c_str(), O_RDWR | O_CLOEXEC));
    if (!iommufd_.valid()) return {errc::not_supported, "no /dev/iommu (iommufd not built or not loaded)"};
    const std::string dpath = opt.dev_root + "/vfio/devices/" + *cdev;
    fd_ = unique_fd(::open(dpath.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd_.valid()) {
      int e = errno;
      if (e == EBUSY) {
        why = explain_busy(info_.iommu_group, info_.addr, vfio_group_holders(info_.iommu_group));
        return {errc::busy, "the device is already open (device busy)"};
      }
      return {errc::io_error, "cannot open the vfio device cdev", static_cast<std::uint64_t>(e)};
    }
    uapi::vfio_device_bind_iommufd bind{};
    bind.argsz = sizeof bind;
    bind.iommufd = iommufd_.get();
    if (::ioctl(fd_.get(), uapi::ioctl_device_bind_iommufd, &bind) != 0) {
      int e = errno;
      if (e == EBUSY || e == EINVAL) why = explain_group_not_viable(fs_, info_.iommu_group, info_.addr);
      return {errc::io_error, "VFIO_DEVICE_BIND_IOMMUFD failed", static_cast<std::uint64_t>(e)};
    }
    uapi::iommu_ioas_alloc alloc{};
    alloc.size = sizeof alloc;
    if (::ioctl(iommufd_.get(), uapi::ioctl_ioas_alloc, &alloc) != 0)
      return {errc::io_error, "IOMMU_IOAS_ALLOC failed", static_cast<std::uint64_t>(errno)};
    ioas_id_ = alloc.out_ioas_id;
    uapi::vfio_device_attach_iommufd_pt attach{};
    attach.argsz = sizeof attach;
    attach.pt_id = ioas_id_;
    if (::ioctl(fd_.get(), uapi::ioctl_device_attach_iommufd_pt, &attach) != 0)
      return {errc::io_error, "VFIO_DEVICE_ATTACH_IOMMUFD_PT failed", static_cast<std::uint64_t>(errno)};
    // Usable IOVA ranges: the first call reports how many there are (EMSGSIZE).
    iova_ = iova_space{};
    uapi::iommu_ioas_iova_ranges q{};
    q.size = sizeof q;
    q.ioas_id = ioas_id_;
    if (::ioctl(iommufd_.get(), uapi::ioctl_ioas_iova_ranges, &q) != 0 && errno == EMSGSIZE && q.num_iovas > 0) {
      std::vector<uapi::iommu_iova_range> ranges(q.num_iovas);
      q.allowed_iovas = reinterpret_cast<std::uintptr_t>(ranges.data());
      if (::ioctl(iommufd_.get(), uapi::ioctl_ioas_iova_ranges, &q) == 0)
        for (const auto& r : ranges) iova_.add(r.start, r.last + 1);
    }
    if (iova_.free_ranges().empty()) iova_ = iova_space::defaults();
    (void)iova_.reserve(0, 0x10000);
    backend_ = iommu_backend::iommufd;
    return ok_status;
  }

  status finish_open() {
    numa_nodes_ = fs_.online_numa_nodes();
    irq_ = interrupts(fd_.get());
    vfio_device_info di{};
    di.argsz = sizeof di;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &di) != 0)
      return {errc::io_error, "VFIO_DEVICE_GET_INFO failed", static_cast<std::uint64_t>(errno)};
    if (!(di.flags & VFIO_DEVICE_FLAGS_PCI)) return {errc::not_supported, "VFIO device is not a PCI device"};
    can_reset_ = (di.flags & VFIO_DEVICE_FLAGS_RESET) != 0;
    // Config space is read often at setup (BAR types, capabilities); its
    // region offset never changes, so ask once.
    auto cfg = region_info(VFIO_PCI_CONFIG_REGION_INDEX);
    if (!cfg) return cfg.error();
    config_offset_ = cfg->offset;
    return ok_status;
  }

  // ---- regions and config space ------------------------------------------------
  result<vfio_region_info> region_info(std::uint32_t index) const {
    vfio_region_info r{};
    r.argsz = sizeof r;
    r.index = index;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &r) != 0)
      return status{errc::io_error, "VFIO_DEVICE_GET_REGION_INFO failed", static_cast<std::uint64_t>(errno)};
    return r;
  }

  template <class T>
  result<T> config_read(std::uint32_t off) const {
    if (!is_open()) return not_open();
    if (off % sizeof(T) != 0 || off + sizeof(T) > 4096)
      return status{errc::invalid_argument, "config space offset out of range or unaligned", off};
    T v{};
    if (::pread(fd_.get(), &v, sizeof v, static_cast<off_t>(config_offset_ + off)) != static_cast<ssize_t>(sizeof v))
      return status{errc::io_error, "config space read failed", off};
    return v;  // x86-64 and arm64 are little-endian, as PCI config space is
  }

  template <class T>
  status config_write(std::uint32_t off, T v) {
    if (!is_open()) return not_open();
    if (off % sizeof(T) != 0 || off + sizeof(T) > 4096)
      return {errc::invalid_argument, "config space offset out of range or unaligned", off};
    if (::pwrite(fd_.get(), &v, sizeof v, static_cast<off_t>(config_offset_ + off)) != static_cast<ssize_t>(sizeof v))
      return {errc::io_error, "config space write failed", off};
    return ok_status;
  }

  // ---- IOMMU mappings ------------------------------------------------------------
  // `pages.ptr` set: memory from dma_alloc, owned by the mapping.
  result<dma_region> map_into_iommu(void* cpu, std::size_t len, dma_placement c, page_allocation pages) {
    if (c.align < page_size() || (c.align & (c.align - 1)) != 0)
      return status{errc::invalid_argument, "DMA alignment must be a power of two of at least one page", c.align};
    auto iova = iova_.alloc(len, c.align, c.limit);
    if (!iova) return iova.error();
    status s = iommu_map(cpu, len, *iova);
    if (!s.ok()) {
      (void)iova_.free(*iova, len);
      return s;
    }
    maps_.push_back({cpu, *iova, len, pages.ptr != nullptr, pages});
    return dma_region{cpu, dev_addr{*iova}, len};
  }

  static status check_fixed(std::uint64_t iova, std::size_t size) {
    const std::size_t p = page_size();
    if (size == 0) return {errc::invalid_argument, "DMA map of an empty range"};
    if (iova % p != 0) return {errc::invalid_argument, "fixed IOVA is not page-aligned", iova};
    if (size % p != 0) return {errc::invalid_argument, "fixed-IOVA mapping must be whole pages", size};
    return ok_status;
  }

  result<dma_region> map_fixed(std::uint64_t iova, void* cpu, std::size_t len, page_allocation pages) {
    auto at = iova_.alloc_at(iova, len, page_size());
    if (!at) {
      explain_ = explain_iova_conflict("map", iova, len, at.error());
      return at.error();
    }
    status s = iommu_map(cpu, len, iova);
    if (!s.ok()) {
      (void)iova_.free(iova, len);
      return s;
    }
    maps_.push_back({cpu, iova, len, pages.ptr != nullptr, pages});
    return dma_region{cpu, dev_addr{iova}, len};
  }

  std::string explain_iova_conflict(const char* what, std::uint64_t iova, std::uint64_t len, const status& s) const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "cannot %s IOVA [0x%llx, 0x%llx): %s (at 0x%llx)\n", what,
                  static_cast<unsigned long long>(iova), static_cast<unsigned long long>(iova + len), s.message(),
                  static_cast<unsigned long long>(s.detail()));
    std::string out = buf;
    out += "usable IOVA ranges:";
    for (const auto& w : iova_.windows()) {
      std::snprintf(buf, sizeof buf, " [0x%llx, 0x%llx)", static_cast<unsigned long long>(w.start),
                    static_cast<unsigned long long>(w.end));
      out += buf;
    }
    out += "\nreserved:";
    for (const auto& r : iova_.reservations()) {
      std::snprintf(buf, sizeof buf, " [0x%llx, 0x%llx)", static_cast<unsigned long long>(r.start),
                    static_cast<unsigned long long>(r.end));
      out += buf;
    }
    out += "\n";
    return out;
  }

  status iommu_map(void* cpu, std::size_t len, std::uint64_t iova) {
    int rc;
    if (backend_ == iommu_backend::iommufd) {
      uapi::iommu_ioas_map m{};
      m.size = sizeof m;
      m.flags = uapi::ioas_map_fixed_iova | uapi::ioas_map_readable | uapi::ioas_map_writeable;
      m.ioas_id = ioas_id_;
      m.user_va = reinterpret_cast<std::uintptr_t>(cpu);
      m.length = len;
      m.iova = iova;
      rc = ::ioctl(iommufd_.get(), uapi::ioctl_ioas_map, &m);
    } else {
      vfio_iommu_type1_dma_map m{};
      m.argsz = sizeof m;
      m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
      m.vaddr = reinterpret_cast<std::uintptr_t>(cpu);
      m.iova = iova;
      m.size = len;
      rc = ::ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m);
    }
    if (rc == 0) return ok_status;
    int e = errno;
    if (e == ENOMEM) {
      rlimit rl{};
      ::getrlimit(RLIMIT_MEMLOCK, &rl);
      explain_ = explain_memlock(rl.rlim_cur == RLIM_INFINITY ? ~std::uint64_t{0} : rl.rlim_cur, len);
      return {errc::no_memory, "VFIO could not pin DMA memory: RLIMIT_MEMLOCK too low", len};
    }
    return {errc::io_error, "VFIO DMA map failed", static_cast<std::uint64_t>(e)};
  }

  status iommu_unmap(std::uint64_t iova, std::size_t len) noexcept {
    int rc;
    if (backend_ == iommu_backend::iommufd) {
      uapi::iommu_ioas_unmap u{};
      u.size = sizeof u;
      u.ioas_id = ioas_id_;
      u.iova = iova;
      u.length = len;
      rc = ::ioctl(iommufd_.get(), uapi::ioctl_ioas_unmap, &u);
    } else {
      vfio_iommu_type1_dma_unmap u{};
      u.argsz = sizeof u;
      u.iova = iova;
      u.size = len;
      rc = ::ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u);
    }
    if (rc != 0) return {errc::io_error, "VFIO DMA unmap failed", static_cast<std::uint64_t>(errno)};
    return ok_status;
  }

  sysfs fs_;
  pci_device_info info_;
  iommu_backend backend_ = iommu_backend::automatic;
  unique_fd container_;
  unique_fd group_;
  unique_fd iommufd_;
  unique_fd fd_;
  std::uint32_t ioas_id_ = 0;
  std::uint64_t config_offset_ = 0;
  bool can_reset_ = false;
  iova_space iova_;
  std::vector<mapping> maps_;
  std::vector<bar_map> bars_;
  interrupts irq_;
  int numa_nodes_ = 1;
  std::string explain_;
};

}  // namespace dkq::vfio
