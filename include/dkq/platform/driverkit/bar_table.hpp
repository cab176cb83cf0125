// dkq/platform/driverkit/bar_table.hpp - BAR number -> DriverKit memory index,
// resolved once.
//
// IOPCIDevice::MemoryRead32/MemoryWrite32 take a *memory index*: the position
// of the range in the device's memory array that IOPCIDevice::Open() maps
// (IOPCIFamily PCIDriverKit/IOPCIDevice.cpp, IOPCIDevice::Open). It is not the BAR number: an I/O BAR, an unimplemented BAR or the upper
// half of a 64-bit BAR shifts every later index. Writing registers through
// "index = BAR number" is the classic dext bug where writes succeed and nothing
// happens (docs/porting-a-kext.md). The MegaRAID SAS2108 is a live example: BAR 0 is an
// I/O BAR and its registers are in BAR 1.
//
// bar_table asks the platform once per BAR (GetBARInfo on DriverKit, through a
// callable so this file needs no DriverKit header and is unit-tested on Linux),
// checks the answers for consistency, and from then on drivers name BARs and
// never indices. Nothing here touches the device.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/status.hpp"

namespace dkq::driverkit {

// What one BAR is. `upper_half` marks the BAR number consumed by the high
// dword of the 64-bit BAR before it; it is never queried.
enum class bar_kind : std::uint8_t {
  unresolved,
  absent,
  io,
  mem32,
  mem32_prefetch,
  mem64,
  mem64_prefetch,
  upper_half,
};

constexpr bool is_memory(bar_kind k) noexcept {
  return k == bar_kind::mem32 || k == bar_kind::mem32_prefetch || k == bar_kind::mem64 ||
         k == bar_kind::mem64_prefetch;
}
constexpr bool is_64bit(bar_kind k) noexcept { return k == bar_kind::mem64 || k == bar_kind::mem64_prefetch; }

constexpr const char* bar_kind_name(bar_kind k) noexcept {
  switch (k) {
    case bar_kind::unresolved: return "unresolved";
    case bar_kind::absent: return "absent";
    case bar_kind::io: return "io";
    case bar_kind::mem32: return "mem32";
    case bar_kind::mem32_prefetch: return "mem32-prefetch";
    case bar_kind::mem64: return "mem64";
    case bar_kind::mem64_prefetch: return "mem64-prefetch";
    case bar_kind::upper_half: return "upper-half";
  }
  return "unknown";
}

inline constexpr int max_bars = 6;

// The platform's answer for one BAR (GetBARInfo's out-parameters, with the
// Apple IOPCIBARType already translated to bar_kind by the glue).
struct bar_report {
  bool present = false;  // false: the platform says this BAR is not implemented
  std::uint8_t memory_index = 0;
  std::uint64_t size = 0;
  bar_kind kind = bar_kind::absent;
};

struct bar_entry {
  bar_kind kind = bar_kind::unresolved;
  std::uint8_t memory_index = 0xff;
  std::uint64_t size = 0;
};

class bar_table {
 public:
  // query(int bar) -> result<bar_report>, called once for every BAR number
  // 0..5 except upper halves. A failed result is the platform failing (the
  // call itself) and is returned as is; an unimplemented BAR is a report with
  // present = false. Inconsistent reports (size 0, an unknown kind, a 64-bit
  // BAR in slot 5, two BARs on one memory index) are protocol errors: a table
  // built from them would send register writes to the wrong range.
  template <class Query>
  status resolve(Query&& query) noexcept {
    bar_entry tmp[max_bars];
    for (int b = 0; b < max_bars; ++b) {
      if (tmp[b].kind == bar_kind::upper_half) continue;
      result<bar_report> r = query(b);
      if (!r) return r.error();
      const bar_report q = *r;
      if (!q.present) {
        tmp[b].kind = bar_kind::absent;
        continue;
      }
      if (q.kind != bar_kind::io && !is_memory(q.kind))
        return {errc::protocol_error, "platform reported a BAR of unknown type", static_cast<std::uint64_t>(b)};
      if (q.size == 0)
        return {errc::protocol_error, "platform reported a present BAR of size 0", static_cast<std::uint64_t>(b)};
      if (is_64bit(q.kind)) {
        if (b == max_bars - 1)
          return {errc::protocol_error, "64-bit BAR in slot 5 has no slot for its upper half", 5};
        tmp[b + 1].kind = bar_kind::upper_half;
      }
      for (int o = 0; o < b; ++o) {
        const bool live = tmp[o].kind == bar_kind::io || is_memory(tmp[o].kind);
        if (live && tmp[o].memory_index == q.memory_index)
          return {errc::protocol_error, "two BARs report the same memory index", q.memory_index};
      }
      tmp[b] = bar_entry{q.kind, q.memory_index, q.size};
    }
    for (int b = 0; b < max_bars; ++b) bars_[b] = tmp[b];
    resolved_ = true;
    return ok_status;
  }

  bool resolved() const noexcept { return resolved_; }

  // What BAR `bar` is (unresolved before resolve(), or for a bad number).
  bar_kind kind(int bar) const noexcept {
    if (!resolved_ || bar < 0 || bar >= max_bars) return bar_kind::unresolved;
    return bars_[bar].kind;
  }

  // The entry of memory BAR `bar`, or why it cannot be used for registers.
  result<bar_entry> memory_bar(int bar) const noexcept {
    if (!resolved_) return status{errc::not_initialized, "BAR table not resolved (call resolve() after Open)"};
    if (bar < 0 || bar >= max_bars) return status{errc::out_of_range, "BAR number must be 0..5", static_cast<std::uint64_t>(bar)};
    const bar_entry& e = bars_[bar];
    switch (e.kind) {
      case bar_kind::absent:
        return status{errc::not_supported, "BAR is not implemented by this device", static_cast<std::uint64_t>(bar)};
      case bar_kind::io:
        return status{errc::not_supported, "BAR is an I/O BAR; registers are reached through a memory BAR",
                      static_cast<std::uint64_t>(bar)};
      case bar_kind::upper_half:
        return status{errc::invalid_argument, "BAR is the upper half of the 64-bit BAR before it",
                      static_cast<std::uint64_t>(bar)};
      default: break;
    }
    return e;
  }

  // The first memory BAR (what a driver whose register BAR moves between
  // device generations asks for).
  result<int> first_memory_bar() const noexcept {
    if (!resolved_) return status{errc::not_initialized, "BAR table not resolved (call resolve() after Open)"};
    for (int b = 0; b < max_bars; ++b)
      if (is_memory(bars_[b].kind)) return b;
    return status{errc::not_supported, "device has no memory BAR"};
  }

  // Checks one register access against the BAR: inside it and naturally
  // aligned. Used once per register address, not per access.
  status check_access(int bar, std::uint64_t offset, unsigned width) const noexcept {
    auto e = memory_bar(bar);
    if (!e) return e.error();
    if (width != 1 && width != 2 && width != 4 && width != 8)
      return {errc::invalid_argument, "register width must be 1, 2, 4 or 8 bytes", width};
    if (offset % width != 0) return {errc::invalid_argument, "register offset is not naturally aligned", offset};
    if (offset > e->size || e->size - offset < width)
      return {errc::out_of_range, "register offset lies outside the BAR", offset};
    return ok_status;
  }

 private:
  bar_entry bars_[max_bars]{};
  bool resolved_ = false;
};

}  // namespace dkq::driverkit
