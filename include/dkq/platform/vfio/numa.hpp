// dkq/platform/vfio/numa.hpp - page-aligned DMA memory on a chosen NUMA node.
//
// A queue or buffer the device reads and writes should live on the device's
// node: every access then crosses no socket interconnect, for the CPU polling
// it and for the device's DMA. The node comes from sysfs (numa_node, -1 when
// the platform does not say); the policy is only applied when more than one
// node is online, so single-node machines pay nothing.
//
// libnuma is optional at build time: define DKQ_VFIO_HAVE_LIBNUMA and link
// -lnuma to use numa_alloc_onnode(); without it the same placement is asked for
// with the mbind(2) system call directly (MPOL_PREFERRED, so a full node falls
// back to another instead of failing). Static programs (the VM tests) use the
// latter unless they link libnuma.a.
#pragma once

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#if defined(DKQ_VFIO_HAVE_LIBNUMA)
#include <numa.h>
#endif

#include "dkq/base/status.hpp"

namespace dkq::vfio {

struct page_allocation {
  void* ptr = nullptr;
  std::size_t size = 0;
  bool placed = false;       // a node policy was applied
  bool via_libnuma = false;  // allocated by libnuma (and freed by it)
};

// `size` bytes (a multiple of the page size), zeroed and faulted in, on `node`
// when `node >= 0` and `online_nodes > 1`.
inline result<page_allocation> allocate_pages(std::size_t size, int node, int online_nodes) {
  page_allocation a;
  a.size = size;
  const bool want_node = online_nodes > 1 && node >= 0;
#if defined(DKQ_VFIO_HAVE_LIBNUMA)
  if (want_node && ::numa_available() >= 0) {
    if (void* p = ::numa_alloc_onnode(size, node)) {
      std::memset(p, 0, size);  // fault the pages in now, on that node
      a.ptr = p;
      a.placed = a.via_libnuma = true;
      return a;
    }
  }
#endif
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return status{errc::no_memory, "could not allocate DMA memory", size};
#if !defined(DKQ_VFIO_HAVE_LIBNUMA)
  if (want_node && node < 64) {
    // Before the first touch: the policy decides where the pages are faulted in.
    unsigned long mask = 1ul << node;
    constexpr int mpol_preferred = 1;
    a.placed = ::syscall(SYS_mbind, p, size, mpol_preferred, &mask, sizeof(mask) * 8, 0) == 0;
  }
#endif
  std::memset(p, 0, size);
  a.ptr = p;
  return a;
}

inline void release_pages(const page_allocation& a) noexcept {
  if (!a.ptr) return;
#if defined(DKQ_VFIO_HAVE_LIBNUMA)
  if (a.via_libnuma) {
    ::numa_free(a.ptr, a.size);
    return;
  }
#endif
  ::munmap(a.ptr, a.size);
}

}  // namespace dkq::vfio
