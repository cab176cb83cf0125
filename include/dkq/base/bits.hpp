// dkq/base/bits.hpp - power-of-two and alignment helpers, overflow-checked.
#pragma once

#include <bit>
#include <limits>
#include <type_traits>

#include "dkq/base/config.hpp"

namespace dkq {

template <class U>
concept unsigned_integer = std::is_unsigned_v<U> && !std::is_same_v<U, bool>;

template <unsigned_integer U>
constexpr bool is_pow2(U x) noexcept {
  return std::has_single_bit(x);
}

// Smallest power of two >= x, or 0 if it does not fit in U (x > 2^(bits-1)).
template <unsigned_integer U>
constexpr U round_up_pow2(U x) noexcept {
  if (x <= 1) return 1;
  if (x > (U(1) << (std::numeric_limits<U>::digits - 1))) return 0;
  return std::bit_ceil(x);
}

// log2 of a power of two; log2_floor for anything nonzero.
template <unsigned_integer U>
constexpr unsigned log2_floor(U x) noexcept {
  return static_cast<unsigned>(std::numeric_limits<U>::digits - 1 - std::countl_zero(x));
}

// Alignment helpers. `a` must be a power of two (checked by callers that take
// it from outside; these are the hot-path forms).
template <unsigned_integer U>
constexpr U align_down(U x, U a) noexcept {
  return x & ~(a - 1);
}
template <unsigned_integer U>
constexpr bool is_aligned(U x, U a) noexcept {
  return (x & (a - 1)) == 0;
}
// align_up that reports overflow: returns false if the result would wrap.
template <unsigned_integer U>
constexpr bool align_up_checked(U x, U a, U& out) noexcept {
  const U r = x + (a - 1);
  if (r < x) return false;
  out = r & ~(a - 1);
  return true;
}
template <unsigned_integer U>
constexpr U align_up(U x, U a) noexcept {
  return (x + (a - 1)) & ~(a - 1);
}

// a + b without wrap; false on overflow.
template <unsigned_integer U>
constexpr bool add_checked(U a, U b, U& out) noexcept {
  return !__builtin_add_overflow(a, b, &out);
}
template <unsigned_integer U>
constexpr bool mul_checked(U a, U b, U& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}

// Extract bits [lo, lo+width) of a register value.
template <unsigned_integer U>
constexpr U bitfield(U value, unsigned lo, unsigned width) noexcept {
  if (width >= static_cast<unsigned>(std::numeric_limits<U>::digits)) return value >> lo;
  return (value >> lo) & ((U(1) << width) - 1);
}

}  // namespace dkq
