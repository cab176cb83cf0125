// dkq/queue/ring_pair.hpp - a request ring, a producer-index completion ring
// and a tag table, paired over a device's layout.
//
// queue_pair (queue_pair.hpp) is the NVMe shape: phase-tag completion queue,
// identifier at bytes 2-3 of the command, SQ head inside each completion.
// Many storage rings have another shape: the device publishes a producer
// index in host memory for its completions, the entries are the device's own
// structs, the indices may run free, and the request ring's head comes back
// as a consumer index word the device writes (VMware PVSCSI: Linux
// drivers/scsi/vmw_pvscsi.c and vmw_pvscsi.h, PVSCSIRingsState) or inside each
// completion. ring_pair pairs them for any such layout: a driver for such a
// device supplies its wire structs and a layout, and gets post vs ring,
// batching, tags with generations, deadlines, timeout scan and reset from
// here.
//
// A layout L says:
//   L::sqe_size                      request entry size (power of two)
//   L::sq_mode                       index_mode of the request ring
//   L::cq_kind                       how new completions are found:
//     cq_kind::producer_index          a device-written producer index word
//                                      (L::cq_mode: its index_mode)
//     cq_kind::phase                   a phase tag in each entry
//                                      (L::cq_layout: a phase_cq_layout; NVMe)
//   L::cqe_type                      the completion entry struct
//   L::set_tag(void* sqe, uint16_t)  where the tag goes in a request
//   L::tag_of(const cqe_type&)       where it comes back in a completion
//   L::head                          how the request ring's head comes back:
//     sq_head_report::index_word       a device-written word (ring state page)
//     sq_head_report::in_completion    L::sq_head(const cqe_type&), NVMe-like
//     sq_head_report::none             not reported: tags alone bound the ring
//                                      (every completed command's entry is
//                                      taken as consumed)
//
// Every completion is checked before it is delivered: the producer index
// (protocol error, nothing consumed), the tag (stale, duplicate or out of
// range: counted, never delivered), the reported head (an impossible one is
// a protocol error and is not taken). One owner thread, as for queue_pair.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/completion_queue.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/submission_queue.hpp"
#include "dkq/queue/tag_table.hpp"

namespace dkq {

enum class sq_head_report : std::uint8_t { index_word, in_completion, none };
enum class cq_kind : std::uint8_t { producer_index, phase };

template <class L>
concept ring_layout = requires(void* sqe, std::uint16_t tag, const typename L::cqe_type& e) {
  { L::sqe_size } -> std::convertible_to<std::size_t>;
  { L::sq_mode } -> std::convertible_to<index_mode>;
  { L::cq_kind } -> std::convertible_to<cq_kind>;
  { L::head } -> std::convertible_to<sq_head_report>;
  { L::set_tag(sqe, tag) } noexcept;
  { L::tag_of(e) } noexcept -> std::convertible_to<std::uint16_t>;
};

// The completion ring type a layout names.
template <class L, class Db, cq_kind K = L::cq_kind>
struct ring_cq;
template <class L, class Db>
struct ring_cq<L, Db, cq_kind::producer_index> {
  using type = producer_index_cq<typename L::cqe_type, Db, L::cq_mode>;
};
template <class L, class Db>
struct ring_cq<L, Db, cq_kind::phase> {
  using type = phase_cq<typename L::cq_layout, Db>;
};

// NVMe as a ring_pair layout: 64-byte SQEs with the CID at bytes 2-3,
// wrapped indices, a phase-tag CQ of nvme_cqe, SQ head in every completion.
// (queue_pair<nvme_queue_layout, ...> is the same pairing, kept as the
// NVMe example's benchmarked hot path.)
struct nvme_ring_layout {
  static constexpr std::size_t sqe_size = 64;
  static constexpr index_mode sq_mode = index_mode::wrapped;
  static constexpr dkq::cq_kind cq_kind = dkq::cq_kind::phase;
  using cq_layout = nvme_cq_layout;
  using cqe_type = nvme_cqe;
  static constexpr sq_head_report head = sq_head_report::in_completion;
  static void set_tag(void* sqe, std::uint16_t tag) noexcept {
    std::memcpy(static_cast<std::uint8_t*>(sqe) + 2, &tag, sizeof tag);
  }
  static std::uint16_t tag_of(const nvme_cqe& e) noexcept { return e.cid; }
  static std::uint32_t sq_head(const nvme_cqe& e) noexcept { return e.sq_head; }
};

template <ring_layout L, doorbell SqDb, doorbell CqDb, class Ctx>
class ring_pair {
 public:
  using layout = L;
  using cqe_type = typename L::cqe_type;
  using sq_type = submission_queue<L::sqe_size, SqDb, L::sq_mode>;
  using cq_type = typename ring_cq<L, CqDb>::type;
  static constexpr bool phase_cq_kind = L::cq_kind == cq_kind::phase;
  using tags_type = tag_table<Ctx>;

  struct config {
    dma_region sq_memory{};
    std::uint32_t sq_entries = 0;
    SqDb sq_db{};
    dma_region cq_memory{};
    std::uint32_t cq_entries = 0;
    const std::uint32_t* cq_producer = nullptr;  // device-written (cq_kind::producer_index)
    CqDb cq_db{};                                // carries the consumer index
    const std::uint32_t* sq_head_word = nullptr;  // sq_head_report::index_word only
    std::uint32_t tags = 0;       // 0: as many as the request ring holds
    std::uint32_t tag_base = 0;   // identifiers below it never appear
    std::uint32_t start_index = 0;  // free-running rings may start anywhere
    ring_policy policy = ring_policy::batched;
    std::uint32_t max_unrung = 0;
  };

  ring_pair() noexcept = default;

  status init(const config& c) noexcept {
    if (L::head == sq_head_report::index_word && c.sq_head_word == nullptr)
      return {errc::invalid_argument, "this layout reports the request ring's head in a word: give sq_head_word"};
    DKQ_TRY(sq_.init(c.sq_memory, c.sq_entries, c.sq_db, c.policy, c.max_unrung));
    sq_.reset_indices(c.start_index);
    if constexpr (phase_cq_kind) {
      if (c.start_index != 0) return {errc::invalid_argument, "a phase-tag ring starts at index 0"};
      DKQ_TRY(cq_.init(c.cq_memory, c.cq_entries, c.cq_db));
    } else {
      DKQ_TRY(cq_.init(c.cq_memory, c.cq_entries, c.cq_producer, c.cq_db, c.start_index));
    }
    std::uint32_t tags = c.tags;
    const std::uint32_t room = sq_capacity();
    if (tags == 0) tags = room < tags_type::max_tags - c.tag_base ? room : tags_type::max_tags - c.tag_base;
    if (tags > room) return {errc::invalid_argument, "more tags than the request ring can hold", tags};
    if (tags > c.cq_entries)
      return {errc::invalid_argument, "more tags than completion ring entries: completions could overrun", tags};
    DKQ_TRY(tags_.init(tags, c.tag_base));
    head_word_ = c.sq_head_word;
    start_ = c.start_index;
    return ok_status;
  }

  // Post one request for `ctx`; its tag is written by L::set_tag. Rung per
  // the policy (batched: at flush(), at the end of a completion batch, or at
  // the lap guard).
  DKQ_ALWAYS_INLINE result<std::uint16_t> submit(const void* sqe, const Ctx& ctx,
                                                 std::uint64_t deadline = no_deadline) noexcept {
    if constexpr (L::head == sq_head_report::none) sync_head_from_tags();
    void* slot = sq_.next_entry();
    if (DKQ_UNLIKELY(slot == nullptr)) return status{errc::no_space, "request ring is full"};
    std::uint16_t tag;
    if (DKQ_UNLIKELY(!tags_.try_acquire(ctx, deadline, tag))) return status{errc::no_space, "all tags are in use"};
    std::memcpy(slot, sqe, L::sqe_size);
    L::set_tag(slot, tag);
    (void)sq_.post_in_place();
    return tag;
  }

  // Drain up to `budget` completions: on_complete(Ctx&, const cqe_type&) for
  // each delivered, on_error(status, const cqe_type*) for each entry refused
  // (and once with nullptr for an impossible producer index or head word).
  // Then one consumer-index write for the batch, and the request doorbell
  // if anything was posted meanwhile. Returns the entries consumed.
  template <class OnComplete, class OnError>
  DKQ_ALWAYS_INLINE std::uint32_t process_completions(std::uint32_t budget, OnComplete&& on_complete,
                                                      OnError&& on_error) noexcept {
    if constexpr (L::head == sq_head_report::index_word) {
      const std::uint32_t h = load_acquire(head_word_);
      if (DKQ_UNLIKELY(!sq_.try_update_head(h))) on_error(sq_.update_head(h), static_cast<const cqe_type*>(nullptr));
    }
    auto one = [&](const cqe_type& e) {
      if constexpr (L::head == sq_head_report::in_completion) {
        if (DKQ_UNLIKELY(!sq_.try_update_head(L::sq_head(e)))) on_error(sq_.update_head(L::sq_head(e)), &e);
      }
      Ctx ctx{};
      const std::uint16_t tag = static_cast<std::uint16_t>(L::tag_of(e));
      if (DKQ_LIKELY(tags_.try_complete(tag, ctx))) {
        on_complete(ctx, e);
      } else {
        on_error(tags_.complete(tag).error(), &e);
      }
    };
    std::uint32_t n;
    if constexpr (phase_cq_kind) {
      n = cq_.reap(budget, one);
    } else {
      auto r = cq_.reap(budget, one);
      if (DKQ_UNLIKELY(!r)) {
        on_error(r.error(), static_cast<const cqe_type*>(nullptr));
        return 0;
      }
      n = *r;
    }
    sq_.flush();
    return n;
  }

  bool flush() noexcept { return sq_.flush(); }

  template <class OnExpired>
  std::uint32_t timeout_scan(std::uint64_t now, OnExpired&& on_expired) noexcept {
    return tags_.timeout_scan(now, static_cast<OnExpired&&>(on_expired));
  }

  // The device was reset (it forgot both rings): every outstanding command
  // to f(tag, Ctx&, was_timed_out) once; indices back to `start`.
  template <class F>
  std::uint32_t reset(F&& f, std::uint32_t start = 0) noexcept {
    const std::uint32_t n = tags_.cancel_all(static_cast<F&&>(f));
    sq_.reset_indices(start);
    if constexpr (phase_cq_kind) {
      cq_.reset();
    } else {
      cq_.reset(start);
    }
    start_ = start;
    return n;
  }

  sq_type& sq() noexcept { return sq_; }
  cq_type& cq() noexcept { return cq_; }
  tags_type& tags() noexcept { return tags_; }
  const tags_type& tags() const noexcept { return tags_; }

 private:
  std::uint32_t sq_capacity() const noexcept {
    return L::sq_mode == index_mode::free_running ? sq_.size() : sq_.size() - 1;
  }
  // sq_head_report::none: a command that completed was consumed; entries
  // still held are those of commands in flight, so the head trails the tail
  // by at most the tags in flight.
  DKQ_ALWAYS_INLINE void sync_head_from_tags() noexcept {
    const std::uint32_t held = sq_.in_use();
    const std::uint32_t live = tags_.in_flight();
    if (held > live) {
      std::uint32_t h = sq_.head() + (held - live);
      if constexpr (L::sq_mode == index_mode::wrapped) {
        if (h >= sq_.size()) h -= sq_.size();
      }
      (void)sq_.try_update_head(h);
    }
  }

  sq_type sq_;
  cq_type cq_;
  tags_type tags_;
  const std::uint32_t* head_word_ = nullptr;
  std::uint32_t start_ = 0;
};

}  // namespace dkq
