// dkq/platform/driverkit/indexed_window.hpp - a register window reached through
// IOPCIDevice::MemoryRead32/MemoryWrite32 (memory index + offset).
//
// The DriverKit-sanctioned way to touch registers is the accessor pair on
// IOPCIDevice, addressed by memory index. indexed_window binds one memory BAR
// (by BAR number, through a resolved bar_table) to an accessor object and gives
// drivers the same read32/write32(offset) shape as dkq::mmio_window, so a core
// templated on its window type (the MegaRAID core) runs unchanged over either.
//
// Ordering is the same contract as mmio_window: write32 makes earlier stores to
// DMA memory visible first (dma_wmb, then the accessor), read32 keeps later DMA
// loads behind the register read (accessor, then dma_rmb). The accessors are
// in-process loads and stores after Open() maps the ranges (IOPCIFamily
// PCIDriverKit/IOPCIDevice.cpp, Open and MemoryRead32), so the
// barrier is needed exactly as with a raw pointer.
//
// An access outside the BAR or misaligned is never sent: a read returns all
// ones (what a removed device answers, so the caller's removal checks fire) and
// a write is dropped; both are counted in bad_accesses(). Register offsets are
// constants in a driver, so the first such access is a bug to report, and the
// checked forms return it as an error.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"
#include "dkq/platform/driverkit/bar_table.hpp"

namespace dkq::driverkit {

// What the glue wraps around IOPCIDevice (and a test fake provides).
template <class A>
concept memory_accessor = requires(const A& a, std::uint8_t index, std::uint64_t off, std::uint32_t v) {
  { a.read32(index, off) } -> std::same_as<std::uint32_t>;
  { a.write32(index, off, v) };
};

template <memory_accessor A>
class indexed_window {
 public:
  indexed_window() noexcept = default;

  // The window of memory BAR `bar`: its memory index and size come from the
  // resolved table; an I/O, absent or unresolved BAR is an error here, at
  // setup, not a silent write later.
  static result<indexed_window> make(const A* accessor, const bar_table& bars, int bar) noexcept {
    if (accessor == nullptr) return status{errc::invalid_argument, "register window needs an accessor"};
    auto e = bars.memory_bar(bar);
    if (!e) return e.error();
    indexed_window w;
    w.acc_ = accessor;
    w.bar_ = bar;
    w.index_ = e->memory_index;
    w.size_ = e->size;
    return w;
  }

  bool valid() const noexcept { return acc_ != nullptr; }
  int bar() const noexcept { return bar_; }
  std::uint8_t memory_index() const noexcept { return index_; }
  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t bad_accesses() const noexcept { return bad_; }

  status check(std::uint64_t off, unsigned width) const noexcept {
    if (acc_ == nullptr) return {errc::not_initialized, "register window is not bound"};
    if (off % width != 0) return {errc::invalid_argument, "register offset is not naturally aligned", off};
    if (off > size_ || size_ - off < width) return {errc::out_of_range, "register offset lies outside the BAR", off};
    return ok_status;
  }

  std::uint32_t read32(std::size_t off) const noexcept {
    if (DKQ_UNLIKELY(!check(off, 4))) {
      ++bad_;
      return 0xffffffffu;
    }
    const std::uint32_t v = acc_->read32(index_, off);
    dma_rmb();
    return v;
  }
  void write32(std::size_t off, std::uint32_t v) const noexcept {
    if (DKQ_UNLIKELY(!check(off, 4))) {
      ++bad_;
      return;
    }
    dma_wmb();
    acc_->write32(index_, off, v);
  }
  // A 64-bit register as two 32-bit accesses, low dword first (NVMe CAP, ASQ,
  // ACQ permit it; MacVFN splits its 64-bit writes the same way).
  std::uint64_t read64_lo_hi(std::size_t off) const noexcept {
    const std::uint64_t lo = read32(off);
    const std::uint64_t hi = read32(off + 4);
    return lo | (hi << 32);
  }
  void write64_lo_hi(std::size_t off, std::uint64_t v) const noexcept {
    write32(off, static_cast<std::uint32_t>(v));
    write32(off + 4, static_cast<std::uint32_t>(v >> 32));
  }

  result<std::uint32_t> read32_checked(std::size_t off) const noexcept {
    if (status s = check(off, 4); !s) return s;
    return read32(off);
  }
  status write32_checked(std::size_t off, std::uint32_t v) const noexcept {
    DKQ_TRY(check(off, 4));
    write32(off, v);
    return ok_status;
  }

 private:
  const A* acc_ = nullptr;
  int bar_ = -1;
  std::uint8_t index_ = 0xff;
  std::uint64_t size_ = 0;
  mutable std::uint64_t bad_ = 0;
};

}  // namespace dkq::driverkit
