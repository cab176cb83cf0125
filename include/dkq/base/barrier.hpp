// dkq/base/barrier.hpp - CPU relax, DMA barriers and device-shared word access.
//
// Names say what they order (liburing style):
//
//   dma_wmb()  CPU stores to coherent DMA memory (an SQE, a PRP list) become
//              visible to the device before a later store that publishes them
//              (a doorbell MMIO write or a shadow-doorbell word).
//   dma_rmb()  a CPU load of a device-written flag (an NVMe phase bit, a reply
//              queue producer index) happens before later loads of the data the
//              flag guards (the rest of the CQE).
//
// x86-64 (TSO): stores are not reordered with older stores and loads are not
// reordered with older loads, and uncached MMIO stores are not reordered with
// older write-back stores (Intel SDM vol. 3, 9.2.2). Both barriers are compiler
// barriers only; Linux's dma_wmb/dma_rmb are barrier() on x86 for the same reason.
// arm64: device-coherent memory is in the outer-shareable domain, so the
// barriers are `dmb oshst` / `dmb oshld` (Linux arch/arm64 dma_wmb/dma_rmb).
//
// ThreadSanitizer does not model standalone fences (google/sanitizers #1352),
// so words that a software device model in another thread also touches are
// read and written with acquire/release atomics (load_acquire/store_release
// below); the explicit barrier is kept as well because a real device is not a
// C++ thread.
#pragma once

#include "dkq/base/config.hpp"

namespace dkq {

// Hint to the core that we are spinning (x86 PAUSE, arm64 YIELD).
DKQ_ALWAYS_INLINE void cpu_relax() noexcept {
#if defined(DKQ_ARCH_X86_64)
  __builtin_ia32_pause();
#else
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

DKQ_ALWAYS_INLINE void compiler_barrier() noexcept { __asm__ __volatile__("" ::: "memory"); }

DKQ_ALWAYS_INLINE void dma_wmb() noexcept {
#if defined(DKQ_ARCH_X86_64)
  compiler_barrier();
#else
  __asm__ __volatile__("dmb oshst" ::: "memory");
#endif
}

DKQ_ALWAYS_INLINE void dma_rmb() noexcept {
#if defined(DKQ_ARCH_X86_64)
  compiler_barrier();
#else
  __asm__ __volatile__("dmb oshld" ::: "memory");
#endif
}

// Full barrier for publish-then-check handshakes against a device (NVMe
// EventIdx: write the shadow tail, then read the event index). x86 needs a real
// fence here (store-load reordering is the one TSO allows).
DKQ_ALWAYS_INLINE void dma_mb() noexcept {
#if defined(DKQ_ARCH_X86_64)
  __asm__ __volatile__("mfence" ::: "memory");
#else
  __asm__ __volatile__("dmb osh" ::: "memory");
#endif
}

// Access to words in memory shared with a device (or a device model thread).
// These use the compiler's __atomic builtins rather than std::atomic_ref so they
// work on const objects and on fields of packed wire structures.
template <class T>
DKQ_ALWAYS_INLINE T load_acquire(const T* p) noexcept {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <class T>
DKQ_ALWAYS_INLINE T load_relaxed(const T* p) noexcept {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
template <class T>
DKQ_ALWAYS_INLINE void store_release(T* p, T v) noexcept {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
template <class T>
DKQ_ALWAYS_INLINE void store_relaxed(T* p, T v) noexcept {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
template <class T>
DKQ_ALWAYS_INLINE T load_seq_cst(const T* p) noexcept {
  return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
template <class T>
DKQ_ALWAYS_INLINE void store_seq_cst(T* p, T v) noexcept {
  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

}  // namespace dkq
