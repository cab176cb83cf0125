// Test support shared by the DMA, NVMe and SCSI scatter-gather tests and the
// fuzz targets: fake device memory (host buffers at chosen device addresses,
// so checkers can read descriptor memory back the way a device would) and
// byte-stream normalisation. Deliberately independent of the builders.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dkq/dma/region.hpp"

namespace dkq::test {

struct free_deleter {
  void operator()(void* p) const noexcept { std::free(p); }
};

// Host buffers registered at device addresses of the test's choosing.
class fake_dma_memory {
 public:
  // A region of `size` bytes the device sees at `dev`. Host memory is 4 KiB
  // aligned and zero-filled; CPU alignment mod 4096 matches `dev` so pools
  // see congruent views.
  dma_region map(std::uint64_t dev, std::size_t size) {
    const std::size_t pad = static_cast<std::size_t>(dev & 4095);
    const std::size_t bytes = (size + pad + 4095) / 4096 * 4096;
    void* raw = std::aligned_alloc(4096, bytes);
    std::memset(raw, 0, bytes);
    auto* cpu = static_cast<std::uint8_t*>(raw) + pad;
    bufs_.emplace_back(raw);
    maps_.push_back(entry{dev, size, cpu});
    return dma_region{cpu, dev_addr{dev}, size};
  }

  // CPU view of device bytes [dev, dev+len), or nullptr if any byte is unmapped.
  const std::uint8_t* translate(std::uint64_t dev, std::uint64_t len) const {
    if (len == 0) return nullptr;
    for (const entry& e : maps_) {
      if (dev >= e.dev && dev - e.dev <= e.size && len <= e.size - (dev - e.dev))
        return e.cpu + (dev - e.dev);
    }
    return nullptr;
  }

  void clear() {
    maps_.clear();
    bufs_.clear();
  }

 private:
  struct entry {
    std::uint64_t dev;
    std::size_t size;
    std::uint8_t* cpu;
  };
  std::vector<entry> maps_;
  std::vector<std::unique_ptr<void, free_deleter>> bufs_;
};

// Merge ranges that are adjacent in order: two descriptor lists describe the
// same transfer iff their normalised forms are equal.
inline std::vector<dma_segment> normalize(const std::vector<dma_segment>& in) {
  std::vector<dma_segment> out;
  for (const dma_segment& s : in) {
    if (s.len == 0) continue;
    if (!out.empty() && out.back().addr.value() + out.back().len == s.addr.value())
      out.back().len += s.len;
    else
      out.push_back(s);
  }
  return out;
}

// Bytes [offset, offset+length) of a segment list, as a segment list.
inline std::vector<dma_segment> window(const std::vector<dma_segment>& in, std::uint64_t offset,
                                       std::uint64_t length) {
  std::vector<dma_segment> out;
  std::uint64_t pos = 0;
  for (const dma_segment& s : in) {
    const std::uint64_t lo = std::max(pos, offset);
    const std::uint64_t hi = std::min(pos + s.len, offset + length);
    if (lo < hi) out.push_back(dma_segment{dev_addr{s.addr.value() + (lo - pos)}, hi - lo});
    pos += s.len;
  }
  return out;
}

inline std::uint64_t total_bytes(const std::vector<dma_segment>& v) {
  std::uint64_t t = 0;
  for (const dma_segment& s : v) t += s.len;
  return t;
}

inline std::string describe(const std::vector<dma_segment>& v) {
  std::string s;
  for (const dma_segment& x : v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%#llx+%#llx]", static_cast<unsigned long long>(x.addr.value()),
                  static_cast<unsigned long long>(x.len));
    s += buf;
  }
  return s;
}

}  // namespace dkq::test
