// examples/scsi/driver/megaraid.hpp - portable core of the MegaRAID SAS (MFI)
// example driver: LSI SAS1078 / SAS2108 (QEMU `megasas` / `megasas-gen2`) and
// the MFI layer every later MegaRAID firmware keeps for INIT and DCMDs.
//
// Built only from dkq pieces: the reply queue is dkq's producer-index reply
// queue (index_reply_queue, one consumer-index write per batch), frames come
// from a dkq DMA pool, contexts are tag-table identifiers with generations,
// SGLs come from the MFI SGL builder, 32-bit addressing uses dkq bounce
// buffers, interrupts go through the dispatch layer. Rules of the core apply:
// no exceptions, no RTTI, no threads, no allocation after start(); errors are
// values. One thread drives a controller (submit, poll and wait); the platform
// is a template parameter (platform.hpp), so the DriverKit dext reuses this
// file unchanged.
//
// Facts about the interface come from QEMU hw/scsi/megasas.c and Linux
// drivers/scsi/megaraid/megaraid_sas_base.c (read for facts, not copied):
//  - frames are posted by writing address | extra-frames << 1 | 1 to the
//    inbound queue port; QEMU maps 2048 bytes from every posted frame in one
//    piece, and behind a (virtual) IOMMU one mapping never crosses a 4 KiB
//    IOVA page, so each frame gets a 2 KiB slot aligned to 2 KiB (seen in the
//    VM: frames at page offsets above 2 KiB failed with megasas_qf_map_failed
//    and came back BUSY);
//  - QEMU (5.2 and later) fails a SCSI frame with zero SGEs
//    (megasas_iovec_sgl_overflow, TARGET FAILURE sense), and one whose SGL is
//    longer than data_len (megasas_iovec_underflow), so commands without data
//    (TEST UNIT READY, SYNCHRONIZE CACHE) carry one 512-byte SGE over a dummy
//    buffer with data_len 512; the target moves no data for them;
//  - the reply queue holds one context word per completed frame; the firmware
//    wraps its producer at rq_entries (QEMU: at max_cmds, and it refuses
//    rq_entries > max_cmds), so we pass rq_entries = max_cmds and never have
//    more than max_cmds - 1 commands outstanding (a full queue would look empty);
//  - QEMU only advances the producer index while interrupts are unmasked in
//    OMSK, and writing OMSK = all-ones soft-resets it, so OMSK stays unmasked
//    even when we poll; masking is done once, at stop();
//  - a DCMD takes exactly one SGE; a SCSI frame with a data length needs >= 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/coro/completion.hpp"
#include <new>
#include <span>

#include "dkq/base/barrier.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dispatch/dispatcher.hpp"
#include "dkq/dma/bounce.hpp"
#include "dkq/dma/pool.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/queue/completion_queue.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/tag_table.hpp"
#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/command.hpp"
#include "dkq/scsi/data.hpp"
#include "dkq/scsi/mfi.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "dkq/scsi/sense.hpp"
#include "platform.hpp"

namespace dkq::examples::megaraid {

namespace mfi = dkq::scsi::mfi;

// ---- controller info offsets (struct mfi_ctrl_info, 2 KiB, little-endian) -------
// pci ids 0..32, host 32..104, device 104..176, image components to 1340,
// then the limits. Checked against QEMU in the VM test (product name, max_cmds).
namespace ctrl_info_off {
inline constexpr std::size_t subvendor = 4;
inline constexpr std::size_t subdevice = 6;
inline constexpr std::size_t max_lds = 1343;
inline constexpr std::size_t product_name = 1344;  // char[80]
inline constexpr std::size_t serial = 1424;        // char[32]
inline constexpr std::size_t max_cmds = 1464;      // u16
inline constexpr std::size_t max_sg_elements = 1466;  // u16
inline constexpr std::size_t max_request_size = 1468; // u32, sectors
inline constexpr std::size_t lds_present = 1472;   // u16
inline constexpr std::size_t pd_present = 1478;    // u16
}  // namespace ctrl_info_off

// PD list (MR_DCMD_PD_GET_LIST): u32 size, u32 count, then 24-byte addresses.
inline constexpr std::size_t pd_list_header = 8;
inline constexpr std::size_t pd_entry_size = 24;

inline constexpr std::uint16_t pci_vendor_lsi = 0x1000;
inline constexpr std::uint16_t pci_device_sas1078 = 0x0060;
inline constexpr std::uint16_t pci_device_sas2108 = 0x0079;

struct options {
  // Every device address the controller sees stays below 4 GiB: SGL32
  // elements, control structures below 4 GiB, data buffers above it bounced.
  bool force_32bit = false;
  bool use_interrupts = true;              // MSI-X, else MSI; else polled
  completion_mode mode = completion_mode::hybrid;
  std::uint32_t queue_depth = 0;           // 0: as deep as the firmware allows
  std::uint32_t max_transfer = 1u << 20;   // bytes per command (clamped by firmware)
  std::uint64_t command_timeout_ns = 30'000'000'000ull;
  std::uint64_t abort_grace_ns = 2'000'000'000ull;  // after ABORT, before reset
  std::uint64_t ready_timeout_ns = 10'000'000'000ull;  // per firmware state
  std::uint32_t bounce_chunk = 64u << 10;
  std::uint32_t bounce_chunks = 256;       // forced 32-bit mode only
  bool reissue_after_reset = true;         // in-flight I/O re-posted after a reset
  std::uint32_t max_reissues = 1;          // per command; then a reset fails it (no livelock)
  bool nodata_sge = true;                  // no-data CDBs carry a dummy SGE (QEMU >= 5.2)
  int wait_slice_ms = 100;                 // one irq_wait; timeouts checked between
};

struct controller_info {
  std::uint16_t vendor = 0, device = 0, subvendor = 0, subdevice = 0;
  int register_bar = -1;
  const char* model = "";
  char product[81] = {};
  char serial[33] = {};
  std::uint32_t fw_status = 0;       // status word read at start
  std::uint32_t fw_max_cmds = 0;     // from the status word
  std::uint32_t fw_max_sge = 0;
  std::uint32_t info_max_cmds = 0;   // from CTRL_GET_INFO
  std::uint32_t info_max_sge = 0;
  std::uint32_t max_request_sectors = 0;
  std::uint32_t lds_present = 0, pd_present = 0;
  bool msix_supported = false;
  std::uint32_t vectors = 0;         // 0 = polled
  std::uint32_t queue_depth = 0;     // I/O commands in flight at most
  std::uint32_t reply_entries = 0;
  std::uint32_t max_sge = 0;         // SGEs per command we use
  std::uint32_t max_transfer = 0;    // bytes per command we allow
  scsi::mfi_sgl_format sgl = scsi::mfi_sgl_format::sgl64;
};

struct logical_drive {
  std::uint8_t target = 0;
  std::uint8_t state = 0;
  std::uint64_t sectors = 0;
  bool sync16_rejected = false;  // SYNCHRONIZE CACHE (16) came back INVALID OPCODE
};

struct physical_drive {
  std::uint16_t device_id = 0;
  std::uint8_t slot = 0;
  std::uint8_t scsi_type = 0;
  std::uint64_t sas_address = 0;
  // Where a PD SCSI IO frame addresses it. MegaRAID firmware takes the
  // device ID in the frame's 8-bit target field (Linux megaraid_sas_base.c,
  // megasas_build_dcdb: pthru->target_id = device_id); QEMU's model encodes
  // SCSI id << 8 | LUN as the device ID (hw/scsi/megasas.c,
  // megasas_dcmd_pd_get_list) and finds the drive by target = SCSI id, LUN
  // (megasas_handle_scsi). A device ID that fits 8 bits is the target; a
  // wider one is read the QEMU way.
  std::uint8_t target = 0;
  std::uint8_t lun = 0;
  std::uint16_t fw_state = 0xffff;  // mfi::pd_state::system when exposed; 0xffff: not known
  bool system = false;              // exposed to the host as is (JBOD): the only PDs we move data on
  bool sync16_rejected = false;     // SYNCHRONIZE CACHE (16) came back INVALID OPCODE
};

struct completion {
  status st{};
  std::uint8_t mfi_status = mfi::stat::invalid_status;
  std::uint8_t scsi_status = 0;
  bool sense_valid = false;
  scsi::sense_data sense{};
  bool reissued = false;  // survived a controller reset by being posted again
  bool aborted = false;   // ended by abort() (the firmware's answer is in mfi_status)
  bool stopped = false;   // ended by stop(): the controller was told to drop it and never answered
  // The sense bytes as the device returned them (auto-sense), for callers
  // that pass them on whole (the dext's fSenseBuffer). Valid only inside the
  // done callback: they live in the controller's sense buffer.
  const std::uint8_t* sense_bytes = nullptr;
  std::uint8_t sense_bytes_len = 0;
};

using done_fn = void (*)(void* user, const completion& c) noexcept;

enum class op : std::uint8_t { ld_read, ld_write, ld_scsi, pd_scsi };

struct request {
  op kind = op::ld_scsi;
  std::uint8_t target = 0;
  std::uint8_t lun = 0;
  std::uint64_t lba = 0;        // LD read/write
  std::uint32_t blocks = 0;     // LD read/write: the frame's data_len is a block count
  scsi::cdb_bytes cdb{};        // SCSI pass-through
  std::uint8_t cdb_len = 0;
  dma_direction dir = dma_direction::from_device;
  dma_region data{};            // data.size = bytes moved; empty = no data
  std::uint32_t timeout_ms = 0; // 0: options::command_timeout_ns
  done_fn done = nullptr;
  void* user = nullptr;
};

struct driver_stats {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t frames_posted = 0;   // inbound queue port writes
  std::uint64_t reply_entries = 0;
  std::uint64_t reply_wraps = 0;     // reply queue laps
  std::uint64_t ci_writes = 0;       // consumer index publications
  std::uint64_t stale = 0;
  std::uint64_t duplicate = 0;
  std::uint64_t bad_context = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t aborts = 0;          // ABORT frames sent (timeouts and abort())
  std::uint64_t aborts_requested = 0; // abort() calls that sent one
  std::uint64_t resets = 0;
  std::uint64_t reissued = 0;
  std::uint64_t failed_by_reset = 0;
  std::uint64_t bounced = 0;
  std::uint64_t sync_cache_sent = 0;     // SYNCHRONIZE CACHE frames posted
  std::uint64_t sync_cache_10 = 0;       // of which 10-byte
  std::uint64_t sync16_fallbacks = 0;
  std::uint64_t cache_flush_dcmds = 0;
  std::uint64_t scsi_retries = 0;  // synchronous SCSI commands sent again (UNIT ATTENTION, BUSY, becoming ready)
};

// Fills a completion's status from frame status, SCSI status and sense.
// SCSI_DONE_WITH_ERROR is the target's answer: classified the way every
// transport's is (dkq/scsi/command.hpp), except that the frame itself says
// "error", so a GOOD or CONDITION MET status byte there is a failure, never
// success (a device answering GOOD would acknowledge, for SYNCHRONIZE
// CACHE, a flush that did not happen).
inline status decode_completion(std::uint8_t cmd_status, std::uint8_t scsi_status, bool sense_valid,
                                const scsi::sense_data& sense) noexcept {
  if (cmd_status == mfi::stat::ok) return ok_status;
  if (cmd_status == mfi::stat::scsi_done_with_error) {
    if (scsi_status == scsi::scsi_status::good || scsi_status == scsi::scsi_status::condition_met)
      return {errc::device_error, scsi::status_name(scsi_status), scsi_status};
    return scsi::classify_parsed(ok_status, scsi_status, sense_valid, sense).st;
  }
  return mfi::to_status(cmd_status, scsi_status);
}

template <mfi_platform P>
class controller {
  using window = typename P::window;

  static constexpr std::size_t frame_bytes = scsi::mfi_frame_size * scsi::mfi_max_frame_count;  // 512
  static constexpr std::size_t frame_slot = 2048;  // what QEMU maps per frame; never crosses a page
  static constexpr std::uint32_t nodata_bytes = 512;
  static constexpr std::size_t sense_bytes = 128;
  static constexpr std::uint8_t sense_len = 96;
  static constexpr std::uint32_t internal_slots = 2;  // INIT/DCMD + ABORT beside full I/O load
  static constexpr std::uint32_t max_bounce_per_cmd = 32;
  static constexpr std::uint32_t max_segs = 64;
  static constexpr std::size_t scratch_bytes = 8192;

 public:
  controller() noexcept = default;
  controller(const controller&) = delete;
  controller& operator=(const controller&) = delete;
  ~controller() { release(); }

  // ---- bring-up --------------------------------------------------------------------
  // Identify, map registers, firmware to READY, allocate, INIT, controller
  // info, drive lists. On failure the controller is left stopped and every
  // resource freed.
  status start(P& plat, const options& opt = {}) noexcept {
    if (plat_ != nullptr) return {errc::busy, "controller already started"};
    plat_ = &plat;
    opt_ = opt;
    status s = bring_up();
    if (!s) {
      // If the firmware was given our queues, stop it before the memory goes
      // away (abort everything, back to READY), so it never writes there.
      if (init_sent_) regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::reset_flags);
      release();
    }
    return s;
  }

  // Flush (CTRL_CACHE_FLUSH to controller and disk caches), CTRL_SHUTDOWN,
  // then mask interrupts (on QEMU that is also a soft reset, which leaves the
  // controller clean for the next driver) and free everything.
  // Requests still in flight complete here, once, with an error and
  // completion::stopped - after the firmware was told to drop them (abort
  // all, back to READY), so no done callback hands back a buffer the device
  // may still write. Done runs exactly once per request even across stop().
  status stop() noexcept {
    if (plat_ == nullptr) return ok_status;
    status first = ok_status;
    if (operational_) {
      status f = flush_cache();
      if (!f && first.ok()) first = f;
      status d = dcmd(mfi::dcmd::ctrl_shutdown, nullptr, 0, dma_direction::to_device);
      if (!d && first.ok()) first = d;
    }
    operational_ = false;
    const bool owned = tags_.in_flight() != 0;
    if (owned && regs_ok_) regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::reset_flags);
    if (regs_ok_) regs_.write32(mfi::reg::outbound_intr_mask, 0xffffffffu);
    if (owned) {
      fence_dma();  // in case the firmware did not hear the abort (start() enables it again)
      fail_all({errc::io_error, "controller stopped with the command in flight"}, true);
    }
    release();
    return first;
  }

  const controller_info& info() const noexcept { return info_; }
  const driver_stats& stats() const noexcept { return stats_; }
  const tag_counters& tag_stats() const noexcept { return tags_.counters(); }
  std::span<const logical_drive> logical_drives() const noexcept { return {lds_, ld_count_}; }
  std::span<const physical_drive> physical_drives() const noexcept { return {pds_, pd_count_}; }
  std::uint32_t in_flight() const noexcept { return io_in_flight_; }
  bool operational() const noexcept { return operational_; }
  // The LD with this target ID, or the PD a PD SCSI IO frame reaches at
  // (target, LUN 0); nullptr when the controller presented none.
  const logical_drive* logical_drive_at(std::uint8_t target) const noexcept { return find_ld(target); }
  const physical_drive* physical_drive_at(std::uint8_t target) const noexcept { return find_pd(target, 0); }

  // ---- asynchronous I/O ---------------------------------------------------------------
  // Builds and posts one frame. errc::no_space when the queue depth (or the
  // bounce pool) is used up: poll() and try again. `done` runs from poll() /
  // wait(), exactly once per accepted request.
  status submit(const request& r) noexcept { return submit_impl(r, false); }

  // Reaps up to `budget` replies (one consumer-index write), then runs the
  // timeout scan. Returns how many commands completed.
  std::uint32_t poll(std::uint32_t budget = 256) noexcept {
    const std::uint32_t n = drain(budget);
    check_timeouts();
    return n;
  }

  // Waits for at least one completion (interrupt, hybrid or polled according
  // to the options) or `timeout_ms`; returns the number reaped.
  std::uint32_t wait(int timeout_ms) noexcept {
    const std::uint64_t end = plat_->now_ns() + static_cast<std::uint64_t>(timeout_ms) * 1'000'000ull;
    for (;;) {
      std::uint32_t n;
      if (info_.vectors != 0) {
        n = dispatch_.run_once(0, opt_.mode, waiter_);
      } else {
        n = dispatch_.poll(0);
        if (n == 0) cpu_relax();
      }
      check_timeouts();
      if (n != 0 || plat_->now_ns() >= end) return n;
    }
  }

  // Dispatcher entry: drain the reply queue (drain(budget) noexcept is the
  // completion_target contract).
  std::uint32_t drain(std::uint32_t budget) noexcept {
    if (!operational_ && !initialising_) return 0;
    const std::uint32_t before = rq_.head();
    std::uint32_t done = 0;
    auto got = rq_.reap(budget, [&](std::uint32_t ctx) noexcept { done += on_reply(ctx); });
    if (!got) {
      last_error_ = got.error();
      return done;
    }
    if (*got != 0) {
      stats_.reply_entries += *got;
      ++stats_.ci_writes;
      if (rq_.head() <= before) ++stats_.reply_wraps;
    }
    return done;
  }

  status last_error() const noexcept { return last_error_; }

  // Aborts the in-flight command that was submitted with `user` (SCSI task
  // management: ABORT TASK). An MFI ABORT frame names it; the command then
  // completes through its done callback, once, with completion::aborted set
  // when the firmware ended it. A firmware that ignores the ABORT for
  // abort_grace_ns gets the timeout path's controller reset, which fails or
  // re-issues the command (never both, never twice). errc::invalid_argument
  // when no such command is in flight (it may just have completed), busy when
  // an ABORT for it is already out.
  status abort(const void* user) noexcept {
    if (!operational_) return {errc::not_initialized, "controller is not operational"};
    if (user == nullptr) return {errc::invalid_argument, "abort needs the request's user pointer"};
    for (std::uint32_t i = 0; i < slot_count_; ++i) {
      slot_state& s = slots_[i];
      if (!s.in_use || s.internal || s.kind_abort || s.req.user != user) continue;
      if (s.abort_sent) return {errc::busy, "an ABORT for this command is already outstanding"};
      s.abort_sent = true;
      s.abort_requested = true;
      s.abort_deadline = plat_->now_ns() + opt_.abort_grace_ns;
      ++stats_.aborts_requested;
      send_abort(s.cid, s);
      return ok_status;
    }
    return {errc::invalid_argument, "no command in flight with this user pointer"};
  }

  // ---- the awaitable form (dkq/coro) --------------------------------------------------
  // `co_await ctrl.co_submit(r)` posts the request and resumes the coroutine
  // with its completion from the done path every request takes - a reply,
  // the timeout -> ABORT -> reset path, a failed reset, abort() or stop() -
  // exactly once. The coroutine is resumed from inside poll()/wait()/drain(),
  // where the callback form's done() runs; it may submit again from there.
  // completion::sense_bytes is cleared (it points into the controller's sense
  // buffer, valid only during the callback); the parsed sense stays.
  class scsi_op {
   public:
    scsi_op(controller& c, const request& r) noexcept : c_(&c), r_(r) {}
    scsi_op(const scsi_op&) = delete;
    scsi_op& operator=(const scsi_op&) = delete;
    coro::completion<completion>& sink() noexcept { return sink_; }
    bool start() noexcept {
      r_.done = &scsi_op::on_done;
      r_.user = this;
      sink_.posted();
      const status s = c_->submit(r_);
      if (DKQ_UNLIKELY(!s.ok())) {
        sink_.refused(make_status_completion(s));
        return false;
      }
      return true;
    }
    auto operator co_await() noexcept { return coro::op_awaiter<scsi_op>{*this}; }
    // For abort(): the user pointer the request was submitted with.
    const void* user() const noexcept { return this; }

   private:
    static void on_done(void* user, const completion& c) noexcept {
      completion k = c;
      k.sense_bytes = nullptr;
      k.sense_bytes_len = 0;
      static_cast<scsi_op*>(user)->sink_.complete(k);
    }
    controller* c_;
    request r_;
    coro::completion<completion> sink_;
  };
  scsi_op co_submit(const request& r) noexcept { return scsi_op(*this, r); }

  // A DCMD awaited the same way. Its data moves through `data` (the caller's
  // DMA buffer: the synchronous dcmd() uses the shared scratch page, which an
  // asynchronous command cannot). Also usable with a callback: submit_dcmd.
  class dcmd_op {
   public:
    dcmd_op(controller& c, std::uint32_t opcode, const std::uint8_t* mbox, dma_region data, dma_direction dir) noexcept
        : c_(&c), opcode_(opcode), data_(data), dir_(dir) {
      if (mbox != nullptr) std::memcpy(mbox_, mbox, sizeof mbox_);
    }
    dcmd_op(const dcmd_op&) = delete;
    dcmd_op& operator=(const dcmd_op&) = delete;
    coro::completion<completion>& sink() noexcept { return sink_; }
    bool start() noexcept {
      sink_.posted();
      const status s = c_->submit_dcmd(opcode_, mbox_, data_, dir_, &dcmd_op::on_done, this);
      if (DKQ_UNLIKELY(!s.ok())) {
        sink_.refused(make_status_completion(s));
        return false;
      }
      return true;
    }
    auto operator co_await() noexcept { return coro::op_awaiter<dcmd_op>{*this}; }

   private:
    static void on_done(void* user, const completion& c) noexcept {
      completion k = c;
      k.sense_bytes = nullptr;
      k.sense_bytes_len = 0;
      static_cast<dcmd_op*>(user)->sink_.complete(k);
    }
    controller* c_;
    std::uint32_t opcode_;
    std::uint8_t mbox_[sizeof(mfi::dcmd_frame{}.mbox)]{};
    dma_region data_;
    dma_direction dir_;
    coro::completion<completion> sink_;
  };
  dcmd_op co_dcmd(std::uint32_t opcode, const std::uint8_t* mbox, dma_region data, dma_direction dir) noexcept {
    return dcmd_op(*this, opcode, mbox, data, dir);
  }

  // Asynchronous DCMD (callback form): `done(user, completion)` once, from
  // the usual done path. Counts against the queue depth like I/O.
  status submit_dcmd(std::uint32_t opcode, const std::uint8_t* mbox, dma_region data, dma_direction dir, done_fn done,
                     void* user) noexcept {
    if (!operational_) return {errc::not_initialized, "controller is not operational"};
    if (data.size > 0xffffffffu) return {errc::invalid_argument, "DCMD data larger than a frame can describe", data.size};
    request r;
    r.dir = dir;
    r.data = data;
    r.done = done;
    r.user = user;
    std::uint32_t si = 0;
    DKQ_TRY(acquire_slot(r, false, si));
    if (status b = build_dcmd(si, opcode, mbox, data.device, static_cast<std::uint32_t>(data.size), dir); !b) {
      abandon_slot(si);
      return b;
    }
    if (status p = post(slots_[si]); !p) {
      abandon_slot(si);
      return p;
    }
    ++stats_.submitted;
    return ok_status;
  }

  // ---- synchronous helpers (setup, tools; not the hot path) ------------------------
  // Runs one request to completion.
  completion execute(const request& r) noexcept {
    completion c;
    std::uint32_t slot = 0;
    status s = submit_slot(r, true, slot);
    if (!s) {
      c.st = s;
      return c;
    }
    return wait_slot(slot);
  }

  // SCSI pass-through with the controller's scratch buffer: to a logical
  // drive, or with `physical` to a physical drive (PD SCSI IO frame).
  completion scsi_command(std::uint8_t target, const scsi::cdb_bytes& cdb, std::uint8_t cdb_len,
                          std::uint32_t data_in_bytes, dma_direction dir = dma_direction::from_device,
                          bool physical = false) noexcept {
    request r;
    r.kind = physical ? op::pd_scsi : op::ld_scsi;
    r.target = target;
    r.cdb = cdb;
    r.cdb_len = cdb_len;
    r.dir = dir;
    if (data_in_bytes != 0) {
      if (data_in_bytes > scratch_.size) {
        completion c;
        c.st = {errc::invalid_argument, "command data larger than the scratch buffer", data_in_bytes};
        return c;
      }
      r.data = dma_region{scratch_.cpu, scratch_.device, data_in_bytes};
    }
    // One command end to end (dkq/scsi/command.hpp): a UNIT ATTENTION (a
    // target reporting a reset or a change once) or NOT READY "becoming
    // ready" is sent again, a bounded number of times.
    completion last;
    const scsi::outcome o = scsi::run_command([&]() noexcept {
      last = execute(r);
      const bool reached = last.mfi_status == mfi::stat::ok || last.mfi_status == mfi::stat::scsi_done_with_error;
      scsi::raw_result raw;
      raw.transport = reached ? ok_status : last.st;
      raw.status_byte = last.mfi_status == mfi::stat::ok ? scsi::scsi_status::good : last.scsi_status;
      if (last.sense_bytes != nullptr) raw.sense = {last.sense_bytes, last.sense_bytes_len};
      return raw;
    });
    if (o.attempts > 1) stats_.scsi_retries += o.attempts - 1;
    return last;
  }
  const std::uint8_t* scratch() const noexcept { return scratch_.template cpu_at<const std::uint8_t>(); }

  result<scsi::inquiry_data> inquiry(std::uint8_t target, bool physical = false) noexcept {
    scsi::cdb_bytes c;
    // 36 bytes: exactly what the standard data holds, so the device transfers
    // the whole allocation and QEMU logs no underflow.
    auto len = scsi::inquiry(c, false, 0, 36);
    if (!len) return len.error();
    completion r = scsi_command(target, c, *len, 36, dma_direction::from_device, physical);
    if (!r.st) return r.st;
    return scsi::parse_inquiry(scratch(), 36);
  }

  // A VPD page: header first (4 bytes), then exactly the page's length, for
  // the same no-underflow reason. Copies up to out.size() payload bytes.
  result<std::size_t> vpd(std::uint8_t target, std::uint8_t page, std::span<std::uint8_t> out) noexcept {
    scsi::cdb_bytes c;
    auto len = scsi::inquiry(c, true, page, 4);
    if (!len) return len.error();
    completion r = scsi_command(target, c, *len, 4);
    if (!r.st) return r.st;
    std::uint32_t total = 4u + scsi::get_be16(scratch() + 2);
    if (total > 4 + 1024) total = 4 + 1024;
    len = scsi::inquiry(c, true, page, static_cast<std::uint16_t>(total));
    if (!len) return len.error();
    r = scsi_command(target, c, *len, total);
    if (!r.st) return r.st;
    auto pg = scsi::parse_vpd(scratch(), total, page);
    if (!pg) return pg.error();
    const std::size_t n = pg->payload.size() < out.size() ? pg->payload.size() : out.size();
    std::memcpy(out.data(), pg->payload.data(), n);
    return pg->payload.size();
  }

  result<scsi::capacity> read_capacity(std::uint8_t target, bool physical = false) noexcept {
    scsi::cdb_bytes c;
    completion r = scsi_command(target, c, scsi::read_capacity_10(c), 8, dma_direction::from_device, physical);
    if (!r.st) return r.st;
    auto cap = scsi::parse_read_capacity_10(scratch(), 8);
    if (!cap || !cap->needs_16) return cap;
    return read_capacity_16(target, physical);
  }
  result<scsi::capacity> read_capacity_16(std::uint8_t target, bool physical = false) noexcept {
    scsi::cdb_bytes c;
    completion r =
        scsi_command(target, c, scsi::read_capacity_16(c, 32), 32, dma_direction::from_device, physical);
    if (!r.st) return r.st;
    return scsi::parse_read_capacity_16(scratch(), 32);
  }

  status test_unit_ready(std::uint8_t target) noexcept {
    scsi::cdb_bytes c;
    return scsi_command(target, c, scsi::test_unit_ready(c), 0).st;
  }

  result<scsi::sense_data> request_sense(std::uint8_t target) noexcept {
    scsi::cdb_bytes c;
    completion r = scsi_command(target, c, scsi::request_sense(c, 18), 18);
    if (!r.st) return r.st;
    return scsi::parse_sense(scratch(), 18);
  }

  // SYNCHRONIZE CACHE, whole medium, never IMMED, sent to the controller and
  // complete only on its answer. The 16-byte form first when asked; if the
  // device rejects it as an invalid opcode (QEMU's scsi-disk does) it is
  // retried as the 10-byte form and the drive remembers that.
  // `physical`: to a physical (system) drive in a PD SCSI IO frame.
  completion synchronize_cache(std::uint8_t target, bool use16, bool physical = false) noexcept {
    logical_drive* ld = physical ? nullptr : find_ld(target);
    physical_drive* pd = physical ? find_pd(target, 0) : nullptr;
    bool* rejected = ld != nullptr ? &ld->sync16_rejected : pd != nullptr ? &pd->sync16_rejected : nullptr;
    const bool try16 = use16 && !(rejected != nullptr && *rejected);
    scsi::cdb_bytes c;
    auto len = scsi::synchronize_cache(c, try16);
    completion r;
    if (!len) {
      r.st = len.error();
      return r;
    }
    ++stats_.sync_cache_sent;
    if (!try16) ++stats_.sync_cache_10;
    r = scsi_command(target, c, *len, 0, dma_direction::to_device, physical);
    if (try16 && r.sense_valid && r.sense.key == scsi::sense_key::illegal_request && r.sense.asc == 0x20) {
      if (rejected != nullptr) *rejected = true;
      ++stats_.sync16_fallbacks;
      len = scsi::synchronize_cache(c, false);
      ++stats_.sync_cache_sent;
      ++stats_.sync_cache_10;
      r = scsi_command(target, c, *len, 0, dma_direction::to_device, physical);
    }
    return r;
  }

  // Controller and disk cache flush (DCMD). On QEMU this drains in-flight I/O
  // only; SYNCHRONIZE CACHE is what reaches the backing store.
  status flush_cache() noexcept {
    std::uint8_t mbox[12] = {};
    mbox[0] = mfi::dcmd::flush_ctrl_cache | mfi::dcmd::flush_disk_cache;
    ++stats_.cache_flush_dcmds;
    return dcmd(mfi::dcmd::ctrl_cache_flush, mbox, 0, dma_direction::to_device);
  }

  // Re-reads the LD and PD lists.
  status rescan() noexcept {
    DKQ_TRY(read_ld_list());
    return read_pd_list();
  }

  // Controller reset: abort everything, firmware back to READY, INIT again;
  // in-flight I/O is re-posted (reissue_after_reset) or failed, timed-out
  // commands fail with errc::timeout. Nothing completes twice: the old reply
  // queue is discarded and re-posted commands get fresh tags.
  //
  // A reset that fails (firmware never READY, INIT refused) still ends every
  // command: nothing is re-issued, each completes once with an error, and the
  // controller stays stopped (submit: not_initialized) until reset() or
  // start() succeeds.
  status reset() noexcept {
    if (plat_ == nullptr) return {errc::not_initialized, "controller not started"};
    ++stats_.resets;
    operational_ = false;
    regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::reset_flags);
    const status ready = to_ready();
    // A firmware that never came back may still hold our frames and DMA to
    // their buffers once they are handed back: cut it off first.
    if (!ready) fence_dma();
    // Collect what was in flight, then free every tag: old contexts can no
    // longer be delivered. (reissue_ was sized at start: no allocation and no
    // large stack array here - a dext's stack is small.)
    std::uint32_t* reissue = reissue_;
    std::uint32_t nre = 0;
    tags_.cancel_all([&](std::uint16_t, const tag_ctx& t, bool timed_out) noexcept {
      slot_state& s = slots_[t.slot];
      if (s.kind_abort) {
        finish_slot(t.slot, make_status_completion({errc::io_error, "abort superseded by controller reset"}));
      } else if (timed_out) {
        ++stats_.timeouts;
        finish_slot(t.slot, make_status_completion({errc::timeout, "command timed out; controller was reset"}));
      } else if (s.abort_requested) {
        // The caller asked for it to end: ended by the reset, not re-issued.
        completion c = make_status_completion({errc::io_error, "aborted command ended by a controller reset"});
        c.aborted = true;
        finish_slot(t.slot, c);
      } else if (ready.ok() && opt_.reissue_after_reset && !s.internal && s.reissues < opt_.max_reissues &&
                 nre < slot_count_) {
        reissue[nre++] = t.slot;
      } else if (!ready.ok() && !s.internal) {
        ++stats_.failed_by_reset;
        finish_slot(t.slot, make_status_completion({errc::io_error, "controller reset failed; command not re-issued"}));
      } else {
        ++stats_.failed_by_reset;
        finish_slot(t.slot, make_status_completion({errc::io_error, "command failed by a controller reset"}));
      }
    });
    io_in_flight_ = 0;
    if (!ready) return ready;
    io_in_flight_ = nre;
    // Back on after an earlier failed reset cut it (no-op otherwise).
    status init = plat_->enable_bus_master();
    if (init) init = init_queues();
    if (!init) {
      // The candidates hold no tag now: fail them here or nobody ever will.
      for (std::uint32_t i = 0; i < nre; ++i) {
        --io_in_flight_;
        ++stats_.failed_by_reset;
        finish_slot(reissue[i], make_status_completion({errc::io_error, "controller reset failed (INIT); command not re-issued"}));
      }
      return init;
    }
    operational_ = true;
    for (std::uint32_t i = 0; i < nre; ++i) {
      const std::uint32_t si = reissue[i];
      slot_state& s = slots_[si];
      auto cid = tags_.acquire(tag_ctx{si}, plat_->now_ns() + timeout_of(s.req));
      if (!cid) {  // cannot happen: the table was emptied above
        --io_in_flight_;
        finish_slot(si, make_status_completion(cid.error()));
        continue;
      }
      s.cid = *cid;
      s.reissued = true;
      ++s.reissues;
      s.abort_sent = false;
      auto* h = s.frame.mem.template cpu_at<mfi::frame_header>();
      h->context = *cid;
      h->cmd_status = mfi::status_pending;
      h->scsi_status = 0;
      const status p = post(s);
      if (!p) {
        (void)tags_.cancel(s.cid);
        --io_in_flight_;
        ++stats_.failed_by_reset;
        finish_slot(si, make_status_completion(p));
        continue;
      }
      ++stats_.reissued;
    }
    return ok_status;
  }

 private:
  static constexpr std::uint32_t max_slots_cap = 4096;

  struct tag_ctx {
    std::uint32_t slot;
  };

  struct slot_state {
    request req{};
    dma_pool::object frame{};
    std::uint16_t cid = 0;
    std::uint32_t extra_frames = 0;
    bool in_use = false;
    bool internal = false;      // a synchronous command; result kept in `result`
    bool kind_abort = false;    // an ABORT frame
    bool finished = false;
    bool abort_sent = false;
    bool abort_requested = false;  // by abort(), not by the timeout scan
    bool reissued = false;
    std::uint32_t reissues = 0;
    std::uint64_t abort_deadline = 0;
    completion result{};
    bool bounced = false;
    bounce_buffer::mapping bmap{};
    dma_pool::object chunks[max_bounce_per_cmd]{};
  };

  // interrupt_waiter for the dispatcher: MSI/MSI-X need no arming (the
  // eventfd is always armed); wait blocks in the platform for one slice.
  struct waiter_t {
    controller* c = nullptr;
    void arm(std::uint16_t) noexcept {}
    void disarm(std::uint16_t) noexcept {}
    std::uint32_t wait(std::uint16_t) noexcept { return c->plat_->irq_wait(c->opt_.wait_slice_ms); }
  };

  // ---- bring-up steps ------------------------------------------------------------
  status bring_up() noexcept {
    auto ven = plat_->config_read16(0x00);
    auto dev = plat_->config_read16(0x02);
    if (!ven) return ven.error();
    if (!dev) return dev.error();
    info_.vendor = *ven;
    info_.device = *dev;
    if (info_.vendor != pci_vendor_lsi)
      return {errc::not_supported, "not an LSI/Broadcom device (PCI vendor is not 0x1000)", info_.vendor};
    info_.model = info_.device == pci_device_sas1078 ? "MegaRAID SAS 1078 (MFI)"
                  : info_.device == pci_device_sas2108 ? "MegaRAID SAS 2108 gen2 (MFI)"
                                                        : "MegaRAID (MFI, untested model)";
    // The register window is the first memory BAR (BAR 1 on the 2108: BAR 0
    // is I/O there). We name BARs; the platform maps them.
    for (int b = 0; b < 6 && info_.register_bar < 0; ++b)
      if (plat_->bar_type(b) == bar_kind::memory) info_.register_bar = b;
    if (info_.register_bar < 0) return {errc::not_supported, "controller has no memory BAR for its registers"};
    auto w = plat_->map_bar(info_.register_bar);
    if (!w) return w.error();
    regs_ = *w;
    regs_ok_ = true;
    DKQ_TRY(plat_->enable_bus_master());

    DKQ_TRY(to_ready());
    const std::uint32_t fw = read_fw_status();
    const mfi::fw_status st = mfi::fw_status::decode(fw);
    info_.fw_status = fw;
    info_.fw_max_cmds = st.max_cmds;
    info_.fw_max_sge = st.max_sge;
    info_.msix_supported = st.msix_supported;
    if (st.max_cmds < 4) return {errc::protocol_error, "firmware reports fewer than 4 commands", fw};
    if (st.max_sge == 0) return {errc::protocol_error, "firmware reports 0 SGEs per command", fw};

    DKQ_TRY(allocate());

    if (opt_.use_interrupts) {
      auto v = plat_->irq_enable();
      info_.vectors = v ? *v : 0;
    }
    waiter_.c = this;
    // The reply queue is this object, on vector 0, for the object's whole
    // life: bound at the first start(), kept across stop()/start() (a power
    // cycle restarts the same controller object).
    if (!dispatch_bound_) {
      auto h = dispatch_.bind(0, completion_target::of(*this));
      if (!h) return h.error();
      dispatch_bound_ = true;
    }

    DKQ_TRY(init_queues());
    operational_ = true;
    DKQ_TRY(get_ctrl_info());
    DKQ_TRY(read_ld_list());
    DKQ_TRY(read_pd_list());
    return ok_status;
  }

  std::uint32_t read_fw_status() const noexcept {
    // gen2 keeps the status in scratch pad 0; the 1078 in outbound message 0
    // (QEMU answers both on both).
    return regs_.read32(info_.device == pci_device_sas1078 ? mfi::reg::outbound_msg0
                                                           : mfi::reg::outbound_scratch_pad);
  }

  // Firmware state machine to READY. Every state has its own deadline; a
  // FAULT is reported at once, an all-ones read as a removed device.
  status to_ready() noexcept {
    std::uint32_t prev = 0xffffffffu;
    std::uint64_t deadline = 0;
    for (;;) {
      const std::uint32_t v = read_fw_status();
      if (looks_removed(v)) return {errc::removed, "firmware status reads all-ones: controller gone", v};
      const mfi::fw_state s = mfi::fw_status::decode(v).state;
      if (s == mfi::fw_state::ready) return ok_status;
      if (s == mfi::fw_state::fault)
        return {errc::device_error, "firmware is in FAULT state (status word in detail); needs a hard reset", v};
      const std::uint32_t raw = static_cast<std::uint32_t>(s);
      if (raw != prev) {
        prev = raw;
        deadline = plat_->now_ns() + opt_.ready_timeout_ns;
        switch (s) {
          case mfi::fw_state::operational:  // a previous driver left it running
            regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::reset_flags);
            break;
          case mfi::fw_state::wait_handshake:
            regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::clear_handshake | mfi::idb::hotplug);
            break;
          case mfi::fw_state::boot_message_pending:
            regs_.write32(mfi::reg::inbound_doorbell, mfi::idb::hotplug);
            break;
          default: break;  // booting states advance on their own
        }
      }
      if (plat_->now_ns() >= deadline)
        return {errc::timeout, "firmware did not reach READY in time (status word in detail)", v};
      plat_->delay_us(1000);
    }
  }

  status allocate() noexcept {
    // Control structures below 4 GiB: frames are posted through the 32-bit
    // inbound queue port, and MFI controllers use 32-bit consistent DMA for
    // control memory (Linux megaraid_sas_base.c, megasas_set_dma_mask).
    const std::uint64_t ctl_limit = limit_4g;
    const std::uint64_t data_limit = opt_.force_32bit ? limit_4g : no_address_limit;

    // Commands: firmware max - 1 (the reply queue must never fill), minus the
    // internal reserve, clamped by the option and by our table sizes.
    std::uint32_t total = info_.fw_max_cmds - 1;
    if (total > max_slots_cap) total = max_slots_cap;
    if (total > tag_table<tag_ctx>::max_tags) total = tag_table<tag_ctx>::max_tags;
    std::uint32_t depth = total - internal_slots;
    if (opt_.queue_depth != 0 && opt_.queue_depth < depth) depth = opt_.queue_depth;
    total = depth + internal_slots;
    info_.queue_depth = depth;
    info_.reply_entries = info_.fw_max_cmds;

    auto fr = plat_->dma_alloc(total * frame_slot, ctl_limit);
    if (!fr) return fr.error();
    frames_mem_ = *fr;
    DKQ_TRY(frames_.init(frames_mem_, frame_slot, frame_slot, 0, total));
    if (frames_.capacity() != total) return {errc::no_memory, "frame pool smaller than the command count"};

    auto rq = plat_->dma_alloc((info_.reply_entries + 1) * sizeof(std::uint32_t), ctl_limit);
    if (!rq) return rq.error();
    rq_mem_ = *rq;
    auto ix = plat_->dma_alloc(4096, ctl_limit);  // pi @0, ci @64, queue info @128
    if (!ix) return ix.error();
    idx_mem_ = *ix;
    auto se = plat_->dma_alloc(total * sense_bytes, ctl_limit);
    if (!se) return se.error();
    sense_mem_ = *se;
    auto sc = plat_->dma_alloc(scratch_bytes, ctl_limit);
    if (!sc) return sc.error();
    scratch_ = *sc;
    auto nd = plat_->dma_alloc(nodata_bytes, ctl_limit);
    if (!nd) return nd.error();
    nodata_ = *nd;

    slots_ = new (std::nothrow) slot_state[total];
    if (slots_ == nullptr) return {errc::no_memory, "command slot table"};
    reissue_ = new (std::nothrow) std::uint32_t[total];
    if (reissue_ == nullptr) return {errc::no_memory, "reset bookkeeping"};
    slot_count_ = total;
    DKQ_TRY(tags_.init(total));

    // SGL: 64-bit unless every address must stay below 4 GiB.
    info_.sgl = opt_.force_32bit ? scsi::mfi_sgl_format::sgl32 : scsi::mfi_sgl_format::sgl64;
    const std::uint32_t room =
        static_cast<std::uint32_t>((frame_bytes - mfi::pass_sgl_offset) / scsi::mfi_sge_size(info_.sgl));
    info_.max_sge = info_.fw_max_sge < room ? info_.fw_max_sge : room;
    if (info_.max_sge > max_segs) info_.max_sge = max_segs;
    info_.max_transfer = opt_.max_transfer;

    if (opt_.force_32bit) {
      if (opt_.bounce_chunk == 0 || opt_.bounce_chunks == 0)
        return {errc::invalid_argument, "forced 32-bit mode needs bounce chunks"};
      auto bb = plat_->dma_alloc(static_cast<std::size_t>(opt_.bounce_chunk) * opt_.bounce_chunks, limit_4g);
      if (!bb) return bb.error();
      bounce_mem_ = *bb;
      DKQ_TRY(bounce_pool_.init(bounce_mem_, opt_.bounce_chunk, 4096));
      dma_constraints c;
      c.addressable_bits = 32;
      DKQ_TRY(bounce_.init(bounce_pool_, c));
      const std::uint64_t per_cmd = static_cast<std::uint64_t>(opt_.bounce_chunk) *
                                    (max_bounce_per_cmd < info_.max_sge ? max_bounce_per_cmd : info_.max_sge);
      if (info_.max_transfer > per_cmd) info_.max_transfer = static_cast<std::uint32_t>(per_cmd);
    }
    (void)data_limit;
    return ok_status;
  }

  // MFI INIT: reply queue, producer and consumer index words in host memory.
  status init_queues() noexcept {
    auto* pi = idx_mem_.template cpu_at<std::uint32_t>(0);
    auto* ci = idx_mem_.template cpu_at<std::uint32_t>(64);
    std::memset(rq_mem_.cpu, 0, rq_mem_.size);
    store_release(pi, 0u);
    store_release(ci, 0u);
    DKQ_TRY(rq_.init(rq_mem_, info_.reply_entries, pi, host_word_doorbell{ci}, 0));

    mfi::init_queue_info q{};
    q.flags = 0;  // 32-bit contexts: our tags are 16 bits
    q.rq_entries = info_.reply_entries;
    const std::uint64_t rqa = rq_mem_.device.value();
    const std::uint64_t pia = idx_mem_.device.value();
    const std::uint64_t cia = pia + 64;
    q.rq_addr_lo = static_cast<std::uint32_t>(rqa);
    q.rq_addr_hi = static_cast<std::uint32_t>(rqa >> 32);
    q.pi_addr_lo = static_cast<std::uint32_t>(pia);
    q.pi_addr_hi = static_cast<std::uint32_t>(pia >> 32);
    q.ci_addr_lo = static_cast<std::uint32_t>(cia);
    q.ci_addr_hi = static_cast<std::uint32_t>(cia >> 32);
    std::memcpy(idx_mem_.template cpu_at<std::uint8_t>(128), &q, sizeof q);

    // Interrupts unmasked before INIT: QEMU advances the producer index (and
    // signals) only while OMSK is not all-ones.
    regs_.write32(mfi::reg::outbound_intr_mask, info_.device == pci_device_sas1078 ? ~0x80000000u : ~0x5u);

    initialising_ = true;
    init_sent_ = true;
    request r;
    r.kind = op::ld_scsi;  // placeholder; build() is bypassed for INIT
    std::uint32_t si = 0;
    status s = acquire_slot(r, true, si);
    if (!s) {
      initialising_ = false;
      return s;
    }
    slot_state& sl = slots_[si];
    auto* f = sl.frame.mem.template cpu_at<mfi::init_frame>();
    std::memset(sl.frame.mem.cpu, 0, frame_bytes);
    f->header.frame_cmd = mfi::cmd::init;
    f->header.cmd_status = mfi::status_pending;
    f->header.context = sl.cid;
    f->header.data_len = sizeof(mfi::init_queue_info);
    const std::uint64_t qa = idx_mem_.device.value() + 128;
    f->qinfo_new_addr_lo = static_cast<std::uint32_t>(qa);
    f->qinfo_new_addr_hi = static_cast<std::uint32_t>(qa >> 32);
    sl.extra_frames = 0;
    if (status p = post(sl); !p) {
      abandon_slot(si);
      initialising_ = false;
      return p;
    }
    completion c = wait_slot(si);
    initialising_ = false;
    return c.st;
  }

  status dcmd(std::uint32_t opcode, const std::uint8_t* mbox, std::uint32_t bytes, dma_direction dir) noexcept {
    std::uint32_t si = 0;
    request r;
    r.dir = dir;
    DKQ_TRY(acquire_slot(r, true, si));
    slot_state& sl = slots_[si];
    if (bytes != 0) std::memset(scratch_.cpu, 0, bytes);
    if (status b = build_dcmd(si, opcode, mbox, scratch_.device, bytes, dir); !b) {
      abandon_slot(si);
      return b;
    }
    if (status p = post(sl); !p) {
      abandon_slot(si);
      return p;
    }
    return wait_slot(si).st;
  }

  // A DCMD frame in slot `si`: opcode, mailbox, and `bytes` of data at `data`
  // in exactly one SGE (QEMU refuses more).
  status build_dcmd(std::uint32_t si, std::uint32_t opcode, const std::uint8_t* mbox, dev_addr data,
                    std::uint32_t bytes, dma_direction dir) noexcept {
    slot_state& sl = slots_[si];
    std::memset(sl.frame.mem.cpu, 0, frame_bytes);
    auto* f = sl.frame.mem.template cpu_at<mfi::dcmd_frame>();
    f->header.frame_cmd = mfi::cmd::dcmd;
    f->header.cmd_status = mfi::status_pending;
    f->header.context = sl.cid;
    f->opcode = opcode;
    if (mbox != nullptr) std::memcpy(f->mbox, mbox, sizeof f->mbox);
    if (bytes != 0) {
      const dma_segment seg{data, bytes};
      auto sg = scsi::build_mfi_sgl(info_.sgl, {&seg, 1},
                                    {sl.frame.mem.template cpu_at<std::byte>(mfi::dcmd_sgl_offset),
                                     frame_bytes - mfi::dcmd_sgl_offset},
                                    1);
      if (!sg) return sg.error();
      f->header.sge_count = sg->sge_count;
      f->header.flags = static_cast<std::uint16_t>(
          sg->frame_flags | (dir == dma_direction::from_device ? scsi::mfi_frame_dir_read : scsi::mfi_frame_dir_write));
      f->header.data_len = bytes;
    }
    sl.extra_frames = 0;
    return ok_status;
  }

  status get_ctrl_info() noexcept {
    DKQ_TRY(dcmd(mfi::dcmd::ctrl_get_info, nullptr, mfi::ctrl_info::size, dma_direction::from_device));
    const std::uint8_t* p = scratch();
    auto u16 = [&](std::size_t off) {
      std::uint16_t v;
      std::memcpy(&v, p + off, 2);
      return v;
    };
    std::uint32_t mrs;
    std::memcpy(&mrs, p + ctrl_info_off::max_request_size, 4);
    if (u16(mfi::ctrl_info::pci_vendor) != info_.vendor || u16(mfi::ctrl_info::pci_device) != info_.device)
      return {errc::protocol_error, "CTRL_GET_INFO names a different PCI device", u16(mfi::ctrl_info::pci_device)};
    info_.subvendor = u16(ctrl_info_off::subvendor);
    info_.subdevice = u16(ctrl_info_off::subdevice);
    scsi::detail::copy_ascii(info_.product, p + ctrl_info_off::product_name, 80);
    scsi::detail::copy_ascii(info_.serial, p + ctrl_info_off::serial, 32);
    info_.info_max_cmds = u16(ctrl_info_off::max_cmds);
    info_.info_max_sge = u16(ctrl_info_off::max_sg_elements);
    info_.max_request_sectors = mrs;
    info_.lds_present = u16(ctrl_info_off::lds_present);
    info_.pd_present = u16(ctrl_info_off::pd_present);
    // The tighter of status word and controller info wins.
    if (info_.info_max_sge != 0 && info_.info_max_sge < info_.max_sge) info_.max_sge = info_.info_max_sge;
    if (mrs != 0 && std::uint64_t{mrs} * 512 < info_.max_transfer)
      info_.max_transfer = static_cast<std::uint32_t>(std::uint64_t{mrs} * 512);
    return ok_status;
  }

  status read_ld_list() noexcept {
    const std::uint32_t bytes = static_cast<std::uint32_t>(mfi::ld_list_header + mfi::max_ld * sizeof(mfi::ld_list_entry));
    DKQ_TRY(dcmd(mfi::dcmd::ld_get_list, nullptr, bytes, dma_direction::from_device));
    const std::uint8_t* p = scratch();
    std::uint32_t count;
    std::memcpy(&count, p, 4);
    if (count > mfi::max_ld) return {errc::protocol_error, "LD list count above 64", count};
    ld_count_ = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
      mfi::ld_list_entry e;
      std::memcpy(&e, p + mfi::ld_list_header + i * sizeof e, sizeof e);
      if (e.target_id >= mfi::max_ld) return {errc::protocol_error, "LD list names a target above 63", e.target_id};
      lds_[ld_count_++] = logical_drive{e.target_id, e.state, e.size, false};
    }
    return ok_status;
  }

  status read_pd_list() noexcept {
    const std::uint32_t bytes = 4096;
    std::uint8_t mbox[12] = {};  // query type 0: all
    DKQ_TRY(dcmd(mfi::dcmd::pd_get_list, mbox, bytes, dma_direction::from_device));
    const std::uint8_t* p = scratch();
    std::uint32_t count;
    std::memcpy(&count, p + 4, 4);
    if (count > (bytes - pd_list_header) / pd_entry_size) return {errc::protocol_error, "PD list count too large", count};
    pd_count_ = 0;
    for (std::uint32_t i = 0; i < count && pd_count_ < max_pds; ++i) {
      const std::uint8_t* e = p + pd_list_header + i * pd_entry_size;
      physical_drive d;
      std::memcpy(&d.device_id, e, 2);
      d.slot = e[5];
      d.scsi_type = e[6];
      std::memcpy(&d.sas_address, e + 8, 8);
      if (d.device_id <= 0xff) {
        d.target = static_cast<std::uint8_t>(d.device_id);
      } else {
        d.target = static_cast<std::uint8_t>(d.device_id >> 8);
        d.lun = static_cast<std::uint8_t>(d.device_id);
      }
      pds_[pd_count_++] = d;
    }
    // Which drives the firmware exposes to the host as is (SYSTEM, the JBOD
    // case): the PD list again, filtered by the firmware (Linux
    // megasas_get_pd_list asks the same). Only those are the host's to move
    // data on; a drive inside a logical drive never is. A controller that
    // does not know the query exposes none - not a bring-up failure.
    std::uint8_t q[12] = {};
    q[0] = mfi::dcmd::pd_query_exposed_to_host;
    if (dcmd(mfi::dcmd::pd_list_query, q, bytes, dma_direction::from_device)) {
      const std::uint8_t* e0 = scratch();
      std::uint32_t n;
      std::memcpy(&n, e0 + 4, 4);
      if (n > (bytes - pd_list_header) / pd_entry_size) return {errc::protocol_error, "exposed PD list count too large", n};
      for (std::uint32_t k = 0; k < n; ++k) {
        std::uint16_t id;
        std::memcpy(&id, e0 + pd_list_header + k * pd_entry_size, 2);
        for (std::uint32_t i = 0; i < pd_count_; ++i)
          if (pds_[i].device_id == id) {
            pds_[i].system = true;
            pds_[i].fw_state = mfi::pd_state::system;
          }
      }
    }
    return ok_status;
  }

  // ---- command slots ----------------------------------------------------------------
  status acquire_slot(const request& r, bool internal, std::uint32_t& out) noexcept {
    if (!internal && io_in_flight_ >= info_.queue_depth)
      return {errc::no_space, "queue depth reached; poll and submit again", io_in_flight_};
    auto fo = frames_.get();
    if (!fo) return {errc::no_space, "no free MFI frame", frames_.capacity()};
    auto cid = tags_.acquire(tag_ctx{fo->index}, plat_->now_ns() + timeout_of(r));
    if (!cid) {
      (void)frames_.put(*fo);
      return cid.error();
    }
    slot_state& s = slots_[fo->index];
    s.req = r;
    s.frame = *fo;
    s.cid = *cid;
    s.in_use = true;
    s.internal = internal;
    s.kind_abort = false;
    s.finished = false;
    s.abort_sent = false;
    s.abort_requested = false;
    s.reissued = false;
    s.reissues = 0;
    s.bounced = false;
    s.result = completion{};
    if (!internal) ++io_in_flight_;
    out = fo->index;
    return ok_status;
  }

  // Undo acquire_slot for a command that was never posted.
  void abandon_slot(std::uint32_t si) noexcept {
    slot_state& s = slots_[si];
    (void)tags_.cancel(s.cid);
    if (s.bounced) (void)bounce_.complete(s.bmap, {s.chunks, s.bmap.chunks});
    s.bounced = false;
    (void)frames_.put(s.frame);
    if (!s.internal) --io_in_flight_;
    s.in_use = false;
  }

  // A frame the queue port cannot name (above 4 GiB, misaligned, too many
  // extra frames) is an error for the caller and is never posted: writing a
  // substitute value would hand the firmware frame address 0.
  [[nodiscard]] status post(slot_state& s) noexcept {
    // The frame (and the SGL, sense address, data) must be visible to the
    // device before the queue port write; mmio write32 orders it (dma_wmb).
    auto v = mfi::queue_port_value(s.frame.mem.device, s.extra_frames);
    if (!v) return v.error();
    regs_.write32(mfi::reg::inbound_queue_port, *v);
    ++stats_.frames_posted;
    return ok_status;
  }

  status submit_impl(const request& r, bool internal) noexcept {
    std::uint32_t si = 0;
    return submit_slot(r, internal, si);
  }

  status submit_slot(const request& r, bool internal, std::uint32_t& si) noexcept {
    if (!operational_) return {errc::not_initialized, "controller is not operational"};
    DKQ_TRY(validate(r));
    DKQ_TRY(acquire_slot(r, internal, si));
    status s = build(si);
    if (!s) {
      abandon_slot(si);
      return s;
    }
    if (status p = post(slots_[si]); !p) {
      abandon_slot(si);
      return p;
    }
    ++stats_.submitted;
    return ok_status;
  }

  status validate(const request& r) const noexcept {
    const bool ld = r.kind != op::pd_scsi;
    if (ld && (r.target >= mfi::max_ld || r.lun != 0))
      return {errc::invalid_argument, "logical drives are targets 0..63, LUN 0", r.target};
    // Only what the controller presented: a frame to anything else could
    // reach a disk the firmware did not offer to the host (issue #13 item 11).
    if (ld && find_ld(r.target) == nullptr)
      return {errc::not_found, "target is not a logical drive of this controller", r.target};
    if (!ld && find_pd(r.target, r.lun) == nullptr)
      return {errc::not_found, "target is not a physical drive of this controller", r.target};
    if (r.kind == op::ld_read || r.kind == op::ld_write) {
      if (r.blocks == 0 || !r.data.valid())
        return {errc::invalid_argument, "LD read/write needs blocks and a data buffer"};
    } else {
      if (r.cdb_len == 0 || r.cdb_len > 16) return {errc::invalid_argument, "CDB length must be 1..16", r.cdb_len};
    }
    if (r.data.size != 0 && r.data.cpu == nullptr) return {errc::invalid_argument, "data buffer without memory"};
    if (r.data.size > info_.max_transfer)
      return {errc::invalid_argument, "transfer longer than the controller's maximum", r.data.size};
    if (r.data.size > 0xffffffffull) return {errc::invalid_argument, "transfer does not fit data_len"};
    return ok_status;
  }

  status build(std::uint32_t si) noexcept {
    slot_state& s = slots_[si];
    const request& r = s.req;
    std::memset(s.frame.mem.cpu, 0, 64);
    auto* h = s.frame.mem.template cpu_at<mfi::frame_header>();
    const bool io = r.kind == op::ld_read || r.kind == op::ld_write;
    const std::size_t sgl_off = io ? mfi::io_sgl_offset : mfi::pass_sgl_offset;
    const dma_region sense{sense_mem_.cpu_at(si * sense_bytes), sense_mem_.device_at(si * sense_bytes), sense_bytes};
    h->cmd_status = mfi::status_pending;
    // An empty sense buffer (response code 0 does not parse), so a CHECK
    // CONDITION without fresh sense can never show an older command's.
    *sense.template cpu_at<std::uint8_t>() = 0;
    h->target_id = r.target;
    h->lun_id = r.lun;
    h->context = s.cid;
    h->sense_len = sense_len;
    std::uint16_t flags = 0;
    if (io) {
      auto* f = s.frame.mem.template cpu_at<mfi::io_frame>();
      h->frame_cmd = r.kind == op::ld_read ? mfi::cmd::ld_read : mfi::cmd::ld_write;
      h->data_len = r.blocks;  // LD read/write: a block count
      f->sense_addr_lo = static_cast<std::uint32_t>(sense.device.value());
      f->sense_addr_hi = static_cast<std::uint32_t>(sense.device.value() >> 32);
      f->start_lba_lo = static_cast<std::uint32_t>(r.lba);
      f->start_lba_hi = static_cast<std::uint32_t>(r.lba >> 32);
    } else {
      auto* f = s.frame.mem.template cpu_at<mfi::pass_frame>();
      h->frame_cmd = r.kind == op::pd_scsi ? mfi::cmd::pd_scsi_io : mfi::cmd::ld_scsi_io;
      h->cdb_len = r.cdb_len;
      h->data_len = static_cast<std::uint32_t>(r.data.size);
      f->sense_addr_lo = static_cast<std::uint32_t>(sense.device.value());
      f->sense_addr_hi = static_cast<std::uint32_t>(sense.device.value() >> 32);
      std::memcpy(f->cdb, r.cdb.data(), r.cdb_len);
    }
    if (sense.device.value() > 0xffffffffull) flags |= scsi::mfi_frame_sense64;
    if (r.data.size != 0) {
      dma_segment segs[max_segs];
      std::size_t nseg = 0;
      const bool beyond = r.data.device.value() + (r.data.size - 1) > 0xffffffffull;
      if (opt_.force_32bit && beyond) {
        // Data the controller cannot address in 32-bit mode goes through
        // bounce chunks below 4 GiB (copied in now for writes, out at
        // completion for reads).
        if (bounce_.chunks_for(r.data.size) > max_bounce_per_cmd)
          return {errc::constraint, "transfer needs more bounce chunks than one command may hold"};
        auto m = bounce_.map(r.data.cpu, r.data.size, r.dir, {s.chunks, max_bounce_per_cmd}, {segs, max_segs});
        if (!m) return m.error().code() == errc::empty ? status{errc::no_space, "bounce pool exhausted; poll and retry"}
                                                         : m.error();
        s.bmap = *m;
        s.bounced = true;
        nseg = m->chunks;
        ++stats_.bounced;
      } else {
        segs[0] = dma_segment{r.data.device, r.data.size};
        nseg = 1;
      }
      auto sg = scsi::build_mfi_sgl(info_.sgl, {segs, nseg},
                                    {s.frame.mem.template cpu_at<std::byte>(sgl_off), frame_bytes - sgl_off},
                                    info_.max_sge);
      if (!sg) return sg.error();
      if (!io && sg->data_len != r.data.size) return {errc::protocol_error, "SGL length differs from the transfer"};
      h->sge_count = sg->sge_count;
      flags |= sg->frame_flags;
      flags |= r.dir == dma_direction::to_device ? scsi::mfi_frame_dir_write : scsi::mfi_frame_dir_read;
      auto fc = scsi::mfi_frame_count(sgl_off, info_.sgl, sg->sge_count);
      if (!fc) return fc.error();
      s.extra_frames = *fc - 1;
    } else if (!io && opt_.nodata_sge) {
      // See the header: one SGE over the dummy buffer, no direction flag.
      const dma_segment seg{nodata_.device, nodata_bytes};
      auto sg = scsi::build_mfi_sgl(info_.sgl, {&seg, 1},
                                    {s.frame.mem.template cpu_at<std::byte>(sgl_off), frame_bytes - sgl_off}, 1);
      if (!sg) return sg.error();
      h->sge_count = sg->sge_count;
      h->data_len = nodata_bytes;
      flags |= sg->frame_flags;
      s.extra_frames = 0;
    } else {
      s.extra_frames = 0;
    }
    h->flags = flags;
    return ok_status;
  }

  // One reply-queue entry. Returns 1 if it completed a command.
  std::uint32_t on_reply(std::uint32_t ctx) noexcept {
    if (ctx > 0xffffu) {
      ++stats_.bad_context;
      last_error_ = {errc::protocol_error, "reply context wider than our 16-bit tags", ctx};
      return 0;
    }
    const auto cid = static_cast<std::uint16_t>(ctx);
    auto t = tags_.complete(cid);
    if (!t) {
      const status e = t.error();
      if (e.code() == errc::stale && tags_.completed_late(cid)) {
        // The command timed out and we aborted it; this is its (cancelled)
        // completion. It finishes now, once, as a timeout.
        auto late = tags_.release_timed_out(cid);
        if (late) {
          ++stats_.timeouts;
          slot_state& s = slots_[late->slot];
          if (!s.internal) --io_in_flight_;
          finish_slot(late->slot, make_status_completion({errc::timeout, "command timed out and was aborted"}));
          return 1;
        }
      }
      if (e.code() == errc::duplicate) ++stats_.duplicate;
      else ++stats_.stale;
      last_error_ = e;
      return 0;
    }
    const std::uint32_t si = t->slot;
    slot_state& s = slots_[si];
    dma_rmb();  // the frame's status bytes were written before the reply entry
    const auto* h = s.frame.mem.template cpu_at<const mfi::frame_header>();
    completion c;
    c.mfi_status = load_acquire(&h->cmd_status);
    c.scsi_status = h->scsi_status;
    c.reissued = s.reissued;
    // The firmware writes back how many sense bytes it stored (header
    // sense_len); 0 means none, so stale bytes of an earlier command are
    // never parsed as this one's sense.
    const std::uint8_t got_sense = h->sense_len < sense_len ? h->sense_len : sense_len;
    if (c.mfi_status == mfi::stat::scsi_done_with_error && c.scsi_status == scsi::scsi_status::check_condition &&
        got_sense != 0) {
      const std::uint8_t* raw = sense_mem_.template cpu_at<const std::uint8_t>(si * sense_bytes);
      auto sd = scsi::parse_sense(raw, got_sense);
      if (sd) {
        c.sense_valid = true;
        c.sense = *sd;
        c.sense_bytes = raw;
        c.sense_bytes_len = got_sense;
      }
    }
    c.st = decode_completion(c.mfi_status, c.scsi_status, c.sense_valid, c.sense);
    c.aborted = s.abort_requested && c.mfi_status != mfi::stat::ok;
    if (!s.internal && !s.kind_abort) --io_in_flight_;
    finish_slot(si, c);
    return 1;
  }

  // Cuts the device off from host memory (PCI command register, bus master
  // off) when the platform offers it: the last resort when the firmware could
  // not be told to drop its frames. start() enables bus mastering again.
  void fence_dma() noexcept {
    if constexpr (requires(P& p) {
                    { p.disable_bus_master() } -> std::same_as<status>;
                  }) {
      if (plat_ != nullptr && !plat_->disable_bus_master()) last_error_ = {errc::io_error, "could not disable bus mastering"};
    }
  }

  // stop(): every occupied tag ends now, once. The device was already told to
  // drop them; internal commands keep their result for wait_slot.
  void fail_all(status why, bool stopped) noexcept {
    tags_.cancel_all([&](std::uint16_t, const tag_ctx& t, bool) noexcept {
      slot_state& s = slots_[t.slot];
      completion c = make_status_completion(why);
      c.stopped = stopped;
      c.aborted = s.abort_requested;
      finish_slot(t.slot, c);
    });
    io_in_flight_ = 0;
  }

  static completion make_status_completion(status st) noexcept {
    completion c;
    c.st = st;
    return c;
  }

  // Releases a slot's resources and delivers its completion (exactly once).
  void finish_slot(std::uint32_t si, const completion& c) noexcept {
    slot_state& s = slots_[si];
    if (!s.in_use) return;
    if (s.bounced) {
      if (c.st.ok()) {
        (void)bounce_.complete(s.bmap, {s.chunks, s.bmap.chunks});
      } else {
        // Failed read: do not copy possibly partial data into the caller's
        // buffer; just give the chunks back.
        bounce_buffer::mapping m = s.bmap;
        m.dir = dma_direction::to_device;
        (void)bounce_.complete(m, {s.chunks, s.bmap.chunks});
      }
      s.bounced = false;
    }
    (void)frames_.put(s.frame);
    s.in_use = false;
    ++stats_.completed;
    if (s.internal || s.kind_abort) {
      s.result = c;
      s.finished = true;
      return;
    }
    if (s.req.done != nullptr) s.req.done(s.req.user, c);
  }

  // Waits until an internal slot finished (its completion kept in the slot).
  completion wait_slot(std::uint32_t si) noexcept {
    slot_state& s = slots_[si];
    // Bounded even when the timeout scan is off (bring-up, INIT during a
    // reset): a firmware that never answers is an error, not a hang.
    const std::uint64_t give_up = plat_->now_ns() + opt_.command_timeout_ns + opt_.abort_grace_ns;
    while (!s.finished) {
      if (!operational_ && plat_->now_ns() >= give_up) {
        // The frame stays owned (never reused) because the device may still
        // write it; the controller is not usable until start() again.
        completion c;
        c.st = {errc::timeout, "controller did not answer an initialisation command"};
        return c;
      }
      if (info_.vectors != 0) {
        dispatch_.run_once(0, opt_.mode, waiter_);
      } else {
        if (dispatch_.poll(0) == 0) plat_->delay_us(1);
      }
      check_timeouts();
      if (!s.finished && !s.in_use) {  // released by a failed reset
        completion c;
        c.st = {errc::io_error, "command lost in a failed controller reset"};
        return c;
      }
    }
    s.finished = false;
    return s.result;
  }

  // Timeout scan: expired commands get an ABORT frame; if one is still not
  // back after the grace period, the controller is reset.
  void check_timeouts() noexcept {
    if (!operational_ || plat_ == nullptr) return;
    const std::uint64_t now = plat_->now_ns();
    if (now < next_scan_) return;
    next_scan_ = now + 10'000'000ull;  // every 10 ms at most
    tags_.timeout_scan(now, [&](std::uint16_t cid, const tag_ctx& t) noexcept {
      slot_state& s = slots_[t.slot];
      if (s.kind_abort || s.abort_sent) return;
      s.abort_sent = true;
      s.abort_deadline = now + opt_.abort_grace_ns;
      send_abort(cid, s);
    });
    bool need_reset = false;
    for (std::uint32_t i = 0; i < slot_count_; ++i) {
      const slot_state& s = slots_[i];
      if (s.in_use && s.abort_sent && now >= s.abort_deadline) need_reset = true;
    }
    if (need_reset) {
      status r = reset();
      if (!r) last_error_ = r;
    }
  }

  void send_abort(std::uint16_t victim_cid, const slot_state& victim) noexcept {
    request r;
    std::uint32_t si = 0;
    if (!acquire_slot(r, true, si)) return;  // no frame: the grace timer leads to a reset
    slot_state& a = slots_[si];
    a.kind_abort = true;
    a.internal = false;
    // The abort frame itself must not time out into another abort.
    (void)tags_.set_deadline(a.cid, no_deadline);
    std::memset(a.frame.mem.cpu, 0, 64);
    auto* f = a.frame.mem.template cpu_at<mfi::abort_frame>();
    f->header.frame_cmd = mfi::cmd::abort;
    f->header.cmd_status = mfi::status_pending;
    f->header.context = a.cid;
    f->abort_context = victim_cid;
    f->abort_mfi_addr_lo = static_cast<std::uint32_t>(victim.frame.mem.device.value());
    f->abort_mfi_addr_hi = static_cast<std::uint32_t>(victim.frame.mem.device.value() >> 32);
    a.extra_frames = 0;
    if (!post(a)) {  // not posted: the grace timer leads to a reset
      a.internal = true;  // acquired as internal: no I/O count to give back
      abandon_slot(si);
      return;
    }
    ++stats_.aborts;
  }

  std::uint64_t timeout_of(const request& r) const noexcept {
    return r.timeout_ms != 0 ? std::uint64_t{r.timeout_ms} * 1'000'000ull : opt_.command_timeout_ns;
  }

  logical_drive* find_ld(std::uint8_t target) noexcept {
    for (std::uint32_t i = 0; i < ld_count_; ++i)
      if (lds_[i].target == target) return &lds_[i];
    return nullptr;
  }
  const logical_drive* find_ld(std::uint8_t target) const noexcept {
    for (std::uint32_t i = 0; i < ld_count_; ++i)
      if (lds_[i].target == target) return &lds_[i];
    return nullptr;
  }
  const physical_drive* find_pd(std::uint8_t target, std::uint8_t lun) const noexcept {
    for (std::uint32_t i = 0; i < pd_count_; ++i)
      if (pds_[i].target == target && pds_[i].lun == lun) return &pds_[i];
    return nullptr;
  }
  physical_drive* find_pd(std::uint8_t target, std::uint8_t lun) noexcept {
    return const_cast<physical_drive*>(static_cast<const controller*>(this)->find_pd(target, lun));
  }

  void release() noexcept {
    operational_ = false;
    if (plat_ != nullptr) {
      for (dma_region* r : {&frames_mem_, &rq_mem_, &idx_mem_, &sense_mem_, &scratch_, &nodata_, &bounce_mem_})
        if (r->valid()) {
          (void)plat_->dma_free(*r);
          *r = dma_region{};
        }
    }
    delete[] slots_;
    slots_ = nullptr;
    delete[] reissue_;
    reissue_ = nullptr;
    slot_count_ = 0;
    plat_ = nullptr;
  }

  static constexpr std::uint32_t max_pds = 64;

  P* plat_ = nullptr;
  options opt_{};
  controller_info info_{};
  driver_stats stats_{};
  window regs_{};
  bool regs_ok_ = false;
  bool operational_ = false;
  bool initialising_ = false;
  bool init_sent_ = false;
  status last_error_{};
  std::uint64_t next_scan_ = 0;

  dma_region frames_mem_{}, rq_mem_{}, idx_mem_{}, sense_mem_{}, scratch_{}, nodata_{}, bounce_mem_{};
  dma_pool frames_;
  dma_pool bounce_pool_;
  bounce_buffer bounce_;
  tag_table<tag_ctx> tags_;
  index_reply_queue<std::uint32_t, host_word_doorbell> rq_;
  interrupt_dispatcher<1, 1> dispatch_;
  bool dispatch_bound_ = false;
  waiter_t waiter_{};
  slot_state* slots_ = nullptr;
  std::uint32_t* reissue_ = nullptr;
  std::uint32_t slot_count_ = 0;
  std::uint32_t io_in_flight_ = 0;

  logical_drive lds_[mfi::max_ld]{};
  std::uint32_t ld_count_ = 0;
  physical_drive pds_[max_pds]{};
  std::uint32_t pd_count_ = 0;
};

}  // namespace dkq::examples::megaraid
