// dkq/platform/driverkit/apple/interrupts.hpp - MSI-X/MSI vectors as
// IOInterruptDispatchSources feeding the dispatch layer; time for the cores.
//
// Compiled on Linux only against Apple's published DriverKit declarations
// (ctest driverkit_sdk_compile); built for real with Xcode. The capability
// walk, the vector plan, the choice of interrupt indexes and the
// InterruptOccurred -> dispatcher bridge (count > 1 drains everything) are the
// portable ../interrupts.hpp, unit-tested on Linux.
//
// The handler action must come from the dext class's generated
// CreateAction<Method>() for a method declared
//   virtual void InterruptOccurred(OSAction * action, uint64_t count, uint64_t time)
//       TYPE(IOInterruptDispatchSource::InterruptOccurred);
// (an OSAction made by hand never binds), so configure() takes the action from
// the caller.
#pragma once

#include <DriverKit/DriverKit.h>
#include <DriverKit/IOInterruptDispatchSource.h>
#include <DriverKit/IOLib.h>  // mach_absolute_time, mach_timebase_info, IOSleep
#include <PCIDriverKit/PCIDriverKit.h>

#include <atomic>
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
  // Source k (vector k of the plan) sits at interrupt index index(k): the
  // message-signalled indexes follow the legacy pin's, so they are looked up
  // with GetInterruptType (find_message_indexes), never assumed to start at 0.
  result<interrupt_plan> configure(pci_device& pci, IODispatchQueue* queue, std::uint32_t wanted,
                                   OSAction* handler) noexcept {
    auto caps = pci.interrupt_capabilities();
    if (!caps) return caps.error();
    auto plan = plan_interrupts(*caps, wanted < MaxSources ? wanted : MaxSources);
    if (!plan) return plan.error();
    const std::uint32_t type =
        plan->type == interrupt_type::msix ? kIOInterruptTypePCIMessagedX : kIOInterruptTypePCIMessaged;
    DKQ_TRY(from_kern(pci.device()->ConfigureInterrupts(type, plan->vectors, plan->vectors, 0),
                      "IOPCIDevice::ConfigureInterrupts failed"));
    IOPCIDevice* dev = pci.device();
    auto found = find_message_indexes(
        [dev](std::uint32_t index) -> result<std::uint64_t> {
          std::uint64_t t = 0;
          const kern_return_t kr = IOInterruptDispatchSource::GetInterruptType(dev, index, &t);
          if (kr != kIOReturnSuccess) return status{errc::out_of_range, "no such interrupt index", index};
          return t;
        },
        plan->type, index_, plan->vectors);
    if (!found) return found.error();
    for (std::uint32_t i = 0; i < plan->vectors; ++i) {
      DKQ_TRY(from_kern(IOInterruptDispatchSource::Create(dev, index_[i], queue, &src_[i]),
                        "IOInterruptDispatchSource::Create failed"));
      ++count_;
      DKQ_TRY(from_kern(src_[i]->SetHandler(handler), "IOInterruptDispatchSource::SetHandler failed"));
      DKQ_TRY(from_kern(src_[i]->SetEnable(true), "enabling an interrupt source failed"));
    }
    return *plan;
  }

  // Disables and cancels every source. Each source is released in its cancel
  // handler, which runs once no InterruptOccurred of that source is running
  // (IOInterruptDispatchSource.iig, Cancel); `done`, if given, runs once after
  // the last of them (at once when there are none). A handler on another
  // queue may still be running when cancel() returns: whatever it touches
  // must be torn down in `done`, not after cancel(). Without `done` the
  // handlers touch nothing but their source, so this object may be gone by
  // the time they run; with `done` it must outlive them (it counts them).
  void cancel(IODispatchSourceCancelHandler done = nullptr) noexcept {
    const std::uint32_t n = count_;
    count_ = 0;
    if (n == 0) {
      if (done != nullptr) done();
      return;
    }
    pending_.store(n, std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < n; ++i) {
      IOInterruptDispatchSource* s = src_[i];
      src_[i] = nullptr;
      if (s == nullptr) {
        finish_one(done);
        continue;
      }
      s->SetEnable(false);
      kern_return_t kr = kIOReturnSuccess;
      if (done == nullptr) {
        kr = s->Cancel(^{
          s->release();
        });
      } else {
        kr = s->Cancel(^{
          s->release();
          finish_one(done);
        });
      }
      if (kr != kIOReturnSuccess) {  // no handler will run
        s->release();
        finish_one(done);
      }
    }
  }

  std::uint32_t count() const noexcept { return count_; }
  // Interrupt index of source k (valid after configure()).
  std::uint32_t index(std::uint32_t k) const noexcept { return k < MaxSources ? index_[k] : 0; }

 private:
  void finish_one(IODispatchSourceCancelHandler done) noexcept {
    if (done == nullptr) return;
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done();
  }

  IOInterruptDispatchSource* src_[MaxSources] = {};
  std::uint32_t index_[MaxSources] = {};
  std::uint32_t count_ = 0;
  std::atomic<std::uint32_t> pending_{0};
};

// mach_absolute_time ticks <-> nanoseconds. DriverKit's IOLib.h declares
// mach_absolute_time and mach_timebase_info (there is no <mach/mach_time.h>
// in a dext). The split multiply keeps ticks * numer from overflowing.
inline const mach_timebase_info_data_t& timebase() noexcept {
  static mach_timebase_info_data_t tb{};
  if (tb.denom == 0) mach_timebase_info(&tb);
  return tb;
}

inline std::uint64_t ticks_to_ns(std::uint64_t ticks) noexcept {
  const auto& tb = timebase();
  return ticks / tb.denom * tb.numer + ticks % tb.denom * tb.numer / tb.denom;
}

inline std::uint64_t ns_to_ticks(std::uint64_t ns) noexcept {
  const auto& tb = timebase();
  return ns / tb.numer * tb.denom + ns % tb.numer * tb.denom / tb.numer;
}

// Nanoseconds of mach_absolute_time (stops while asleep) for the cores'
// deadlines, and timer deadlines in the same clock's ticks for
// IOTimerDispatchSource::WakeAtTime(kIOTimerClockMachAbsoluteTime, ...).
inline std::uint64_t now_ns() noexcept { return ticks_to_ns(mach_absolute_time()); }

inline std::uint64_t abs_deadline_after_ns(std::uint64_t ns) noexcept { return mach_absolute_time() + ns_to_ticks(ns); }

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
