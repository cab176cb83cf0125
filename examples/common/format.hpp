// examples/common/format.hpp - small output helpers shared by the example programs.
#pragma once

#include <cstdint>
#include <cstdio>

namespace dkq_examples {

// "16.0 MiB": a byte count in binary units with one decimal.
inline void print_size(std::uint64_t bytes) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  std::printf("%.1f %s", v, unit[i]);
}

}  // namespace dkq_examples
