// dkq/platform/driverkit/interrupts.hpp - MSI/MSI-X planning and the bridge
// from IOInterruptDispatchSource::InterruptOccurred to the dispatch layer.
//
// DriverKit gives PCI dexts message-signalled interrupts only (Apple's
// IOInterruptDispatchSource documentation and .iig), one dispatch source
// per vector, each calling a handler declared
// TYPE(IOInterruptDispatchSource::InterruptOccurred) with (count, time). Four
// pieces need no DriverKit header and are unit-tested on Linux:
//
//  - read_interrupt_caps(): walks the PCI capability list in config space (a
//    callable reads it) for MSI-X (table size) and MSI (multiple-message
//    capable). Config space is device data: a looping or out-of-range list
//    is an error, not a hang.
//  - plan_interrupts(): MSI-X when present, else MSI (a power of two, at most
//    32), never INTx; how many vectors to ask ConfigureInterrupts for.
//  - find_message_indexes(): which interrupt indexes of the IOPCIDevice are the
//    message-signalled vectors ConfigureInterrupts set up. They do not start
//    at 0: IOPCIFamily lists the legacy pin interrupt first and appends one
//    index per MSI/MSI-X vector after it (IOPCIMessagedInterruptController.cpp,
//    addDeviceInterruptProperties: `*deviceIndex = specifiers->getCount()`;
//    Apple's PCIDriverKitPEX8733 sample creates its source at index 1), so the
//    indexes are found by asking IOInterruptDispatchSource::GetInterruptType
//    for each one (a callable here).
//  - interrupt_bridge: maps dispatch-source index -> dispatcher vector and turns
//    one InterruptOccurred into dispatcher.on_interrupt(). `count` > 1 means
//    several messages coalesced into one callback: the handler drains every
//    queue on the vector until it is empty (the dispatcher does that whatever
//    the count says); the count only feeds statistics.
#pragma once

#include <cstdint>

#include "dkq/base/status.hpp"

namespace dkq::driverkit {

namespace pci_cap {
inline constexpr std::uint8_t status_offset = 0x06;
inline constexpr std::uint16_t status_cap_list = 1u << 4;
inline constexpr std::uint8_t cap_pointer = 0x34;
inline constexpr std::uint8_t msi = 0x05;
inline constexpr std::uint8_t msix = 0x11;
}  // namespace pci_cap

struct interrupt_caps {
  std::uint8_t msi_offset = 0;       // 0 = no MSI capability
  std::uint32_t msi_vectors = 0;     // multiple-message capable: 1..32
  std::uint8_t msix_offset = 0;      // 0 = no MSI-X capability
  std::uint32_t msix_vectors = 0;    // table size: 1..2048
};

// read8(off) -> std::uint8_t and read16(off) -> std::uint16_t read config space
// (IOPCIDevice::ConfigurationRead8/16 in the glue).
template <class Read8, class Read16>
result<interrupt_caps> read_interrupt_caps(Read8&& read8, Read16&& read16) noexcept {
  interrupt_caps c;
  const std::uint16_t st = read16(pci_cap::status_offset);
  if (st == 0xffff) return status{errc::removed, "config space reads all ones (device gone)"};
  if ((st & pci_cap::status_cap_list) == 0) return c;  // no capabilities: neither MSI nor MSI-X
  std::uint8_t ptr = static_cast<std::uint8_t>(read8(pci_cap::cap_pointer) & 0xfc);
  // At most 48 capabilities fit in the 192 bytes after the header; more
  // steps than that means the list loops.
  for (int steps = 0; ptr != 0; ++steps) {
    if (steps == 48) return status{errc::protocol_error, "PCI capability list loops"};
    if (ptr < 0x40) return status{errc::protocol_error, "PCI capability pointer inside the header", ptr};
    const std::uint8_t id = read8(ptr);
    const std::uint16_t ctrl = read16(static_cast<std::uint8_t>(ptr + 2));
    if (id == pci_cap::msi && c.msi_offset == 0) {
      c.msi_offset = ptr;
      const unsigned mmc = (ctrl >> 1) & 7u;
      if (mmc > 5) return status{errc::protocol_error, "MSI multiple-message capable field is reserved", mmc};
      c.msi_vectors = 1u << mmc;
    } else if (id == pci_cap::msix && c.msix_offset == 0) {
      c.msix_offset = ptr;
      c.msix_vectors = (ctrl & 0x7ffu) + 1u;
    }
    ptr = static_cast<std::uint8_t>(read8(static_cast<std::uint8_t>(ptr + 1)) & 0xfc);
  }
  return c;
}

enum class interrupt_type : std::uint8_t { msix, msi };

struct interrupt_plan {
  interrupt_type type = interrupt_type::msix;
  std::uint32_t vectors = 0;
};

// How many vectors of which kind to configure for `wanted` queues' worth of
// vectors. MSI grants powers of two; asking for more than the device offers
// is clamped (the driver then shares vectors between queues).
inline result<interrupt_plan> plan_interrupts(const interrupt_caps& caps, std::uint32_t wanted) noexcept {
  if (wanted == 0) return status{errc::invalid_argument, "at least one interrupt vector is needed"};
  if (caps.msix_offset != 0 && caps.msix_vectors != 0) {
    return interrupt_plan{interrupt_type::msix, wanted < caps.msix_vectors ? wanted : caps.msix_vectors};
  }
  if (caps.msi_offset != 0 && caps.msi_vectors != 0) {
    std::uint32_t n = 1;
    while (n * 2 <= wanted && n * 2 <= caps.msi_vectors) n *= 2;
    return interrupt_plan{interrupt_type::msi, n};
  }
  return status{errc::not_supported, "device has neither MSI-X nor MSI; DriverKit PCI dexts get no INTx"};
}

// Interrupt type bits GetInterruptType reports for a PCI device
// (IOPCIFamily IOKit/pci/IOPCIFamilyDefinitions.h: kIOInterruptTypePCIMessaged,
// kIOInterruptTypePCIMessagedX). An MSI-X vector carries both bits
// (IOPCIMessagedInterruptController.cpp, msiModeToInterruptType: the MSI bit is
// kept "for backwards compatibility"); an MSI vector only the first.
namespace interrupt_type_bits {
inline constexpr std::uint64_t pci_messaged = 0x00010000;
inline constexpr std::uint64_t pci_messaged_x = 0x00020000;
}  // namespace interrupt_type_bits

// Upper bound on the interrupt indexes examined: the legacy pin plus the
// largest MSI-X table (2048) is far more than a driver asks for; the scan stops
// at the first index GetInterruptType refuses, so this only bounds a provider
// that never refuses.
inline constexpr std::uint32_t max_interrupt_index_scan = 2049;

// type_at(index) -> result<std::uint64_t>: the interrupt type of provider
// interrupt `index` (GetInterruptType), an error once there is no such index.
// Fills out[0..n) with the first n indexes whose type is a `want` vector, in
// index order (vector k of the plan is out[k]), where n = out.size(). Fewer
// such indexes than asked for is errc::not_supported (the configuration did
// not take); an index list that never ends is errc::protocol_error.
template <class TypeAt>
result<std::uint32_t> find_message_indexes(TypeAt&& type_at, interrupt_type want, std::uint32_t* out,
                                           std::uint32_t n) noexcept {
  if (n == 0 || out == nullptr) return status{errc::invalid_argument, "no interrupt indexes asked for"};
  const std::uint64_t bit =
      want == interrupt_type::msix ? interrupt_type_bits::pci_messaged_x : interrupt_type_bits::pci_messaged;
  std::uint32_t found = 0;
  for (std::uint32_t index = 0; index < max_interrupt_index_scan; ++index) {
    result<std::uint64_t> t = type_at(index);
    if (!t) return status{errc::not_supported, "fewer message-signalled interrupt indexes than vectors configured", found};
    if ((*t & bit) != 0) {
      out[found++] = index;
      if (found == n) return found;
    }
  }
  return status{errc::protocol_error, "provider reports an interrupt type for every index scanned"};
}

struct bridge_counters {
  std::uint64_t callbacks = 0;        // InterruptOccurred calls
  std::uint64_t coalesced = 0;        // calls with count > 1
  std::uint64_t notifications = 0;    // sum of counts
  std::uint64_t completions = 0;      // entries drained
  std::uint64_t stray = 0;            // callbacks for an unknown source index
  std::uint64_t last_time = 0;        // `time` of the last callback
};

// Dispatcher: anything with on_interrupt(std::uint16_t vector, std::uint32_t count).
template <class Dispatcher, std::uint32_t MaxSources = 32>
class interrupt_bridge {
 public:
  explicit interrupt_bridge(Dispatcher& d) noexcept : d_(&d) {
    for (auto& v : vector_) v = unbound;
  }

  // Dispatch source `index` (the interrupt index given to
  // IOInterruptDispatchSource::Create) delivers dispatcher vector `vector`.
  status attach(std::uint32_t index, std::uint16_t vector) noexcept {
    if (index >= MaxSources) return {errc::out_of_range, "interrupt source index beyond the bridge's table", index};
    if (vector == unbound) return {errc::invalid_argument, "vector 0xffff is reserved", vector};
    if (vector_[index] != unbound) return {errc::busy, "interrupt source already attached", index};
    vector_[index] = vector;
    return ok_status;
  }
  status detach(std::uint32_t index) noexcept {
    if (index >= MaxSources || vector_[index] == unbound)
      return {errc::invalid_argument, "interrupt source not attached", index};
    vector_[index] = unbound;
    return ok_status;
  }

  // Body of InterruptOccurred(action, count, time). Returns entries drained.
  std::uint32_t occurred(std::uint32_t index, std::uint64_t count, std::uint64_t time) noexcept {
    ++c_.callbacks;
    c_.last_time = time;
    if (index >= MaxSources || vector_[index] == unbound) {
      ++c_.stray;
      return 0;
    }
    // A callback means at least one message, whatever count says.
    if (count == 0) count = 1;
    if (count > 1) ++c_.coalesced;
    c_.notifications += count;
    const std::uint32_t n32 = count > 0xffffffffull ? 0xffffffffu : static_cast<std::uint32_t>(count);
    const std::uint32_t got = d_->on_interrupt(vector_[index], n32);
    c_.completions += got;
    return got;
  }

  const bridge_counters& counters() const noexcept { return c_; }

 private:
  static constexpr std::uint16_t unbound = 0xffff;
  Dispatcher* d_;
  std::uint16_t vector_[MaxSources];
  bridge_counters c_{};
};

}  // namespace dkq::driverkit
