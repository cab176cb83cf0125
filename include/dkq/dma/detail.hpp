// dkq/dma/detail.hpp - setup-time storage shared by the DMA layer's tables.
//
// Pools and the IOVA allocator keep their bookkeeping (free stacks, offset
// tables, extent lists) in arrays allocated once in init() and never resized:
// a dext must not allocate on the I/O path, and a failed allocation is then an
// init() error a driver can report, not a surprise under load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"

namespace dkq::dma_detail {

template <class T>
class setup_array {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "setup_array holds plain bookkeeping values");

 public:
  setup_array() noexcept = default;
  setup_array(const setup_array&) = delete;
  setup_array& operator=(const setup_array&) = delete;
  ~setup_array() { reset(); }

  status allocate(std::size_t n) noexcept {
    reset();
    std::size_t bytes = 0;
    if (n == 0 || !mul_checked<std::size_t>(n, sizeof(T), bytes))
      return {errc::invalid_argument, "DMA bookkeeping table size is zero or overflows", n};
    void* p = ::operator new(bytes, std::align_val_t{alignof(T) < 16 ? 16 : alignof(T)}, std::nothrow);
    if (p == nullptr) return {errc::no_memory, "cannot allocate DMA bookkeeping table", bytes};
    data_ = static_cast<T*>(p);
    for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(data_ + i)) T();
    size_ = n;
    return ok_status;
  }
  void reset() noexcept {
    if (data_ != nullptr)
      ::operator delete(static_cast<void*>(data_), std::align_val_t{alignof(T) < 16 ? 16 : alignof(T)});
    data_ = nullptr;
    size_ = 0;
  }

  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace dkq::dma_detail
