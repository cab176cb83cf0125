// dkq/ring/ring_span.hpp - the two spans around a ring's wrap point.
//
// Zero-copy reserve/peek operations hand back the slots to fill or read as at
// most two contiguous runs (DPDK rte_ring_zc_data {ptr1, n1, ptr2}): the run up
// to the end of the storage, then the run from its start.
#pragma once

#include <cstdint>
#include <span>

#include "dkq/base/config.hpp"

namespace dkq {

template <class T>
struct ring_span {
  T* first = nullptr;
  std::uint32_t first_count = 0;
  T* second = nullptr;
  std::uint32_t second_count = 0;

  constexpr std::uint32_t size() const noexcept { return first_count + second_count; }
  constexpr bool empty() const noexcept { return size() == 0; }
  // Element i of the reservation, whichever run it is in. i < size().
  constexpr T& operator[](std::uint32_t i) const noexcept {
    return i < first_count ? first[i] : second[i - first_count];
  }
  constexpr std::span<T> first_span() const noexcept { return {first, first_count}; }
  constexpr std::span<T> second_span() const noexcept { return {second, second_count}; }
};

}  // namespace dkq
