// examples/common/pattern.hpp - the data pattern the example programs write
// and verify (dkq-nvme, dkq-scsi, dkq-nvme-kbench).
//
// Every 8-byte word is a hash of (seed, absolute byte offset on the device),
// so a block written to the wrong LBA, a stale read or a torn transfer is
// caught, and the host side of the VM tests (tests/vm/scenarios/*.py)
// regenerates the same bytes to check the disk images. Keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dkq_examples {

// The 64-bit finaliser of MurmurHash3 (a public-domain mixing function).
inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

inline std::uint64_t pattern_word(std::uint64_t seed, std::uint64_t byte_offset) {
  return mix(seed * 0x9e3779b97f4a7c15ull + byte_offset / 8);
}

// len is a multiple of 8 (block sizes are).
inline void fill_pattern(std::uint8_t* p, std::uint64_t byte_offset, std::size_t len, std::uint64_t seed) {
  for (std::size_t i = 0; i < len; i += 8) {
    const std::uint64_t w = pattern_word(seed, byte_offset + i);
    std::memcpy(p + i, &w, 8);
  }
}

// Offset (within p) of the first 8-byte word that differs, or -1.
inline std::int64_t check_pattern(const std::uint8_t* p, std::uint64_t byte_offset, std::size_t len,
                                  std::uint64_t seed) {
  for (std::size_t i = 0; i < len; i += 8) {
    std::uint64_t have;
    std::memcpy(&have, p + i, 8);
    if (have != pattern_word(seed, byte_offset + i)) return static_cast<std::int64_t>(i);
  }
  return -1;
}

}  // namespace dkq_examples
