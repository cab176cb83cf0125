// dkq/queue/submission_queue.hpp - a device submission queue: post, then ring.
//
// The queue is an array of fixed-size entries in DMA memory (64-byte NVMe SQEs,
// pvscsi request descriptors, 8-byte frame addresses) with a host-owned tail the
// device learns about only through the doorbell. Posting an entry and ringing
// the doorbell are separate operations, because the doorbell is the expensive
// part: an MMIO write is a posted PCIe transaction that still costs 50-300 ns of
// core time when issued back to back, and a VM exit under a hypervisor
// (Intel community thread "Why do MemReq TLPs take 100s nanoseconds to be
// generated after MMIO writes?"). SPDK measured 2.89 M -> 10.3 M IOPS on one
// core from deferring it alone (spdk.io/news/2019/05/06/nvme).
//
// Ring policies:
//   immediate  post() rings. Right for a lone admin command and for
//              interrupt-driven callers that have no later flush point.
//   batched    post() does not ring; the doorbell is written at a flush point:
//                - commit() of a bulk reservation (end of batch),
//                - flush() (the caller's end of batch: blk-mq commit_rqs),
//                - before a full lap: when the un-rung entries reach
//                  `max_unrung` (default size-1), so the device never needs to
//                  see a tail value that went all the way round (Linux
//                  nvme_write_sq_db "or if the next command would wrap"),
//                - before the caller waits: the dispatcher calls flush() on
//                  every queue of a vector before it blocks (dispatch/).
//              A deferred doorbell without a flush point is a hang: SPDK
//              refuses delay_cmd_submit with interrupts for that reason.
//
// The same doorbell value is never written twice: ring() compares the tail
// with the last value rung and does nothing when they match. Writing an
// unchanged tail is a spec violation devices have tripped on (Linux 38210800bf66
// "Revert 'nvme-pci: remove last_sq_tail'").
//
// Index conventions (index_mode, chosen by the layout type):
//   wrapped       indices wrap at the queue size (not a power of two in
//                 general: NVMe and MFI both let the host pick any size), and
//                 one slot always stays empty, because for the device "tail ==
//                 head" means empty (NVMe base spec 4.1 / 3.3.1.5: "full when
//                 Tail + 1 == Head"). The doorbell carries the wrapped tail.
//   free_running  indices count up without wrapping (32-bit, modulo 2^32) and
//                 are masked only to find the slot; the size is a power of two
//                 and every slot can be used, since "tail - head == size" says
//                 full. The doorbell carries the free-running value. VMware's
//                 PVSCSI rings (Linux drivers/scsi/vmw_pvscsi.h, reqProdIdx /
//                 reqConsIdx) and virtio's avail/used idx (virtio 1.2, 2.7.6)
//                 work this way.
// The head comes back from the device (the NVMe CQE SQ Head Pointer, or a
// consumer index word the device writes); update_head() checks it, since a
// device can lie.
//
// One owner: a queue is used by one thread at a time (the SPDK model: one queue
// pair per thread, no locks). Other threads hand work to the owner through a
// host ring (ring/). Counters are plain integers for the same reason, cheap
// enough to leave on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/base/barrier.hpp"
#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/doorbell.hpp"

namespace dkq {

enum class ring_policy : std::uint8_t { immediate, batched };

// How a ring's indices count (see above). A layout type names one.
enum class index_mode : std::uint8_t { wrapped, free_running };

// Device queues hold 2 .. 65536 entries (NVMe CAP.MQES is 0's based 16 bits).
inline constexpr std::uint32_t device_queue_min_entries = 2;
inline constexpr std::uint32_t device_queue_max_entries = 65536;

struct sq_counters {
  std::uint64_t entries_posted = 0;   // entries made visible to ring()
  std::uint64_t doorbell_writes = 0;  // doorbell writes actually issued
};

template <std::size_t EntrySize, doorbell Db, index_mode Mode = index_mode::wrapped>
class submission_queue {
  static_assert(EntrySize >= 4 && std::has_single_bit(EntrySize),
                "submission entries are a power-of-two number of bytes, at least 4");
  static constexpr bool free_running = Mode == index_mode::free_running;

 public:
  static constexpr std::size_t entry_size = EntrySize;
  static constexpr index_mode mode = Mode;

  // A run of reserved slots, possibly wrapping; filled in place, then commit().
  class reservation {
   public:
    constexpr std::uint32_t size() const noexcept { return count_; }
    constexpr bool empty() const noexcept { return count_ == 0; }
    // The i-th reserved entry (i < size()).
    void* entry(std::uint32_t i) const noexcept {
      std::uint32_t idx = start_ + i;
      if constexpr (free_running) {
        idx &= entries_ - 1;
      } else {
        if (idx >= entries_) idx -= entries_;
      }
      return base_ + static_cast<std::size_t>(idx) * EntrySize;
    }

   private:
    friend class submission_queue;
    std::uint8_t* base_ = nullptr;
    std::uint32_t start_ = 0;
    std::uint32_t count_ = 0;
    std::uint32_t entries_ = 0;
  };

  submission_queue() noexcept = default;
  submission_queue(const submission_queue&) = delete;
  submission_queue& operator=(const submission_queue&) = delete;

  // `memory` holds `entries` entries from its start. max_unrung (batched only)
  // bounds how many entries may wait for a doorbell; 0 means size-1 (the lap
  // guard alone). The memory is not cleared: the device reads only entries the
  // tail covers.
  status init(dma_region memory, std::uint32_t entries, Db db, ring_policy policy = ring_policy::batched,
              std::uint32_t max_unrung = 0) noexcept {
    if (!memory.valid()) return {errc::invalid_argument, "submission queue memory is empty"};
    if (entries < device_queue_min_entries || entries > device_queue_max_entries)
      return {errc::invalid_argument, "submission queue size must be 2..65536 entries", entries};
    if (memory.size / EntrySize < entries)
      return {errc::out_of_range, "submission queue memory is smaller than entries * entry size", memory.size};
    if (reinterpret_cast<std::uintptr_t>(memory.cpu) % alignof(std::uint32_t) != 0 ||
        memory.device.value() % alignof(std::uint32_t) != 0)
      return {errc::invalid_argument, "submission queue memory is not dword aligned"};
    if (max_unrung >= entries) return {errc::invalid_argument, "max_unrung must be below the queue size", max_unrung};
    if (free_running && !std::has_single_bit(entries))
      return {errc::invalid_argument, "a free-running ring's size must be a power of two", entries};
    base_ = memory.cpu_at();
    device_ = memory.device;
    entries_ = entries;
    db_ = db;
    policy_ = policy;
    // The immediate policy is the batched one with a limit of one un-rung
    // entry: one compare decides on every post.
    max_unrung_ = policy == ring_policy::immediate ? 1 : max_unrung == 0 ? entries - 1 : max_unrung;
    capacity_ = free_running ? entries : entries - 1;
    tail_ = head_ = last_rung_ = 0;
    reserved_ = 0;
    posted_ = rung_at_ = consumed_ = 0;
    counters_ = {};
    return ok_status;
  }

  constexpr std::uint32_t size() const noexcept { return entries_; }
  constexpr std::uint32_t tail() const noexcept { return tail_; }
  constexpr std::uint32_t head() const noexcept { return head_; }
  constexpr std::uint32_t last_rung() const noexcept { return last_rung_; }
  constexpr dev_addr device_address() const noexcept { return device_; }
  constexpr ring_policy policy() const noexcept { return policy_; }
  // The counters; entries_posted is filled in here (the hot path counts it
  // outside the struct).
  const sq_counters& counters() const noexcept {
    counters_.entries_posted = posted_;
    return counters_;
  }
  Db& doorbell_ref() noexcept { return db_; }

  // Entries posted but not yet consumed by the device (as its last reported
  // head says), and the free slots left. Derived from three running totals
  // (posted, rung, consumed) so the hot path does no modular distance
  // arithmetic and a post updates one of them.
  DKQ_ALWAYS_INLINE std::uint32_t in_use() const noexcept { return static_cast<std::uint32_t>(posted_ - consumed_); }
  DKQ_ALWAYS_INLINE std::uint32_t free_slots() const noexcept { return capacity_ - in_use(); }
  // Entries posted but not yet rung.
  DKQ_ALWAYS_INLINE std::uint32_t unrung() const noexcept { return static_cast<std::uint32_t>(posted_ - rung_at_); }
  // Entries rung and not yet reported consumed: the most the device's next
  // head may move.
  DKQ_ALWAYS_INLINE std::uint32_t consumable() const noexcept {
    return static_cast<std::uint32_t>(rung_at_ - consumed_);
  }

  // The slot the next post() fills, to build an entry in place (liburing
  // io_uring_get_sqe); nullptr when the queue is full. Publish it with
  // post_in_place().
  DKQ_ALWAYS_INLINE void* next_entry() noexcept {
    if (DKQ_UNLIKELY(free_slots() == 0)) return nullptr;
    return slot(tail_);
  }
  DKQ_ALWAYS_INLINE status post_in_place() noexcept {
    if (DKQ_UNLIKELY(free_slots() == 0)) return {errc::no_space, "submission queue is full"};
    post_next_entry();
    return ok_status;
  }
  // post_in_place() for a caller that has just had a non-null next_entry()
  // and posted nothing since (the queue pair's submit): the room is known.
  DKQ_ALWAYS_INLINE void post_next_entry() noexcept {
    advance(1);  // a single post cancels an open reservation (commit sees the tail moved)
    after_post();
  }
  // For a caller that has checked free_slots() itself (the queue pair's
  // submit): claim the next slot and advance the tail before the entry is
  // written, so the bookkeeping stays in registers instead of being reloaded
  // after a copy into DMA memory (which may alias anything). Fill the
  // returned slot, then finish_claim(ring_now) with the value it gave.
  DKQ_ALWAYS_INLINE void* claim_next(bool& ring_now) noexcept {
    void* s = slot(tail_);
    advance(1);
    ring_now = unrung() >= max_unrung_;
    return s;
  }
  DKQ_ALWAYS_INLINE void finish_claim(bool ring_now) noexcept {
    if (ring_now) ring();
  }

  // Copy one entry in and advance the tail; rings under the immediate policy
  // (and at the lap guard under the batched one).
  DKQ_ALWAYS_INLINE status post(const void* entry) noexcept {
    if (DKQ_UNLIKELY(free_slots() == 0)) return {errc::no_space, "submission queue is full"};
    std::memcpy(slot(tail_), entry, EntrySize);
    advance(1);
    after_post();
    return ok_status;
  }

  // Bulk: reserve exactly n slots (or none: an empty reservation), fill them
  // in place, then commit(k), k <= n, to post the first k. A new reserve
  // replaces an uncommitted one; post() cancels it (commit then fails rather
  // than publishing slots that were never filled). commit() is an end of
  // batch and rings; pass end_of_batch = false to keep batching across several
  // reservations (the policy and the lap guard still apply).
  reservation reserve(std::uint32_t n) noexcept {
    reservation r;
    if (n == 0 || n > free_slots()) {
      reserved_ = 0;
      return r;
    }
    r.base_ = base_;
    r.start_ = tail_;
    r.count_ = n;
    r.entries_ = entries_;
    reserved_ = n;
    reserved_at_ = posted_;
    return r;
  }
  status commit(std::uint32_t n, bool end_of_batch = true) noexcept {
    // A post since the reservation moved the tail under it: its slots are
    // no longer the ones reserved.
    if (reserved_at_ != posted_) reserved_ = 0;
    if (DKQ_UNLIKELY(n > reserved_)) return {errc::invalid_argument, "commit of more entries than reserved", n};
    reserved_ = 0;
    if (n == 0) return ok_status;
    advance(n);
    if (end_of_batch || unrung() >= max_unrung_) ring();
    return ok_status;
  }

  // Write the tail doorbell if anything was posted since the last write.
  // Returns true if the doorbell was written.
  DKQ_ALWAYS_INLINE bool ring() noexcept {
    if (posted_ == rung_at_) return false;  // never the same value twice
    db_.write(tail_);
    last_rung_ = tail_;
    rung_at_ = posted_;
    ++counters_.doorbell_writes;
    return true;
  }
  // The named flush point of the batched policy (end of batch, before waiting).
  DKQ_ALWAYS_INLINE bool flush() noexcept { return ring(); }

  // The device's head as reported in a completion (NVMe CQE SQHD). It may only
  // move forward within the entries the doorbell has published; anything else
  // is a protocol error and changes nothing.
  DKQ_ALWAYS_INLINE status update_head(std::uint32_t new_head) noexcept {
    if (DKQ_LIKELY(try_update_head(new_head))) return ok_status;
    return {errc::protocol_error, "device reported a submission queue head outside the posted entries", new_head};
  }
  // The same check as a bool, for hot loops that report errors themselves.
  DKQ_ALWAYS_INLINE bool try_update_head(std::uint32_t new_head) noexcept {
    const std::uint32_t moved = distance(head_, new_head);
    // Entries the device may have consumed: rung and not yet reported.
    if constexpr (free_running) {
      if (DKQ_UNLIKELY(moved > consumable())) return false;
    } else {
      if (DKQ_UNLIKELY(new_head >= entries_ || moved > consumable())) return false;
    }
    head_ = new_head;
    consumed_ += moved;
    return true;
  }

  // The check of try_update_head() for a run of heads reported in one batch
  // of completions, against the head and the rung entries at the start of
  // the batch: ok(h) says h lies in that window (a head the device may
  // report), and the batch's last good head is then taken with
  // take_checked_head(). A device that moves the head backwards inside the
  // window is not caught this way; nothing it can report moves the host's
  // head outside the entries the device was given.
  class head_window {
   public:
    DKQ_ALWAYS_INLINE bool ok(std::uint32_t h) const noexcept {
      if constexpr (free_running) {
        return h - from_ <= limit_;
      } else {
        const std::uint32_t d = h >= from_ ? h - from_ : h + entries_ - from_;
        return h < entries_ && d <= limit_;
      }
    }

   private:
    friend class submission_queue;
    std::uint32_t from_ = 0, limit_ = 0, entries_ = 0;
  };
  DKQ_ALWAYS_INLINE head_window window() const noexcept {
    head_window w;
    w.from_ = head_;
    w.limit_ = consumable();
    w.entries_ = entries_;
    return w;
  }
  // Take a head that window().ok() accepted (no other head taken since).
  DKQ_ALWAYS_INLINE void take_checked_head(std::uint32_t h) noexcept {
    consumed_ += distance(head_, h);
    head_ = h;
  }

  // Forget everything posted (after a controller reset or queue deletion; the
  // device's view restarts at 0 too).
  void reset_indices() noexcept {
    tail_ = head_ = last_rung_ = reserved_ = 0;
    consumed_ = rung_at_ = posted_;  // the totals keep counting; nothing is in use or un-rung
  }
  // Free-running devices may start their indices anywhere (a ring re-attached
  // to a device that kept counting): both at `start`, nothing in flight.
  void reset_indices(std::uint32_t start) noexcept {
    reset_indices();
    if constexpr (free_running) tail_ = head_ = last_rung_ = start;
  }

 private:
  DKQ_ALWAYS_INLINE std::uint32_t distance(std::uint32_t from, std::uint32_t to) const noexcept {
    if constexpr (free_running) return to - from;  // modulo 2^32
    return to >= from ? to - from : to + entries_ - from;
  }
  DKQ_ALWAYS_INLINE void* slot(std::uint32_t idx) const noexcept {
    if constexpr (free_running) idx &= entries_ - 1;
    return base_ + static_cast<std::size_t>(idx) * EntrySize;
  }
  DKQ_ALWAYS_INLINE void advance(std::uint32_t n) noexcept {
    std::uint32_t t = tail_ + n;
    if constexpr (!free_running) {
      if (t >= entries_) t -= entries_;
    }
    tail_ = t;
    posted_ += n;
  }
  DKQ_ALWAYS_INLINE void after_post() noexcept {
    if (unrung() >= max_unrung_) ring();  // immediate policy: max_unrung_ is 1
  }

  std::uint8_t* base_ = nullptr;
  std::uint32_t entries_ = 0;
  std::uint32_t capacity_ = 0;   // entries - 1: one slot stays empty
  std::uint64_t posted_ = 0;     // entries posted, ever
  std::uint64_t rung_at_ = 0;    // posted_ when the doorbell was last written
  std::uint64_t consumed_ = 0;   // entries the device reported consumed (head moves), ever
  std::uint64_t reserved_at_ = 0;  // posted_ when the open reservation was made
  std::uint32_t tail_ = 0;       // next slot the host fills
  std::uint32_t head_ = 0;       // next slot the device consumes, as it last said
  std::uint32_t last_rung_ = 0;  // tail value the doorbell last carried
  std::uint32_t reserved_ = 0;
  std::uint32_t max_unrung_ = 0;
  ring_policy policy_ = ring_policy::batched;
  dev_addr device_{};
  Db db_{};
  mutable sq_counters counters_{};
};

}  // namespace dkq
