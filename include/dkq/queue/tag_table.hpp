// dkq/queue/tag_table.hpp - command identifiers with generations, deadlines and
// a timeout scan.
//
// A command identifier (NVMe CID, MFI context) is 16 bits: the low index_bits
// select a slot, the high bits carry the slot's generation, bumped every time
// the slot is reused. A completion is delivered only if its identifier names a
// slot that is in flight *with that generation*; everything else is an error
// value and is never delivered:
//
//   errc::protocol_error  the index is outside the table (a device lying, or
//                         reading garbage)
//   errc::stale           the slot is free or reused and the generation is an
//                         older one, or the command already timed out and
//                         belongs to the recovery path (a late completion)
//   errc::duplicate       the slot is free and the generation is the one that
//                         just completed (a second completion for the same
//                         command)
//
// Linux does the same (nvme_cid = genctr << 12 | tag, nvme_find_rq "request
// ... genctr mismatch"). With g generation bits, a completion that is exactly a
// multiple of 2^g reuses late still aliases; the table keeps at least 2 bits
// and as many as the index leaves (a 1024-tag table keeps 6).
//
// Deadlines: acquire() takes an absolute deadline in the caller's time base
// (nanoseconds of a monotonic clock, ticks, anything increasing); the core
// never reads a clock. timeout_scan(now, on_expired) hands every command whose
// deadline passed to the caller's recovery path exactly once and marks it
// timed_out: from then on its completion is stale, and only the recovery path
// frees the slot (release_timed_out() after an abort completed, or
// cancel_all() on a controller reset). So every command leaves the table once:
// by complete(), by release_timed_out() or by cancel_all().
//
// Identifier 0xFFFF is never handed out: NVMe reserves it in error log entries
// for "not associated with a command" (NVMe base spec, Error Information log
// page, Command ID field).
//
// A base (init(count, base)) shifts the index field: slot i is carried as
// i + base, so identifiers below `base` never appear in any generation (some
// devices treat context 0 as "no command"). index_of(cid) maps an identifier
// back to its slot number with the same checks the table makes.
//
// One owner thread, like the queue pair it serves (see submission_queue.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <span>
#include <type_traits>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"

namespace dkq {

inline constexpr std::uint64_t no_deadline = std::numeric_limits<std::uint64_t>::max();

enum class tag_state : std::uint8_t { free, in_flight, timed_out };

struct tag_counters {
  std::uint64_t acquired = 0;
  std::uint64_t completed = 0;
  std::uint64_t stale = 0;
  std::uint64_t duplicate = 0;
  std::uint64_t out_of_range = 0;
  std::uint64_t timed_out = 0;
  std::uint64_t late_completions = 0;  // stale completions of timed-out commands
};

template <class Ctx>
class tag_table {
  static_assert(std::is_trivially_copyable_v<Ctx>, "tag contexts are small trivially copyable values");

 public:
  // Largest table: 2^14 slots, leaving 2 generation bits.
  static constexpr std::uint32_t max_tags = 1u << 14;

  // A slot. The hot path touches ctx, deadline, cid, live, next_free and
  // used; timed_out and late_seen are written only by the timeout and
  // recovery paths.
  struct slot {
    Ctx ctx;
    std::uint64_t deadline;
    std::uint16_t cid;        // the current (free: the next) occupant's identifier, make_cid(slot, gen)
    std::uint16_t live;       // cid while in flight, no_cid otherwise: one compare checks slot, generation and state
    std::uint16_t next_free;  // free-list link
    bool timed_out;           // the occupant timed out and belongs to the recovery path
    bool late_seen;           // a completion arrived after the timeout
    bool used;                // has had an occupant (a never-used slot cannot see a duplicate)
  };

  tag_table() noexcept = default;
  tag_table(const tag_table&) = delete;
  tag_table& operator=(const tag_table&) = delete;
  ~tag_table() { delete[] owned_; }

  // Allocate `count` slots once, here (1 .. max_tags); identifiers carry
  // slot + base in their index field (base + count <= max_tags).
  status init(std::uint32_t count, std::uint32_t base = 0) noexcept {
    if (count == 0 || count > max_tags) return {errc::invalid_argument, "tag count must be 1..16384", count};
    if (base > max_tags - count) return {errc::invalid_argument, "tag base + count must be at most 16384", base};
    delete[] owned_;
    owned_ = new (std::nothrow) slot[count];
    if (owned_ == nullptr) return {errc::no_memory, "tag table allocation failed"};
    attach(owned_, count, base);
    return ok_status;
  }
  // Caller-provided slots (storage.size() is the count).
  status init(std::span<slot> storage) noexcept {
    if (storage.data() == nullptr || storage.empty() || storage.size() > max_tags)
      return {errc::invalid_argument, "tag storage must hold 1..16384 slots", storage.size()};
    delete[] owned_;
    owned_ = nullptr;
    attach(storage.data(), static_cast<std::uint32_t>(storage.size()));
    return ok_status;
  }

  constexpr std::uint32_t capacity() const noexcept { return count_; }
  // Occupied slots (in flight or timed out). Derived from the two hot
  // counters: every acquired slot is still occupied, completed, or left by a
  // slow path (cancel, release_timed_out, cancel_all).
  constexpr std::uint32_t in_flight() const noexcept {
    return static_cast<std::uint32_t>(acquired_ - counters_.completed - left_slow_);
  }
  constexpr std::uint32_t available() const noexcept { return count_ - in_flight(); }
  constexpr unsigned index_bits() const noexcept { return index_bits_; }
  constexpr std::uint32_t base() const noexcept { return base_; }

  // The slot an identifier names (0 .. capacity()-1), or protocol_error for
  // one outside the table (below the base, or past the last slot).
  result<std::uint32_t> index_of(std::uint16_t cid) const noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (idx >= count_) return status{errc::protocol_error, "identifier outside the tag table", cid};
    return idx;
  }
  // The counters; `acquired` is filled in here (the hot path counts it
  // outside the struct).
  const tag_counters& counters() const noexcept {
    counters_.acquired = acquired_;
    return counters_;
  }

  // Take a free slot for `ctx`; returns its identifier, or no_space.
  DKQ_ALWAYS_INLINE result<std::uint16_t> acquire(const Ctx& ctx, std::uint64_t deadline = no_deadline) noexcept {
    std::uint16_t cid;
    if (DKQ_UNLIKELY(!try_acquire(ctx, deadline, cid))) return status{errc::no_space, "all command tags are in use"};
    return cid;
  }
  // The same as a bool (false: no free tag), for hot paths that build their
  // own error value.
  DKQ_ALWAYS_INLINE bool try_acquire(const Ctx& ctx, std::uint64_t deadline, std::uint16_t& cid) noexcept {
    if (DKQ_UNLIKELY(free_head_ == end_of_list)) return false;
    const std::uint16_t idx = free_head_;
    slot& s = slots_[idx];
    free_head_ = s.next_free;
    s.ctx = ctx;
    s.deadline = deadline;
    cid = s.cid;  // computed when the slot was freed: nothing to build on the hot path
    s.live = cid;
    s.used = true;
    ++acquired_;
    return true;
  }

  // Give back an identifier that was acquired but never reached the device
  // (building the command failed). Not for completions.
  status cancel(std::uint16_t cid) noexcept {
    slot* s = find_in_flight(cid);
    if (s == nullptr) return {errc::invalid_argument, "cancel of a tag that is not in flight", cid};
    free_slot(idx_of(cid));
    ++left_slow_;
    return ok_status;
  }

  // Fast path of complete(): true and `out` set if `cid` is in flight with
  // its generation (the slot is then free); false, with nothing changed and
  // nothing counted, otherwise - call complete() to classify the error.
  DKQ_ALWAYS_INLINE bool try_complete(std::uint16_t cid, Ctx& out) noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (DKQ_UNLIKELY(idx >= count_)) return false;
    slot& s = slots_[idx];
    // One compare covers index, generation and state: `live` is the
    // occupant's identifier while it is in flight and no_cid otherwise.
    if (DKQ_UNLIKELY(s.live != cid)) return false;
    out = s.ctx;
    free_slot(idx);
    ++counters_.completed;
    return true;
  }

  // Map a completion's identifier back to its context and free the slot.
  // Errors (see the header comment) free nothing and deliver nothing.
  result<Ctx> complete(std::uint16_t cid) noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (DKQ_UNLIKELY(idx >= count_)) {
      ++counters_.out_of_range;
      return status{errc::protocol_error, "completion identifier outside the tag table", cid};
    }
    slot& s = slots_[idx];
    if (DKQ_LIKELY(s.live == cid)) {
      const Ctx ctx = s.ctx;
      free_slot(idx);
      ++counters_.completed;
      return ctx;
    }
    return classify_bad(s, cid);
  }

  // Context of an in-flight or timed-out command, or nullptr (no state change).
  Ctx* context(std::uint16_t cid) noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (idx >= count_) return nullptr;
    slot& s = slots_[idx];
    if (s.live != cid && !(s.timed_out && s.cid == cid)) return nullptr;
    return &s.ctx;
  }
  tag_state state(std::uint16_t cid) const noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (idx >= count_) return tag_state::free;
    const slot& s = slots_[idx];
    if (s.live == cid) return tag_state::in_flight;
    if (s.timed_out && s.cid == cid) return tag_state::timed_out;
    return tag_state::free;
  }
  // Did a completion arrive for this timed-out command after its timeout?
  // (The recovery path may then skip the abort.)
  bool completed_late(std::uint16_t cid) const noexcept {
    const std::uint32_t idx = idx_of(cid);
    return idx < count_ && slots_[idx].timed_out && slots_[idx].cid == cid && slots_[idx].late_seen;
  }

  // Move a command's deadline (e.g. a retry). Only for in-flight commands.
  status set_deadline(std::uint16_t cid, std::uint64_t deadline) noexcept {
    slot* s = find_in_flight(cid);
    if (s == nullptr) return {errc::invalid_argument, "deadline for a tag that is not in flight", cid};
    s->deadline = deadline;
    return ok_status;
  }

  // Hand every in-flight command whose deadline is <= now to
  // on_expired(std::uint16_t cid, Ctx& ctx) once, and mark it timed out.
  // Returns how many expired. O(capacity): run it from a periodic timer, not
  // per I/O (Linux runs blk-mq timeouts from a timer the same way).
  template <class OnExpired>
  std::uint32_t timeout_scan(std::uint64_t now, OnExpired&& on_expired) noexcept {
    std::uint32_t expired = 0;
    std::uint32_t seen = 0;
    const std::uint32_t busy = in_flight();
    for (std::uint32_t i = 0; i < count_ && seen < busy; ++i) {
      slot& s = slots_[i];
      const bool in_flight_now = s.live != no_cid;
      if (!in_flight_now && !s.timed_out) continue;
      ++seen;
      if (in_flight_now && s.deadline <= now) {
        s.live = no_cid;  // its completion is stale from now on
        s.timed_out = true;
        s.late_seen = false;
        ++expired;
        ++counters_.timed_out;
        on_expired(s.cid, s.ctx);
      }
    }
    return expired;
  }

  // The recovery path is done with a timed-out command (it aborted it and the
  // abort completed, or it completed the request with an error): free the slot.
  result<Ctx> release_timed_out(std::uint16_t cid) noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (idx >= count_ || !slots_[idx].timed_out || slots_[idx].cid != cid)
      return status{errc::invalid_argument, "release of a tag that has not timed out", cid};
    const Ctx ctx = slots_[idx].ctx;
    slots_[idx].timed_out = false;
    free_slot(idx);
    ++left_slow_;
    return ctx;
  }

  // Controller reset: the device forgets every command. Hand each occupied
  // slot to f(std::uint16_t cid, Ctx& ctx, bool was_timed_out) once and free
  // it. Returns how many.
  template <class F>
  std::uint32_t cancel_all(F&& f) noexcept {
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < count_ && in_flight() != 0; ++i) {
      slot& s = slots_[i];
      if (s.live == no_cid && !s.timed_out) continue;
      const bool was_timed_out = s.timed_out;
      f(s.cid, s.ctx, was_timed_out);
      s.timed_out = false;
      free_slot(i);
      ++left_slow_;
      ++n;
    }
    return n;
  }

 private:
  static constexpr std::uint16_t end_of_list = 0xffff;
  static constexpr std::uint16_t no_cid = 0xffff;  // never handed out (see the header comment)

  void attach(slot* s, std::uint32_t count, std::uint32_t base = 0) noexcept {
    slots_ = s;
    count_ = count;
    base_ = base;
    const std::uint32_t span = count + base;
    index_bits_ = span <= 1 ? 0 : log2_floor(round_up_pow2(span));
    index_mask_ = (1u << index_bits_) - 1;
    gen_step_ = static_cast<std::uint16_t>(1u << index_bits_);
    acquired_ = left_slow_ = 0;
    counters_ = {};
    for (std::uint32_t i = 0; i < count; ++i) {
      slots_[i] = slot{};
      slots_[i].cid = make_cid(static_cast<std::uint16_t>(i), 0);  // never 0xFFFF: base + count <= 16384
      slots_[i].live = no_cid;
      slots_[i].next_free = i + 1 < count ? static_cast<std::uint16_t>(i + 1) : end_of_list;
    }
    free_head_ = 0;
  }

  // Slot number of an identifier; huge (never < count_) when below the base.
  DKQ_ALWAYS_INLINE std::uint32_t idx_of(std::uint16_t cid) const noexcept {
    return (cid & index_mask_) - base_;
  }
  DKQ_ALWAYS_INLINE std::uint16_t make_cid(std::uint16_t idx, std::uint16_t gen) const noexcept {
    return static_cast<std::uint16_t>((static_cast<std::uint32_t>(gen) << index_bits_) | (idx + base_));
  }

  // The slot's occupant is gone; the next one gets the next generation. The
  // generation is the identifier's high bits, so the next identifier is one
  // generation step up (16-bit wrap keeps the index bits); the one value that
  // would be 0xFFFF is skipped.
  DKQ_ALWAYS_INLINE void free_slot(std::uint32_t idx) noexcept {
    slot& s = slots_[idx];
    s.live = no_cid;
    std::uint16_t c = static_cast<std::uint16_t>(s.cid + gen_step_);
    if (DKQ_UNLIKELY(c == 0xffff)) c = static_cast<std::uint16_t>(c + gen_step_);
    s.cid = c;
    s.next_free = free_head_;
    free_head_ = static_cast<std::uint16_t>(idx);
  }

  slot* find_in_flight(std::uint16_t cid) noexcept {
    const std::uint32_t idx = idx_of(cid);
    if (idx >= count_) return nullptr;
    slot& s = slots_[idx];
    return s.live == cid ? &s : nullptr;
  }

  DKQ_NOINLINE status classify_bad(slot& s, std::uint16_t cid) noexcept {
    if (s.timed_out && s.cid == cid) {
      s.late_seen = true;
      ++counters_.stale;
      ++counters_.late_completions;
      return {errc::stale, "completion for a command that already timed out", cid};
    }
    // A free slot's cid is the *next* occupant's; the command that just left
    // carried the previous generation (two back if 0xFFFF was skipped).
    if (s.live == no_cid && !s.timed_out && s.used && cid != s.cid) {
      std::uint16_t prev = static_cast<std::uint16_t>(s.cid - gen_step_);
      if (prev == 0xffff) prev = static_cast<std::uint16_t>(prev - gen_step_);
      if (cid == prev) {
        ++counters_.duplicate;
        return {errc::duplicate, "second completion for the same command", cid};
      }
    }
    ++counters_.stale;
    return {errc::stale, "completion for a command that is no longer in flight", cid};
  }

  slot* slots_ = nullptr;
  slot* owned_ = nullptr;
  std::uint32_t count_ = 0;
  std::uint32_t base_ = 0;
  std::uint32_t index_mask_ = 0;
  std::uint64_t acquired_ = 0;   // hot: one increment per acquire
  std::uint64_t left_slow_ = 0;  // slots freed by cancel, release_timed_out, cancel_all
  unsigned index_bits_ = 0;
  std::uint16_t gen_step_ = 1;
  std::uint16_t free_head_ = end_of_list;
  mutable tag_counters counters_{};
};

}  // namespace dkq
