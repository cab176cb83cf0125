// dkq/dispatch/dispatcher.hpp - interrupt vectors to completion queues.
//
// The dispatcher knows which completion queues each interrupt vector serves
// (one vector may serve several queues - the NVMe admin queue often shares
// vector 0, a single-vector device serves them all - and a queue is bound to
// exactly one vector). It is OS-agnostic: the platform turns its notification
// into a call on_interrupt(vector, count) - an eventfd read on Linux VFIO
// (count = the eventfd counter), InterruptOccurred(count) on DriverKit - and
// never calls the OS itself.
//
// On an interrupt every bound queue is drained until it is empty, each pass
// bounded by the per-call budget so one busy queue cannot starve the others
// sharing the vector, and each queue writes its head doorbell once per pass
// (as Linux nvme-pci's nvme_irq -> nvme_poll_cq does: drain the whole CQ per
// notification, one CQ head doorbell at the end). `count` only feeds the statistics: MSI-X
// messages coalesce, so k notifications may stand for any number of entries
// and the queue contents, not the count, say what to do.
//
// Modes (completion_mode):
//   polled     run_once() drains what is there and returns; never waits.
//   interrupt  flush deferred SQ doorbells, wait for the vector, drain.
//   hybrid     poll up to `spin_polls` times; if nothing came, flush, arm the
//              vector, poll once more (an entry that landed between the last
//              poll and arming would otherwise wait for the next interrupt),
//              then wait, disarm and drain. Wake-up from a blocked wait costs
//              1-3 us against ~150 ns for a queue round trip, hence polling
//              first (wake-up figures from the atomic_queue README; Linux
//              hybrid polling, SPDK).
//              With spin_polls = adaptive_spin_polls the spin adapts per
//              vector (adaptive_spin): a completion found while spinning
//              doubles the next spin, a spin that ran out halves it. Quick
//              completions keep the thread spinning; slow ones (a slow
//              device, or a busy host whose device-model thread the spin
//              would starve of CPU) make it block almost at once. Counted
//              in polls, not time: the core never reads a clock.
// Flushing before any wait is the "before the caller waits" flush point of
// the batched doorbell policy: a deferred SQ doorbell with no one left to ring
// it is a hang (SPDK refuses delay_cmd_submit with interrupts for that reason).
//
// Waiting goes through a caller-supplied waiter (interrupt_waiter below): the
// Linux shell blocks in read(eventfd)/poll, a dext returns to its dispatch
// queue, a test uses a condition variable.
//
// A queue is drained by the thread calling the dispatcher. To consume
// completions on another thread, the drain callback pushes them into a host
// ring (dispatch/handoff.hpp limits the budget to the ring's free space so no
// completion is ever dropped).
#pragma once

#include <concepts>
#include <cstdint>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"

namespace dkq {

enum class completion_mode : std::uint8_t { polled, interrupt, hybrid };

// Spin-then-block with a spin length that follows the device: won() (a
// completion came within the spin) doubles the budget up to `cap`, lost()
// (the spin ran out, the thread blocked) halves it down to `floor`. The unit
// is the caller's (poll passes here; microseconds in the ublk server).
struct adaptive_spin {
  std::uint32_t budget = 64;
  std::uint32_t floor = 4;
  std::uint32_t cap = 1u << 16;
  std::uint64_t wins = 0, losses = 0;

  constexpr void won() noexcept {
    budget = budget >= cap / 2 ? cap : (budget != 0 ? budget * 2 : 1);
    ++wins;
  }
  constexpr void lost() noexcept {
    budget = budget / 2 < floor ? floor : budget / 2;
    ++losses;
  }
};

// run_once(..., spin_polls = adaptive_spin_polls): the hybrid spin adapts.
inline constexpr std::uint32_t adaptive_spin_polls = 0;

// One completion queue as the dispatcher sees it: drain(budget) reaps up to
// budget entries (returns how many), flush() writes deferred submission
// doorbells of the queue pair (may be a no-op).
struct completion_target {
  void* object = nullptr;
  std::uint32_t (*drain)(void* object, std::uint32_t budget) noexcept = nullptr;
  void (*flush)(void* object) noexcept = nullptr;

  // Bind any object with `std::uint32_t drain(std::uint32_t) noexcept` and,
  // optionally, `void flush() noexcept`.
  template <class Q>
    requires requires(Q& q, std::uint32_t b) {
      { q.drain(b) } noexcept -> std::convertible_to<std::uint32_t>;
    }
  static completion_target of(Q& q) noexcept {
    completion_target t;
    t.object = &q;
    t.drain = [](void* o, std::uint32_t b) noexcept -> std::uint32_t { return static_cast<Q*>(o)->drain(b); };
    if constexpr (requires { { q.flush() } noexcept; }) {
      t.flush = [](void* o) noexcept { (void)static_cast<Q*>(o)->flush(); };
    } else {
      t.flush = [](void*) noexcept {};
    }
    return t;
  }
};

// How the dispatcher waits for a vector (caller-supplied; no OS calls here).
//   arm(v)     enable delivery of vector v (unmask: NVMe INTMC, MSI-X vector
//              control, or nothing for an always-armed eventfd)
//   disarm(v)  stop delivery while polling (NVMe INTMS, MSI-X mask, or nothing)
//   wait(v)    block until v fires; returns the notification count (0 when
//              woken for another reason: stop request, timeout)
template <class W>
concept interrupt_waiter = requires(W& w, std::uint16_t v) {
  { w.arm(v) } noexcept;
  { w.disarm(v) } noexcept;
  { w.wait(v) } noexcept -> std::convertible_to<std::uint32_t>;
};

struct vector_counters {
  std::uint64_t interrupts = 0;     // on_interrupt() calls
  std::uint64_t notifications = 0;  // sum of their counts
  std::uint64_t spurious = 0;       // interrupts that found nothing
  std::uint64_t polls = 0;          // poll passes
  std::uint64_t completions = 0;    // entries drained on this vector
  std::uint64_t waits = 0;          // times the dispatcher blocked
  std::uint64_t pass_limit_hits = 0;  // drains cut short by set_max_passes()
};

template <std::uint16_t MaxVectors, std::uint16_t MaxQueues>
class interrupt_dispatcher {
  static_assert(MaxVectors >= 1 && MaxQueues >= 1);

 public:
  static constexpr std::uint16_t no_queue = 0xffff;

  interrupt_dispatcher() noexcept {
    for (auto& f : first_) f = no_queue;
  }
  interrupt_dispatcher(const interrupt_dispatcher&) = delete;
  interrupt_dispatcher& operator=(const interrupt_dispatcher&) = delete;

  // Per-pass drain budget (bounds the time one queue holds the vector).
  void set_budget(std::uint32_t budget) noexcept { budget_ = budget == 0 ? 1 : budget; }
  constexpr std::uint32_t budget() const noexcept { return budget_; }

  // Most full-budget passes per queue per interrupt (0: until empty, the
  // default). A device that keeps posting - or lies, rewriting valid-looking
  // entries ahead of the head - cannot then hold the interrupt thread forever;
  // what is left is picked up by the next poll or interrupt and the cut is
  // counted in pass_limit_hits.
  void set_max_passes(std::uint32_t passes) noexcept { max_passes_ = passes; }

  // Bind a queue to a vector. Returns the queue's handle. A queue object may be
  // bound only once (to one vector).
  result<std::uint16_t> bind(std::uint16_t vector, completion_target t) noexcept {
    if (vector >= MaxVectors) return status{errc::out_of_range, "interrupt vector beyond the dispatcher's table", vector};
    if (t.object == nullptr || t.drain == nullptr) return status{errc::invalid_argument, "completion target without a drain function"};
    for (std::uint16_t i = 0; i < count_; ++i)
      if (queues_[i].target.object == t.object && queues_[i].bound)
        return status{errc::busy, "queue is already bound to a vector", queues_[i].vector};
    if (count_ == MaxQueues) return status{errc::no_space, "dispatcher queue table is full", MaxQueues};
    const std::uint16_t h = count_++;
    queues_[h].target = t;
    if (queues_[h].target.flush == nullptr) queues_[h].target.flush = [](void*) noexcept {};
    queues_[h].vector = vector;
    queues_[h].bound = true;
    // Append so queues drain in bind order (admin queue first if bound first).
    queues_[h].next = no_queue;
    std::uint16_t* link = &first_[vector];
    while (*link != no_queue) link = &queues_[*link].next;
    *link = h;
    return h;
  }

  // Remove a queue (queue deletion). Its handle is not reused.
  status unbind(std::uint16_t handle) noexcept {
    if (handle >= count_ || !queues_[handle].bound) return {errc::invalid_argument, "queue handle is not bound", handle};
    std::uint16_t* link = &first_[queues_[handle].vector];
    while (*link != handle) link = &queues_[*link].next;
    *link = queues_[handle].next;
    queues_[handle].bound = false;
    return ok_status;
  }

  // Vector `vector` fired `count` times: drain every bound queue until empty.
  // Returns the entries drained.
  std::uint32_t on_interrupt(std::uint16_t vector, std::uint32_t count = 1) noexcept {
    if (DKQ_UNLIKELY(vector >= MaxVectors)) return 0;
    vector_counters& c = counters_[vector];
    ++c.interrupts;
    c.notifications += count;
    std::uint32_t total = 0;
    for (std::uint16_t q = first_[vector]; q != no_queue; q = queues_[q].next) {
      const completion_target& t = queues_[q].target;
      std::uint32_t got;
      std::uint32_t passes = 0;
      do {
        got = t.drain(t.object, budget_);
        total += got;
        if (DKQ_UNLIKELY(++passes == max_passes_) && got == budget_) {
          ++c.pass_limit_hits;
          break;
        }
      } while (got == budget_);
    }
    if (total == 0) ++c.spurious;
    c.completions += total;
    return total;
  }

  // One polling pass over the queues of `vector` (one budget each).
  std::uint32_t poll(std::uint16_t vector) noexcept {
    if (DKQ_UNLIKELY(vector >= MaxVectors)) return 0;
    std::uint32_t total = 0;
    for (std::uint16_t q = first_[vector]; q != no_queue; q = queues_[q].next) {
      const completion_target& t = queues_[q].target;
      total += t.drain(t.object, budget_);
    }
    ++counters_[vector].polls;
    counters_[vector].completions += total;
    return total;
  }

  // One polling pass over every vector.
  std::uint32_t poll_all() noexcept {
    std::uint32_t total = 0;
    for (std::uint16_t v = 0; v < MaxVectors; ++v)
      if (first_[v] != no_queue) total += poll(v);
    return total;
  }

  // Write the deferred submission doorbells of every queue on `vector`.
  void flush(std::uint16_t vector) noexcept {
    if (DKQ_UNLIKELY(vector >= MaxVectors)) return;
    for (std::uint16_t q = first_[vector]; q != no_queue; q = queues_[q].next)
      queues_[q].target.flush(queues_[q].target.object);
  }

  // One round of the chosen mode on `vector` (see the header comment).
  // Returns the entries drained (0 when a wait ended without any).
  template <interrupt_waiter W>
  std::uint32_t run_once(std::uint16_t vector, completion_mode mode, W& waiter,
                         std::uint32_t spin_polls = 64) noexcept {
    if (DKQ_UNLIKELY(vector >= MaxVectors)) return 0;
    switch (mode) {
      case completion_mode::polled:
        flush(vector);
        return poll(vector);
      case completion_mode::interrupt: {
        flush(vector);
        ++counters_[vector].waits;
        const std::uint32_t n = waiter.wait(vector);
        return on_interrupt(vector, n);
      }
      case completion_mode::hybrid: {
        const bool adapt = spin_polls == adaptive_spin_polls;
        adaptive_spin& sp = spin_[vector];
        const std::uint32_t spins = adapt ? sp.budget : spin_polls;
        for (std::uint32_t i = 0; i < spins; ++i) {
          if (const std::uint32_t got = poll(vector); got != 0) {
            if (adapt) sp.won();
            return got;
          }
          cpu_relax();
        }
        if (adapt) sp.lost();
        flush(vector);
        waiter.arm(vector);
        if (const std::uint32_t got = poll(vector); got != 0) {
          waiter.disarm(vector);
          return got;
        }
        ++counters_[vector].waits;
        const std::uint32_t n = waiter.wait(vector);
        waiter.disarm(vector);
        return on_interrupt(vector, n);
      }
    }
    return 0;
  }

  const vector_counters& counters(std::uint16_t vector) const noexcept { return counters_[vector < MaxVectors ? vector : 0]; }
  // The adaptive hybrid spin of a vector (its budget now, its wins and losses).
  const adaptive_spin& spin(std::uint16_t vector) const noexcept { return spin_[vector < MaxVectors ? vector : 0]; }
  void set_spin_limits(std::uint32_t floor, std::uint32_t cap) noexcept {
    for (auto& sp : spin_) {
      sp.floor = floor != 0 ? floor : 1;
      sp.cap = cap > sp.floor ? cap : sp.floor;
      if (sp.budget < sp.floor) sp.budget = sp.floor;
      if (sp.budget > sp.cap) sp.budget = sp.cap;
    }
  }
  std::uint16_t queues_on(std::uint16_t vector) const noexcept {
    std::uint16_t n = 0;
    if (vector < MaxVectors)
      for (std::uint16_t q = first_[vector]; q != no_queue; q = queues_[q].next) ++n;
    return n;
  }

 private:
  struct entry {
    completion_target target{};
    std::uint16_t vector = 0;
    std::uint16_t next = no_queue;
    bool bound = false;
  };

  entry queues_[MaxQueues]{};
  std::uint16_t first_[MaxVectors];
  std::uint16_t count_ = 0;
  std::uint32_t budget_ = 64;
  std::uint32_t max_passes_ = 0;
  vector_counters counters_[MaxVectors]{};
  adaptive_spin spin_[MaxVectors]{};
};

}  // namespace dkq
