// Submit + doorbell + reap cost per I/O, driver side only.
//
// One iteration is one round at queue depth qd: submit qd commands through
// dkq::queue_pair, let the device model (same thread, no cross-core traffic)
// fetch them and post qd completions, reap them. With batching the round
// writes one SQ tail doorbell and one CQ head doorbell (2/qd per I/O);
// without, every command and every completion writes its own (2 per I/O), the
// way a driver without post/ring separation behaves.
//
// Reported per benchmark:
//   time_per_io       seconds per I/O (Google Benchmark prints it in ns)
//   doorbells_per_io  SQ + CQ doorbell writes per I/O
// The device model's own work (reading SQEs, writing CQEs) is inside the
// loop; it is a few ns per I/O and is the same in every case.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "dkq/queue/queue_pair.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint64_t>;

constexpr std::uint32_t queue_entries = 256;

struct rig {
  explicit rig(bool batched)
      : sq(64u * queue_entries), cq(16u * queue_entries, 0x20000000),
        dev(sq.region(), cq.region(), queue_entries) {
    if (!qp.init(sq.region(), cq.region(), queue_entries, dev.sq_doorbell(), dev.cq_doorbell(),
                 batched ? dkq::ring_policy::batched : dkq::ring_policy::immediate)
             .ok())
      std::abort();
    std::memset(cmd, 0, sizeof cmd);
    cmd[0] = 0x02;  // NVMe Read
  }

  // One round: qd submissions, device, qd completions.
  DKQ_ALWAYS_INLINE void round(std::uint32_t qd, bool batched) {
    for (std::uint32_t i = 0; i < qd; ++i) {
      if (DKQ_UNLIKELY(!qp.submit(cmd, ctx++).ok())) ++errors;
    }
    qp.flush();  // end of batch (a no-op under the immediate policy)
    dev.step();
    if (batched) {
      qp.process_completions(qd, [&](std::uint64_t& c, const nvme_cqe&) { sum += c; },
                             [&](dkq::status, const nvme_cqe&) { ++errors; });
    } else {
      for (std::uint32_t i = 0; i < qd; ++i)
        qp.process_completions(1, [&](std::uint64_t& c, const nvme_cqe&) { sum += c; },
                               [&](dkq::status, const nvme_cqe&) { ++errors; });
    }
  }

  std::uint64_t doorbells() const {
    return dev.sq_tail_reg.writes.load(std::memory_order_relaxed) + dev.cq_head_reg.writes.load(std::memory_order_relaxed);
  }

  test_dma_buffer sq, cq;
  fake_nvme_device dev;
  qp_t qp;
  std::uint8_t cmd[64];
  std::uint64_t ctx = 0, sum = 0, errors = 0;
};

void BM_queue_submit_reap(benchmark::State& state) {
  const auto qd = static_cast<std::uint32_t>(state.range(0));
  const bool batched = state.range(1) != 0;
  rig r(batched);
  for (int i = 0; i < 100; ++i) r.round(qd, batched);  // warm the lines
  const std::uint64_t db0 = r.doorbells();
  std::uint64_t rounds = 0;
  for (auto _ : state) {
    r.round(qd, batched);
    ++rounds;
  }
  benchmark::DoNotOptimize(r.sum);
  const double ios = static_cast<double>(rounds) * qd;
  state.counters["time_per_io"] =
      benchmark::Counter(static_cast<double>(qd), benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
  state.counters["doorbells_per_io"] = static_cast<double>(r.doorbells() - db0) / ios;
  state.SetItemsProcessed(static_cast<std::int64_t>(ios));
  if (r.errors != 0 || r.qp.tags().in_flight() != 0) state.SkipWithError("lost or bad completions");
}
BENCHMARK(BM_queue_submit_reap)->ArgsProduct({{1, 8, 32, 128}, {0, 1}})->ArgNames({"qd", "batched"});

// A fixed amount of work per case for instruction counting under callgrind:
//   valgrind --tool=callgrind --toggle-collect='*fixed_rounds*' queue_bench --fixed=2000 --only=qd:32/batched:1
// (scripts in docs/queue.md). The warm-up rounds are counted too; they are
// 10 of `rounds` and are subtracted by running two round counts.
DKQ_NOINLINE std::uint64_t fixed_rounds(rig& r, std::uint32_t qd, bool batched, std::uint32_t rounds) {
  for (std::uint32_t i = 0; i < rounds; ++i) r.round(qd, batched);
  return r.sum;
}

int run_fixed(std::uint32_t rounds, const char* only) {
  for (std::uint32_t qd : {1u, 8u, 32u, 128u})
    for (bool batched : {false, true}) {
      const std::string name = "qd:" + std::to_string(qd) + "/batched:" + (batched ? "1" : "0");
      if (only != nullptr && name != only) continue;
      rig r(batched);
      fixed_rounds(r, qd, batched, 10);  // the same warm-up as the benchmark, outside the count
      const std::uint64_t db0 = r.doorbells();
      fixed_rounds(r, qd, batched, rounds);
      std::printf("%s ios=%llu doorbells_per_io=%.4f errors=%llu\n", name.c_str(),
                  static_cast<unsigned long long>(static_cast<std::uint64_t>(rounds) * qd),
                  static_cast<double>(r.doorbells() - db0) / (static_cast<double>(rounds) * qd),
                  static_cast<unsigned long long>(r.errors));
    }
  return 0;
}

}  // namespace

// queue_bench --fixed=ROUNDS [--only=qd:32/batched:1]: fixed work, no timing.
int main(int argc, char** argv) {
  std::uint32_t fixed = 0;
  const char* only = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--fixed=", 8) == 0) fixed = static_cast<std::uint32_t>(std::stoul(argv[i] + 8));
    if (std::strncmp(argv[i], "--only=", 7) == 0) only = argv[i] + 7;
  }
  if (fixed != 0) return run_fixed(fixed, only);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
