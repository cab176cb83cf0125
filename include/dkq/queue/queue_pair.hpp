// dkq/queue/queue_pair.hpp - a submission queue, its phase-tag completion queue
// and the command tags between them: the NVMe-shaped I/O queue pair.
//
// submit() takes a tag (identifier with generation), copies the command into
// the next SQ slot, stamps the identifier into it and posts it; the ring
// policy decides when the doorbell is written. process_completions() reaps a
// batch, takes the SQ head from every entry, maps each identifier back to its
// context and hands it to on_complete exactly once; stale, duplicate and
// out-of-range identifiers and impossible SQ heads go to on_error and are
// never delivered. It then writes the CQ head doorbell once and flushes a
// deferred SQ doorbell (SPDK rings delayed submissions at the same point).
//
// The tag count is at most size-1, so a free tag always has a free SQ slot
// and the CQ (same size) can never overflow (NVMe base spec 3.3.1.5: a full
// CQ is a controller-fatal condition for some devices).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/completion_queue.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/submission_queue.hpp"
#include "dkq/queue/tag_table.hpp"

namespace dkq {

// What a queue pair needs to know about the wire format: the SQ entry size,
// where the identifier goes in it, and the CQ entry layout (with sq_head() and
// cid() accessors).
template <class L>
concept queue_pair_layout = requires(void* sqe, std::uint16_t cid, const typename L::cq_layout::entry_type& e) {
  { L::sqe_size } -> std::convertible_to<std::size_t>;
  { L::set_cid(sqe, cid) } noexcept;
  { L::cq_layout::sq_head(e) } noexcept -> std::convertible_to<std::uint32_t>;
  { L::cq_layout::cid(e) } noexcept -> std::convertible_to<std::uint16_t>;
} && phase_cq_layout<typename L::cq_layout>;

// NVMe: 64-byte SQE with the Command Identifier in CDW0 bits 31:16 (bytes 2-3).
struct nvme_queue_layout {
  static constexpr std::size_t sqe_size = 64;
  using cq_layout = nvme_cq_layout;
  static DKQ_ALWAYS_INLINE void set_cid(void* sqe, std::uint16_t cid) noexcept {
    std::memcpy(static_cast<std::uint8_t*>(sqe) + 2, &cid, sizeof cid);
  }
};

template <queue_pair_layout Layout, doorbell SqDb, doorbell CqDb, class Ctx>
class queue_pair {
 public:
  using sq_type = submission_queue<Layout::sqe_size, SqDb>;
  using cq_type = phase_cq<typename Layout::cq_layout, CqDb>;
  using cqe_type = typename Layout::cq_layout::entry_type;
  using tags_type = tag_table<Ctx>;

  queue_pair() noexcept = default;

  // tags == 0 means entries-1 (the most the queue can hold), capped at
  // tag_table::max_tags (16384: the identifier keeps 2 generation bits).
  status init(dma_region sq_memory, dma_region cq_memory, std::uint32_t entries, SqDb sq_db, CqDb cq_db,
              ring_policy policy = ring_policy::batched, std::uint32_t tags = 0,
              std::uint32_t max_unrung = 0) noexcept {
    if (tags == 0 && entries >= device_queue_min_entries)
      tags = entries - 1 < tags_type::max_tags ? entries - 1 : tags_type::max_tags;
    if (entries < device_queue_min_entries || tags > entries - 1)
      return {errc::invalid_argument, "a queue pair needs at most size-1 tags", tags};
    DKQ_TRY(sq_.init(sq_memory, entries, sq_db, policy, max_unrung));
    DKQ_TRY(cq_.init(cq_memory, entries, cq_db));
    DKQ_TRY(tags_.init(tags));
    return ok_status;
  }

  // Post one command for `ctx`; returns its identifier. The command bytes are
  // copied; its identifier field is overwritten.
  DKQ_ALWAYS_INLINE result<std::uint16_t> submit(const void* sqe, const Ctx& ctx,
                                                 std::uint64_t deadline = no_deadline) noexcept {
    if (DKQ_UNLIKELY(sq_.free_slots() == 0)) {
      settle_head();  // a batch being reaped (submit from on_complete) may have freed slots
      if (sq_.free_slots() == 0) return sq_full();
    }
    std::uint16_t cid;
    if (DKQ_UNLIKELY(!tags_.try_acquire(ctx, deadline, cid)))
      return status{errc::no_space, "all command tags are in use"};
    bool ring_now;
    void* slot = sq_.claim_next(ring_now);  // free_slots() found room
    std::memcpy(slot, sqe, Layout::sqe_size);
    Layout::set_cid(slot, cid);
    sq_.finish_claim(ring_now);
    return cid;
  }

  // Drain up to `budget` completions. on_complete(Ctx&, const cqe_type&) for
  // each delivered command, on_error(status, const cqe_type&) for each entry
  // that is not delivered and for each entry whose SQ head is impossible
  // (its command is still delivered if its identifier is good). Returns the
  // number of entries consumed.
  //
  // SQ heads are checked per entry against the window open at the start of
  // the batch (the head then, the entries rung and not yet consumed;
  // submission_queue::head_window) and the last good one is kept; it is
  // taken once, at the end of the batch, or earlier if a submit from
  // on_complete finds the ring full. A head outside the window is checked
  // again exactly (the window grows if on_complete rang new entries the
  // device has already consumed) before it is reported.
  template <class OnComplete, class OnError>
  DKQ_ALWAYS_INLINE std::uint32_t process_completions(std::uint32_t budget, OnComplete&& on_complete,
                                                      OnError&& on_error) noexcept {
    auto window = sq_.window();
    const std::uint32_t n = cq_.reap(budget, [&](const cqe_type& e) {
      const std::uint32_t h = Layout::cq_layout::sq_head(e);
      if (DKQ_LIKELY(window.ok(h))) {
        pending_head_ = h;
      } else {
        settle_head();
        if (sq_.try_update_head(h))
          window = sq_.window();
        else
          on_error(sq_.update_head(h), e);
      }
      Ctx ctx{};
      if (DKQ_LIKELY(tags_.try_complete(Layout::cq_layout::cid(e), ctx))) {
        on_complete(ctx, e);
      } else {
        on_error(tags_.complete(Layout::cq_layout::cid(e)).error(), e);
      }
    });
    settle_head();
    sq_.flush();
    return n;
  }

  bool flush() noexcept { return sq_.flush(); }

  // Submission entries the device still holds by its own account (posted,
  // not yet past the head it reported) although their commands completed.
  // An honest device reports a head past every command it has completed
  // (it fetched them; NVMe base spec, CQE SQ Head Pointer), so the entries
  // between head and tail all belong to commands still in flight: this is 0.
  std::uint32_t held_by_stale_head() const noexcept {  // after a batch: its head is taken at the end
    const std::uint32_t live = tags_.in_flight();
    return sq_.in_use() > live ? sq_.in_use() - live : 0;
  }

  // Timeouts go through the tag table; see tag_table.hpp.
  template <class OnExpired>
  std::uint32_t timeout_scan(std::uint64_t now, OnExpired&& on_expired) noexcept {
    return tags_.timeout_scan(now, static_cast<OnExpired&&>(on_expired));
  }

  // After a controller reset (the device has forgotten both queues): every
  // outstanding command to f(cid, Ctx&, was_timed_out) once, indices back to 0.
  template <class F>
  std::uint32_t reset(F&& f) noexcept {
    const std::uint32_t n = tags_.cancel_all(static_cast<F&&>(f));
    pending_head_ = no_head;
    sq_.reset_indices();
    cq_.reset();
    return n;
  }

  sq_type& sq() noexcept { return sq_; }
  cq_type& cq() noexcept { return cq_; }
  tags_type& tags() noexcept { return tags_; }
  const sq_type& sq() const noexcept { return sq_; }
  const cq_type& cq() const noexcept { return cq_; }
  const tags_type& tags() const noexcept { return tags_; }

 private:
  // The ring is full. With tags to spare that can only mean the device keeps
  // reporting an SQ head behind commands it has already completed (a stuck
  // or lagging head): a protocol error the caller recovers from with a
  // controller reset, never a "full" that waits for ever.
  status sq_full() const noexcept {
    const std::uint32_t stale = held_by_stale_head();
    if (DKQ_UNLIKELY(stale != 0))
      return status{errc::protocol_error,
                    "device's SQ head (in its completions) lags commands it has completed; the queue needs a reset",
                    stale};
    return status{errc::no_space, "submission queue is full"};
  }

  // Take the head a batch being reaped has checked but not yet taken.
  DKQ_ALWAYS_INLINE void settle_head() noexcept {
    if (pending_head_ != no_head) {
      sq_.take_checked_head(pending_head_);
      pending_head_ = no_head;
    }
  }

  static constexpr std::uint32_t no_head = ~0u;

  sq_type sq_;
  cq_type cq_;
  tags_type tags_;
  std::uint32_t pending_head_ = no_head;  // checked against the batch's window, not yet taken
};

}  // namespace dkq
