// dkq-nvme-kbench - the kernel-driver baseline for dkq-nvme perf, and the
// reader of the interoperability check.
//
//   dkq-nvme-kbench perf   /dev/nvme0n1 [--bs B] [--qd Q] [--time S] [--engine aio|uring] [--json]
//   dkq-nvme-kbench verify /dev/nvme0n1 --offset BYTES --bytes N --seed S
//
// perf: random reads with O_DIRECT through Linux native AIO (io_submit /
// io_getevents) or io_uring (io_uring_setup / io_uring_enter and the mapped
// rings), both as raw system calls so the static binary needs neither libaio
// nor liburing: the same block size and queue depth as dkq-nvme perf, through
// Linux's own nvme driver, in the same guest. io_uring is the configuration in
// which Linux's driver stalled on QEMU 7.2 with shadow doorbells in our first
// runs (docs/nvme.md); both engines report the longest gap between completions.
// verify: reads a range and compares it with the pattern dkq-nvme wrote (same
// generator as dkq_nvme.cpp).
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "../../common/pattern.hpp"

namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

using dkq_examples::mix;

// A minimal io_uring: one ring, reads only, raw system calls.
class uring {
 public:
  bool init(unsigned entries) {
    io_uring_params p{};
    fd_ = static_cast<int>(syscall(__NR_io_uring_setup, entries, &p));
    if (fd_ < 0) return false;
    sq_bytes_ = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
    cq_bytes_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) sq_bytes_ = cq_bytes_ = std::max(sq_bytes_, cq_bytes_);
    sq_ = ::mmap(nullptr, sq_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
    if (sq_ == MAP_FAILED) return false;
    cq_ = (p.features & IORING_FEAT_SINGLE_MMAP)
              ? sq_
              : ::mmap(nullptr, cq_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_CQ_RING);
    if (cq_ == MAP_FAILED) return false;
    sqes_ = static_cast<io_uring_sqe*>(::mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe), PROT_READ | PROT_WRITE,
                                              MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES));
    if (sqes_ == MAP_FAILED) return false;
    auto* sqb = static_cast<char*>(sq_);
    auto* cqb = static_cast<char*>(cq_);
    sq_tail_ = reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.ring_mask);
    sq_array_ = reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.array);
    cq_head_ = reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.head);
    cq_tail_ = reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cqb + p.cq_off.cqes);
    return true;
  }
  void prep_read(int fd, void* buf, std::uint32_t len, std::uint64_t off, std::uint64_t user) {
    const std::uint32_t tail = *sq_tail_ + pending_;  // only this thread writes the tail
    const std::uint32_t idx = tail & sq_mask_;
    io_uring_sqe& e = sqes_[idx];
    std::memset(&e, 0, sizeof e);
    e.opcode = IORING_OP_READ;
    e.fd = fd;
    e.addr = reinterpret_cast<std::uint64_t>(buf);
    e.len = len;
    e.off = off;
    e.user_data = user;
    sq_array_[idx] = idx;
    ++pending_;
  }
  // Publishes the prepared entries and waits for at least `wait` completions.
  long enter(unsigned wait) {
    __atomic_store_n(sq_tail_, *sq_tail_ + pending_, __ATOMIC_RELEASE);
    const unsigned n = pending_;
    pending_ = 0;
    return syscall(__NR_io_uring_enter, fd_, n, wait, wait ? IORING_ENTER_GETEVENTS : 0u, nullptr, 0);
  }
  template <class F>
  unsigned reap(F&& f) {
    std::uint32_t head = *cq_head_;
    const std::uint32_t tail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    for (; head != tail; ++head, ++n) f(cqes_[head & cq_mask_]);
    __atomic_store_n(cq_head_, head, __ATOMIC_RELEASE);
    return n;
  }

 private:
  int fd_ = -1;
  std::size_t sq_bytes_ = 0, cq_bytes_ = 0;
  void *sq_ = nullptr, *cq_ = nullptr;
  io_uring_sqe* sqes_ = nullptr;
  std::uint32_t *sq_tail_ = nullptr, *sq_array_ = nullptr, *cq_head_ = nullptr, *cq_tail_ = nullptr;
  std::uint32_t sq_mask_ = 0, cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  unsigned pending_ = 0;
};

int usage() {
  std::fprintf(stderr,
               "usage: dkq-nvme-kbench perf <blockdev> [--bs B] [--qd Q] [--time S] [--engine aio|uring] [--json]\n"
               "       dkq-nvme-kbench verify <blockdev> --offset BYTES --bytes N --seed S\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string cmd = argv[1], dev = argv[2];
  std::uint64_t bs = 4096, qd = 32, offset = 0, bytes = 0, seed = 1;
  double secs = 5;
  bool json = false;
  std::string engine = "aio";
  for (int i = 3; i < argc; ++i) {
    std::string o = argv[i];
    auto v = [&]() { return i + 1 < argc ? argv[++i] : (std::exit(usage()), argv[0]); };
    if (o == "--bs") bs = std::strtoull(v(), nullptr, 0);
    else if (o == "--qd") qd = std::strtoull(v(), nullptr, 0);
    else if (o == "--time") secs = std::atof(v());
    else if (o == "--offset") offset = std::strtoull(v(), nullptr, 0);
    else if (o == "--bytes") bytes = std::strtoull(v(), nullptr, 0);
    else if (o == "--seed") seed = std::strtoull(v(), nullptr, 0);
    else if (o == "--json") json = true;
    else if (o == "--engine") engine = v();
    else return usage();
  }
  // The kernel driver probes asynchronously after a bind; give the node time to appear.
  int fd = -1;
  for (int tries = 0; tries < 300 && fd < 0; ++tries) {
    fd = ::open(dev.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0 && errno == ENOENT) ::usleep(100000);
    else break;
  }
  if (fd < 0) {
    std::fprintf(stderr, "kbench: open %s: %s\n", dev.c_str(), std::strerror(errno));
    return 1;
  }
  if (cmd == "verify") {
    if (bytes == 0 || bytes % 4096 || offset % 4096) return usage();
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, bytes) != 0) return 1;
    ssize_t got = ::pread(fd, buf, bytes, static_cast<off_t>(offset));
    if (got != static_cast<ssize_t>(bytes)) {
      std::fprintf(stderr, "kbench: read %zd of %" PRIu64 " bytes: %s\n", got, bytes, std::strerror(errno));
      return 1;
    }
    auto* p = static_cast<std::uint8_t*>(buf);
    for (std::uint64_t i = 0; i < bytes; i += 8) {
      std::uint64_t want = mix(seed * 0x9e3779b97f4a7c15ull + (offset + i) / 8), have;
      std::memcpy(&have, p + i, 8);
      if (want != have) {
        std::fprintf(stderr, "kbench: MISMATCH at byte %" PRIu64 " of %s\n", offset + i, dev.c_str());
        return 3;
      }
    }
    std::printf("kernel nvme driver read back %" PRIu64 " bytes at offset %" PRIu64 " of %s: pattern ok\n", bytes,
                offset, dev.c_str());
    return 0;
  }
  if (cmd != "perf") return usage();
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0) return 1;
  const std::uint64_t slots = static_cast<std::uint64_t>(size) / bs;
  if (engine != "aio" && engine != "uring") return usage();
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, bs * qd) != 0) return 1;
  std::vector<std::uint64_t> start(qd);
  std::uint64_t rng = 0x2545f4914f6cdd1dull;
  auto next_offset = [&]() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (rng % slots) * bs;
  };
  auto buf_of = [&](std::uint64_t k) { return static_cast<char*>(mem) + k * bs; };
  std::vector<std::uint64_t> lat;
  lat.reserve(1 << 20);
  std::uint64_t t0 = 0, end = 0, done = 0, errors = 0, inflight = 0, longest_gap = 0, last_done_t = 0;
  bool stop = false;
  // One completion of slot k at time t with result res; returns whether to resubmit.
  auto complete = [&](std::uint64_t k, std::int64_t res, std::uint64_t t) {
    if (res != static_cast<std::int64_t>(bs)) ++errors;
    lat.push_back(t - start[k]);
    ++done;
    --inflight;
    return !stop;
  };
  auto batch_done = [&](long n, std::uint64_t t) {
    if (n > 0) {
      longest_gap = std::max(longest_gap, t - last_done_t);
      last_done_t = t;
    }
    if (t >= end) stop = true;
  };
  if (engine == "aio") {
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, qd, &ctx) != 0) {
      std::fprintf(stderr, "kbench: io_setup: %s\n", std::strerror(errno));
      return 1;
    }
    std::vector<iocb> cbs(qd);
    std::vector<iocb*> ptrs(qd);
    auto prep = [&](std::uint64_t k) {
      std::memset(&cbs[k], 0, sizeof(iocb));
      cbs[k].aio_fildes = static_cast<std::uint32_t>(fd);
      cbs[k].aio_lio_opcode = IOCB_CMD_PREAD;
      cbs[k].aio_buf = reinterpret_cast<std::uint64_t>(buf_of(k));
      cbs[k].aio_nbytes = bs;
      cbs[k].aio_offset = static_cast<std::int64_t>(next_offset());
      cbs[k].aio_data = k;
      start[k] = now_ns();
    };
    for (std::uint64_t k = 0; k < qd; ++k) {
      prep(k);
      ptrs[k] = &cbs[k];
    }
    t0 = last_done_t = now_ns();
    end = t0 + static_cast<std::uint64_t>(secs * 1e9);
    if (syscall(SYS_io_submit, ctx, static_cast<long>(qd), ptrs.data()) != static_cast<long>(qd)) {
      std::fprintf(stderr, "kbench: io_submit: %s\n", std::strerror(errno));
      return 1;
    }
    inflight = qd;
    std::vector<io_event> ev(qd);
    while (inflight > 0) {
      timespec to{1, 0};
      long n = syscall(SYS_io_getevents, ctx, 1L, static_cast<long>(qd), ev.data(), &to);
      const std::uint64_t t = now_ns();
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      batch_done(n, t);
      std::uint64_t resub = 0;
      for (long i = 0; i < n; ++i) {
        const std::uint64_t k = ev[i].data;
        if (complete(k, ev[i].res, t)) {
          prep(k);
          ptrs[resub++] = &cbs[k];
        }
      }
      if (resub) {
        if (syscall(SYS_io_submit, ctx, static_cast<long>(resub), ptrs.data()) != static_cast<long>(resub)) break;
        inflight += resub;
      }
    }
  } else {
    uring ring;
    if (!ring.init(static_cast<unsigned>(qd))) {
      std::fprintf(stderr, "kbench: io_uring setup: %s\n", std::strerror(errno));
      return 1;
    }
    auto prep = [&](std::uint64_t k) {
      start[k] = now_ns();
      ring.prep_read(fd, buf_of(k), static_cast<std::uint32_t>(bs), next_offset(), k);
    };
    for (std::uint64_t k = 0; k < qd; ++k) prep(k);
    t0 = last_done_t = now_ns();
    end = t0 + static_cast<std::uint64_t>(secs * 1e9);
    inflight = qd;
    long r = ring.enter(1);
    while (inflight > 0) {
      if (r < 0 && errno != EINTR) {
        std::fprintf(stderr, "kbench: io_uring_enter: %s\n", std::strerror(errno));
        break;
      }
      const std::uint64_t t = now_ns();
      std::uint64_t resub = 0;
      const unsigned n = ring.reap([&](const io_uring_cqe& c) {
        const std::uint64_t k = c.user_data;
        if (complete(k, c.res, t)) {
          prep(k);
          ++resub;
        }
      });
      batch_done(static_cast<long>(n), t);
      inflight += resub;
      if (inflight == 0) break;
      r = ring.enter(1);  // submits the resubmissions and waits for one more
    }
  }
  const double el = static_cast<double>(now_ns() - t0) / 1e9;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : static_cast<double>(lat[std::min(lat.size() - 1, static_cast<std::size_t>(p / 100 * static_cast<double>(lat.size())))]) / 1e3;
  };
  const double iops = static_cast<double>(done) / el;
  // A stall is a second or more with no completion at all: Linux's driver
  // against QEMU 7.2 with shadow doorbells (docs/nvme.md).
  const bool stalled = longest_gap >= 1000000000ull;
  if (json)
    std::printf("{\"device\":\"%s\",\"engine\":\"%s\",\"bs\":%" PRIu64 ",\"qd\":%" PRIu64 ",\"seconds\":%.3f,\"ios\":%" PRIu64
                ",\"errors\":%" PRIu64 ",\"iops\":%.0f,\"lat_us\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
                "\"longest_gap_ms\":%.1f,\"stalled\":%s}\n",
                dev.c_str(), engine.c_str(), bs, qd, el, done, errors, iops, pct(50), pct(99), lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e3,
                static_cast<double>(longest_gap) / 1e6, stalled ? "true" : "false");
  else
    std::printf("kernel %s (%s): %" PRIu64 " B random reads QD %" PRIu64 ": %.0f IOPS in %.2f s, p50 %.1f us, p99 %.1f us, "
                "longest gap %.1f ms%s, %" PRIu64 " errors\n",
                dev.c_str(), engine.c_str(), bs, qd, iops, el, pct(50), pct(99), static_cast<double>(longest_gap) / 1e6,
                stalled ? " (STALLED)" : "", errors);
  return errors ? 1 : 0;
}
