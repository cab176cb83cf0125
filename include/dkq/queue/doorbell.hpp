// dkq/queue/doorbell.hpp - doorbells: the one write that tells a device to look.
//
// A doorbell is anything with `write(std::uint32_t)`. Queues never know what is
// behind it, so one submission-queue implementation drives:
//
//   mmio_doorbell       a 32-bit device register (NVMe SQyTDBL/CQyHDBL, a
//                       pvscsi kick register); the write is ordered after every
//                       earlier store to DMA memory (mmio_window::write32 puts
//                       dma_wmb() first), which is what publishing queue
//                       entries needs.
//   host_word_doorbell  an index word in host memory the device polls or reads
//                       on interrupt (MegaRAID MFI reply-queue consumer index,
//                       pvscsi ring-state indices); a release store.
//   composite_doorbell<W, K>  publish the index in host memory (W), then
//                       kick a register (K): the PVSCSI request ring.
//   shadow_doorbell<D>  NVMe Doorbell Buffer Config (NVMe 1.3+, "shadow
//                       doorbells"): update the shadow word in host memory and
//                       write the real register D only when the controller's
//                       EventIdx says it is waiting for it.
//   (tests)             a software device model's atomic register.
//
// Counting and "never write the same value twice" live in the queues, which
// know the previous value; a doorbell only writes.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dkq/base/barrier.hpp"
#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"

namespace dkq {

template <class D>
concept doorbell = requires(D& d, std::uint32_t v) {
  { d.write(v) } noexcept;
};

// A doorbell register inside a mapped BAR. make() validates the offset once;
// write() is then a single ordered 32-bit store.
class mmio_doorbell {
 public:
  constexpr mmio_doorbell() noexcept = default;

  static result<mmio_doorbell> make(mmio_window window, std::size_t offset) noexcept {
    if (status s = window.check(offset, 4); !s) return s;
    return mmio_doorbell{window, offset};
  }

  DKQ_ALWAYS_INLINE void write(std::uint32_t v) noexcept { window_.write32(offset_, v); }

  constexpr std::size_t offset() const noexcept { return offset_; }

 private:
  constexpr mmio_doorbell(mmio_window w, std::size_t off) noexcept : window_(w), offset_(off) {}
  mmio_window window_{};
  std::size_t offset_ = 0;
};

// An index word in host (DMA) memory that the device reads. dma_wmb() orders
// the entries before the index for the real device; the release store does the
// same for a device model thread and lets ThreadSanitizer see it.
class host_word_doorbell {
 public:
  constexpr host_word_doorbell() noexcept = default;
  constexpr explicit host_word_doorbell(std::uint32_t* word) noexcept : word_(word) {}

  DKQ_ALWAYS_INLINE void write(std::uint32_t v) noexcept {
    dma_wmb();
    store_release(word_, v);
  }

  constexpr std::uint32_t* word() const noexcept { return word_; }

 private:
  std::uint32_t* word_ = nullptr;
};

// A doorbell made of two writes: publish the index in a host-memory word the
// device reads, then write a kick register so it looks (PVSCSI: reqProdIdx in
// the shared rings state, then PVSCSI_REG_OFFSET_KICK_RW_IO; Linux
// drivers/scsi/vmw_pvscsi.c pvscsi_kick_io). The order is the point: the word
// must be visible before the kick arrives, so the word is stored with release
// semantics after a DMA write barrier and the kick is an ordered MMIO write
// (mmio_window::write32 orders prior DMA-memory stores before the MMIO store).
// The kick carries a fixed value (0 unless the device wants another).
template <doorbell Word, doorbell Kick>
class composite_doorbell {
 public:
  constexpr composite_doorbell() noexcept = default;
  constexpr composite_doorbell(Word word, Kick kick, std::uint32_t kick_value = 0) noexcept
      : word_(word), kick_(kick), kick_value_(kick_value) {}

  DKQ_ALWAYS_INLINE void write(std::uint32_t v) noexcept {
    word_.write(v);
    kick_.write(kick_value_);
    ++kicks_;
  }

  Word& word() noexcept { return word_; }
  Kick& kick() noexcept { return kick_; }
  std::uint64_t kicks() const noexcept { return kicks_; }

 private:
  Word word_{};
  Kick kick_{};
  std::uint32_t kick_value_ = 0;
  std::uint64_t kicks_ = 0;
};

// NVMe shadow-doorbell EventIdx test: must the real register be written after
// the shadow doorbell moved from `old_value` to `new_value`?
//
// dkq uses the Linux form (nvme_dbbuf_need_event, the virtio vring_need_event
// test): write iff event_idx lies in [old_value, new_value - 1], computed mod
// 2^16 (queues hold at most 65536 entries, NVMe CAP.MQES):
//
//     (u16)(new - event_idx - 1) < (u16)(new - old)
//
// SPDK and libvfn use (u16)(new - event_idx) <= (u16)(new - old), which also
// writes when event_idx == new (SPDK nvme_pcie_qpair_need_event, libvfn
// __nvme_need_mmio). EventIdx is the
// value the controller last read and asks to be told when the doorbell moves
// *past* it; event_idx == new means the controller has already read `new` from
// the shadow word, so that extra MMIO tells it nothing - and under a hypervisor
// each MMIO is a VM exit, the very cost shadow doorbells exist to avoid. The
// Linux form is exact, the SPDK form is conservative by one; both are safe
// because both write for every event_idx in [old, new-1]. Tested at both edges
// and across the 16-bit wrap in tests/queue/doorbell_test.cpp.
constexpr bool dbbuf_need_event(std::uint16_t event_idx, std::uint16_t new_value,
                                std::uint16_t old_value) noexcept {
  return static_cast<std::uint16_t>(new_value - event_idx - 1) <
         static_cast<std::uint16_t>(new_value - old_value);
}

// Shadow doorbell over a real doorbell D. `shadow` and `event_idx` point at
// this queue's words in the two Doorbell Buffer Config pages (NVMe 1.4
// 5.8 "Doorbell Buffer Config command": the shadow page holds the doorbell
// values, the EventIdx page the controller's event indexes, at the same
// offsets as the register doorbells divided by the doorbell stride).
//
// write(v) is a publish-then-check handshake with the controller (the Dekker
// shape of io_uring SQPOLL): store the shadow value, full barrier, load
// EventIdx. Without the barrier the load may be satisfied before the store is
// visible (x86 allows store->load reordering), the controller may at that
// moment read the old shadow value and go to sleep with an old EventIdx, and
// the submission is never seen. The controller does the mirror image (store
// EventIdx, barrier, re-read shadow). seq_cst atomics carry the order for a
// device model thread and ThreadSanitizer; dma_mb() carries it for real
// hardware.
template <doorbell D>
class shadow_doorbell {
 public:
  constexpr shadow_doorbell() noexcept = default;
  constexpr shadow_doorbell(std::uint32_t* shadow, const std::uint32_t* event_idx, D mmio) noexcept
      : shadow_(shadow), event_idx_(event_idx), mmio_(mmio) {}

  void write(std::uint32_t v) noexcept {
    // Entries (SQEs, or the consumed CQ slots) before the shadow value.
    dma_wmb();
    const std::uint32_t old = load_relaxed(shadow_);
    store_seq_cst(shadow_, v);
    dma_mb();
    const std::uint32_t ei = load_seq_cst(event_idx_);
    if (dbbuf_need_event(static_cast<std::uint16_t>(ei), static_cast<std::uint16_t>(v),
                         static_cast<std::uint16_t>(old))) {
      mmio_.write(v);
      ++mmio_writes_;
    }
  }

  // Real register writes this doorbell performed (the rest were absorbed by
  // the shadow word).
  constexpr std::uint64_t mmio_writes() const noexcept { return mmio_writes_; }
  D& mmio() noexcept { return mmio_; }

 private:
  std::uint32_t* shadow_ = nullptr;
  const std::uint32_t* event_idx_ = nullptr;
  D mmio_{};
  std::uint64_t mmio_writes_ = 0;
};

}  // namespace dkq
