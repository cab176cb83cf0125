// bench/rings/icount.cpp - instruction counts per element, for use under
// valgrind --tool=callgrind (or any instruction counter).
//
// Wall-clock numbers on a shared 2-CPU machine move by 2x between runs when
// someone else compiles; instruction counts do not. This driver moves N
// elements through one implementation in one thread (push a batch, pop it
// back, check it), so
//     (Ir(N) - Ir(0)) / N   = instructions per element (push + pop + check)
// compares implementations, and a ring change, deterministically:
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null
//       dkq_icount_rings dkq 32 1000000     (one command; read "Collected")
// scripts/bench.sh --icount runs the whole matrix and prints the table.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "peers.hpp"

namespace dkq_bench {
namespace {

template <class Impl>
int run(std::uint32_t batch, std::uint64_t items) {
  auto* q = Impl::create(1024);
  typename Impl::producer p{*q};
  typename Impl::consumer c{*q};
  elem in[256], out[256];
  std::uint64_t next = 1, bad = 0;
  for (std::uint64_t done = 0; done < items; done += batch) {
    for (std::uint32_t i = 0; i < batch; ++i) in[i] = next + i;
    std::uint32_t got = 0;
    if (batch == 1) {
      got = p.push1(in[0]) && c.pop1(out[0]) ? 1 : 0;
    } else if (p.push(in, batch) == batch) {
      while (got < batch) got += c.pop(out + got, batch - got);
    }
    for (std::uint32_t i = 0; i < batch; ++i) bad += (i >= got) | (out[i] != next + i);
    next += batch;
  }
  Impl::destroy(q);
  if (bad != 0) std::fprintf(stderr, "icount: %llu bad elements\n", static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 1;
}

}  // namespace
}  // namespace dkq_bench

int main(int argc, char** argv) {
  using namespace dkq_bench;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s IMPL BATCH ITEMS\n", argv[0]);
    return 2;
  }
  const auto batch = static_cast<std::uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const auto items = std::strtoull(argv[3], nullptr, 10);
  if (batch == 0 || batch > 256) return 2;
  const char* impl = argv[1];
  if (std::strcmp(impl, "dkq") == 0) return run<dkq_impl<mode::spsc>>(batch, items);
#if defined(DKQ_BENCH_HAVE_DPDK)
  if (std::strcmp(impl, "rte_ring") == 0) return run<rte_impl<mode::spsc>>(batch, items);
#endif
#if defined(DKQ_BENCH_HAVE_BOOST)
  if (std::strcmp(impl, "boost_spsc") == 0) return run<boost_spsc_impl>(batch, items);
#endif
#if defined(DKQ_BENCH_HAVE_RWQ)
  if (std::strcmp(impl, "moodycamel_rwq") == 0) return run<rwq_impl>(batch, items);
#endif
#if defined(DKQ_BENCH_HAVE_ATOMIC_QUEUE)
  if (std::strcmp(impl, "atomic_queue") == 0) return run<aq_impl<mode::spsc>>(batch, items);
#endif
  if (std::strcmp(impl, "dkq_mpsc") == 0) return run<dkq_impl<mode::mpsc>>(batch, items);
  if (std::strcmp(impl, "dkq_mpmc") == 0) return run<dkq_impl<mode::mpmc>>(batch, items);
#if defined(DKQ_BENCH_HAVE_DPDK)
  if (std::strcmp(impl, "rte_ring_mpsc") == 0) return run<rte_impl<mode::mpsc>>(batch, items);
  if (std::strcmp(impl, "rte_ring_mpmc") == 0) return run<rte_impl<mode::mpmc>>(batch, items);
#endif
  std::fprintf(stderr, "unknown implementation %s\n", impl);
  return 2;
}
