// tests/support/fake_mfi_controller.hpp - TEST DOUBLE: a software model of a
// MegaRAID MFI controller (SAS2108-like) and a fake platform for the
// examples/scsi driver core. Not a driver, not a device: it exists so the
// driver's logic (firmware handshake, INIT, reply queue, tags, SGLs, bounce
// buffers, SYNCHRONIZE CACHE fallback, timeouts, abort, reset) can be tested
// without QEMU, with faults QEMU never produces on demand.
//
// Written from the interface facts of QEMU hw/scsi/megasas.c (frames, status
// word, INIT queue info, reply queue wrap at max_cmds, OMSK all-ones = soft
// reset, producer index only advanced while unmasked, 2 KiB mapped behind
// every posted frame, DCMDs take one SGE).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/mfi.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "examples/scsi/driver/platform.hpp"

namespace dkq::testing {

namespace mfi = dkq::scsi::mfi;

// ---- fake DMA memory: device addresses chosen by the fake ------------------------
class fake_dma_space {
 public:
  ~fake_dma_space() {
    for (auto& [dev, r] : regions_) std::free(r.cpu);
  }
  // Regions under a limit get low addresses; unlimited ones start at 16 GiB
  // so anything "not constrained" really lies beyond 32-bit reach.
  result<dma_region> alloc(std::size_t n, std::uint64_t limit) {
    const std::size_t len = (n + 4095) & ~std::size_t{4095};
    void* p = std::aligned_alloc(4096, len);
    if (p == nullptr) return status{errc::no_memory, "fake dma"};
    std::memset(p, 0, len);
    std::uint64_t& next = limit <= (std::uint64_t{1} << 32) && !ignore_limits ? low_ : high_;
    const std::uint64_t dev = next;
    next += len + 4096;  // a guard page between regions: overruns fault
    if (dev + len > limit && !ignore_limits) {
      std::free(p);
      return status{errc::constraint, "fake dma: limit"};
    }
    regions_[dev] = {p, len};
    ++allocs;
    return dma_region{p, dev_addr{dev}, len};
  }
  status free(const dma_region& r) {
    auto it = regions_.find(r.device.value());
    if (it == regions_.end()) return {errc::invalid_argument, "fake dma: not allocated"};
    std::free(it->second.cpu);
    regions_.erase(it);
    ++frees;
    return ok_status;
  }
  // CPU pointer for [dev, dev+len) if one region maps it all, else nullptr.
  std::uint8_t* translate(std::uint64_t dev, std::uint64_t len) const {
    auto it = regions_.upper_bound(dev);
    if (it == regions_.begin()) return nullptr;
    --it;
    const std::uint64_t off = dev - it->first;
    if (off + len > it->second.len) return nullptr;
    return static_cast<std::uint8_t*>(it->second.cpu) + off;
  }
  std::size_t live() const { return regions_.size(); }
  std::uint64_t allocs = 0, frees = 0;
  // Fault: an allocator that ignores the caller's address limit (every region
  // lands above 4 GiB), so the driver must check what it was given.
  bool ignore_limits = false;

 private:
  struct reg {
    void* cpu;
    std::size_t len;
  };
  std::map<std::uint64_t, reg> regions_;
  std::uint64_t low_ = 0x10000000;
  std::uint64_t high_ = std::uint64_t{4} << 32;
};

struct fake_disk {
  std::uint8_t target = 0;
  std::uint32_t block_size = 512;
  std::vector<std::uint8_t> data;
  std::uint64_t blocks() const { return data.size() / block_size; }
};

// ---- the controller model --------------------------------------------------------
class fake_mfi_controller {
 public:
  explicit fake_mfi_controller(fake_dma_space& dma, std::uint32_t max_cmds = 64, std::uint32_t max_sge = 80)
      : dma_(dma), fw_cmds_(max_cmds), fw_sge_(max_sge) {}

  void add_disk(std::uint8_t target, std::uint64_t blocks) {
    fake_disk d;
    d.target = target;
    d.data.assign(blocks * 512, 0);
    for (std::size_t i = 0; i < d.data.size(); ++i) d.data[i] = static_cast<std::uint8_t>(i * 7 + target);
    disks_.push_back(std::move(d));
  }
  fake_disk* disk(std::uint8_t target) {
    for (auto& d : disks_)
      if (d.target == target) return &d;
    return nullptr;
  }

  // ---- knobs (fault injection) ----
  std::deque<std::uint32_t> boot_states;  // states (raw 4-bit) shown before READY
  bool fault = false;                      // status word shows FAULT
  bool removed = false;                    // every register read is all-ones
  bool reject_sync16 = true;               // like QEMU's scsi-disk
  bool hold = false;                       // queue frames until step()
  std::uint32_t drop_next = 0;             // never complete the next N I/O frames
  bool ignore_aborts = false;              // ABORT completes but cancels nothing
  std::uint32_t duplicate_next = 0;        // post the next N contexts twice
  bool corrupt_producer = false;           // next completion writes an impossible pi
  bool stuck = false;                      // state machine never reaches READY
  std::uint16_t pci_device = 0x0079;       // what CTRL_GET_INFO reports
  // JBOD mode, like QEMU's megasas use_jbod=on: no logical drives, every disk
  // a SYSTEM physical drive; LD frames answer DEVICE_NOT_FOUND.
  bool jbod = false;
  bool pd_list_query_supported = true;     // else PD_LIST_QUERY answers INVALID_DCMD
  bool fault_after_reset = false;          // a soft reset leaves the firmware in FAULT
  std::uint32_t fail_inits = 0;            // the next N INIT frames fail (INVALID_PARAMETER)
  std::uint32_t error_good_next = 0;       // next N I/O frames: DONE_WITH_ERROR + GOOD, work not done
  // Raw status words returned by the next firmware-status reads (register
  // values the driver must survive: any state, max_cmds, max_sge).
  std::deque<std::uint32_t> status_words;
  // Contexts written into the reply queue before the next real one: stale,
  // out-of-range or simply invented.
  std::deque<std::uint32_t> inject_contexts;
  // The next I/O frame completes with this frame status / SCSI status
  // instead of its real result (the work is not done).
  struct forced_status {
    std::uint8_t cmd_status = 0, scsi_status = 0;
  };
  std::deque<forced_status> force_status;
  // Sense the next pass-through completion carries: `sense_bytes` stored (at
  // most as many as the frame asked for), header sense_len = `sense_len_said`
  // (a lie when it differs: truncated or inflated). Completes with
  // DONE_WITH_ERROR + CHECK CONDITION.
  struct forced_sense {
    std::vector<std::uint8_t> bytes;
    std::uint8_t sense_len_said = 0;
  };
  std::deque<forced_sense> force_sense;
  // DCMD payload tamper hook: may rewrite, truncate or inflate the bytes a
  // DCMD returns (and its frame status) before they are copied to the host.
  std::function<void(std::uint32_t opcode, std::vector<std::uint8_t>& out, std::uint8_t& cmd_status)> dcmd_hook;

  // ---- counters ----
  struct counters_t {
    std::uint64_t frames = 0, inits = 0, dcmds = 0, cache_flushes = 0, shutdowns = 0;
    std::uint64_t sync10 = 0, sync16 = 0, reads = 0, writes = 0, aborts = 0, resets = 0;
    std::uint64_t fua_writes = 0, unmaps = 0, write_sames = 0;
    std::uint64_t sgl32_frames = 0, sgl64_frames = 0, max_sge_seen = 0, highest_sge_addr = 0;
    std::uint64_t irqs = 0, completions = 0, inquiries = 0;
    std::uint64_t error_good = 0;     // DONE_WITH_ERROR + GOOD answers given (error_good_next)
    std::uint64_t queue_port_zero = 0;  // queue port writes naming frame address 0
    std::uint64_t injected_contexts = 0;  // inject_contexts written to the reply queue
    std::uint64_t pd_frames = 0, ld_frames = 0, pd_queries = 0;  // PD / LD SCSI IO frames and read/write frames
    std::vector<std::string> errors;  // protocol violations by the driver
  } c;

  // PCI bus mastering (set by the platform): off, the device can neither
  // fetch frames nor complete the ones it holds - they are gone.
  void set_bus_master(bool on) {
    bus_master_ = on;
    if (!on) {
      held_.clear();
      dropped_.clear();
    }
  }
  bool bus_master() const { return bus_master_; }

  std::uint32_t pending_irqs = 0;
  std::uint32_t last_context = 0;  // the last context written to the reply queue (for stale re-posts)
  std::uint32_t intr_mask() const { return intr_mask_; }
  mfi::fw_state state() const { return static_cast<mfi::fw_state>(state_ >> 28); }

  // ---- MMIO ----
  std::uint32_t mmio_read(std::size_t off) {
    if (removed) return 0xffffffffu;
    switch (off) {
      case mfi::reg::outbound_msg0:
      case mfi::reg::outbound_scratch_pad: {
        if (!status_words.empty()) {
          const std::uint32_t w = status_words.front();
          status_words.pop_front();
          return w;
        }
        std::uint32_t st = state_;
        if (fault) st = 0xf0000000u;
        else if (!boot_states.empty()) {
          st = boot_states.front() << 28;
          if (!stuck) boot_states.pop_front();
        }
        return st | (1u << 26) | ((fw_sge_ & 0xff) << 16) | (fw_cmds_ & 0xffff);
      }
      case mfi::reg::outbound_intr_mask: return intr_mask_;
      default: return 0;
    }
  }
  void mmio_write(std::size_t off, std::uint32_t v) {
    if (removed) return;  // surprise removal: writes go nowhere
    switch (off) {
      case mfi::reg::inbound_doorbell:
        if (v & mfi::idb::abort) abort_all();
        if (v & mfi::idb::ready) soft_reset();
        if (v & mfi::idb::clear_handshake) boot_states.clear();
        break;
      case mfi::reg::outbound_intr_mask:
        intr_mask_ = v;
        if (v == 0xffffffffu) soft_reset();
        break;
      case mfi::reg::inbound_queue_port:
        ++c.frames;
        if ((v & 1u) == 0) err("queue port write without bit 0");
        if ((v & ~0x1fu) == 0) {
          ++c.queue_port_zero;
          err("queue port write names frame address 0");
        }
        // hold delays I/O frames only; INIT, DCMD and ABORT are answered at once.
        if (hold && is_io_frame(v)) held_.push_back(v);
        else handle_frame(v);
        break;
      default: break;
    }
  }

  // Processes held frames (hold mode).
  std::size_t step(std::size_t max = ~std::size_t{0}) {
    std::size_t n = 0;
    while (!held_.empty() && n < max) {
      const std::uint32_t v = held_.front();
      held_.pop_front();
      handle_frame(v);
      ++n;
    }
    return n;
  }
  std::size_t dropped() const { return dropped_.size(); }
  // Frames the device still owns (held or dropped): it may DMA to their buffers.
  std::size_t owned() const { return held_.size() + dropped_.size(); }

 private:
  struct dropped_cmd {
    std::uint64_t frame;
    std::uint64_t context;
  };

  void err(const std::string& s) { c.errors.push_back(s); }

  std::uint64_t h_context(std::uint64_t fa) const {
    const std::uint8_t* f = dma_.translate(fa, 16);
    std::uint64_t ctx = 0;
    if (f != nullptr) std::memcpy(&ctx, f + 8, 8);
    return ctx & 0xffffffffu;
  }

  bool is_io_frame(std::uint32_t v) const {
    const std::uint8_t* f = dma_.translate(v & ~0x1fu, 1);
    return f != nullptr && f[0] >= mfi::cmd::ld_read && f[0] <= mfi::cmd::pd_scsi_io;
  }

  void soft_reset() {
    ++c.resets;
    dropped_.clear();
    held_.clear();
    rq_ = pi_ = ci_ = 0;
    head_ = 0;
    state_ = 0xb0000000u;
    intr_mask_ = 0xffffffffu;
    if (fault_after_reset) fault = true;
  }
  void abort_all() {
    // Like QEMU: cancelled commands complete with SCSI_IO_FAILED.
    for (const auto& d : dropped_) finish(d.frame, d.context, mfi::stat::scsi_io_failed, 0);
    dropped_.clear();
  }

  template <class T>
  T* at(std::uint64_t dev, std::uint64_t len = sizeof(T)) {
    return reinterpret_cast<T*>(dma_.translate(dev, len));
  }

  void handle_frame(std::uint32_t v) {
    if (!bus_master_) return;  // cannot even fetch the frame
    const std::uint64_t fa = v & ~0x1fu;
    // QEMU maps 2 KiB from the frame address; an unmapped tail drops the command.
    std::uint8_t* f = dma_.translate(fa, 2048);
    if (f == nullptr || (fa & 4095) + 2048 > 4096) {
      // Behind an IOMMU one mapping never crosses a 4 KiB page: QEMU drops
      // the frame (megasas_qf_map_failed) and answers BUSY.
      err("frame at " + std::to_string(fa) + ": its 2 KiB window is unmapped or crosses a 4 KiB page");
      finish(fa, h_context(fa), mfi::stat::scsi_done_with_error, scsi::scsi_status::busy);
      return;
    }
    mfi::frame_header h;
    std::memcpy(&h, f, sizeof h);
    const std::uint64_t ctx = h.context & 0xffffffffu;
    std::uint8_t st = mfi::stat::invalid_cmd, ss = 0;
    switch (h.frame_cmd) {
      case mfi::cmd::init: st = do_init(f); break;
      case mfi::cmd::dcmd: st = do_dcmd(f, h); break;
      case mfi::cmd::abort: st = do_abort(f); break;
      case mfi::cmd::ld_read:
      case mfi::cmd::ld_write:
      case mfi::cmd::ld_scsi_io:
      case mfi::cmd::pd_scsi_io:
        if (drop_next != 0) {
          --drop_next;
          dropped_.push_back({fa, ctx});
          return;
        }
        if (!force_status.empty()) {
          const forced_status fs = force_status.front();
          force_status.pop_front();
          finish(fa, ctx, fs.cmd_status, fs.scsi_status);
          return;
        }
        if (!force_sense.empty() && h.frame_cmd >= mfi::cmd::ld_scsi_io) {
          forced_sense fs = std::move(force_sense.front());
          force_sense.pop_front();
          mfi::pass_frame p;
          std::memcpy(&p, f, sizeof p);
          const std::uint64_t sa = (std::uint64_t{p.sense_addr_hi} << 32) | p.sense_addr_lo;
          // A device stores at most what the frame asked for (its sense_len).
          const std::size_t n = fs.bytes.size() < h.sense_len ? fs.bytes.size() : h.sense_len;
          if (n != 0) {
            std::uint8_t* sb = dma_.translate(sa, n);
            if (sb == nullptr) err("sense buffer not mapped");
            else std::memcpy(sb, fs.bytes.data(), n);
          }
          f[1] = fs.sense_len_said;
          finish(fa, ctx, mfi::stat::scsi_done_with_error, scsi::scsi_status::check_condition);
          return;
        }
        if (error_good_next != 0) {
          // A lying device: "failed, see the SCSI status", and the status says GOOD.
          --error_good_next;
          ++c.error_good;
          finish(fa, ctx, mfi::stat::scsi_done_with_error, scsi::scsi_status::good);
          return;
        }
        st = h.frame_cmd <= mfi::cmd::ld_write ? do_io(f, h) : do_scsi(f, h, ss);
        break;
      default: err("unknown frame command"); break;
    }
    finish(fa, ctx, st, ss);
  }

  void finish(std::uint64_t fa, std::uint64_t ctx, std::uint8_t st, std::uint8_t ss) {
    std::uint8_t* f = dma_.translate(fa, 64);
    if (f != nullptr) {
      f[3] = ss;
      f[2] = st;
    }
    post_context(ctx);
    if (duplicate_next != 0) {
      --duplicate_next;
      post_context(ctx);
    }
  }

  void post_context(std::uint64_t ctx) {
    while (!inject_contexts.empty()) {
      const std::uint32_t bad = inject_contexts.front();
      inject_contexts.pop_front();
      ++c.injected_contexts;
      post_one(bad);
    }
    ++c.completions;
    post_one(ctx);
  }

  void post_one(std::uint64_t ctx) {
    last_context = static_cast<std::uint32_t>(ctx);
    if (rq_ == 0) return;
    auto* q = at<std::uint32_t>(rq_ + head_ * 4u);
    if (q == nullptr) {
      err("reply queue not mapped");
      return;
    }
    *q = static_cast<std::uint32_t>(ctx);
    if (intr_mask_ == 0xffffffffu) return;  // QEMU: no producer update while masked
    head_ = (head_ + 1) % fw_cmds_;
    auto* ci = at<std::uint32_t>(ci_);
    auto* pi = at<std::uint32_t>(pi_);
    if (ci != nullptr && head_ == *ci) err("reply queue overrun: producer caught up with the consumer");
    if (pi != nullptr) __atomic_store_n(pi, corrupt_producer ? fw_cmds_ + 5 : head_, __ATOMIC_RELEASE);
    corrupt_producer = false;
    ++pending_irqs;
    ++c.irqs;
  }

  std::uint8_t do_init(std::uint8_t* f) {
    ++c.inits;
    if (fail_inits != 0) {
      --fail_inits;
      return mfi::stat::invalid_parameter;
    }
    mfi::init_frame fr;
    std::memcpy(&fr, f, sizeof fr);
    const std::uint64_t qa = (std::uint64_t{fr.qinfo_new_addr_hi} << 32) | fr.qinfo_new_addr_lo;
    auto* q = at<mfi::init_queue_info>(qa);
    if (q == nullptr) return mfi::stat::memory_not_available;
    if (q->rq_entries > fw_cmds_) return mfi::stat::invalid_parameter;
    rq_ = (std::uint64_t{q->rq_addr_hi} << 32) | q->rq_addr_lo;
    pi_ = (std::uint64_t{q->pi_addr_hi} << 32) | q->pi_addr_lo;
    ci_ = (std::uint64_t{q->ci_addr_hi} << 32) | q->ci_addr_lo;
    if (at<std::uint32_t>(rq_, fw_cmds_ * 4u) == nullptr) err("reply queue smaller than max_cmds entries");
    auto* pi = at<std::uint32_t>(pi_);
    head_ = pi != nullptr ? *pi % fw_cmds_ : 0;
    state_ = 0xc0000000u;
    return mfi::stat::ok;
  }

  struct sgl_view {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> el;
    std::uint64_t total = 0;
  };
  sgl_view read_sgl(std::uint8_t* f, const mfi::frame_header& h, std::size_t off) {
    sgl_view s;
    const bool ieee = h.flags & scsi::mfi_frame_ieee, s64 = h.flags & scsi::mfi_frame_sgl64;
    const std::size_t esz = ieee ? 16 : s64 ? 12 : 8;
    if (h.sge_count != 0) (ieee || s64 ? c.sgl64_frames : c.sgl32_frames)++;
    if (h.sge_count > c.max_sge_seen) c.max_sge_seen = h.sge_count;
    if (h.sge_count > fw_sge_) err("more SGEs than the firmware allows");
    for (unsigned i = 0; i < h.sge_count; ++i) {
      const std::uint8_t* e = f + off + i * esz;
      std::uint64_t a = 0;
      std::uint32_t l = 0;
      if (ieee || s64) {
        std::memcpy(&a, e, 8);
        std::memcpy(&l, e + 8, 4);
      } else {
        std::uint32_t a32;
        std::memcpy(&a32, e, 4);
        std::memcpy(&l, e + 4, 4);
        a = a32;
      }
      if (a == 0 || l == 0) err("SGE with address or length 0");
      if (a + l - 1 > c.highest_sge_addr) c.highest_sge_addr = a + l - 1;
      s.el.push_back({a, l});
      s.total += l;
    }
    return s;
  }
  // Copies between the SGL and a linear buffer; false on an unmapped element.
  bool move(const sgl_view& s, std::uint8_t* lin, std::uint64_t len, bool to_host) {
    std::uint64_t done = 0;
    for (auto [a, l] : s.el) {
      if (done >= len) break;
      const std::uint64_t n = l < len - done ? l : len - done;
      std::uint8_t* p = dma_.translate(a, n);
      if (p == nullptr) {
        err("SGE points at unmapped memory");
        return false;
      }
      if (to_host) std::memcpy(p, lin + done, n);
      else std::memcpy(lin + done, p, n);
      done += n;
    }
    return true;
  }

  std::uint8_t do_dcmd(std::uint8_t* f, const mfi::frame_header& h) {
    ++c.dcmds;
    mfi::dcmd_frame d;
    std::memcpy(&d, f, sizeof d);
    if (h.sge_count > 1) {
      err("DCMD with more than one SGE");
      return mfi::stat::memory_not_available;
    }
    sgl_view s = read_sgl(f, h, mfi::dcmd_sgl_offset);
    std::vector<std::uint8_t> out;
    switch (d.opcode) {
      case mfi::dcmd::ctrl_get_info: {
        out.assign(2048, 0);
        auto put16 = [&](std::size_t o, std::uint16_t v) { std::memcpy(&out[o], &v, 2); };
        put16(0, 0x1000);
        put16(2, pci_device);
        put16(4, 0x1000);
        put16(6, 0x9261);
        const char* name = "Fake MegaRAID 9260-8i";
        std::memcpy(&out[1344], name, std::strlen(name));
        std::memcpy(&out[1424], "FAKE0001", 8);
        put16(1464, static_cast<std::uint16_t>(fw_cmds_));
        put16(1466, static_cast<std::uint16_t>(fw_sge_));
        const std::uint32_t mrs = 0xffff;
        std::memcpy(&out[1468], &mrs, 4);
        put16(1472, static_cast<std::uint16_t>(jbod ? 0 : disks_.size()));
        put16(1478, static_cast<std::uint16_t>(disks_.size()));
        break;
      }
      case mfi::dcmd::ld_get_list: {
        out.assign(8 + 64 * 16, 0);
        const std::uint32_t n = jbod ? 0 : static_cast<std::uint32_t>(disks_.size());
        std::memcpy(&out[0], &n, 4);
        for (std::size_t i = 0; i < n; ++i) {
          mfi::ld_list_entry e{};
          e.target_id = disks_[i].target;
          e.state = mfi::ld_state_optimal;
          e.size = disks_[i].blocks();
          std::memcpy(&out[8 + i * 16], &e, 16);
        }
        break;
      }
      case mfi::dcmd::pd_get_list: out = pd_list(); break;
      case mfi::dcmd::pd_list_query: {
        // Like QEMU (megasas_dcmd_pd_list_query): every drive for "all" or in
        // JBOD mode, else OK with nothing written.
        ++c.pd_queries;
        if (!pd_list_query_supported) return mfi::stat::invalid_dcmd;
        if (d.mbox[0] != mfi::dcmd::pd_query_all && !jbod) return mfi::stat::ok;
        out = pd_list();
        break;
      }
      case mfi::dcmd::ctrl_cache_flush: ++c.cache_flushes; return mfi::stat::ok;
      case mfi::dcmd::ctrl_shutdown:
        ++c.shutdowns;
        state_ = 0xb0000000u;
        return mfi::stat::ok;
      default: return mfi::stat::ok;
    }
    if (s.total < out.size() && d.opcode == mfi::dcmd::ctrl_get_info) return mfi::stat::invalid_parameter;
    std::uint8_t st = mfi::stat::ok;
    if (dcmd_hook) dcmd_hook(d.opcode, out, st);
    // Never more than the SGE holds: a device cannot write past what it was given.
    move(s, out.data(), out.size() < s.total ? out.size() : s.total, true);
    return st;
  }

  // PD_GET_LIST data: QEMU's device IDs (SCSI id << 8 | LUN), slot = SCSI id.
  std::vector<std::uint8_t> pd_list() const {
    std::vector<std::uint8_t> out(8 + disks_.size() * 24, 0);
    const std::uint32_t n = static_cast<std::uint32_t>(disks_.size()), size = static_cast<std::uint32_t>(out.size());
    std::memcpy(&out[0], &size, 4);
    std::memcpy(&out[4], &n, 4);
    for (std::size_t i = 0; i < disks_.size(); ++i) {
      const std::uint16_t id = static_cast<std::uint16_t>(disks_[i].target << 8);
      std::memcpy(&out[8 + i * 24], &id, 2);
      out[8 + i * 24 + 5] = disks_[i].target;
    }
    return out;
  }

  std::uint8_t do_abort(std::uint8_t* f) {
    ++c.aborts;
    mfi::abort_frame a;
    std::memcpy(&a, f, sizeof a);
    const std::uint64_t addr = (std::uint64_t{a.abort_mfi_addr_hi} << 32) | a.abort_mfi_addr_lo;
    if (ignore_aborts) return mfi::stat::ok;
    for (std::size_t i = 0; i < dropped_.size(); ++i) {
      if (dropped_[i].frame != addr) continue;
      if (dropped_[i].context != (a.abort_context & 0xffffffffu)) return mfi::stat::abort_not_possible;
      const dropped_cmd d = dropped_[i];
      dropped_.erase(dropped_.begin() + static_cast<std::ptrdiff_t>(i));
      finish(d.frame, d.context, mfi::stat::scsi_io_failed, 0);
      return mfi::stat::ok;
    }
    return mfi::stat::ok;
  }

  std::uint8_t do_io(std::uint8_t* f, const mfi::frame_header& h) {
    mfi::io_frame io;
    std::memcpy(&io, f, sizeof io);
    ++c.ld_frames;
    fake_disk* d = jbod ? nullptr : disk(h.target_id);
    if (d == nullptr || h.lun_id != 0) return mfi::stat::device_not_found;
    const std::uint64_t lba = (std::uint64_t{io.start_lba_hi} << 32) | io.start_lba_lo;
    const std::uint64_t bytes = std::uint64_t{h.data_len} * d->block_size;
    if (lba + h.data_len > d->blocks()) return mfi::stat::ld_lba_out_of_range;
    sgl_view s = read_sgl(f, h, mfi::io_sgl_offset);
    if (s.total != bytes) err("LD I/O SGL length differs from blocks * block size");
    const bool wr = h.frame_cmd == mfi::cmd::ld_write;
    (wr ? c.writes : c.reads)++;
    if (!move(s, d->data.data() + lba * d->block_size, bytes, !wr)) return mfi::stat::scsi_io_failed;
    return mfi::stat::ok;
  }

  void sense(std::uint8_t* f, std::uint8_t key, std::uint8_t asc) {
    mfi::pass_frame p;
    std::memcpy(&p, f, sizeof p);
    const std::uint64_t sa = (std::uint64_t{p.sense_addr_hi} << 32) | p.sense_addr_lo;
    std::uint8_t* s = dma_.translate(sa, 18);
    if (s == nullptr) {
      err("sense buffer not mapped");
      return;
    }
    std::memset(s, 0, 18);
    f[1] = 18;  // header sense_len: bytes stored (QEMU megasas_build_sense does the same)
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    // ILLEGAL REQUEST carries a sense-key specific field pointer (SKSV set,
    // C/D = 1: byte 2 of the CDB), as targets do; tests check it survives.
    if (key == scsi::sense_key::illegal_request) {
      s[15] = 0xc0;
      s[17] = 2;
    }
  }

  std::uint8_t do_scsi(std::uint8_t* f, const mfi::frame_header& h, std::uint8_t& ss) {
    mfi::pass_frame p;
    std::memcpy(&p, f, sizeof p);
    const bool physical = h.frame_cmd == mfi::cmd::pd_scsi_io;
    (physical ? c.pd_frames : c.ld_frames)++;
    // QEMU: LD frames find nothing in JBOD mode (megasas_handle_scsi).
    fake_disk* d = (jbod && !physical) || h.lun_id != 0 ? nullptr : disk(h.target_id);
    if (d == nullptr) return mfi::stat::device_not_found;
    auto check = [&](std::uint8_t key, std::uint8_t asc) {
      sense(f, key, asc);
      ss = scsi::scsi_status::check_condition;
      return mfi::stat::scsi_done_with_error;
    };
    sgl_view s = read_sgl(f, h, mfi::pass_sgl_offset);
    if (h.sge_count == 0) {
      // QEMU >= 5.2: a SCSI frame without SGEs fails with TARGET FAILURE.
      err("pass-through frame without SGEs (megasas_iovec_sgl_overflow)");
      return check(scsi::sense_key::hardware_error, 0x44);
    }
    if (s.total != h.data_len) err("pass-through SGL length differs from data_len");
    const std::uint8_t* cdb = p.cdb;
    std::vector<std::uint8_t> out;
    switch (cdb[0]) {
      case scsi::op::test_unit_ready: return mfi::stat::ok;
      case scsi::op::inquiry: {
        ++c.inquiries;
        if (cdb[1] & 1) {
          out = {0, cdb[2], 0, 4, 0x00, 0x80, 0x83, 0xb0};
          if (cdb[2] == 0x80) out = {0, 0x80, 0, 8, 'F', 'A', 'K', 'E', '0', '0', '0', static_cast<std::uint8_t>('0' + d->target)};
        } else {
          out.assign(36, ' ');
          out[0] = 0;
          out[1] = 0;
          out[2] = 5;
          out[3] = 2;
          out[4] = 31;
          std::memcpy(&out[8], "FAKE    ", 8);
          std::memcpy(&out[16], "MFI LD          ", 16);
          std::memcpy(&out[32], "1.0 ", 4);
        }
        break;
      }
      case scsi::op::read_capacity_10: {
        out.assign(8, 0);
        scsi::detail::put_be32(&out[0], static_cast<std::uint32_t>(d->blocks() - 1));
        scsi::detail::put_be32(&out[4], d->block_size);
        break;
      }
      case scsi::op::service_action_in_16: {
        out.assign(32, 0);
        scsi::detail::put_be64(&out[0], d->blocks() - 1);
        scsi::detail::put_be32(&out[8], d->block_size);
        break;
      }
      case scsi::op::request_sense: out = {0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}; break;
      case scsi::op::synchronize_cache_10: ++c.sync10; return mfi::stat::ok;
      case scsi::op::synchronize_cache_16:
        ++c.sync16;
        if (reject_sync16) return check(scsi::sense_key::illegal_request, 0x20);
        return mfi::stat::ok;
      case scsi::op::read_10:
      case scsi::op::write_10:
      case scsi::op::read_16:
      case scsi::op::write_16: {
        const bool is16 = cdb[0] == scsi::op::read_16 || cdb[0] == scsi::op::write_16;
        const bool wr = cdb[0] == scsi::op::write_10 || cdb[0] == scsi::op::write_16;
        const std::uint64_t lba = is16 ? scsi::get_be64(cdb + 2) : scsi::get_be32(cdb + 2);
        const std::uint32_t n = is16 ? scsi::get_be32(cdb + 10) : scsi::get_be16(cdb + 7);
        if (lba + n > d->blocks()) return check(scsi::sense_key::illegal_request, 0x21);
        if (std::uint64_t{n} * d->block_size != h.data_len) err("READ/WRITE length differs from data_len");
        (wr ? c.writes : c.reads)++;
        if (wr && (cdb[1] & 0x08) != 0) ++c.fua_writes;
        if (!move(s, d->data.data() + lba * d->block_size, h.data_len, !wr)) return mfi::stat::scsi_io_failed;
        return mfi::stat::ok;
      }
      case scsi::op::unmap: {  // one descriptor is all the model takes
        std::uint8_t pl[24] = {};
        if (h.data_len != sizeof pl || !move(s, pl, sizeof pl, false)) return check(scsi::sense_key::illegal_request, 0x26);
        const std::uint64_t lba = scsi::get_be64(pl + 8);
        const std::uint32_t n = scsi::get_be32(pl + 16);
        if (scsi::get_be16(pl + 2) != 16 || lba + n > d->blocks()) return check(scsi::sense_key::illegal_request, 0x21);
        std::memset(d->data.data() + lba * d->block_size, 0, std::uint64_t{n} * d->block_size);  // reads as zeroes
        ++c.unmaps;
        return mfi::stat::ok;
      }
      case scsi::op::write_same_16: {
        const std::uint64_t lba = scsi::get_be64(cdb + 2);
        const std::uint32_t n = scsi::get_be32(cdb + 10);
        if (n == 0 || lba + n > d->blocks()) return check(scsi::sense_key::illegal_request, 0x21);
        if (h.data_len != d->block_size) err("WRITE SAME data is not one block");
        std::vector<std::uint8_t> blk(d->block_size);
        if (!move(s, blk.data(), blk.size(), false)) return mfi::stat::scsi_io_failed;
        for (std::uint32_t i = 0; i < n; ++i) std::memcpy(d->data.data() + (lba + i) * d->block_size, blk.data(), blk.size());
        ++c.write_sames;
        return mfi::stat::ok;
      }
      default: return check(scsi::sense_key::illegal_request, 0x20);
    }
    if (h.data_len != out.size() && !out.empty() && h.data_len < out.size()) out.resize(h.data_len);
    move(s, out.data(), out.size() < s.total ? out.size() : s.total, true);
    return mfi::stat::ok;
  }

  fake_dma_space& dma_;
  std::uint32_t fw_cmds_, fw_sge_;
  std::uint32_t state_ = 0xb0000000u;
  std::uint32_t intr_mask_ = 0xffffffffu;
  std::uint64_t rq_ = 0, pi_ = 0, ci_ = 0;
  std::uint32_t head_ = 0;
  bool bus_master_ = true;
  std::vector<fake_disk> disks_;
  std::deque<std::uint32_t> held_;
  std::vector<dropped_cmd> dropped_;
};

// ---- the fake platform (satisfies examples/scsi mfi_platform) -----------------------
class fake_mfi_platform {
 public:
  struct window {
    fake_mfi_controller* c = nullptr;
    std::uint32_t read32(std::size_t off) const { return c->mmio_read(off); }
    void write32(std::size_t off, std::uint32_t v) const { c->mmio_write(off, v); }
  };

  fake_mfi_platform(fake_dma_space& dma, fake_mfi_controller& ctl) : dma_(dma), ctl_(ctl) {}

  std::uint16_t device_id = 0x0079;
  std::uint32_t vectors = 0;  // what irq_enable grants
  bool bus_master = false;
  std::uint64_t clock_ns = 1'000'000'000;
  std::uint64_t irq_waits = 0;

  result<std::uint16_t> config_read16(std::uint32_t off) {
    if (off == 0) return std::uint16_t{0x1000};
    if (off == 2) return device_id;
    return std::uint16_t{0};
  }
  // 2108 layout: BAR 0 I/O, BAR 1 memory (registers), BAR 3 a memory stub.
  // 1078 layout: BAR 0 memory (registers), BAR 2 I/O.
  int register_bar() const { return device_id == 0x0060 ? 0 : 1; }
  examples::megaraid::bar_kind bar_type(int bar) {
    if (device_id == 0x0060)
      return bar == 0 ? examples::megaraid::bar_kind::memory
             : bar == 2 ? examples::megaraid::bar_kind::io
                        : examples::megaraid::bar_kind::absent;
    if (bar == 0) return examples::megaraid::bar_kind::io;
    if (bar == 1 || bar == 3) return examples::megaraid::bar_kind::memory;
    return examples::megaraid::bar_kind::absent;
  }
  result<window> map_bar(int bar) {
    if (bar != register_bar()) return status{errc::not_supported, "fake: not the register BAR"};
    return window{&ctl_};
  }
  status enable_bus_master() {
    bus_master = true;
    ctl_.set_bus_master(true);
    return ok_status;
  }
  status disable_bus_master() {
    bus_master = false;
    ++bus_master_disables;
    ctl_.set_bus_master(false);
    return ok_status;
  }
  std::uint64_t bus_master_disables = 0;
  result<dma_region> dma_alloc(std::size_t n, std::uint64_t limit) { return dma_.alloc(n, limit); }
  status dma_free(const dma_region& r) { return dma_.free(r); }
  result<std::uint32_t> irq_enable() { return vectors; }
  std::uint32_t irq_wait(int ms) {
    ++irq_waits;
    if (ctl_.hold) ctl_.step();
    const std::uint32_t n = ctl_.pending_irqs;
    ctl_.pending_irqs = 0;
    if (n == 0) clock_ns += static_cast<std::uint64_t>(ms) * 1'000'000ull;
    return n;
  }
  // The clock moves a little on every look, so polled loops make progress in
  // virtual time without sleeping.
  std::uint64_t now_ns() { return clock_ns += 1000; }
  void delay_us(std::uint32_t us) { clock_ns += std::uint64_t{us} * 1000; }

 private:
  fake_dma_space& dma_;
  fake_mfi_controller& ctl_;
};

static_assert(examples::megaraid::mfi_platform<fake_mfi_platform>);

}  // namespace dkq::testing
