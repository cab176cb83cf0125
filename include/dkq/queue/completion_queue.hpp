// dkq/queue/completion_queue.hpp - device completion queues, drained in batches.
//
// Two shapes of "the device tells the host what finished":
//
//   phase_cq<Layout, Db>        NVMe style. No producer index: each entry
//                               carries a phase tag the device inverts on
//                               every lap, so the host finds new entries by
//                               reading memory it already caches and never
//                               reads a device register on the hot path
//                               (NVMe base spec, CQE Phase Tag; SPDK
//                               doc/nvme_spec.md).
//   producer_index_cq<E, Db, M> the device publishes a producer index in host
//                               memory, the host its consumer index. Entries
//                               are any plain struct; indices wrapped (MegaRAID
//                               MFI reply queue: index_reply_queue<E, Db>, E a
//                               context word) or free-running (PVSCSI-style
//                               rings).
//
// Both drain with reap(budget, handler): hand up to `budget` entries to the
// handler, then write the head (consumer) doorbell once for the whole batch -
// one MMIO per batch instead of one per completion is most of the difference
// between ~2 M and ~10 M IOPS per core (SPDK blog, May 2019,
// spdk.io/news/2019/05/06/nvme).
//
// Entry layout is a parameter (Layout): how to read the phase tag, and nothing
// else is needed here. nvme_cq_layout below knows the four NVMe CQE fields the
// queue layer uses; the full NVMe structures belong to the protocol layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <bit>
#include <cstring>
#include <type_traits>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/submission_queue.hpp"

namespace dkq {

// The 16-byte NVMe completion queue entry, the fields the queue layer needs
// (NVMe base spec 2.0, 4.6 "Completion Queue Entry": DW2 = SQ Head Pointer
// 15:0, SQ Identifier 31:16; DW3 = Command Identifier 15:0, Phase Tag 16,
// Status Field 31:17). Little-endian hosts only (dkq targets x86-64 and arm64).
struct nvme_cqe {
  std::uint32_t dw0;
  std::uint32_t dw1;
  std::uint16_t sq_head;
  std::uint16_t sq_id;
  std::uint16_t cid;
  std::uint16_t status;  // bit 0: phase tag; bits 15:1: status field

  // The status field without the phase tag (0 = success).
  constexpr std::uint16_t status_field() const noexcept { return static_cast<std::uint16_t>(status >> 1); }
};
static_assert(sizeof(nvme_cqe) == 16 && std::is_trivially_copyable_v<nvme_cqe>);
static_assert(offsetof(nvme_cqe, sq_head) == 8 && offsetof(nvme_cqe, cid) == 12 &&
              offsetof(nvme_cqe, status) == 14);

// Layout concept for phase_cq: the entry type and how to read its phase tag.
// phase() is the load that decides whether the entry is new, so it must be an
// acquire load of the word that holds the tag (the device writes that word last
// or the whole entry at once; a device model thread writes it with release).
template <class L>
concept phase_cq_layout = requires(const typename L::entry_type& e) {
  { L::phase(e) } noexcept -> std::same_as<bool>;
} && std::is_trivially_copyable_v<typename L::entry_type>;

struct nvme_cq_layout {
  using entry_type = nvme_cqe;
  static DKQ_ALWAYS_INLINE bool phase(const nvme_cqe& e) noexcept { return (load_acquire(&e.status) & 1u) != 0; }
  static constexpr std::uint16_t sq_head(const nvme_cqe& e) noexcept { return e.sq_head; }
  static constexpr std::uint16_t cid(const nvme_cqe& e) noexcept { return e.cid; }
};

struct cq_counters {
  std::uint64_t entries_reaped = 0;
  std::uint64_t doorbell_writes = 0;  // head doorbell writes (one per non-empty batch)
};

template <phase_cq_layout Layout, doorbell Db>
class phase_cq {
 public:
  using entry_type = typename Layout::entry_type;

  phase_cq() noexcept = default;
  phase_cq(const phase_cq&) = delete;
  phase_cq& operator=(const phase_cq&) = delete;

  // Zeroes the queue memory: the device writes phase 1 on its first lap, so
  // every slot must start at phase 0 (Linux and SPDK store the expected phase,
  // starting at 1, and require zeroed entries: Linux nvme-pci cq_phase /
  // nvme_cqe_pending, SPDK nvme_pcie_qpair_reset).
  status init(dma_region memory, std::uint32_t entries, Db db) noexcept {
    if (!memory.valid()) return {errc::invalid_argument, "completion queue memory is empty"};
    if (entries < device_queue_min_entries || entries > device_queue_max_entries)
      return {errc::invalid_argument, "completion queue size must be 2..65536 entries", entries};
    if (memory.size / sizeof(entry_type) < entries)
      return {errc::out_of_range, "completion queue memory is smaller than entries * entry size", memory.size};
    if (reinterpret_cast<std::uintptr_t>(memory.cpu) % alignof(entry_type) != 0)
      return {errc::invalid_argument, "completion queue memory is misaligned for its entries"};
    entries_ptr_ = memory.cpu_at<entry_type>();
    std::memset(memory.cpu, 0, static_cast<std::size_t>(entries) * sizeof(entry_type));
    device_ = memory.device;
    size_ = entries;
    db_ = db;
    head_ = 0;
    phase_ = true;
    counters_ = {};
    return ok_status;
  }

  constexpr std::uint32_t size() const noexcept { return size_; }
  constexpr std::uint32_t head() const noexcept { return head_; }
  constexpr bool expected_phase() const noexcept { return phase_; }
  constexpr dev_addr device_address() const noexcept { return device_; }
  constexpr const cq_counters& counters() const noexcept { return counters_; }
  Db& doorbell_ref() noexcept { return db_; }

  // Is there a new entry at the head? (One cached load; no side effects.)
  DKQ_ALWAYS_INLINE bool pending() const noexcept {
    return size_ != 0 && Layout::phase(entries_ptr_[head_]) == phase_;
  }

  // Hand up to `budget` new entries to handler(const entry_type&), in order,
  // then write the head doorbell once if any were taken. Returns the number
  // taken. The entry reference is valid only during the call: the slot is
  // the device's again once the doorbell is written.
  //
  // A budget larger than the queue is allowed; the device cannot post more
  // than size-1 entries before it sees the new head, so the batch ends there.
  template <class Handler>
  DKQ_ALWAYS_INLINE std::uint32_t reap(std::uint32_t budget, Handler&& handler) noexcept {
    std::uint32_t n = 0;
    std::uint32_t head = head_;
    bool phase = phase_;
    while (n < budget) {
      const entry_type& e = entries_ptr_[head];
      if (Layout::phase(e) != phase) break;
      // The phase tag was read first; the rest of the entry must not be read
      // from before it (Linux nvme_poll_cq: "load-load control dependency
      // between phase and the rest of the cqe requires a full read memory
      // barrier"). A no-op on x86, dmb oshld on arm64.
      dma_rmb();
      handler(e);
      ++n;
      if (++head == size_) {
        head = 0;
        phase = !phase;
      }
    }
    if (n != 0) {
      head_ = head;
      phase_ = phase;
      db_.write(head);  // the head moved, so this value differs from the last one
      ++counters_.doorbell_writes;
      counters_.entries_reaped += n;
    }
    return n;
  }

  // After a controller reset: entries cleared, head 0, phase 1 again.
  void reset() noexcept {
    if (entries_ptr_ != nullptr) std::memset(static_cast<void*>(entries_ptr_), 0, size_ * sizeof(entry_type));
    head_ = 0;
    phase_ = true;
  }

 private:
  entry_type* entries_ptr_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t head_ = 0;
  bool phase_ = true;  // the phase tag a new entry at head_ carries
  dev_addr device_{};
  Db db_{};
  cq_counters counters_{};
};

// Producer-index completion ring in host memory: the device writes entries,
// then a producer index word; the host consumes them and publishes its
// consumer index. Entry is any plain struct (a pvscsi 32-byte completion
// descriptor, an MFI context word); Mode is the index convention
// (index_mode, submission_queue.hpp):
//   wrapped       the producer index is the slot number, < size (MegaRAID MFI
//                 reply queue: the INIT frame gives the controller the queue,
//                 a producer and a consumer word, all in host memory; QEMU
//                 hw/scsi/megasas.c megasas_complete_frame)
//   free_running  the producer index counts up modulo 2^32; slot = index &
//                 (size - 1) (PVSCSI cmpProdIdx / cmpConsIdx, Linux
//                 drivers/scsi/vmw_pvscsi.c pvscsi_process_completion_ring)
//
// The host reads the producer index once per batch (acquire) and checks it
// before any entry is read: a wrapped index at or beyond the size, or a
// free-running one more than a ring ahead of the consumer, is the device
// lying, reported as errc::protocol_error with nothing consumed. It publishes
// its consumer index once per batch through the doorbell (a host word, a
// register, or both: composite_doorbell).
template <class Entry, doorbell Db, index_mode Mode = index_mode::wrapped>
class producer_index_cq {
  static_assert(std::is_trivially_copyable_v<Entry>, "completion entries are plain values");
  static constexpr bool free_running = Mode == index_mode::free_running;

 public:
  using entry_type = Entry;
  static constexpr index_mode mode = Mode;

  producer_index_cq() noexcept = default;
  producer_index_cq(const producer_index_cq&) = delete;
  producer_index_cq& operator=(const producer_index_cq&) = delete;

  // `memory` holds the entries; `producer` is the device-written index word.
  // The consumer index starts at `start` (MFI lets the host choose; a
  // free-running device may start anywhere).
  status init(dma_region memory, std::uint32_t entries, const std::uint32_t* producer, Db consumer_db,
              std::uint32_t start = 0) noexcept {
    if (!memory.valid() || producer == nullptr) return {errc::invalid_argument, "completion ring memory is empty"};
    if (entries < device_queue_min_entries || entries > device_queue_max_entries)
      return {errc::invalid_argument, "completion ring size must be 2..65536 entries", entries};
    if (free_running && !std::has_single_bit(entries))
      return {errc::invalid_argument, "a free-running ring's size must be a power of two", entries};
    if (memory.size / sizeof(Entry) < entries)
      return {errc::out_of_range, "completion ring memory is smaller than entries * entry size", memory.size};
    if (reinterpret_cast<std::uintptr_t>(memory.cpu) % alignof(Entry) != 0)
      return {errc::invalid_argument, "completion ring memory is misaligned for its entries"};
    if (!free_running && start >= entries)
      return {errc::out_of_range, "completion ring start index outside the ring", start};
    entries_ptr_ = memory.cpu_at<Entry>();
    producer_ = producer;
    size_ = entries;
    db_ = consumer_db;
    head_ = start;
    counters_ = {};
    return ok_status;
  }

  constexpr std::uint32_t size() const noexcept { return size_; }
  // The consumer index as published (free-running or wrapped, per Mode).
  constexpr std::uint32_t head() const noexcept { return head_; }
  constexpr const cq_counters& counters() const noexcept { return counters_; }
  Db& doorbell_ref() noexcept { return db_; }

  bool pending() const noexcept { return size_ != 0 && load_acquire(producer_) != head_; }

  // After a device reset: the consumer index restarts at `start` (the device
  // restarts its producer index there too). Nothing is written.
  void reset(std::uint32_t start = 0) noexcept { head_ = start; }

  // Hand up to `budget` entries to handler(const Entry&), then publish the
  // consumer index once. Returns the number handed over, or protocol_error if
  // the producer index is impossible.
  template <class Handler>
  result<std::uint32_t> reap(std::uint32_t budget, Handler&& handler) noexcept {
    const std::uint32_t prod = load_acquire(producer_);
    if constexpr (free_running) {
      if (DKQ_UNLIKELY(prod - head_ > size_))
        return status{errc::protocol_error, "device completion producer index is more than a ring ahead", prod};
    } else {
      if (DKQ_UNLIKELY(prod >= size_))
        return status{errc::protocol_error, "device reply-queue producer index outside the queue", prod};
    }
    // Entries were written before the producer index; read them after it.
    dma_rmb();
    std::uint32_t n = 0;
    std::uint32_t head = head_;
    while (n < budget && head != prod) {
      handler(read_entry(head));
      ++n;
      if constexpr (free_running) {
        ++head;
      } else {
        if (++head == size_) head = 0;
      }
    }
    if (n != 0) {
      head_ = head;
      db_.write(head);
      ++counters_.doorbell_writes;
      counters_.entries_reaped += n;
    }
    return n;
  }

 private:
  DKQ_ALWAYS_INLINE Entry read_entry(std::uint32_t idx) const noexcept {
    if constexpr (free_running) idx &= size_ - 1;
    if constexpr (std::is_integral_v<Entry>) {
      return load_relaxed(&entries_ptr_[idx]);  // a device thread in tests writes it
    } else {
      Entry e;
      std::memcpy(&e, &entries_ptr_[idx], sizeof e);
      return e;
    }
  }

  Entry* entries_ptr_ = nullptr;
  const std::uint32_t* producer_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t head_ = 0;
  Db db_{};
  cq_counters counters_{};
};

// The MegaRAID MFI reply queue: 32- or 64-bit context words, wrapped indices.
template <class Entry, doorbell Db>
using index_reply_queue = producer_index_cq<Entry, Db, index_mode::wrapped>;

}  // namespace dkq
