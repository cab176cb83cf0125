// dkq/platform/driverkit/apple/pci_device.hpp - IOPCIDevice glue.
//
// This file includes Apple's DriverKit and PCIDriverKit headers and is built
// with Xcode and the DriverKit SDK; on Linux it is compiled against Apple's
// published declarations (ctest driverkit_sdk_compile). Every
// decision it makes is in the portable half (../bar_table.hpp,
// ../indexed_window.hpp, ../interrupts.hpp), which is unit-tested on Linux;
// what is left here is one call per DriverKit API.
//
//   pci_device dev;
//   dev.open(this, provider)     Open, Memory Space + Bus Master on, every
//                                BAR resolved once with GetBARInfo
//   dev.window(bar)              registers by BAR number through
//                                MemoryRead32/MemoryWrite32 (memory index inside)
//   dev.map(bar)                 a CPU mapping of the BAR (dkq::mmio_window) for
//                                cores that write doorbells through a pointer
//   dev.close()
#pragma once

#include <DriverKit/DriverKit.h>
#include <PCIDriverKit/PCIDriverKit.h>

#include <cstdint>

#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/platform/driverkit/bar_table.hpp"
#include "dkq/platform/driverkit/indexed_window.hpp"
#include "dkq/platform/driverkit/interrupts.hpp"

namespace dkq::driverkit::apple {

// kern_return_t -> status (the message says which call failed; the detail
// carries the kern_return_t for the log).
inline status from_kern(kern_return_t kr, const char* what) noexcept {
  if (kr == kIOReturnSuccess) return ok_status;
  return {errc::io_error, what, static_cast<std::uint32_t>(kr)};
}

// status -> kern_return_t, for returning from IMPL methods.
inline kern_return_t to_kern(const status& s) noexcept {
  switch (s.code()) {
    case errc::ok: return kIOReturnSuccess;
    case errc::invalid_argument:
    case errc::out_of_range: return kIOReturnBadArgument;
    case errc::no_space:
    case errc::busy: return kIOReturnBusy;
    case errc::no_memory: return kIOReturnNoMemory;
    case errc::timeout: return kIOReturnTimeout;
    case errc::not_supported: return kIOReturnUnsupported;
    case errc::not_initialized: return kIOReturnNotReady;
    case errc::removed: return kIOReturnNoDevice;
    case errc::constraint: return kIOReturnDMAError;
    default: return kIOReturnIOError;
  }
}

inline bar_kind from_apple_bar_type(std::uint8_t t) noexcept {
  switch (t) {
    case kPCIBARTypeIO: return bar_kind::io;
    case kPCIBARTypeM32: return bar_kind::mem32;
    case kPCIBARTypeM32PF: return bar_kind::mem32_prefetch;
    case kPCIBARTypeM64: return bar_kind::mem64;
    case kPCIBARTypeM64PF: return bar_kind::mem64_prefetch;
    default: return bar_kind::unresolved;  // the table refuses it
  }
}

// The memory_accessor indexed_window needs, over IOPCIDevice.
struct pci_accessor {
  IOPCIDevice* dev = nullptr;
  std::uint32_t read32(std::uint8_t index, std::uint64_t off) const noexcept {
    std::uint32_t v = 0xffffffffu;
    dev->MemoryRead32(index, off, &v);
    return v;
  }
  void write32(std::uint8_t index, std::uint64_t off, std::uint32_t v) const noexcept {
    dev->MemoryWrite32(index, off, v);
  }
};

using register_window = indexed_window<pci_accessor>;

class pci_device {
 public:
  pci_device() noexcept = default;
  pci_device(const pci_device&) = delete;
  pci_device& operator=(const pci_device&) = delete;
  ~pci_device() { close(); }

  status open(IOService* owner, IOPCIDevice* pci) noexcept {
    if (pci == nullptr || owner == nullptr) return {errc::invalid_argument, "open needs the owner and its IOPCIDevice"};
    if (dev_ != nullptr) return {errc::busy, "PCI device already open"};
    DKQ_TRY(from_kern(pci->Open(owner, 0), "IOPCIDevice::Open failed (another driver holds the device?)"));
    dev_ = pci;
    owner_ = owner;
    acc_.dev = pci;
    // System turns both bits off when a dext crashes or unloads: set them on
    // every open (Apple IOPCIDevice overview; docs/porting-a-kext.md "DMA reads back zeros").
    if (status s = enable_bus_master(); !s) {
      close();
      return s;
    }
    status s = bars_.resolve([pci](int bar) -> result<bar_report> {
      std::uint8_t index = 0, type = 0;
      std::uint64_t size = 0;
      const kern_return_t kr = pci->GetBARInfo(static_cast<std::uint8_t>(bar), &index, &size, &type);
      if (kr != kIOReturnSuccess) return bar_report{};  // not implemented: absent
      return bar_report{true, index, size, from_apple_bar_type(type)};
    });
    if (!s) {
      close();
      return s;
    }
    return ok_status;
  }

  void close() noexcept {
    for (auto& m : maps_) {
      if (m.map != nullptr) m.map->release();
      if (m.mem != nullptr) m.mem->release();
      m = mapping{};
    }
    if (dev_ != nullptr) dev_->Close(owner_, 0);  // also clears Bus Master + Memory Space
    dev_ = nullptr;
    owner_ = nullptr;
    acc_.dev = nullptr;
  }

  IOPCIDevice* device() const noexcept { return dev_; }
  const bar_table& bars() const noexcept { return bars_; }
  const pci_accessor& accessor() const noexcept { return acc_; }

  status enable_bus_master() noexcept {
    if (dev_ == nullptr) return {errc::not_initialized, "PCI device not open"};
    std::uint16_t cmd = 0;
    dev_->ConfigurationRead16(kIOPCIConfigurationOffsetCommand, &cmd);
    if (cmd == 0xffff) return {errc::removed, "PCI command register reads all ones (device gone)"};
    cmd = static_cast<std::uint16_t>(cmd | kIOPCICommandBusLead | kIOPCICommandMemorySpace);
    dev_->ConfigurationWrite16(kIOPCIConfigurationOffsetCommand, cmd);
    std::uint16_t back = 0;
    dev_->ConfigurationRead16(kIOPCIConfigurationOffsetCommand, &back);
    if ((back & (kIOPCICommandBusLead | kIOPCICommandMemorySpace)) !=
        (kIOPCICommandBusLead | kIOPCICommandMemorySpace))
      return {errc::io_error, "Bus Master / Memory Space did not stick in the PCI command register", back};
    return ok_status;
  }

  std::uint32_t config_read32(std::uint32_t off) const noexcept {
    std::uint32_t v = 0xffffffffu;
    dev_->ConfigurationRead32(off, &v);
    return v;
  }
  std::uint16_t config_read16(std::uint32_t off) const noexcept {
    std::uint16_t v = 0xffff;
    dev_->ConfigurationRead16(off, &v);
    return v;
  }
  std::uint8_t config_read8(std::uint32_t off) const noexcept {
    std::uint8_t v = 0xff;
    dev_->ConfigurationRead8(off, &v);
    return v;
  }

  result<interrupt_caps> interrupt_capabilities() const noexcept {
    return read_interrupt_caps([this](std::uint8_t o) { return config_read8(o); },
                               [this](std::uint8_t o) { return config_read16(o); });
  }

  // Registers of memory BAR `bar` through the accessors (memory index inside).
  result<register_window> window(int bar) const noexcept { return register_window::make(&acc_, bars_, bar); }

  // A CPU mapping of memory BAR `bar`, uncached, kept until close().
  result<mmio_window> map(int bar) noexcept {
    auto e = bars_.memory_bar(bar);
    if (!e) return e.error();
    mapping& m = maps_[bar];
    if (m.map == nullptr) {
      DKQ_TRY(from_kern(dev_->_CopyDeviceMemoryWithIndex(e->memory_index, &m.mem, owner_),
                        "_CopyDeviceMemoryWithIndex failed for the BAR's memory index"));
      const kern_return_t kr = m.mem->CreateMapping(kIOMemoryMapCacheModeInhibit, 0, 0, 0, 0, &m.map);
      if (kr != kIOReturnSuccess) {
        m.mem->release();
        m.mem = nullptr;
        return from_kern(kr, "CreateMapping of the BAR failed");
      }
    }
    const std::uint64_t len = m.map->GetLength();
    if (len < e->size) return status{errc::protocol_error, "BAR mapping shorter than GetBARInfo's size", len};
    return mmio_window(reinterpret_cast<volatile void*>(m.map->GetAddress()), static_cast<std::size_t>(e->size));
  }

 private:
  struct mapping {
    IOMemoryDescriptor* mem = nullptr;
    IOMemoryMap* map = nullptr;
  };
  IOPCIDevice* dev_ = nullptr;
  IOService* owner_ = nullptr;
  pci_accessor acc_{};
  bar_table bars_{};
  mapping maps_[max_bars]{};
};

}  // namespace dkq::driverkit::apple
