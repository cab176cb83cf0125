// dkq/platform/driverkit/apple/interrupts.hpp - MSI-X/MSI vectors as
// IOInterruptDispatchSources feeding the dispatch layer; time for the cores.
//
// NOT COMPILED ON THE LINUX CI (DriverKit headers; built with Xcode). The
// capability walk, the vector plan and the InterruptOccurred -> dispatcher
// bridge (count > 1 drains everything) are the portable ../interrupts.hpp,
// unit-tested on Linux.
//
// The handler action must come from the dext class's generated
// CreateAction<Method>() for a method declared
//   virtual void InterruptOccurred(OSAction* action, uint64_t count, uint64_t time)
//       TYPE(IOInterruptDispatchSource::InterruptOccurred);
// (an OSAction made by hand never binds; DRIVERKIT.md), so configure() takes the
// action from the caller.
#pragma once

#include <DriverKit/DriverKit.h>
#include <DriverKit/IOInterruptDispatchSource.h>
#include <PCIDriverKit/PCIDriverKit.h>
#include <mach/mach_time.h>
#include <time.h>

#include <cstdint>

#include "dkq/platform/driverkit/apple/pci_device.hpp"
#include "dkq/platform/driverkit/interrupts.hpp"

namespace dkq::driverkit::apple {

template <std::uint32_t MaxSources = 32>
class interrupt_sources {
 public:
  ~interrupt_sources() { cancel(); }

  // Plans MSI-X (else MSI) for `wanted` vectors, configures the device and
  // creates one dispatch source per vector on `queue`, all with `handler`.
  result<interrupt_plan> configure(pci_device& pci, IODispatchQueue* queue, std::uint32_t wanted,
                                   OSAction* handler) noexcept {
    auto caps = pci.interrupt_capabilities();
    if (!caps) return caps.error();
    auto plan = plan_interrupts(*caps, wanted < MaxSources ? wanted : MaxSources);
    if (!plan) return plan.error();
    const std::uint32_t type =
        plan->type == interrupt_type::msix ? kIOInterruptTypePCIMessagedX : kIOInterruptTypePCIMessaged;
    DKQ_TRY(from_kern(pci.device()->ConfigureInterrupts(type, 1, plan->vectors, 0),
                      "IOPCIDevice::ConfigureInterrupts failed"));
    for (std::uint32_t i = 0; i < plan->vectors; ++i) {
      DKQ_TRY(from_kern(IOInterruptDispatchSource::Create(pci.device(), i, queue, &src_[i]),
                        "IOInterruptDispatchSource::Create failed"));
      ++count_;
      DKQ_TRY(from_kern(src_[i]->SetHandler(handler), "IOInterruptDispatchSource::SetHandler failed"));
      DKQ_TRY(from_kern(src_[i]->SetEnable(true), "enabling an interrupt source failed"));
    }
    return *plan;
  }

  void cancel() noexcept {
    for (std::uint32_t i = 0; i < count_; ++i) {
      if (src_[i] == nullptr) continue;
      src_[i]->SetEnable(false);
      src_[i]->Cancel(nullptr);
      src_[i]->release();
      src_[i] = nullptr;
    }
    count_ = 0;
  }

  std::uint32_t count() const noexcept { return count_; }

 private:
  IOInterruptDispatchSource* src_[MaxSources] = {};
  std::uint32_t count_ = 0;
};

// Nanoseconds of mach_absolute_time (CLOCK_UPTIME_RAW: stops while asleep)
// for the cores' deadlines, and timer deadlines in the same clock's ticks for
// IOTimerDispatchSource::WakeAtTime(kIOTimerClockMachAbsoluteTime, ...), the
// clock whose units are not in doubt (Apple's pages disagree on what
// kIOTimerClockMonotonicRaw counts).
inline std::uint64_t now_ns() noexcept { return clock_gettime_nsec_np(CLOCK_UPTIME_RAW); }

inline std::uint64_t abs_deadline_after_ns(std::uint64_t ns) noexcept {
  static mach_timebase_info_data_t tb{};
  if (tb.denom == 0) mach_timebase_info(&tb);
  // ticks = ns * denom / numer (numer/denom converts ticks to ns)
  return mach_absolute_time() + ns * tb.denom / tb.numer;
}

inline void delay_us(std::uint32_t us) noexcept {
  if (us >= 1000) {
    IOSleep((us + 999) / 1000);
    return;
  }
  const std::uint64_t end = now_ns() + std::uint64_t{us} * 1000;
  while (now_ns() < end) {
  }
}

}  // namespace dkq::driverkit::apple
