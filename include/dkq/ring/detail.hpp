// dkq/ring/detail.hpp - storage and copy helpers shared by the host rings.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/ring/ring_span.hpp"

namespace dkq::ring_detail {

// Largest capacity: free-running 32-bit indices stay unambiguous as long as the
// distance between head and tail (at most capacity) fits in 31 bits.
inline constexpr std::uint32_t max_capacity = std::uint32_t{1} << 31;

inline status check_capacity(std::size_t n) noexcept {
  if (n == 0) return {errc::invalid_argument, "ring capacity must be at least 1"};
  if (n > max_capacity) return {errc::invalid_argument, "ring capacity above 2^31", n};
  if (!is_pow2(n)) return {errc::invalid_argument, "ring capacity must be a power of two", n};
  return ok_status;
}

// Storage a ring owns: one allocation at init, cache-line aligned, with one
// cache line of padding on each side so neighbouring heap objects never share
// a line with the first or last slot (rigtorp SPSCQueue kPadding).
template <class T>
class owned_slots {
 public:
  owned_slots() = default;
  owned_slots(const owned_slots&) = delete;
  owned_slots& operator=(const owned_slots&) = delete;
  ~owned_slots() { reset(); }

  status allocate(std::uint32_t n) noexcept {
    reset();
    std::size_t bytes = 0;
    if (!mul_checked<std::size_t>(n, sizeof(T), bytes) ||
        !add_checked<std::size_t>(bytes, 2 * cache_line, bytes))
      return {errc::invalid_argument, "ring storage size overflows", n};
    void* p = ::operator new(bytes, std::align_val_t{cache_line}, std::nothrow);
    if (p == nullptr) return {errc::no_memory, "cannot allocate ring storage", bytes};
    raw_ = p;
    slots_ = reinterpret_cast<T*>(static_cast<unsigned char*>(p) + cache_line);
    for (std::uint32_t i = 0; i < n; ++i) ::new (static_cast<void*>(slots_ + i)) T();
    return ok_status;
  }
  void reset() noexcept {
    if (raw_ != nullptr) ::operator delete(raw_, std::align_val_t{cache_line});
    raw_ = nullptr;
    slots_ = nullptr;
  }
  T* data() const noexcept { return slots_; }

 private:
  void* raw_ = nullptr;
  T* slots_ = nullptr;
};

// Copy one contiguous run. Pointer + size_t index and __restrict (the ring's
// slots never overlap the caller's buffer) let the compiler emit a vectorized
// copy; an index of the form uint32 `idx + i` may wrap, which blocks it.
template <class T>
DKQ_ALWAYS_INLINE void copy_run(T* __restrict dst, const T* __restrict src, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
}

// Copy n elements into the ring at masked index `idx`, splitting at the wrap.
template <class T>
DKQ_ALWAYS_INLINE void copy_in(T* slots, std::uint32_t mask, std::uint32_t idx, const T* src,
                               std::uint32_t n) noexcept {
  idx &= mask;
  // A single element is one store. Without this the wrap split below turns
  // try_push on the MP/MC rings into a variable-length copy: the compiler
  // cannot prove `mask + 1 - idx >= 1` (mask + 1 could wrap to 0).
  if (n == 1) {
    slots[idx] = *src;
    return;
  }
  const std::uint32_t to_end = mask + 1 - idx;
  const std::uint32_t first = n <= to_end ? n : to_end;
  copy_run(slots + idx, src, first);
  if (DKQ_UNLIKELY(first != n)) copy_run(slots, src + first, n - first);
}

template <class T>
DKQ_ALWAYS_INLINE void copy_out(const T* slots, std::uint32_t mask, std::uint32_t idx, T* dst,
                                std::uint32_t n) noexcept {
  idx &= mask;
  if (n == 1) {  // see copy_in
    *dst = slots[idx];
    return;
  }
  const std::uint32_t to_end = mask + 1 - idx;
  const std::uint32_t first = n <= to_end ? n : to_end;
  copy_run(dst, slots + idx, first);
  if (DKQ_UNLIKELY(first != n)) copy_run(dst + first, slots, n - first);
}

template <class T, class U>
DKQ_ALWAYS_INLINE ring_span<U> spans_at(T* slots, std::uint32_t mask, std::uint32_t idx,
                                        std::uint32_t n) noexcept {
  const std::uint32_t size = mask + 1;
  idx &= mask;
  ring_span<U> s;
  s.first = slots + idx;
  if (idx + n <= size) {
    s.first_count = n;
    s.second = nullptr;
    s.second_count = 0;
  } else {
    s.first_count = size - idx;
    s.second = slots;
    s.second_count = n - s.first_count;
  }
  return s;
}

}  // namespace dkq::ring_detail
