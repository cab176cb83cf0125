// examples/nvme/driver/controller.hpp - the portable NVMe driver core.
//
// Built only from dkq pieces: registers and commands from dkq/nvme, queue
// pairs (post vs ring, phase CQ, tags with generations and deadlines) from
// dkq/queue, PRP/SGL from dkq/nvme/prp.hpp + sgl.hpp. Templated on the
// platform (platform.hpp) so the Linux VFIO program and the DriverKit
// extension share it unchanged; hence the core rules: no exceptions, no RTTI,
// no <thread>/<mutex>/iostreams, errors as values, memory allocated at setup
// only (queues, per-command PRP list pages, tag tables).
//
//   controller<P> c;
//   c.init(platform, options)      bring-up, Identify, queues counted, AER
//   c.create_io_queue(...)         one per submitting thread
//   q.read/write/flush/...         post; q.ring() or the batch policy rings
//   q.poll(budget, handler)        reap, one CQ head write per batch
//   q.check_timeouts(handler)      timeout -> abort -> (caller) reset
//   c.reset_and_recover()          controller reset; in-flight re-queued
//   c.shutdown()                   CC.SHN, bounded wait
//
// Threads: an io_queue belongs to one thread (the SPDK model, no locks on the
// I/O path). The admin queue is shared and guarded by a spinlock made of one
// atomic flag, because aborts come from whichever thread saw a timeout.
// reset_and_recover() touches every queue: the caller must have stopped the
// other submitters first (the Linux program does, by design of its loop).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>

#include "dkq/base/barrier.hpp"
#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/coro/completion.hpp"
#include "dkq/coro/task.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/nvme/commands.hpp"
#include "dkq/nvme/prp.hpp"
#include "dkq/nvme/sgl.hpp"
#include "dkq/nvme/spec.hpp"
#include "dkq/nvme/status.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "doorbell.hpp"
#include "identify.hpp"
#include "platform.hpp"

namespace dkq::nvme_driver {

// Shadow doorbells: off by default on QEMU's NVMe (1b36:0010), because Linux's
// own driver stalled with them on QEMU 7.2 in our runs (cause not found) and,
// with doorbell batching, they save nothing at QD32; docs/nvme.md ("Shadow
// doorbells and QEMU 7.2") has the investigation. `automatic`: off on QEMU, on
// elsewhere when OACS says so; `on` forces them and, on QEMU, still writes the
// CQ head register every time (db_mode::shadow_always);
// options::qemu_cq_head_register = false ("--shadow strict") sends the CQ head
// through EventIdx too. A lost doorbell still ends in timeout -> abort ->
// reset, never in a hang.
enum class shadow_mode : std::uint8_t { automatic, on, off };

struct options {
  int bar = 0;                          // NVMe MLBAR/MUBAR is BAR 0/1 by the spec
  std::uint32_t admin_entries = 32;
  shadow_mode shadow = shadow_mode::automatic;
  // With shadow doorbells on QEMU: also write the CQ head register every time
  // (see shadow_mode). false = CQ head through EventIdx too, for experiments.
  bool qemu_cq_head_register = true;
  bool use_sgl = true;                  // when the controller supports SGLs
  std::uint32_t sgl_threshold = 32 * 1024;
  std::uint32_t io_timeout_ms = 5000;   // per command
  std::uint32_t admin_timeout_ms = 5000;
  std::uint32_t max_io_queues = 16;     // asked for in Set Features
  std::uint32_t aers = 1;               // asynchronous event requests kept outstanding
  std::uint64_t max_transfer_cap = 2u << 20;  // one PRP list page per command covers 2 MiB
};

struct io_completion {
  std::uint64_t user = 0;
  status st{};
  std::uint32_t dw0 = 0;
  std::uint8_t opcode = 0;
};

struct async_event {
  std::uint8_t type = 0, info = 0, log_page = 0;
};

template <pci_platform P>
class controller;
template <pci_platform P>
class io_queue;

// ---------------------------------------------------------------------------
// The awaitable form of an I/O command (dkq/coro): `co_await q.co_read(...)`
// posts the command (rung at the next flush point, as in the callback form)
// and resumes the coroutine with its io_completion when the queue's poll()
// reaps it - or when the timeout, abort or reset path ends it, exactly once.
// The completion does not go to poll()'s handler; everything else about the
// command (slots, deadlines, recovery) is the callback form's.
// ---------------------------------------------------------------------------
template <pci_platform P>
class io_op {
 public:
  enum class kind : std::uint8_t { read, write, flush, write_zeroes, deallocate };

  io_op() noexcept = default;
  io_op(io_queue<P>& q, kind k, std::uint32_t nsid, std::uint64_t slba = 0, std::uint32_t blocks = 0,
        dma_segment data = {}, bool fua = false) noexcept
      : q_(&q), nsid_(nsid), slba_(slba), blocks_(blocks), data_(data), kind_(k), fua_(fua) {}
  // Ops are values until they are posted: an in-flight op is never moved or
  // overwritten (the device would complete into the old place).
  io_op(io_op&& o) noexcept { take(o); }
  io_op& operator=(io_op&& o) noexcept {
    if (DKQ_UNLIKELY(c_.pending())) __builtin_trap();
    take(o);
    return *this;
  }
  io_op(const io_op&) = delete;
  io_op& operator=(const io_op&) = delete;

  coro::completion<io_completion>& sink() noexcept { return c_; }
  inline bool start() noexcept;
  auto operator co_await() noexcept { return coro::op_awaiter<io_op>{*this}; }
  bool pending() const noexcept { return c_.pending(); }
  bool done() const noexcept { return c_.done(); }
  const io_completion& completion() const noexcept { return c_.value(); }

 private:
  void take(io_op& o) noexcept {
    if (DKQ_UNLIKELY(o.c_.pending())) __builtin_trap();
    q_ = o.q_;
    nsid_ = o.nsid_;
    slba_ = o.slba_;
    blocks_ = o.blocks_;
    data_ = o.data_;
    kind_ = o.kind_;
    fua_ = o.fua_;
    c_.rearm();
  }
  io_queue<P>* q_ = nullptr;
  std::uint32_t nsid_ = 0;
  std::uint64_t slba_ = 0;
  std::uint32_t blocks_ = 0;
  dma_segment data_{};
  kind kind_ = kind::read;
  bool fua_ = false;
  friend class io_queue<P>;
  coro::completion<io_completion> c_;
};

// An admin command's outcome, for the awaitable admin form.
struct admin_completion {
  status st{};
  std::uint32_t dw0 = 0;
};

// ---------------------------------------------------------------------------
// One I/O queue pair with its per-command resources.
// ---------------------------------------------------------------------------
template <pci_platform P>
class io_queue {
 public:
  struct cmd_ctx {
    std::uint64_t user;
    std::uint32_t slot;
  };
  using qp_type = queue_pair<nvme_queue_layout, nvme_doorbell, nvme_doorbell, cmd_ctx>;

  io_queue() noexcept = default;
  io_queue(const io_queue&) = delete;
  io_queue& operator=(const io_queue&) = delete;
  ~io_queue() { release(); }

  std::uint16_t qid() const noexcept { return qid_; }
  std::uint32_t depth() const noexcept { return tags_; }
  std::uint32_t in_flight() const noexcept { return qp_.tags().in_flight(); }
  bool interrupts() const noexcept { return irq_; }
  std::uint16_t vector() const noexcept { return vector_; }
  const qp_type& pair() const noexcept { return qp_; }
  // Register writes over the queue's life, across controller resets.
  std::uint64_t sq_mmio_writes() const noexcept { return sq_mmio_base_ + sq_db_mmio(); }
  std::uint64_t cq_mmio_writes() const noexcept { return cq_mmio_base_ + cq_db_mmio(); }
  std::uint64_t sq_doorbells() const noexcept { return qp_.sq().counters().doorbell_writes; }
  std::uint64_t commands_posted() const noexcept { return qp_.sq().counters().entries_posted; }
  // Writes posted with FUA set (CDW12 bit 30): what a VM test compares with
  // the FUA writes it asked for, since QEMU's NVMe model traces no FUA.
  std::uint64_t fua_writes_posted() const noexcept { return fua_posted_; }
  std::uint64_t max_transfer() const noexcept { return prp_.max_transfer; }
  bool needs_reset() const noexcept { return needs_reset_; }
  // Completions the recovery path produced and poll() has not handed out yet.
  std::uint32_t deferred() const noexcept { return deferred_count_; }

  // ---- submission (post only; ring() or the batch policy writes the doorbell)
  status read(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, dma_segment data,
              std::uint64_t user) noexcept {
    return rw(nvme::io_opc::read, nsid, slba, blocks, data, user, false);
  }
  status write(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, dma_segment data,
               std::uint64_t user, bool fua = false) noexcept {
    return rw(nvme::io_opc::write, nsid, slba, blocks, data, user, fua);
  }
  status flush(std::uint32_t nsid, std::uint64_t user) noexcept {
    nvme::sqe s = nvme::cmd::flush(nsid);
    return post(s, nullptr, user);
  }
  status write_zeroes(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, std::uint64_t user) noexcept {
    if (!write_zeroes_ok_) return {errc::not_supported, "controller does not support Write Zeroes (ONCS bit 3)"};
    auto s = nvme::cmd::write_zeroes(nsid, slba, blocks);
    if (!s) return s.error();
    return post(*s, nullptr, user);
  }
  // Dataset Management / deallocate of one range; the range list lives in the
  // command's own list page, so nothing is allocated here.
  status deallocate(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, std::uint64_t user) noexcept {
    return deallocate_impl(nsid, slba, blocks, user, nullptr);
  }
  status deallocate_impl(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, std::uint64_t user,
                         coro::completion<io_completion>* waiter) noexcept {
    if (!dsm_ok_) return {errc::not_supported, "controller does not support Dataset Management (ONCS bit 2)"};
    if (free_top_ == 0) return {errc::no_space, "all command slots are in use"};
    const std::uint32_t slot = free_slots_[free_top_ - 1];
    auto* r = slots_[slot].page.template cpu_at<nvme::cmd::dsm_range>();
    *r = nvme::cmd::dsm_range{0, blocks, slba};
    auto s = nvme::cmd::deallocate(nsid, 1, slots_[slot].page.device);
    if (!s) return s.error();
    return post(*s, nullptr, user, waiter);
  }

  // ---- the same commands as awaitables (io_op; see above) ----------------------
  io_op<P> co_read(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, dma_segment data) noexcept {
    return io_op<P>(*this, io_op<P>::kind::read, nsid, slba, blocks, data);
  }
  io_op<P> co_write(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, dma_segment data,
                    bool fua = false) noexcept {
    return io_op<P>(*this, io_op<P>::kind::write, nsid, slba, blocks, data, fua);
  }
  io_op<P> co_flush(std::uint32_t nsid) noexcept { return io_op<P>(*this, io_op<P>::kind::flush, nsid); }
  io_op<P> co_write_zeroes(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) noexcept {
    return io_op<P>(*this, io_op<P>::kind::write_zeroes, nsid, slba, blocks);
  }
  io_op<P> co_deallocate(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) noexcept {
    return io_op<P>(*this, io_op<P>::kind::deallocate, nsid, slba, blocks);
  }

  // Coroutine frames for this queue's coroutines: `frames` slots of
  // `frame_bytes`, allocated once here. A coroutine whose first parameter is
  // this queue takes its frame from it (dkq/coro/task.hpp); running out is
  // errc::no_memory from the coroutine, never a crash or a heap allocation.
  status reserve_frames(std::size_t frames, std::size_t frame_bytes) noexcept {
    return arena_.init(frames, frame_bytes);
  }
  coro::frame_arena& coro_frame_arena() noexcept { return arena_; }

  // Write the SQ doorbell now (end of a batch, before waiting).
  bool ring() noexcept { return qp_.flush(); }

  // Reap up to budget completions; handler(const io_completion&). Also hands
  // out completions the recovery path produced (failed on reset, aborted).
  template <class H>
  std::uint32_t poll(std::uint32_t budget, H&& handler) noexcept {
    if (DKQ_UNLIKELY(owner_ == nullptr)) return 0;  // never created: nothing to reap
    std::uint32_t n = drain_deferred(handler);
    if (n >= budget) return n;
    n += qp_.process_completions(
        budget - n,
        [&](cmd_ctx& c, const nvme_cqe& e) {
          io_completion done;
          done.user = c.user;
          done.st = nvme::to_status(nvme::status_field::decode(e.status));
          done.dw0 = e.dw0;
          done.opcode = slots_[c.slot].cmd.opcode;
          coro::completion<io_completion>* w = slots_[c.slot].waiter;
          free_slot(c.slot);
          deliver(w, done, handler);
        },
        [&](status s, const nvme_cqe&) { on_protocol_error(s); });
    return n;
  }

  // Expired commands: Abort each (admin queue), reap; one that the abort
  // completed is failed with errc::timeout; if any is still outstanding the
  // queue needs a controller reset (needs_reset()). Returns how many expired.
  template <class H>
  std::uint32_t check_timeouts(H&& handler) noexcept;

  // Counters the device cannot lie about: protocol errors seen on this queue.
  std::uint64_t protocol_errors() const noexcept { return protocol_errors_; }
  const char* last_protocol_error() const noexcept { return last_proto_msg_; }

 private:
  friend class controller<P>;

  struct slot_info {
    nvme::sqe cmd;
    dma_region page;  // PRP list / DSM range page, one memory page
    std::uint64_t user;
    coro::completion<io_completion>* waiter;  // awaitable form: resumed instead of the handler
    std::uint8_t retries;
  };

  // Hand one completion out: to the awaiting coroutine, or to the handler.
  // The slot is already free (a resumed coroutine may post into it).
  template <class H>
  DKQ_ALWAYS_INLINE void deliver(coro::completion<io_completion>* waiter, const io_completion& c, H& handler) noexcept {
    if (waiter != nullptr) waiter->complete(c);
    else handler(c);
  }

  friend class io_op<P>;
  status post_op(io_op<P>& op) noexcept {
    using k = typename io_op<P>::kind;
    coro::completion<io_completion>* w = &op.c_;
    switch (op.kind_) {
      case k::read: return rw(nvme::io_opc::read, op.nsid_, op.slba_, op.blocks_, op.data_, 0, false, w);
      case k::write: return rw(nvme::io_opc::write, op.nsid_, op.slba_, op.blocks_, op.data_, 0, op.fua_, w);
      case k::flush: return post(nvme::cmd::flush(op.nsid_), nullptr, 0, w);
      case k::write_zeroes: {
        if (!write_zeroes_ok_) return {errc::not_supported, "controller does not support Write Zeroes (ONCS bit 3)"};
        auto s = nvme::cmd::write_zeroes(op.nsid_, op.slba_, op.blocks_);
        if (!s) return s.error();
        return post(*s, nullptr, 0, w);
      }
      case k::deallocate: return deallocate_impl(op.nsid_, op.slba_, op.blocks_, 0, w);
    }
    return {errc::invalid_argument, "unknown io_op kind"};
  }

  std::uint64_t sq_db_mmio() const noexcept { return const_cast<qp_type&>(qp_).sq().doorbell_ref().mmio_writes(); }
  std::uint64_t cq_db_mmio() const noexcept { return const_cast<qp_type&>(qp_).cq().doorbell_ref().mmio_writes(); }

  status rw(std::uint8_t opc, std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks, dma_segment data,
            std::uint64_t user, bool fua, coro::completion<io_completion>* waiter = nullptr) noexcept {
    auto s = nvme::cmd::rw(opc, nsid, slba, blocks, fua);
    if (!s) return s.error();
    if (data.len == 0) return {errc::invalid_argument, "read/write without data"};
    // The device moves blocks x LBA size bytes whatever the buffer is: a
    // shorter buffer would be overrun (a read) or leak what follows it.
    const namespace_info* ns = owner_->find_ns(nsid);
    if (ns == nullptr || !ns->usable)
      return {errc::invalid_argument, "read/write to a namespace that is not active and usable", nsid};
    if (data.len != std::uint64_t{blocks} * ns->block_size)
      return {errc::invalid_argument, "buffer length is not blocks x the namespace's LBA size", data.len};
    if (prp_.max_transfer != 0 && data.len > prp_.max_transfer)
      return {errc::constraint, "transfer beyond the controller's MDTS; split it (io_queue::max_transfer)", data.len};
    status st = post(*s, &data, user, waiter);
    if (st.ok() && fua) ++fua_posted_;
    return st;
  }

  status post(nvme::sqe s, const dma_segment* data, std::uint64_t user,
              coro::completion<io_completion>* waiter = nullptr) noexcept {
    if (DKQ_UNLIKELY(owner_->failed_)) return owner_->failed_status();
    if (DKQ_UNLIKELY(needs_reset_)) return {errc::busy, "queue is waiting for a controller reset"};
    if (DKQ_UNLIKELY(free_top_ == 0)) return {errc::no_space, "all command slots are in use"};
    const std::uint32_t slot = free_slots_[free_top_ - 1];
    slot_info& si = slots_[slot];
    if (data != nullptr) DKQ_TRY(set_data(s, *data, si));
    const std::uint64_t deadline = owner_->platform_now() + std::uint64_t{timeout_ms_} * 1000000u;
    result<std::uint16_t> cid = qp_.submit(&s, cmd_ctx{user, slot}, deadline);
    if (!cid) {
      if (cid.error().code() == errc::protocol_error) {
        // A stuck SQ head: nothing in flight will free the ring; only a
        // controller reset does (needs_reset(), then reset_and_recover()).
        on_protocol_error(cid.error());
        needs_reset_ = true;
      }
      return cid.error();
    }
    --free_top_;
    si.cmd = s;
    si.user = user;
    si.waiter = waiter;
    si.retries = 0;
    return ok_status;
  }

  status set_data(nvme::sqe& s, dma_segment seg, slot_info& si) noexcept {
    const std::span<const dma_segment> d(&seg, 1);
    auto choice = nvme::choose_data_pointer(dptr_, prp_, d);
    if (!choice) return choice.error();
    if (*choice == nvme::data_pointer::sgl) {
      auto r = nvme::build_sgl(dptr_.caps, d, {}, prp_.max_transfer);
      if (!r) return r.error();
      static_assert(sizeof(r->sgl1) == 16);
      std::memcpy(&s.prp1, &r->sgl1, 16);
      s.flags = static_cast<std::uint8_t>((s.flags & 0x3f) | nvme::psdt::sgl_mptr_contig);
      return ok_status;
    }
    auto r = nvme::build_prp(prp_, d, std::span<const dma_region>(&si.page, 1));
    if (!r) return r.error();
    s.prp1 = r->prp1;
    s.prp2 = r->prp2;
    return ok_status;
  }

  void free_slot(std::uint32_t slot) noexcept { free_slots_[free_top_++] = slot; }

  void on_protocol_error(status s) noexcept {
    ++protocol_errors_;
    last_proto_msg_ = s.message();
  }

  // Completions produced outside poll() (recovery) wait here with their
  // command slot still held, and the slot is freed only when the completion
  // is handed out: a slot is in this list at most once, so tags_ entries
  // always suffice and nothing is ever dropped.
  struct deferred_completion {
    io_completion c;
    std::uint32_t slot;
  };
  template <class H>
  std::uint32_t drain_deferred(H& handler) noexcept {
    std::uint32_t n = 0;
    while (deferred_count_ != 0) {
      const deferred_completion d = deferred_[--deferred_count_];
      coro::completion<io_completion>* w = slots_[d.slot].waiter;
      free_slot(d.slot);
      deliver(w, d.c, handler);
      ++n;
    }
    return n;
  }
  void defer(std::uint32_t slot, status st) noexcept {
    io_completion c;
    c.user = slots_[slot].user;
    c.opcode = slots_[slot].cmd.opcode;
    c.st = st;
    deferred_[deferred_count_++] = deferred_completion{c, slot};  // bounded: see above
  }
  void defer(std::uint32_t slot, const io_completion& c) noexcept {
    deferred_[deferred_count_++] = deferred_completion{c, slot};
  }
  // Completions the device had already posted when a reset began (Linux's
  // nvme_reap_pending_cqes): they finished, so they are delivered, not re-run.
  std::uint32_t reap_before_reset() noexcept {
    return qp_.cq().reap(tags_, [&](const nvme_cqe& e) {
      cmd_ctx c{};
      if (!qp_.tags().try_complete(e.cid, c)) {
        on_protocol_error(qp_.tags().complete(e.cid).error());
        return;
      }
      io_completion done;
      done.user = c.user;
      done.st = nvme::to_status(nvme::status_field::decode(e.status));
      done.dw0 = e.dw0;
      done.opcode = slots_[c.slot].cmd.opcode;
      defer(c.slot, done);
    });
  }

  void release() noexcept;

  controller<P>* owner_ = nullptr;
  qp_type qp_;
  std::uint16_t qid_ = 0;
  std::uint16_t vector_ = 0;
  bool irq_ = false;
  bool write_zeroes_ok_ = false, dsm_ok_ = false;
  bool needs_reset_ = false;
  std::uint32_t entries_ = 0, tags_ = 0;
  std::uint32_t timeout_ms_ = 5000;
  ring_policy policy_ = ring_policy::batched;
  std::uint32_t max_unrung_ = 0;
  dma_region sq_mem_{}, cq_mem_{}, pages_{};
  coro::frame_arena arena_;
  slot_info* slots_ = nullptr;
  std::uint32_t* free_slots_ = nullptr;
  std::uint32_t free_top_ = 0;
  deferred_completion* deferred_ = nullptr;
  std::uint32_t deferred_count_ = 0;
  std::uint16_t* expired_ = nullptr;
  std::uint32_t* requeue_ = nullptr;
  std::uint32_t requeue_count_ = 0;
  nvme::prp_config prp_{};
  nvme::dptr_policy dptr_{};
  std::uint64_t protocol_errors_ = 0;
  std::uint64_t fua_posted_ = 0;
  const char* last_proto_msg_ = "";
  std::uint64_t sq_mmio_base_ = 0, cq_mmio_base_ = 0;
};

// ---------------------------------------------------------------------------
// The controller: registers, admin queue, bring-up, recovery, shutdown.
// ---------------------------------------------------------------------------
template <pci_platform P>
class controller {
 public:
  static constexpr std::uint32_t max_namespaces = 32;
  static constexpr std::uint32_t max_queues = 64;

  controller() noexcept = default;
  controller(const controller&) = delete;
  controller& operator=(const controller&) = delete;
  ~controller() { release(); }

  // ---- bring-up ---------------------------------------------------------------
  status init(P& platform, const options& opt = {}) noexcept {
    plat_ = &platform;
    opt_ = opt;
    auto ids = plat_->config_read32(0);
    if (!ids) return ids.error();
    if (looks_removed(*ids)) return {errc::removed, "PCI config space reads all ones: device is gone"};
    pci_vendor_ = static_cast<std::uint16_t>(*ids & 0xffff);
    pci_device_ = static_cast<std::uint16_t>(*ids >> 16);
    auto cls = plat_->config_read32(8);
    if (!cls) return cls.error();
    if ((*cls >> 16) != 0x0108)
      return {errc::not_supported, "PCI class is not 01:08 (non-volatile memory controller)", *cls >> 8};
    auto w = plat_->map_bar(opt.bar);
    if (!w) return w.error();
    regs_ = *w;
    DKQ_TRY(regs_.check(nvme::reg::acq, 8));
    DKQ_TRY(plat_->enable_bus_master());

    const std::uint64_t cap = read_cap();
    if (looks_removed(cap)) return {errc::removed, "CAP reads all ones: device is gone"};
    cap_ = nvme::cap_fields::decode(cap);
    vs_ = regs_.read32(nvme::reg::vs);
    if ((cap_.css & 1u) == 0) return {errc::not_supported, "controller does not support the NVM command set (CAP.CSS)"};
    if (cap_.mpsmin > 0)
      return {errc::not_supported, "controller's smallest memory page is above 4 KiB (CAP.MPSMIN)", cap_.min_page_size()};
    if (opt_.admin_entries < 2 || opt_.admin_entries > cap_.mqes + 1u || opt_.admin_entries > 4096)
      return {errc::invalid_argument, "admin queue size outside 2 .. min(CAP.MQES+1, 4096)", opt_.admin_entries};
    // CAP.DSTRD spaces the doorbells (4 << DSTRD bytes, up to 128 KiB): the
    // admin pair must fit the BAR; I/O queues are capped to what fits it
    // (doorbell_queue_limit()), never written past its end.
    DKQ_TRY(regs_.check(nvme::cq_head_doorbell(0, cap_.dstrd), 4));
    if (doorbell_queue_limit() == 0)
      return {errc::not_supported, "CAP.DSTRD puts the first I/O queue's doorbells beyond the register BAR",
              cap_.dstrd};

    DKQ_TRY(alloc_setup_memory());
    DKQ_TRY(enable_controller());
    DKQ_TRY(identify_all());
    DKQ_TRY(negotiate_queues());
    DKQ_TRY(setup_dbbuf());
    for (std::uint32_t i = 0; i < aers_wanted(); ++i) (void)submit_aer();
    ready_ = true;
    return ok_status;
  }

  // ---- queries -----------------------------------------------------------------
  const nvme::cap_fields& cap() const noexcept { return cap_; }
  std::uint32_t version() const noexcept { return vs_; }
  const controller_info& info() const noexcept { return info_; }
  std::uint16_t pci_vendor() const noexcept { return pci_vendor_; }
  std::uint16_t pci_device() const noexcept { return pci_device_; }
  bool is_qemu() const noexcept { return pci_vendor_ == 0x1b36 && pci_device_ == 0x0010; }
  std::uint32_t namespace_count() const noexcept { return ns_count_; }
  // The i-th namespace found at bring-up (0 .. namespace_count()-1), or
  // nullptr for any other index.
  const namespace_info* ns(std::uint32_t i) const noexcept { return i < ns_count_ ? &ns_[i] : nullptr; }
  const namespace_info* find_ns(std::uint32_t nsid) const noexcept {
    for (std::uint32_t i = 0; i < ns_count_; ++i)
      if (ns_[i].nsid == nsid) return &ns_[i];
    return nullptr;
  }
  std::uint32_t io_queues_granted() const noexcept { return queues_granted_; }
  bool shadow_doorbells() const noexcept { return dbbuf_on_; }
  // Queue `qid`'s words in the Doorbell Buffer Config pages, as they are now
  // (for diagnostics: does the controller keep the EventIdx words current?).
  struct shadow_words {
    std::uint32_t sq_shadow, sq_eventidx, cq_shadow, cq_eventidx;
  };
  shadow_words shadow_state(std::uint16_t qid) const noexcept {
    if (!dbbuf_on_ || !dbbuf_fits(qid)) return {};
    const std::size_t stride = std::size_t{1} << cap_.dstrd;
    const auto* sh = dbbuf_.cpu_at<const std::uint32_t>();
    const auto* ei = dbbuf_.cpu_at<const std::uint32_t>(4096);
    const std::size_t sq = 2u * qid * stride, cq = (2u * qid + 1u) * stride;
    return {load_acquire(&sh[sq]), load_acquire(&ei[sq]), load_acquire(&sh[cq]), load_acquire(&ei[cq])};
  }
  const char* shadow_reason() const noexcept { return shadow_reason_; }
  std::uint64_t max_transfer() const noexcept { return max_transfer_; }
  bool uses_sgl() const noexcept { return dptr_.caps.supported; }
  std::uint64_t admin_sq_mmio_writes() const noexcept {
    return admin_mmio_base_ + const_cast<admin_qp&>(admin_).sq().doorbell_ref().mmio_writes();
  }
  std::uint64_t async_events() const noexcept { return aer_count_; }
  const async_event& last_async_event() const noexcept { return last_aer_; }
  std::uint32_t resets() const noexcept { return resets_; }
  std::uint64_t platform_now() const noexcept { return plat_->now_ns(); }

  // CSTS now: errc::removed for all ones, device_error for CFS.
  status health() const noexcept {
    const std::uint32_t csts = regs_.read32(nvme::reg::csts);
    if (looks_removed(csts)) return {errc::removed, "CSTS reads all ones: device was removed"};
    if (csts & nvme::csts::cfs) return {errc::device_error, "controller fatal status (CSTS.CFS)"};
    return ok_status;
  }

  // ---- I/O queues ------------------------------------------------------------------
  // entries: queue size (<= CAP.MQES+1); interrupts: IEN with MSI-X `vector`
  // (the shell enabled it), else polled. policy/max_unrung: doorbell batching.
  status create_io_queue(io_queue<P>& q, std::uint32_t entries, bool interrupts, std::uint16_t vector,
                         ring_policy policy = ring_policy::batched, std::uint32_t max_unrung = 0) noexcept {
    if (!ready_) return {errc::not_initialized, "controller is not initialised"};
    if (io_count_ >= queues_granted_)
      return {errc::no_space, "no I/O queue left (Set Features Number of Queues granted fewer)", queues_granted_};
    if (entries < 2 || entries > cap_.mqes + 1u)
      return {errc::invalid_argument, "I/O queue size outside 2 .. CAP.MQES+1", entries};
    for (std::uint32_t i = 0; i < io_count_; ++i)
      if (ios_[i] == &q) return {errc::invalid_argument, "this io_queue object is already a live queue"};
    if (q.owner_ != nullptr) q.release();  // an earlier create_io_queue on it failed part way
    const std::uint16_t qid = static_cast<std::uint16_t>(io_count_ + 1);
    q.owner_ = this;
    q.qid_ = qid;
    q.irq_ = interrupts;
    q.vector_ = vector;
    q.entries_ = entries;
    q.tags_ = entries - 1;
    q.timeout_ms_ = opt_.io_timeout_ms;
    q.policy_ = policy;
    q.max_unrung_ = max_unrung;
    q.write_zeroes_ok_ = info_.write_zeroes_supported();
    q.dsm_ok_ = info_.dsm_supported();
    q.prp_ = prp_;
    q.dptr_ = dptr_;
    // Setup-time allocations: queue memory, one page per command, bookkeeping.
    auto sq = plat_->dma_alloc(std::size_t{entries} * 64);
    if (!sq) return sq.error();
    q.sq_mem_ = *sq;
    auto cq = plat_->dma_alloc(std::size_t{entries} * 16);
    if (!cq) return cq.error();
    q.cq_mem_ = *cq;
    auto pages = plat_->dma_alloc(std::size_t{q.tags_} * 4096);
    if (!pages) return pages.error();
    q.pages_ = *pages;
    q.slots_ = new (std::nothrow) typename io_queue<P>::slot_info[q.tags_];
    q.free_slots_ = new (std::nothrow) std::uint32_t[q.tags_];
    q.deferred_ = new (std::nothrow) typename io_queue<P>::deferred_completion[q.tags_];
    q.expired_ = new (std::nothrow) std::uint16_t[q.tags_];
    q.requeue_ = new (std::nothrow) std::uint32_t[q.tags_];
    if (!q.slots_ || !q.free_slots_ || !q.deferred_ || !q.expired_ || !q.requeue_)
      return {errc::no_memory, "I/O queue bookkeeping allocation failed"};
    for (std::uint32_t i = 0; i < q.tags_; ++i) {
      q.slots_[i] = {};
      q.slots_[i].page = dma_region{q.pages_.cpu_at(std::size_t{i} * 4096), q.pages_.device + std::size_t{i} * 4096, 4096};
      q.free_slots_[i] = q.tags_ - 1 - i;
    }
    q.free_top_ = q.tags_;
    q.deferred_count_ = 0;
    q.requeue_count_ = 0;
    q.needs_reset_ = false;
    DKQ_TRY(init_io_pair(q));
    DKQ_TRY(create_on_device(q));
    ios_[io_count_++] = &q;
    return ok_status;
  }

  // Delete the queue on the device (Delete SQ then CQ); in-flight commands are
  // the caller's to have drained.
  status delete_io_queue(io_queue<P>& q) noexcept {
    if (q.owner_ != this || q.qid_ == 0) return ok_status;
    status s1 = admin_sync(nvme::cmd::delete_io_sq(q.qid_)).error();
    status s2 = admin_sync(nvme::cmd::delete_io_cq(q.qid_)).error();
    for (std::uint32_t i = 0; i < io_count_; ++i)
      if (ios_[i] == &q) ios_[i] = nullptr;
    q.qid_ = 0;
    if (!s1.ok() && s1.code() != errc::invalid_argument) return s1;
    return s2.ok() || s2.code() == errc::invalid_argument ? ok_status : s2;
  }

  // ---- admin commands ------------------------------------------------------------
  struct admin_result {
    std::uint32_t dw0 = 0;
  };
  // One admin command, waited for with a deadline. AER completions met on
  // the way are recorded and re-armed.
  result<admin_result> admin_sync(const nvme::sqe& cmd, std::uint32_t timeout_ms = 0) noexcept {
    spin_guard g(admin_lock_);
    return admin_sync_locked(cmd, timeout_ms);
  }

  status abort_command(std::uint16_t sqid, std::uint16_t cid) noexcept {
    auto r = admin_sync(nvme::cmd::abort(sqid, cid));
    if (!r) return r.error();
    return ok_status;
  }

  // ---- admin commands as awaitables (dkq/coro) ----------------------------------
  // `co_await ctrl.co_admin(cmd)` posts the command on the admin queue and
  // resumes with its admin_completion from poll_admin() (which the driver's
  // loop calls, like an I/O queue's poll). A deadline passing completes it
  // with errc::timeout (its identifier is retired: a late answer is stale);
  // a controller reset completes it with an error. Exactly once either way.
  class admin_op {
   public:
    admin_op(controller& c, const nvme::sqe& cmd, std::uint32_t timeout_ms) noexcept
        : c_(&c), cmd_(cmd), timeout_ms_(timeout_ms) {}
    admin_op(const admin_op&) = delete;
    admin_op& operator=(const admin_op&) = delete;
    coro::completion<admin_completion>& sink() noexcept { return sink_; }
    bool start() noexcept {
      sink_.posted();
      const status s = c_->post_admin(cmd_, &sink_, timeout_ms_);
      if (DKQ_UNLIKELY(!s.ok())) {
        sink_.refused(admin_completion{s, 0});
        return false;
      }
      return true;
    }
    auto operator co_await() noexcept { return coro::op_awaiter<admin_op>{*this}; }

   private:
    controller* c_;
    nvme::sqe cmd_;
    std::uint32_t timeout_ms_;
    coro::completion<admin_completion> sink_;
  };
  admin_op co_admin(const nvme::sqe& cmd, std::uint32_t timeout_ms = 0) noexcept {
    return admin_op(*this, cmd, timeout_ms);
  }

  // Reap the admin queue for awaiting coroutines (and AERs), expire their
  // deadlines, then resume them - after the admin lock is released, so a
  // resumed coroutine may use the admin queue again. Returns how many resumed.
  std::uint32_t poll_admin() noexcept {
    if (plat_ == nullptr) return 0;  // never initialised: nothing was posted
    std::uint32_t n;
    {
      spin_guard g(admin_lock_);
      reap_admin_locked();
      const std::uint64_t now = plat_->now_ns();
      (void)admin_.timeout_scan(now, [&](std::uint16_t, admin_ctx& c) {
        if (c.kind == 3 && c.waiter != nullptr)
          admin_done_push(c.waiter, {status{errc::timeout, "admin command timed out"}, 0});
      });
      n = admin_done_count_;
      for (std::uint32_t i = 0; i < n; ++i) admin_ready_[i] = admin_done_[i];
      admin_done_count_ = 0;
    }
    for (std::uint32_t i = 0; i < n; ++i) admin_ready_[i].w->complete(admin_ready_[i].r);
    return n;
  }

  // Read data from Identify into `page` (4 KiB of the setup buffer).
  const std::uint8_t* identify_page() const noexcept { return scratch_.template cpu_at<std::uint8_t>(); }

  // ---- recovery -------------------------------------------------------------------
  // Controller reset, in Linux's order (nvme_dev_disable, then
  // nvme_reap_pending_cqes, then cancel): disable the controller so it posts
  // nothing more; deliver every completion it had already posted (those
  // commands finished and must not run twice); then for each command still
  // outstanding: fail it with errc::timeout if it had timed out, fail it if it
  // was already re-posted once, else keep it. Re-enable, re-create every I/O
  // queue at the same memory and re-post the kept commands.
  //
  // If any step fails, the controller is disabled again, every affected
  // command completes exactly once with an error naming the failed step, and
  // the controller is marked failed: submissions are refused with that error
  // until a later reset_and_recover() succeeds. Completions produced here
  // come out of each queue's poll(). Every other submitting thread must be
  // stopped while this runs.
  status reset_and_recover() noexcept {
    spin_guard g(admin_lock_);
    ++resets_;
    const status disabled = disable_controller();
    for (std::uint32_t i = 0; i < io_count_; ++i) {
      io_queue<P>* q = ios_[i];
      if (q == nullptr) continue;
      q->requeue_count_ = 0;
      // After a failed disable (removed, hung) the CQ may still be written;
      // what is there now is still the device's answer for those commands.
      (void)q->reap_before_reset();
      q->qp_.reset([&](std::uint16_t, typename io_queue<P>::cmd_ctx& c, bool timed_out) {
        auto& si = q->slots_[c.slot];
        if (timed_out) {
          q->defer(c.slot, status{errc::timeout, "command timed out; the controller was reset"});
        } else if (si.retries >= 1) {
          q->defer(c.slot, status{errc::io_error, "command failed: interrupted by a second controller reset"});
        } else {
          q->requeue_[q->requeue_count_++] = c.slot;
        }
      });
    }
    (void)admin_.reset(admin_reset_waiters({errc::io_error, "admin command ended by a controller reset"}));
    aers_out_ = 0;
    dbbuf_on_ = false;
    status st = disabled.ok() ? recover_locked() : disabled;
    if (!st.ok()) {
      fail_after_reset(st);
      return failed_status();
    }
    failed_ = false;
    return ok_status;
  }

  // True after a reset that did not bring the controller back; submissions
  // are refused with failed_status() until a reset succeeds.
  bool failed() const noexcept { return failed_; }
  status failed_status() const noexcept {
    return {errc::device_error, "controller failed: its last reset did not succeed (see the reset's error)",
            static_cast<std::uint64_t>(failed_cause_)};
  }
  errc failed_cause() const noexcept { return failed_cause_; }

  // ---- shutdown ---------------------------------------------------------------------
  // Normal shutdown (CC.SHN = 01b), waiting for CSTS.SHST = complete up to
  // `timeout_ms`; then CC.EN = 0. Safe to call twice, and on a removed device.
  status shutdown(std::uint32_t timeout_ms = 10000) noexcept {
    if (!regs_.valid() || shut_down_) return ok_status;
    shut_down_ = true;
    ready_ = false;
    const std::uint32_t csts0 = regs_.read32(nvme::reg::csts);
    if (looks_removed(csts0)) return {errc::removed, "device is gone; nothing to shut down"};
    std::uint32_t cc = regs_.read32(nvme::reg::cc);
    if ((cc & nvme::cc::en) == 0) return ok_status;
    cc = (cc & ~nvme::cc::shn_mask) | nvme::cc::shn_normal;
    regs_.write32(nvme::reg::cc, cc);
    ++shn_writes_;
    const std::uint64_t deadline = plat_->now_ns() + std::uint64_t{timeout_ms} * 1000000u;
    status st{errc::timeout, "controller did not report shutdown complete (CSTS.SHST) in time"};
    for (;;) {
      const std::uint32_t csts = regs_.read32(nvme::reg::csts);
      if (looks_removed(csts)) {
        st = {errc::removed, "device vanished during shutdown"};
        break;
      }
      if ((csts & nvme::csts::shst_mask) == nvme::csts::shst_complete) {
        st = ok_status;
        break;
      }
      if (plat_->now_ns() > deadline) break;
      plat_->delay_us(1000);
    }
    regs_.write32(nvme::reg::cc, cc & ~(nvme::cc::en | nvme::cc::shn_mask));
    return st;
  }
  bool is_shut_down() const noexcept { return shut_down_; }
  // CC.SHN writes made (0 or 1 per controller lifetime; for tests and traces).
  std::uint32_t shutdown_notifications() const noexcept { return shn_writes_; }

 private:
  friend class io_queue<P>;

  struct admin_ctx {
    std::uint32_t kind;  // 1: synchronous command, 2: AER, 3: awaited by a coroutine
    std::uint32_t seq;
    coro::completion<admin_completion>* waiter = nullptr;
  };
  // Awaited admin commands that ended while the admin lock was held; resumed
  // by poll_admin() once it is released. At most one per admin tag.
  struct admin_done_entry {
    coro::completion<admin_completion>* w;
    admin_completion r;
  };
  void admin_done_push(coro::completion<admin_completion>* w, admin_completion r) noexcept {
    // Bounded by the admin tags (one entry per command), sized at setup.
    if (DKQ_LIKELY(admin_done_count_ < opt_.admin_entries)) admin_done_[admin_done_count_++] = {w, r};
  }
  void reap_admin_locked() noexcept {
    admin_.process_completions(
        64,
        [&](admin_ctx& c, const nvme_cqe& e) {
          if (c.kind == 2) on_aer(e);
          else if (c.kind == 3 && c.waiter != nullptr)
            admin_done_push(c.waiter, {nvme::to_status(nvme::status_field::decode(e.status)), e.dw0});
        },
        [&](status, const nvme_cqe&) { ++admin_protocol_errors_; });
  }
  status post_admin(const nvme::sqe& cmd, coro::completion<admin_completion>* w, std::uint32_t timeout_ms) noexcept {
    if (plat_ == nullptr) return {errc::not_initialized, "controller is not initialised"};
    spin_guard g(admin_lock_);
    if (failed_) return failed_status();
    const std::uint32_t ms = timeout_ms ? timeout_ms : opt_.admin_timeout_ms;
    const std::uint64_t deadline = plat_->now_ns() + std::uint64_t{ms} * 1000000u;
    auto cid = admin_.submit(&cmd, admin_ctx{3, 0, w}, deadline);
    if (!cid) return cid.error();
    return ok_status;
  }
  // The admin queue is being reset: awaited commands end with `why`.
  auto admin_reset_waiters(status why) noexcept {
    return [this, why](std::uint16_t, admin_ctx& c, bool) {
      if (c.kind == 3 && c.waiter != nullptr) admin_done_push(c.waiter, {why, 0});
    };
  }
  using admin_qp = queue_pair<nvme_queue_layout, nvme_doorbell, nvme_doorbell, admin_ctx>;

  // Spinlock for the shared admin queue (an atomic flag: the core has no mutex).
  struct spin_guard {
    explicit spin_guard(std::atomic_flag& f) noexcept : f_(f) {
      while (f_.test_and_set(std::memory_order_acquire)) cpu_relax();
    }
    ~spin_guard() { f_.clear(std::memory_order_release); }
    std::atomic_flag& f_;
  };

  std::uint64_t read_cap() const noexcept {
    // Two 32-bit reads, low first: NVMe 1.x lets a controller refuse 64-bit
    // accesses, and CAP is constant, so no tearing concern.
    const std::uint64_t lo = regs_.read32(nvme::reg::cap);
    const std::uint64_t hi = regs_.read32(nvme::reg::cap + 4);
    return lo | (hi << 32);
  }

  std::uint32_t aers_wanted() const noexcept {
    const std::uint32_t limit = info_.aerl + 1u;
    return opt_.aers < limit ? opt_.aers : limit;
  }

  status alloc_setup_memory() noexcept {
    delete[] admin_done_;
    delete[] admin_ready_;
    admin_done_count_ = 0;
    admin_done_ = new (std::nothrow) admin_done_entry[opt_.admin_entries];
    admin_ready_ = new (std::nothrow) admin_done_entry[opt_.admin_entries];
    if (admin_done_ == nullptr || admin_ready_ == nullptr) return {errc::no_memory, "admin bookkeeping allocation failed"};
    auto a = plat_->dma_alloc(std::size_t{opt_.admin_entries} * 64);
    if (!a) return a.error();
    asq_ = *a;
    auto c = plat_->dma_alloc(std::size_t{opt_.admin_entries} * 16);
    if (!c) return c.error();
    acq_ = *c;
    auto s = plat_->dma_alloc(4096);
    if (!s) return s.error();
    scratch_ = *s;
    auto d = plat_->dma_alloc(2 * 4096);
    if (!d) return d.error();
    dbbuf_ = *d;
    return ok_status;
  }

  // Wait for CSTS.RDY == want within CAP.TO (500 ms units; a controller that
  // says 0 still gets one unit, the wait is always bounded).
  status wait_ready(bool want) noexcept {
    const std::uint64_t units = cap_.to_500ms == 0 ? 1 : cap_.to_500ms;
    const std::uint64_t deadline = plat_->now_ns() + units * 500ull * 1000000ull;
    for (;;) {
      const std::uint32_t csts = regs_.read32(nvme::reg::csts);
      if (looks_removed(csts)) return {errc::removed, "CSTS reads all ones: device was removed"};
      if (want && (csts & nvme::csts::cfs))
        return {errc::device_error, "controller fatal status (CSTS.CFS) while enabling"};
      if (((csts & nvme::csts::rdy) != 0) == want) return ok_status;
      if (plat_->now_ns() > deadline)
        return {errc::timeout,
                want ? "controller did not become ready within CAP.TO" : "controller did not disable within CAP.TO",
                cap_.timeout_ms()};
      plat_->delay_us(1000);
    }
  }

  status disable_controller() noexcept {
    std::uint32_t cc = regs_.read32(nvme::reg::cc);
    if (looks_removed(cc)) return {errc::removed, "CC reads all ones: device was removed"};
    const std::uint32_t csts = regs_.read32(nvme::reg::csts);
    // EN=1 but not yet ready: clearing EN mid-transition is undefined, so let
    // the enable finish (or fail) first.
    if ((cc & nvme::cc::en) && !(csts & nvme::csts::rdy) && !(csts & nvme::csts::cfs)) (void)wait_ready(true);
    if (cc & nvme::cc::en) {
      cc &= ~nvme::cc::en;
      regs_.write32(nvme::reg::cc, cc);
    }
    return wait_ready(false);
  }

  status enable_controller() noexcept {
    DKQ_TRY(disable_controller());
    admin_mmio_base_ += admin_.sq().doorbell_ref().mmio_writes();  // the queue is re-initialised below
    shut_down_ = false;
    nvme_doorbell sq_db{*mmio_doorbell::make(regs_, nvme::sq_tail_doorbell(0, cap_.dstrd))};
    nvme_doorbell cq_db{*mmio_doorbell::make(regs_, nvme::cq_head_doorbell(0, cap_.dstrd))};
    // Admin commands are rare and waited for one by one: ring immediately.
    DKQ_TRY(admin_.init(asq_, acq_, opt_.admin_entries, sq_db, cq_db, ring_policy::immediate));
    regs_.write32(nvme::reg::aqa, nvme::make_aqa(opt_.admin_entries, opt_.admin_entries));
    regs_.write64_lo_hi(nvme::reg::asq, asq_.device.value());
    regs_.write64_lo_hi(nvme::reg::acq, acq_.device.value());
    const std::uint32_t cc = (6u << nvme::cc::iosqes_shift) | (4u << nvme::cc::iocqes_shift) |
                             (0u << nvme::cc::mps_shift) | (0u << nvme::cc::css_shift) | nvme::cc::en;
    regs_.write32(nvme::reg::cc, cc);
    return wait_ready(true);
  }

  // The part of a reset after the queues were emptied: enable, queues,
  // doorbell buffer, every I/O queue re-created and its kept commands
  // re-posted, AERs re-armed.
  status recover_locked() noexcept {
    DKQ_TRY(enable_controller());
    // Same queue count as before (the controller keeps the feature across a
    // controller reset only if saved; ask again).
    DKQ_TRY(negotiate_queues_locked());
    DKQ_TRY(setup_dbbuf_locked());
    for (std::uint32_t i = 0; i < io_count_; ++i) {
      io_queue<P>* q = ios_[i];
      if (q == nullptr) continue;
      DKQ_TRY(init_io_pair(*q, /*reinit=*/true));
      DKQ_TRY(create_on_device_locked(*q));
      q->needs_reset_ = false;
      while (q->requeue_count_ != 0) {
        const std::uint32_t slot = q->requeue_[--q->requeue_count_];
        auto& si = q->slots_[slot];
        si.retries = static_cast<std::uint8_t>(si.retries + 1);
        const std::uint64_t deadline = plat_->now_ns() + std::uint64_t{q->timeout_ms_} * 1000000u;
        auto cid = q->qp_.submit(&si.cmd, typename io_queue<P>::cmd_ctx{si.user, slot}, deadline);
        if (!cid) q->defer(slot, cid.error());
      }
      q->qp_.flush();
    }
    for (std::uint32_t i = 0; i < aers_wanted(); ++i) (void)submit_aer_locked();
    return ok_status;
  }

  // A reset failed part way: stop the controller again (it may have been
  // re-enabled and given re-posted commands), then end every command of
  // every queue - kept for re-posting, or already re-posted - exactly once
  // with the reset's error. The buffers are the caller's again afterwards.
  void fail_after_reset(status why) noexcept {
    failed_ = true;
    failed_cause_ = why.code();
    (void)disable_controller();
    const status err{why.code() == errc::removed ? errc::removed : errc::io_error,
                     "command failed: the controller reset did not succeed", static_cast<std::uint64_t>(why.code())};
    for (std::uint32_t i = 0; i < io_count_; ++i) {
      io_queue<P>* q = ios_[i];
      if (q == nullptr) continue;
      while (q->requeue_count_ != 0) q->defer(q->requeue_[--q->requeue_count_], err);
      (void)q->reap_before_reset();
      q->qp_.reset([&](std::uint16_t, typename io_queue<P>::cmd_ctx& c, bool timed_out) {
        q->defer(c.slot, timed_out ? status{errc::timeout, "command timed out; the controller reset failed"} : err);
      });
      q->needs_reset_ = true;  // nothing is posted until a reset succeeds
    }
    (void)admin_.reset(admin_reset_waiters(err));
    aers_out_ = 0;
    dbbuf_on_ = false;
    ready_ = false;
  }

  result<admin_result> admin_sync_locked(const nvme::sqe& cmd, std::uint32_t timeout_ms = 0) noexcept {
    const std::uint32_t ms = timeout_ms ? timeout_ms : opt_.admin_timeout_ms;
    const std::uint64_t deadline = plat_->now_ns() + std::uint64_t{ms} * 1000000u;
    const std::uint32_t seq = ++admin_seq_;
    auto cid = admin_.submit(&cmd, admin_ctx{1, seq}, deadline);
    if (!cid) return cid.error();
    bool done = false;
    admin_result out;
    status st = ok_status;
    std::uint32_t spins = 0;
    while (!done) {
      admin_.process_completions(
          64,
          [&](admin_ctx& c, const nvme_cqe& e) {
            if (c.kind == 2) {
              on_aer(e);
              return;
            }
            if (c.kind == 3) {  // a coroutine's command met here: resumed by poll_admin()
              if (c.waiter != nullptr)
                admin_done_push(c.waiter, {nvme::to_status(nvme::status_field::decode(e.status)), e.dw0});
              return;
            }
            if (c.seq == seq) {
              done = true;
              out.dw0 = e.dw0;
              st = nvme::to_status(nvme::status_field::decode(e.status));
            }
          },
          [&](status, const nvme_cqe&) { ++admin_protocol_errors_; });
      if (done) break;
      if ((++spins & 63) == 0) {
        DKQ_TRY(health());
        if (plat_->now_ns() > deadline) {
          // Leave the tag to the reset path: mark it expired so a late
          // completion is recognised as stale, never delivered.
          (void)admin_.timeout_scan(deadline, [](std::uint16_t, admin_ctx&) {});
          return status{errc::timeout, "admin command timed out", cmd.opcode};
        }
        plat_->delay_us(10);
      }
    }
    if (!st.ok()) return st;
    return out;
  }

  void on_aer(const nvme_cqe& e) noexcept {
    if (aers_out_ > 0) --aers_out_;
    const nvme::status_field sf = nvme::status_field::decode(e.status);
    // Aborted on SQ deletion / reset: not an event; do not re-arm.
    if (!sf.success()) return;
    ++aer_count_;
    last_aer_ = async_event{static_cast<std::uint8_t>(e.dw0 & 0x7), static_cast<std::uint8_t>((e.dw0 >> 8) & 0xff),
                            static_cast<std::uint8_t>((e.dw0 >> 16) & 0xff)};
    (void)submit_aer_locked();
  }

  status submit_aer() noexcept {
    spin_guard g(admin_lock_);
    return submit_aer_locked();
  }
  status submit_aer_locked() noexcept {
    const nvme::sqe s = nvme::cmd::async_event_request();
    auto cid = admin_.submit(&s, admin_ctx{2, 0}, no_deadline);
    if (!cid) return cid.error();
    ++aers_out_;
    return ok_status;
  }

  status identify_all() noexcept {
    spin_guard g(admin_lock_);
    auto r = admin_sync_locked(nvme::cmd::identify(nvme::cns::ctrl, 0, scratch_.device));
    if (!r) return r.error();
    info_ = controller_info::parse(scratch_.cpu_at<std::uint8_t>());
    if ((info_.sqes & 0xf) > 6 || (info_.cqes & 0xf) > 4)
      return {errc::not_supported, "controller requires SQ/CQ entries larger than 64/16 bytes"};
    auto cfg = nvme::prp_config::from_registers(0, cap_.mpsmin, info_.mdts);
    if (!cfg) return cfg.error();
    prp_ = *cfg;
    if (prp_.max_transfer == 0 || prp_.max_transfer > opt_.max_transfer_cap) prp_.max_transfer = opt_.max_transfer_cap;
    max_transfer_ = prp_.max_transfer;
    dptr_.caps = opt_.use_sgl ? nvme::sgl_caps::from_sgls(info_.sgls) : nvme::sgl_caps{};
    dptr_.sgl_threshold = opt_.sgl_threshold;

    // Active namespace list (CNS 02h): NSIDs above 0, ascending, 0-terminated.
    ns_count_ = 0;
    std::uint32_t ids[max_namespaces];
    std::uint32_t nids = 0;
    std::memset(scratch_.cpu, 0, 4096);
    auto l = admin_sync_locked(nvme::cmd::identify(nvme::cns::active_ns_list, 0, scratch_.device));
    if (l) {
      const auto* list = scratch_.cpu_at<std::uint32_t>();
      for (std::uint32_t i = 0; i < 1024 && list[i] != 0 && nids < max_namespaces; ++i) {
        bool seen = false;  // a lying list may repeat an NSID
        for (std::uint32_t k = 0; k < nids; ++k) seen |= ids[k] == list[i];
        if (!seen) ids[nids++] = list[i];
      }
    } else {
      // NVMe 1.0 controllers lack CNS 02h: probe 1..NN instead.
      for (std::uint32_t i = 1; i <= info_.nn && nids < max_namespaces; ++i) ids[nids++] = i;
    }
    for (std::uint32_t i = 0; i < nids; ++i) {
      if (ids[i] == 0xffffffffu || (info_.nn != 0 && ids[i] > info_.nn)) continue;  // a lying list
      std::memset(scratch_.cpu, 0, 4096);
      auto n = admin_sync_locked(nvme::cmd::identify(nvme::cns::ns, ids[i], scratch_.device));
      if (!n) continue;
      ns_[ns_count_++] = namespace_info::parse(ids[i], scratch_.cpu_at<std::uint8_t>());
    }
    return ok_status;
  }

  status negotiate_queues() noexcept {
    spin_guard g(admin_lock_);
    return negotiate_queues_locked();
  }
  // I/O queues whose doorbell pair lies inside the BAR at this CAP.DSTRD.
  std::uint32_t doorbell_queue_limit() const noexcept {
    std::uint32_t n = 0;
    while (n < max_queues && regs_.check(nvme::cq_head_doorbell(static_cast<std::uint16_t>(n + 1), cap_.dstrd), 4).ok())
      ++n;
    return n;
  }
  // Doorbell Buffer Config: queue qid's shadow and EventIdx words sit at the
  // doorbell register's offset from 1000h (NVMe base spec, Doorbell Buffer
  // Config command), so each 4 KiB page holds the words of every queue only
  // if (2 x highest qid + 2) x (4 << DSTRD) bytes fit in it.
  bool dbbuf_fits(std::uint32_t highest_qid) const noexcept {
    if (cap_.dstrd > 10) return false;  // a stride of 4 KiB or more: queue 1 is already outside
    const std::uint64_t bytes = (2ull * highest_qid + 2ull) * (4ull << cap_.dstrd);
    return bytes <= 4096;
  }
  status negotiate_queues_locked() noexcept {
    std::uint32_t want = opt_.max_io_queues < max_queues ? opt_.max_io_queues : max_queues;
    const std::uint32_t fit = doorbell_queue_limit();
    if (fit < want) want = fit;
    auto sq = nvme::cmd::set_number_of_queues(want, want);
    if (!sq) return sq.error();
    auto r = admin_sync_locked(*sq);
    if (!r) return r.error();
    const std::uint32_t nsq = (r->dw0 & 0xffff) + 1u, ncq = (r->dw0 >> 16) + 1u;
    std::uint32_t got = nsq < ncq ? nsq : ncq;
    if (got > want) got = want;  // the controller may grant more than asked
    if (queues_granted_ != 0 && got < io_count_)
      return {errc::device_error, "after reset the controller grants fewer I/O queues than were in use", got};
    queues_granted_ = got;
    return ok_status;
  }

  status setup_dbbuf() noexcept {
    spin_guard g(admin_lock_);
    return setup_dbbuf_locked();
  }
  status setup_dbbuf_locked() noexcept {
    dbbuf_on_ = false;
    if (opt_.shadow == shadow_mode::off) {
      shadow_reason_ = "off (switched off by the user)";
      return ok_status;
    }
    if (!info_.dbbuf_supported()) {
      shadow_reason_ = "off (controller lacks Doorbell Buffer Config, OACS bit 8)";
      return ok_status;
    }
    if (opt_.shadow == shadow_mode::automatic && is_qemu()) {
      shadow_reason_ = "off (QEMU 1b36:0010: Linux stalled with them on QEMU 7.2, see docs/nvme.md; --shadow on forces)";
      return ok_status;
    }
    if (!dbbuf_fits(queues_granted_)) {
      shadow_reason_ = "off (CAP.DSTRD: the shadow and EventIdx words of the granted queues do not fit one 4 KiB page)";
      return ok_status;
    }
    // The pages must be zero: stale values from a previous life would be read
    // as doorbells (the buffers' lifetime ends at a controller reset, Base 5.8).
    std::memset(dbbuf_.cpu, 0, dbbuf_.size);
    auto s = nvme::cmd::doorbell_buffer_config(dbbuf_.device, dbbuf_.device + 4096);
    if (!s) return s.error();
    auto r = admin_sync_locked(*s);
    if (!r) {
      // Not fatal: run with register doorbells (Linux does the same).
      shadow_reason_ = "off (Doorbell Buffer Config failed)";
      return ok_status;
    }
    dbbuf_on_ = true;
    shadow_reason_ = is_qemu() ? "on (SQ tail via EventIdx; CQ head also written to the register on QEMU)"
                               : "on (Doorbell Buffer Config, EventIdx)";
    return ok_status;
  }

  status init_io_pair(io_queue<P>& q, bool reinit = false) noexcept {
    (void)reinit;
    auto sqr = mmio_doorbell::make(regs_, nvme::sq_tail_doorbell(q.qid_, cap_.dstrd));
    if (!sqr) return sqr.error();
    auto cqr = mmio_doorbell::make(regs_, nvme::cq_head_doorbell(q.qid_, cap_.dstrd));
    if (!cqr) return cqr.error();
    nvme_doorbell sq_db{*sqr}, cq_db{*cqr};
    if (dbbuf_on_ && dbbuf_fits(q.qid_)) {  // fits: checked for every granted queue at setup
      const std::size_t stride_words = std::size_t{1} << cap_.dstrd;  // (4 << DSTRD) bytes
      auto* shadow = dbbuf_.cpu_at<std::uint32_t>();
      auto* ei = dbbuf_.cpu_at<std::uint32_t>(4096);
      const std::size_t sqw = 2u * q.qid_ * stride_words, cqw = (2u * q.qid_ + 1u) * stride_words;
      shadow[sqw] = 0;
      shadow[cqw] = 0;
      sq_db.set_shadow(&shadow[sqw], &ei[sqw], db_mode::shadow);
      cq_db.set_shadow(&shadow[cqw], &ei[cqw],
                       is_qemu() && opt_.qemu_cq_head_register ? db_mode::shadow_always : db_mode::shadow);
    }
    if (reinit) {
      q.sq_mmio_base_ += q.sq_db_mmio();
      q.cq_mmio_base_ += q.cq_db_mmio();
      // Keep the command slots; only the rings restart (reset() cleared them).
      return q.qp_.sq().init(q.sq_mem_, q.entries_, sq_db, q.policy_, q.max_unrung_).ok() &&
                     q.qp_.cq().init(q.cq_mem_, q.entries_, cq_db).ok()
                 ? ok_status
                 : status{errc::invalid_argument, "re-initialising an I/O queue failed"};
    }
    return q.qp_.init(q.sq_mem_, q.cq_mem_, q.entries_, sq_db, cq_db, q.policy_, q.tags_, q.max_unrung_);
  }

  status create_on_device(io_queue<P>& q) noexcept {
    spin_guard g(admin_lock_);
    return create_on_device_locked(q);
  }
  status create_on_device_locked(io_queue<P>& q) noexcept {
    auto cq = nvme::cmd::create_io_cq(q.qid_, q.entries_, q.cq_mem_.device, q.irq_, q.vector_);
    if (!cq) return cq.error();
    auto r1 = admin_sync_locked(*cq);
    if (!r1) return r1.error();
    auto sq = nvme::cmd::create_io_sq(q.qid_, q.entries_, q.sq_mem_.device, q.qid_);
    if (!sq) return sq.error();
    auto r2 = admin_sync_locked(*sq);
    if (!r2) return r2.error();
    return ok_status;
  }

  void release() noexcept {
    delete[] admin_done_;
    delete[] admin_ready_;
    admin_done_ = admin_ready_ = nullptr;
    if (plat_ == nullptr) return;
    for (dma_region* r : {&asq_, &acq_, &scratch_, &dbbuf_})
      if (r->valid()) {
        (void)plat_->dma_free(*r);
        *r = {};
      }
  }

  P* plat_ = nullptr;
  options opt_{};
  mmio_window regs_{};
  nvme::cap_fields cap_{};
  std::uint32_t vs_ = 0;
  std::uint16_t pci_vendor_ = 0, pci_device_ = 0;
  controller_info info_{};
  namespace_info ns_[max_namespaces]{};
  std::uint32_t ns_count_ = 0;
  std::uint32_t queues_granted_ = 0;
  nvme::prp_config prp_{};
  nvme::dptr_policy dptr_{};
  std::uint64_t max_transfer_ = 0;
  admin_qp admin_;
  std::atomic_flag admin_lock_{};  // C++20: value-initialised clear
  std::uint32_t admin_seq_ = 0;
  admin_done_entry* admin_done_ = nullptr;   // opt_.admin_entries each, allocated at setup
  admin_done_entry* admin_ready_ = nullptr;
  std::uint32_t admin_done_count_ = 0;
  std::uint64_t admin_mmio_base_ = 0;
  std::uint64_t admin_protocol_errors_ = 0;
  std::uint32_t aers_out_ = 0;
  std::uint64_t aer_count_ = 0;
  async_event last_aer_{};
  dma_region asq_{}, acq_{}, scratch_{}, dbbuf_{};
  bool dbbuf_on_ = false;
  const char* shadow_reason_ = "off (not configured)";
  io_queue<P>* ios_[max_queues]{};
  std::uint32_t io_count_ = 0;
  std::uint32_t resets_ = 0;
  std::uint32_t shn_writes_ = 0;
  bool ready_ = false;
  bool shut_down_ = false;
  bool failed_ = false;
  errc failed_cause_ = errc::ok;
};

template <pci_platform P>
inline bool io_op<P>::start() noexcept {
  if (DKQ_UNLIKELY(q_ == nullptr)) {
    io_completion e;
    e.st = status{errc::not_initialized, "io_op without a queue"};
    c_.refused(e);
    return false;
  }
  c_.posted();  // before posting: the queue may deliver a recovery completion later, never now
  const status s = q_->post_op(*this);
  if (DKQ_UNLIKELY(!s.ok())) {
    io_completion e;
    e.st = s;
    c_.refused(e);
    return false;
  }
  return true;
}

// ---- io_queue members that need the controller ---------------------------------

template <pci_platform P>
template <class H>
std::uint32_t io_queue<P>::check_timeouts(H&& handler) noexcept {
  if (owner_ == nullptr) return 0;
  std::uint32_t n = 0;
  const std::uint64_t now = owner_->platform_now();
  qp_.timeout_scan(now, [&](std::uint16_t cid, cmd_ctx&) { expired_[n++] = cid; });
  if (n == 0) return 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    // "Did we miss an interrupt?" first (Linux nvme_timeout polls before
    // aborting): a completion that arrives now is seen as late and counted.
    poll(tags_, handler);
    if (!qp_.tags().completed_late(expired_[i])) {
      status a = owner_->abort_command(qid_, expired_[i]);
      (void)a;
      poll(tags_, handler);
    }
    if (qp_.tags().completed_late(expired_[i])) {
      auto ctx = qp_.tags().release_timed_out(expired_[i]);
      if (ctx) {
        io_completion done;
        done.user = ctx->user;
        done.opcode = slots_[ctx->slot].cmd.opcode;
        done.st = status{errc::timeout, "command timed out and was aborted"};
        coro::completion<io_completion>* w = slots_[ctx->slot].waiter;
        free_slot(ctx->slot);
        deliver(w, done, handler);
      }
    } else {
      // The controller neither completed nor aborted it: only a reset frees
      // the slot safely (the device may still DMA into the buffer).
      needs_reset_ = true;
    }
  }
  return n;
}

template <pci_platform P>
void io_queue<P>::release() noexcept {
  delete[] slots_;
  delete[] free_slots_;
  delete[] deferred_;
  delete[] expired_;
  delete[] requeue_;
  slots_ = nullptr;
  free_slots_ = nullptr;
  deferred_ = nullptr;
  expired_ = nullptr;
  requeue_ = nullptr;
  if (owner_ != nullptr) {
    for (dma_region* r : {&sq_mem_, &cq_mem_, &pages_})
      if (r->valid()) {
        (void)owner_->plat_->dma_free(*r);
        *r = {};
      }
  }
}

}  // namespace dkq::nvme_driver
