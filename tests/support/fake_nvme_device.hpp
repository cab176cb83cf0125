// tests/support/fake_nvme_device.hpp - TEST DOUBLE: a software model of the
// queue side of an NVMe controller, for unit tests, stress tests and the queue
// benchmark. Not part of dkq.
//
// It owns one submission/completion queue pair's device side: it reads the SQ
// tail doorbell (a fake_register, or the shadow doorbell word), fetches 64-byte
// SQEs from host memory, and posts 16-byte CQEs with the phase tag, the SQ head
// and the command identifier, then raises an interrupt on a fake_interrupt_line.
// The completion's DW0 echoes the command's CDW10 so tests can check which
// command a completion belongs to.
//
// It can be stepped from the test's thread (step()) or run on its own thread
// (start()/stop()). Everything it shares with the host is an atomic access with
// acquire/release (seq_cst for the EventIdx handshake), so ThreadSanitizer
// checks the host side's ordering.
//
// Fault injection (each applies to the next completion(s) posted):
//   duplicate      the completion is posted twice
//   bad_cid        the identifier is replaced by a given value
//   stale_phase    the entry is written with the previous lap's phase tag
//                  (the host must not consume it; it stalls there, so the
//                  commands behind it end in a timeout and a reset)
//   drop           the command is consumed but never completed (timeout);
//                  post_late() may later complete it anyway
//   shuffle        completions of one step are posted in a random order
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "dkq/base/barrier.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/completion_queue.hpp"

namespace dkq::test {

// A device register a host doorbell writes. Counts writes, and writes that
// repeat the register's current value (a doorbell protocol violation).
struct fake_register {
  std::atomic<std::uint32_t> value{0};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<std::uint64_t> same_value_writes{0};
};

// The host's doorbell type for a fake_register (satisfies dkq::doorbell).
struct fake_doorbell {
  fake_register* reg = nullptr;
  void write(std::uint32_t v) noexcept {
    // The host is the only writer, so a relaxed read of the old value is exact.
    if (reg->value.load(std::memory_order_relaxed) == v)
      reg->same_value_writes.fetch_add(1, std::memory_order_relaxed);
    reg->value.store(v, std::memory_order_release);
    reg->writes.fetch_add(1, std::memory_order_release);
  }
};

// An MSI-X vector as a counter plus a condition variable (what an eventfd is).
class fake_interrupt_line {
 public:
  void fire() {
    {
      std::lock_guard<std::mutex> g(m_);
      ++pending_;
      ++fired_;
    }
    cv_.notify_all();
  }
  // Block until fired (or `timeout`); returns and clears the count, like an
  // eventfd read.
  std::uint32_t wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait_for(g, timeout, [&] { return pending_ != 0 || woken_; });
    const std::uint32_t n = pending_;
    pending_ = 0;
    woken_ = false;
    return n;
  }
  void wake() {
    {
      std::lock_guard<std::mutex> g(m_);
      woken_ = true;
    }
    cv_.notify_all();
  }
  std::uint64_t fired() {
    std::lock_guard<std::mutex> g(m_);
    return fired_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::uint32_t pending_ = 0;
  std::uint64_t fired_ = 0;
  bool woken_ = false;
};

// dkq::interrupt_waiter over a fake_interrupt_line (one line per waiter).
struct fake_waiter {
  fake_interrupt_line* line = nullptr;
  std::uint64_t arms = 0, disarms = 0;
  void arm(std::uint16_t) noexcept { ++arms; }
  void disarm(std::uint16_t) noexcept { ++disarms; }
  std::uint32_t wait(std::uint16_t) noexcept { return line->wait(); }
};

class fake_nvme_device {
 public:
  // `sq`/`cq` are the host's queue memory; `entries` their common size.
  fake_nvme_device(dma_region sq, dma_region cq, std::uint32_t entries)
      : sq_(sq.cpu_at()), cq_(cq.cpu_at<nvme_cqe>()), entries_(entries) {
    pending_.reserve(4 * entries + 16);
  }
  ~fake_nvme_device() { stop(); }

  fake_doorbell sq_doorbell() { return {&sq_tail_reg}; }
  fake_doorbell cq_doorbell() { return {&cq_head_reg}; }

  // Use shadow doorbells (NVMe Doorbell Buffer Config): the device reads the
  // tail from `sq_shadow` and publishes what it has read in `sq_eventidx`.
  void enable_shadow(std::uint32_t* sq_shadow, std::uint32_t* sq_eventidx, std::uint32_t* cq_shadow,
                     std::uint32_t* cq_eventidx) {
    sq_shadow_ = sq_shadow;
    sq_eventidx_ = sq_eventidx;
    cq_shadow_ = cq_shadow;
    cq_eventidx_ = cq_eventidx;
  }

  void set_interrupt(fake_interrupt_line* line) { irq_ = line; }

  // ---- fault injection (test thread; call while the device thread is stopped
  // or before start) ----
  void inject_duplicate(std::uint32_t n = 1) { dup_next_ = n; }
  void inject_bad_cid(std::uint16_t cid, std::uint32_t n = 1) {
    bad_cid_ = cid;
    bad_cid_next_ = n;
  }
  void inject_stale_phase(std::uint32_t n = 1) { stale_next_ = n; }
  void inject_drop(std::uint32_t n = 1) { drop_next_ = n; }
  void set_shuffle(bool on, std::uint64_t seed = 1) {
    shuffle_ = on;
    rng_.seed(seed);
  }
  // Hold completions until release_held() (to build big batches).
  void hold_completions(bool on) { hold_ = on; }
  // Complete a dropped command after all (a late completion).
  void post_late(std::uint16_t cid, std::uint32_t dw0 = 0) { pending_.push_back({cid, dw0, 0}); }
  const std::vector<std::uint16_t>& dropped_cids() const { return dropped_; }

  // ---- running ----

  // Fetch every command the doorbell published (up to max), then post as many
  // completions as the CQ has room for. Returns the completions posted.
  std::uint32_t step(std::uint32_t max_commands = 0xffffffffu) {
    const std::uint32_t tail = read_sq_tail();
    if (tail >= entries_) {
      protocol_errors.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    std::uint32_t fetched = 0;
    while (sq_head_ != tail && fetched < max_commands) {
      const std::uint8_t* sqe = sq_ + static_cast<std::size_t>(sq_head_) * 64;
      std::uint16_t cid;
      std::uint32_t cdw10;
      std::memcpy(&cid, sqe + 2, 2);
      std::memcpy(&cdw10, sqe + 40, 4);
      if (++sq_head_ == entries_) sq_head_ = 0;
      ++fetched;
      if (drop_next_ != 0) {
        --drop_next_;
        dropped_.push_back(cid);
        continue;
      }
      pending_.push_back({cid, cdw10, 0});
    }
    // Counters once per step, not per command: the benchmark runs this model
    // in the measured loop and an atomic RMW per I/O would dominate it.
    if (fetched != 0) commands.fetch_add(fetched, std::memory_order_relaxed);
    if (sq_eventidx_ != nullptr) publish_sq_eventidx(tail);
    if (hold_) return 0;
    return post_pending();
  }

  std::uint32_t release_held() {
    hold_ = false;
    return post_pending();
  }

  // Run step() on a device thread until stop().
  void start() {
    stop_.store(false, std::memory_order_relaxed);
    thread_ = std::thread([this] {
      std::uint32_t idle = 0;
      while (!stop_.load(std::memory_order_acquire)) {
        if (step() == 0 && pending_.empty()) {
          if (++idle > 64) std::this_thread::yield();
        } else {
          idle = 0;
        }
      }
    });
  }
  void stop() {
    if (thread_.joinable()) {
      stop_.store(true, std::memory_order_release);
      thread_.join();
    }
  }

  // Controller reset: forget both queues (the host re-zeroes its CQ).
  void reset() {
    sq_head_ = cq_tail_ = 0;
    phase_ = 1;
    shadow_tail_ = 0;
    recheck_ = false;
    pending_.clear();
    sq_tail_reg.value.store(0, std::memory_order_relaxed);
    cq_head_reg.value.store(0, std::memory_order_relaxed);
  }

  std::uint32_t sq_head() const { return sq_head_; }
  std::size_t pending() const { return pending_.size(); }

  fake_register sq_tail_reg;
  fake_register cq_head_reg;
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> completions{0};
  std::atomic<std::uint64_t> protocol_errors{0};

 private:
  struct cpl {
    std::uint16_t cid;
    std::uint32_t dw0;
    std::uint16_t status;
  };

  // With shadow doorbells the device behaves like QEMU's ioeventfd path: it
  // looks at the shadow tail only when the register was written (a "kick") or
  // when its own EventIdx re-check saw the shadow move. A host that skips an
  // MMIO it needed therefore hangs here, visibly, instead of being rescued by
  // a device that polls.
  std::uint32_t read_sq_tail() {
    if (sq_shadow_ == nullptr) return sq_tail_reg.value.load(std::memory_order_acquire);
    const std::uint64_t kicks = sq_tail_reg.writes.load(std::memory_order_acquire);
    if (kicks != seen_kicks_ || recheck_) {
      seen_kicks_ = kicks;
      recheck_ = false;
      shadow_tail_ = load_seq_cst(sq_shadow_);
    }
    return shadow_tail_;
  }
  std::uint32_t read_cq_head() {
    if (cq_shadow_ != nullptr) return load_seq_cst(cq_shadow_);
    return cq_head_reg.value.load(std::memory_order_acquire);
  }

  // The controller side of the EventIdx handshake: say "I have read up to
  // `tail`, write the register when you go past it", then look again (a store
  // followed by a load of the other side's word, both seq_cst).
  void publish_sq_eventidx(std::uint32_t tail) {
    store_seq_cst(sq_eventidx_, tail);
    if (load_seq_cst(sq_shadow_) != tail) recheck_ = true;
    if (cq_eventidx_ != nullptr) store_seq_cst(cq_eventidx_, load_seq_cst(cq_shadow_));
  }

  std::uint32_t post_pending() {
    if (pending_.empty()) return 0;
    if (shuffle_ && pending_.size() > 1) std::shuffle(pending_.begin(), pending_.end(), rng_);
    std::uint32_t posted = 0;
    std::size_t i = 0;
    for (; i < pending_.size(); ++i) {
      cpl c = pending_[i];
      if (bad_cid_next_ != 0) {
        --bad_cid_next_;
        c.cid = bad_cid_;
      }
      const bool dup = dup_next_ != 0;
      if (dup) --dup_next_;
      if (!post_one(c)) break;
      ++posted;
      if (dup) {
        if (!post_one(c)) {
          // Out of room for the copy: post it later.
          pending_[i] = c;
          ++dup_next_;
          break;
        }
        ++posted;
      }
    }
    if (i == pending_.size())
      pending_.clear();
    else
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(i));
    if (posted != 0) completions.fetch_add(posted, std::memory_order_relaxed);
    if (posted != 0 && irq_ != nullptr) irq_->fire();
    return posted;
  }

  bool post_one(const cpl& c) {
    std::uint32_t next = cq_tail_ + 1;
    if (next == entries_) next = 0;
    if (next == read_cq_head()) return false;  // CQ full: wait for the host
    nvme_cqe& e = cq_[cq_tail_];
    e.dw0 = c.dw0;
    e.dw1 = 0;
    e.sq_head = static_cast<std::uint16_t>(sq_head_);
    e.sq_id = 1;
    e.cid = c.cid;
    std::uint16_t phase = phase_;
    if (stale_next_ != 0) {
      --stale_next_;
      phase ^= 1;
    }
    // The status word (with the phase tag) last, with release: the host's
    // acquire load of it then sees the whole entry.
    store_release(&e.status, static_cast<std::uint16_t>((c.status << 1) | phase));
    cq_tail_ = next;
    if (cq_tail_ == 0) phase_ ^= 1;
    return true;
  }

  std::uint8_t* sq_;
  nvme_cqe* cq_;
  std::uint32_t entries_;
  std::uint32_t sq_head_ = 0;
  std::uint32_t cq_tail_ = 0;
  std::uint16_t phase_ = 1;
  std::vector<cpl> pending_;
  std::vector<std::uint16_t> dropped_;
  std::uint32_t* sq_shadow_ = nullptr;
  std::uint32_t* sq_eventidx_ = nullptr;
  std::uint32_t* cq_shadow_ = nullptr;
  std::uint32_t* cq_eventidx_ = nullptr;
  std::uint64_t seen_kicks_ = 0;
  std::uint32_t shadow_tail_ = 0;
  bool recheck_ = false;
  fake_interrupt_line* irq_ = nullptr;
  std::uint32_t dup_next_ = 0, bad_cid_next_ = 0, stale_next_ = 0, drop_next_ = 0;
  std::uint16_t bad_cid_ = 0;
  bool shuffle_ = false, hold_ = false;
  std::mt19937_64 rng_{1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// An owned, zeroed, page-aligned block of "DMA" memory for tests: the device
// address is made up (distinct from the pointer, as with an IOMMU).
class test_dma_buffer {
 public:
  explicit test_dma_buffer(std::size_t size, std::uint64_t iova = 0x10000000)
      : mem_(static_cast<std::uint8_t*>(::operator new(size, std::align_val_t{4096}))), size_(size), iova_(iova) {
    std::memset(mem_, 0, size);
  }
  ~test_dma_buffer() { ::operator delete(mem_, std::align_val_t{4096}); }
  test_dma_buffer(const test_dma_buffer&) = delete;
  test_dma_buffer& operator=(const test_dma_buffer&) = delete;
  dma_region region() const { return {mem_, dev_addr{iova_}, size_}; }

 private:
  std::uint8_t* mem_;
  std::size_t size_;
  std::uint64_t iova_;
};

}  // namespace dkq::test
