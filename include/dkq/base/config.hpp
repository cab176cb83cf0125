// dkq/base/config.hpp - platform detection, attributes and layout constants.
//
// Everything under include/dkq/ except platform/ must compile the way a
// DriverKit extension compiles: C++20 (gnu++20), libc++, -fno-exceptions,
// -fno-rtti, no <thread>/<mutex>/iostreams. This header is the one place that
// looks at the compiler and the architecture.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#define DKQ_ARCH_X86_64 1
#elif defined(__aarch64__) || defined(_M_ARM64)
#define DKQ_ARCH_ARM64 1
#else
#error "dkq supports x86-64 and arm64 only"
#endif

#if defined(__APPLE__)
#define DKQ_OS_APPLE 1
#elif defined(__linux__)
#define DKQ_OS_LINUX 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DKQ_ALWAYS_INLINE inline __attribute__((always_inline))
#define DKQ_NOINLINE __attribute__((noinline))
#define DKQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define DKQ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define DKQ_ALWAYS_INLINE inline
#define DKQ_NOINLINE
#define DKQ_LIKELY(x) (x)
#define DKQ_UNLIKELY(x) (x)
#endif

#if defined(__SANITIZE_THREAD__)
#define DKQ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DKQ_TSAN 1
#endif
#endif

namespace dkq {

// The unit of false-sharing isolation. 128 bytes, not 64, and deliberately not
// std::hardware_destructive_interference_size:
//  - x86-64 since Sandy Bridge has an adjacent-line spatial prefetcher that
//    pulls 64-byte lines in pairs (crossbeam `CachePadded`, DPDK's
//    RTE_CACHE_GUARD empty line);
//  - Apple arm64 cores have 128-byte lines (hw.cachelinesize = 128);
//  - the standard constant is a compile-time guess that GCC warns may differ
//    between translation units (-Winterference-size) and is 64 on x86-64.
// Sources: crossbeam-utils `CachePadded` (src/cache_padded.rs), DPDK
// `RTE_CACHE_GUARD` in struct rte_ring (lib/ring/rte_ring_core.h), Apple's
// `sysctl hw.cachelinesize`, GCC's -Winterference-size; docs/architecture.md.
inline constexpr std::size_t cache_line = 128;

// The smallest page the IOMMU and NVMe's CC.MPS minimum agree on.
inline constexpr std::size_t min_page_size = 4096;

}  // namespace dkq
