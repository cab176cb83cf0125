// tests/support/fake_nvme_controller.hpp - TEST DOUBLE: a software NVMe
// controller (registers, admin and I/O commands, an in-memory disk) and the
// platform type the NVMe driver core runs on in unit tests. Not part of dkq.
//
// Complements fake_nvme_device.hpp (the queue engineer's model of one queue
// pair's device side): the driver core needs the whole controller - CAP/CC/
// CSTS transitions, the admin queue, Identify, Set Features, queue creation,
// Doorbell Buffer Config, Abort, AER - so this models those, stepped from the
// test's thread. The platform's delay_us() steps the device and advances a
// virtual clock, so bring-up waits bounded by CAP.TO run in microseconds of
// real time and tests can check the bound exactly.
//
// Device addresses are host pointers (an identity IOMMU): data pointers in
// PRPs and SGLs are dereferenced directly, after checks a real device makes
// (PRP entries after the first are page aligned, the list stays in the page).
//
// Fault injection: never_ready, fatal_on_enable (CSTS.CFS), removed (every
// register reads all ones), drop_io (the next N I/O commands are consumed
// and never completed), abort_works (Abort completes a dropped command with
// "Command Abort Requested"; otherwise Abort answers "not aborted"),
// media_error_lba (a read touching it fails with Unrecovered Read Error).
//
// A device that lies (issue: device-side faults): dstrd and bar_bytes (any
// doorbell stride, a BAR of any size), sq_head (honest, stuck at its first
// value, or a fixed wild value in every completion), fatal() (CSTS.CFS while
// running), fail_enable_after (the Nth and later enables never become ready:
// a reset that fails), and two hooks that see every completion entry and
// every Identify page before the host does: cqe_hook may rewrite the entry
// (CID, phase, status, SQ head) and say how many copies to post (0: drop,
// 2: duplicate); identify_hook may rewrite or truncate the page. The
// device-side fuzzer drives both from its input.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/nvme/spec.hpp"
#include "dkq/queue/completion_queue.hpp"

namespace dkq::test {

class fake_nvme_controller {
 public:
  struct ns_cfg {
    std::uint32_t nsid;
    std::uint64_t blocks;
    std::uint8_t lbads;  // log2 block size
  };

  // ---- configuration (before the driver starts) ----
  std::uint16_t vendor = 0x1234, device_id = 0x5678;  // not QEMU: shadow doorbells on by default
  std::uint32_t mqes = 1023;                          // 0-based
  std::uint8_t to_500ms = 4;                          // CAP.TO = 2 s
  std::uint8_t mdts = 2;                              // 16 KiB per command
  std::uint32_t sgls = 1;                             // SGLs, byte aligned
  bool dbbuf = true;                                  // OACS bit 8
  std::uint32_t max_queues = 8;
  std::uint32_t ready_delay_steps = 3;                // steps between CC.EN=1 and CSTS.RDY=1
  std::vector<ns_cfg> namespaces{{1, 4096, 9}, {2, 1024, 12}};

  // ---- fault injection ----
  std::uint8_t dstrd = 0;             // CAP.DSTRD
  std::size_t bar_bytes = 0x2000;     // size of the register BAR
  enum class head_mode : std::uint8_t { honest, stuck, wild } sq_head = head_mode::honest;
  std::uint16_t wild_head = 0xffff;   // reported in every completion in head_mode::wild
  std::uint16_t fail_create_sq_qid = 0;  // Create I/O SQ for this qid fails (0: none)
  std::uint32_t fail_enable_after = 0;  // 0: never; N: the Nth enable and later ones never become ready
  // Sees each completion before it is posted; returns how many copies to post.
  std::function<int(nvme_cqe&)> cqe_hook;
  // Sees each Identify page (cns, page) after the model filled it.
  std::function<void(std::uint8_t, std::uint8_t*)> identify_hook;
  void fatal() {
    set_reg(nvme::reg::csts, reg(nvme::reg::csts) | nvme::csts::cfs);
    ++faults_injected;
  }
  bool never_ready = false;
  bool fatal_on_enable = false;
  bool removed = false;
  std::uint32_t drop_io = 0;
  bool abort_works = true;
  std::uint64_t media_error_lba = ~std::uint64_t{0};

  // ---- observations ----
  std::uint64_t flushes = 0, reads = 0, writes = 0, write_zeroes = 0, deallocates = 0, aborts = 0, fua_writes = 0;
  std::uint64_t resets = 0, shutdowns = 0, dbbuf_configs = 0;
  std::uint64_t sq_mmio_writes[65]{};  // register doorbell writes seen per SQ (value changes)
  std::uint64_t protocol_errors = 0;   // what QEMU would trace as pci_nvme_err_*
  std::uint64_t sgl_commands = 0, prp_list_commands = 0;
  std::uint64_t enables = 0;
  std::uint64_t completions_posted = 0, faults_injected = 0;
  std::vector<std::uint8_t> disk[4];

  fake_nvme_controller() {
    alloc_bar();
    for (const ns_cfg& n : namespaces) disk_for(n.nsid).assign(n.blocks << n.lbads, 0);
    write_cap();
  }
  ~fake_nvme_controller() { std::free(bar_); }
  fake_nvme_controller(const fake_nvme_controller&) = delete;
  fake_nvme_controller& operator=(const fake_nvme_controller&) = delete;

  void finalize_config() {
    if (dstrd != 0) ++faults_injected;  // legal, but the stride most hosts never meet
    alloc_bar();
    for (const ns_cfg& n : namespaces) disk_for(n.nsid).assign(n.blocks << n.lbads, 0);
    write_cap();
  }

  mmio_window window() { return mmio_window{bar_, bar_bytes}; }
  std::vector<std::uint8_t>& disk_for(std::uint32_t nsid) { return disk[nsid & 3]; }
  std::uint32_t block_size(std::uint32_t nsid) const {
    for (const ns_cfg& n : namespaces)
      if (n.nsid == nsid) return 1u << n.lbads;
    return 0;
  }

  // One device step: register transitions, then every queue with new entries.
  void step() {
    std::lock_guard<std::mutex> g(mtx_);
    if (removed) {
      if (!removal_counted_) ++faults_injected;
      removal_counted_ = true;
      std::memset(bar_, 0xff, bar_bytes);
      return;
    }
    const std::uint32_t cc = reg(nvme::reg::cc);
    std::uint32_t csts = reg(nvme::reg::csts);
    if (!(cc & nvme::cc::en)) enable_refusal_counted_ = false;
    if ((cc & nvme::cc::en) && !(csts & nvme::csts::rdy) && !(csts & nvme::csts::cfs)) {
      if (fatal_on_enable) {
        set_reg(nvme::reg::csts, csts | nvme::csts::cfs);
        ++faults_injected;
        return;
      }
      if (never_ready || (fail_enable_after != 0 && enables + 1 >= fail_enable_after)) {
        if (!enable_refusal_counted_) ++faults_injected;  // once per enable that never completes
        enable_refusal_counted_ = true;
        return;
      }
      if (++ready_steps_ >= ready_delay_steps) enable();
      return;
    }
    if (!(cc & nvme::cc::en) && (csts & nvme::csts::rdy)) {
      reset_state();
      set_reg(nvme::reg::csts, 0);
      ready_steps_ = 0;
      ++resets;
      return;
    }
    if ((cc & nvme::cc::shn_mask) && (csts & nvme::csts::shst_mask) != nvme::csts::shst_complete) {
      set_reg(nvme::reg::csts, (csts & ~nvme::csts::shst_mask) | nvme::csts::shst_complete);
      ++shutdowns;
    }
    if (!(csts & nvme::csts::rdy)) return;
    for (std::uint32_t q = 0; q <= (io_by_owner ? 0 : max_queues); ++q) process_sq(q);
  }

  // Threaded tests: with io_by_owner set, step() serves the registers and the
  // admin queue only, and each host thread steps its own I/O queue here, so
  // the model reads a queue's entries on the thread that wrote them (as DMA
  // ordering would guarantee) and shared model state stays under one lock.
  bool io_by_owner = false;
  void step_queue(std::uint32_t q) {
    std::lock_guard<std::mutex> g(mtx_);
    if (removed || !(reg(nvme::reg::csts) & nvme::csts::rdy) || q == 0 || q > max_queues) return;
    process_sq(q);
  }

  // Registers beyond the BAR read as 0 and ignore writes (the model's own
  // doorbell scan may reach past a small BAR at a large stride).
  std::uint32_t reg(std::size_t off) const { return off + 4 <= bar_bytes ? bar_[off / 4] : 0; }
  std::uint32_t cq_head_register(std::uint16_t qid) const { return reg(nvme::cq_head_doorbell(qid, dstrd)); }

 private:
  struct sq_state {
    bool live = false;
    std::uint8_t* base = nullptr;
    std::uint32_t size = 0, head = 0, last_tail = 0;
    std::uint16_t cqid = 0;
    std::uint32_t first_head = 0;
    bool head_reported = false;
  };
  struct cq_state {
    bool live = false;
    nvme_cqe* base = nullptr;
    std::uint32_t size = 0, tail = 0;
    bool phase = true;
  };
  struct held {
    std::uint16_t sqid, cid;
    bool aer;
  };

  void set_reg(std::size_t off, std::uint32_t v) {
    if (off + 4 <= bar_bytes) bar_[off / 4] = v;
  }
  void alloc_bar() {
    std::free(bar_);
    bar_bytes = (bar_bytes + 4095) & ~std::size_t{4095};
    bar_ = static_cast<std::uint32_t*>(std::aligned_alloc(4096, bar_bytes));
    std::memset(bar_, 0, bar_bytes);
  }
  // Index of queue q's SQ tail (CQ head: +1 stride) word in the register
  // array and in the shadow/EventIdx pages, which follow CAP.DSTRD.
  std::size_t sq_word(std::uint32_t q) const { return (2u * q) * (std::size_t{1} << dstrd); }
  std::size_t cq_word(std::uint32_t q) const { return (2u * q + 1u) * (std::size_t{1} << dstrd); }
  std::uint64_t reg64(std::size_t off) const { return reg(off) | (std::uint64_t{reg(off + 4)} << 32); }

  void write_cap() {
    std::uint64_t cap = mqes | (1ull << 16) | (std::uint64_t{to_500ms} << 24) | (std::uint64_t{dstrd & 0xfu} << 32) |
                        (1ull << 37) | (4ull << 52);
    set_reg(nvme::reg::cap, static_cast<std::uint32_t>(cap));
    set_reg(nvme::reg::cap + 4, static_cast<std::uint32_t>(cap >> 32));
    set_reg(nvme::reg::vs, 0x00010400);
  }

  void reset_state() {
    for (auto& s : sqs_) s = {};
    for (auto& c : cqs_) c = {};
    held_.clear();
    shadow_ = nullptr;
    eventidx_ = nullptr;
    std::memset(bar_ + 0x1000 / 4, 0, bar_bytes - 0x1000);
  }

  void enable() {
    ++enables;
    enable_refusal_counted_ = false;
    reset_state();
    const std::uint32_t aqa = reg(nvme::reg::aqa);
    sqs_[0] = {true, reinterpret_cast<std::uint8_t*>(reg64(nvme::reg::asq)), (aqa & 0xfff) + 1, 0, 0, 0};
    cqs_[0] = {true, reinterpret_cast<nvme_cqe*>(reg64(nvme::reg::acq)), ((aqa >> 16) & 0xfff) + 1, 0, true};
    set_reg(nvme::reg::csts, nvme::csts::rdy);
  }

  std::uint32_t sq_tail(std::uint32_t q) {
    // With Doorbell Buffer Config the shadow word is the truth for I/O queues
    // (admin queue stays on registers, as Linux and SPDK use it); the
    // register still counts when the host writes it.
    const std::uint32_t r = reg(nvme::sq_tail_doorbell(static_cast<std::uint16_t>(q), dstrd));
    if (r != sqs_[q].last_tail) {
      ++sq_mmio_writes[q];
      sqs_[q].last_tail = r;
    }
    if (shadow_ != nullptr && q != 0) return shadow_[sq_word(q)];
    return r;
  }

  void process_sq(std::uint32_t q) {
    sq_state& s = sqs_[q];
    if (!s.live) return;
    std::uint32_t tail = sq_tail(q);
    if (tail >= s.size) {
      ++protocol_errors;
      return;
    }
    while (s.head != tail) {
      nvme::sqe cmd;
      std::memcpy(&cmd, s.base + std::size_t{s.head} * 64, 64);
      s.head = (s.head + 1) % s.size;
      if (q == 0) admin(cmd);
      else io(static_cast<std::uint16_t>(q), cmd);
      if (shadow_ != nullptr && q != 0) {
        // EventIdx: "tell me when the tail moves past what I have read".
        eventidx_[sq_word(q)] = s.head;
        tail = shadow_[sq_word(q)];
      }
    }
  }

  void complete(std::uint16_t sqid, std::uint16_t cid, std::uint16_t status_field, std::uint32_t dw0 = 0) {
    sq_state& s = sqs_[sqid];
    cq_state& c = cqs_[s.cqid];
    if (!c.live) return;
    // The CQ head from the shadow word when Doorbell Buffer Config is on (a
    // host may skip the register write when EventIdx says so).
    const std::uint32_t head =
        shadow_ != nullptr && s.cqid != 0 ? shadow_[cq_word(s.cqid)] : reg(nvme::cq_head_doorbell(s.cqid, dstrd));
    nvme_cqe e{};
    e.dw0 = dw0;
    if (!s.head_reported) {
      s.first_head = s.head;
      s.head_reported = true;
    }
    const head_mode hm = sqid == 0 ? head_mode::honest : sq_head;  // faults on I/O queues only
    e.sq_head = static_cast<std::uint16_t>(hm == head_mode::honest ? s.head
                                           : hm == head_mode::stuck ? s.first_head
                                                                    : wild_head);
    if (hm != head_mode::honest) ++faults_injected;
    e.sq_id = sqid;
    e.cid = cid;
    // Bit 0 here means "the right phase"; the hook may clear it.
    e.status = static_cast<std::uint16_t>((status_field << 1) | 1u);
    int copies = 1;
    if (cqe_hook) {
      const nvme_cqe before = e;
      copies = cqe_hook(e);
      if (copies != 1 || std::memcmp(&before, &e, sizeof e) != 0) ++faults_injected;
    }
    for (int k = 0; k < copies; ++k) {
      if ((c.tail + 1) % c.size == head) {
        ++protocol_errors;  // CQ full: the host did not advance its head
        return;
      }
      nvme_cqe out = e;
      const bool right_phase = (e.status & 1u) != 0;
      out.status = static_cast<std::uint16_t>((e.status & ~1u) | ((right_phase == c.phase) ? 1u : 0u));
      c.base[c.tail] = out;
      ++completions_posted;
      if (++c.tail == c.size) {
        c.tail = 0;
        c.phase = !c.phase;
      }
    }
  }

  static constexpr std::uint16_t sc(std::uint8_t sct, std::uint8_t code) {
    return static_cast<std::uint16_t>((sct << 8) | code);
  }

  void admin(const nvme::sqe& c) {
    using namespace nvme;
    auto* page = reinterpret_cast<std::uint8_t*>(c.prp1);
    switch (c.opcode) {
      case admin_opc::identify: {
        std::memset(page, 0, 4096);
        const std::uint8_t cns = c.cdw10 & 0xff;
        if (cns == cns::ctrl) {
          put16(page, id_ctrl::vid, vendor);
          std::memcpy(page + id_ctrl::sn, "FAKE0001            ", 20);
          std::memcpy(page + id_ctrl::mn, "dkq test double NVMe controller         ", 40);
          std::memcpy(page + id_ctrl::fr, "1.0     ", 8);
          page[id_ctrl::mdts] = mdts;
          put16(page, id_ctrl::oacs, dbbuf ? id_ctrl::oacs_dbbuf : 0);
          page[id_ctrl::aerl] = 3;
          page[id_ctrl::sqes] = 0x66;
          page[id_ctrl::cqes] = 0x44;
          put32(page, id_ctrl::nn, 16);
          put16(page, id_ctrl::oncs, id_ctrl::oncs_dsm | id_ctrl::oncs_write_zeroes);
          page[id_ctrl::vwc] = 1;
          put32(page, id_ctrl::sgls, sgls);
        } else if (cns == cns::active_ns_list) {
          std::uint32_t i = 0;
          for (const ns_cfg& n : namespaces) put32(page, 4 * i++, n.nsid);
        } else if (cns == cns::ns) {
          for (const ns_cfg& n : namespaces) {
            if (n.nsid != c.nsid) continue;
            std::uint64_t v = n.blocks;
            std::memcpy(page + id_ns::nsze, &v, 8);
            std::memcpy(page + id_ns::ncap, &v, 8);
            page[id_ns::nlbaf] = 1;
            page[id_ns::flbas] = n.lbads == 9 ? 0 : 1;
            put32(page, id_ns::lbaf0, 9u << 16);
            put32(page, id_ns::lbaf0 + 4, 12u << 16);
          }
        } else {
          return complete(0, c.cid, sc(0, 0x02));
        }
        if (identify_hook) {
          identify_hook(cns, page);
          ++faults_injected;
        }
        return complete(0, c.cid, 0);
      }
      case admin_opc::set_features: {
        if ((c.cdw10 & 0xff) != fid::number_of_queues) return complete(0, c.cid, sc(0, 0x02));
        const std::uint32_t n = max_queues - 1;
        return complete(0, c.cid, 0, (n << 16) | n);
      }
      case admin_opc::create_cq: {
        const std::uint16_t qid = c.cdw10 & 0xffff;
        if (qid == 0 || qid > max_queues || cqs_[qid].live) return complete(0, c.cid, sc(1, 0x01));
        cqs_[qid] = {true, reinterpret_cast<nvme_cqe*>(c.prp1), (c.cdw10 >> 16) + 1, 0, true};
        return complete(0, c.cid, 0);
      }
      case admin_opc::create_sq: {
        const std::uint16_t qid = c.cdw10 & 0xffff;
        const std::uint16_t cqid = static_cast<std::uint16_t>(c.cdw11 >> 16);
        if (qid == 0 || qid > max_queues || sqs_[qid].live) return complete(0, c.cid, sc(1, 0x01));
        if (qid == fail_create_sq_qid) {
          ++faults_injected;
          return complete(0, c.cid, sc(0, 0x06));  // Internal Error
        }
        if (!cqs_[cqid].live) return complete(0, c.cid, sc(1, 0x00));
        sqs_[qid] = {true, reinterpret_cast<std::uint8_t*>(c.prp1), (c.cdw10 >> 16) + 1, 0, 0, cqid};
        return complete(0, c.cid, 0);
      }
      case admin_opc::delete_sq:
        sqs_[c.cdw10 & 0xffff].live = false;
        return complete(0, c.cid, 0);
      case admin_opc::delete_cq:
        cqs_[c.cdw10 & 0xffff].live = false;
        return complete(0, c.cid, 0);
      case admin_opc::doorbell_buffer_config:
        if (!dbbuf) return complete(0, c.cid, sc(0, 0x01));
        shadow_ = reinterpret_cast<std::uint32_t*>(c.prp1);
        eventidx_ = reinterpret_cast<std::uint32_t*>(c.prp2);
        ++dbbuf_configs;
        return complete(0, c.cid, 0);
      case admin_opc::abort: {
        ++aborts;
        const std::uint16_t sqid = c.cdw10 & 0xffff, cid = static_cast<std::uint16_t>(c.cdw10 >> 16);
        for (auto it = held_.begin(); it != held_.end(); ++it) {
          if (!it->aer && it->sqid == sqid && it->cid == cid && abort_works) {
            complete(sqid, cid, sc(0, 0x07));
            held_.erase(it);
            return complete(0, c.cid, 0, 0);
          }
        }
        return complete(0, c.cid, 0, 1);  // dw0 bit 0: not aborted
      }
      case admin_opc::async_event_request:
        held_.push_back({0, c.cid, true});
        return;
      default:
        ++protocol_errors;
        return complete(0, c.cid, sc(0, 0x01));
    }
  }

  // Gathers the data of a command into a list of host spans (PRP or SGL).
  bool data_spans(const nvme::sqe& c, std::uint64_t len, std::vector<std::pair<std::uint8_t*, std::uint64_t>>& out) {
    if ((c.flags >> 6) == 1) {
      ++sgl_commands;
      std::uint8_t id;
      std::memcpy(&id, reinterpret_cast<const std::uint8_t*>(&c.prp1) + 15, 1);
      std::uint32_t l;
      std::memcpy(&l, reinterpret_cast<const std::uint8_t*>(&c.prp1) + 8, 4);
      if ((id >> 4) != 0 || l != len) return false;  // this double takes one Data Block only
      out.push_back({reinterpret_cast<std::uint8_t*>(c.prp1), len});
      return true;
    }
    const std::uint64_t ps = 4096;
    std::uint64_t first = ps - (c.prp1 & (ps - 1));
    if (first > len) first = len;
    out.push_back({reinterpret_cast<std::uint8_t*>(c.prp1), first});
    std::uint64_t left = len - first;
    if (left == 0) return true;
    if (left <= ps) {
      if (c.prp2 & (ps - 1)) return false;
      out.push_back({reinterpret_cast<std::uint8_t*>(c.prp2), left});
      return true;
    }
    ++prp_list_commands;
    auto* list = reinterpret_cast<std::uint64_t*>(c.prp2);
    if (c.prp2 & 7) return false;
    std::uint32_t i = 0;
    while (left) {
      const std::uint64_t e = list[i++];
      if (e & (ps - 1)) return false;
      const std::uint64_t n = left < ps ? left : ps;
      out.push_back({reinterpret_cast<std::uint8_t*>(e), n});
      left -= n;
      if (i == 512) return false;  // chaining not modelled; the driver caps at one list page
    }
    return true;
  }

  void io(std::uint16_t q, const nvme::sqe& c) {
    using namespace nvme;
    if (drop_io > 0 && c.opcode != io_opc::flush) {
      --drop_io;
      ++faults_injected;
      held_.push_back({q, c.cid, false});
      return;
    }
    const std::uint32_t bs = block_size(c.nsid);
    if (bs == 0) return complete(q, c.cid, sc(0, 0x0b));
    std::vector<std::uint8_t>& d = disk_for(c.nsid);
    const std::uint64_t slba = c.cdw10 | (std::uint64_t{c.cdw11} << 32);
    const std::uint64_t nlb = (c.cdw12 & 0xffff) + 1u;
    const std::uint64_t blocks = d.size() / bs;
    switch (c.opcode) {
      case io_opc::flush:
        ++flushes;
        return complete(q, c.cid, 0);
      case io_opc::read:
      case io_opc::write: {
        if (slba + nlb > blocks) return complete(q, c.cid, sc(0, 0x80));
        const std::uint64_t len = nlb * bs;
        if (mdts && len > (4096ull << mdts)) {
          ++protocol_errors;
          return complete(q, c.cid, sc(0, 0x02));
        }
        std::vector<std::pair<std::uint8_t*, std::uint64_t>> spans;
        if (!data_spans(c, len, spans)) {
          ++protocol_errors;
          return complete(q, c.cid, sc(0, 0x13));
        }
        if (c.opcode == io_opc::read && media_error_lba >= slba && media_error_lba < slba + nlb) {
          media_error_lba = ~std::uint64_t{0};
          return complete(q, c.cid, sc(2, 0x81));
        }
        std::uint64_t off = slba * bs;
        for (auto [p, n] : spans) {
          if (c.opcode == io_opc::read) std::memcpy(p, d.data() + off, n);
          else std::memcpy(d.data() + off, p, n);
          off += n;
        }
        ++(c.opcode == io_opc::read ? reads : writes);
        if (c.opcode == io_opc::write && (c.cdw12 & (1u << 30)) != 0) ++fua_writes;  // FUA: CDW12 bit 30
        return complete(q, c.cid, 0);
      }
      case io_opc::write_zeroes:
        if (slba + nlb > blocks) return complete(q, c.cid, sc(0, 0x80));
        std::memset(d.data() + slba * bs, 0, nlb * bs);
        ++write_zeroes;
        return complete(q, c.cid, 0);
      case io_opc::dataset_management: {
        const auto* r = reinterpret_cast<const std::uint32_t*>(c.prp1);
        const std::uint64_t rs = r[2] | (std::uint64_t{r[3]} << 32);
        if (rs + r[1] > blocks) return complete(q, c.cid, sc(0, 0x80));
        std::memset(d.data() + rs * bs, 0, std::uint64_t{r[1]} * bs);  // deallocated reads as zeros
        ++deallocates;
        return complete(q, c.cid, 0);
      }
      default:
        return complete(q, c.cid, sc(0, 0x01));
    }
  }

  static void put16(std::uint8_t* p, std::size_t off, std::uint16_t v) { std::memcpy(p + off, &v, 2); }
  static void put32(std::uint8_t* p, std::size_t off, std::uint32_t v) { std::memcpy(p + off, &v, 4); }

  std::uint32_t* bar_ = nullptr;
  sq_state sqs_[65];
  cq_state cqs_[65];
  std::deque<held> held_;
  std::uint32_t* shadow_ = nullptr;
  std::uint32_t* eventidx_ = nullptr;
  std::uint32_t ready_steps_ = 0;
  bool removal_counted_ = false, enable_refusal_counted_ = false;
  std::mutex mtx_;
};

// The driver core's platform over the fake: config space, BAR 0, DMA from the
// heap (identity addresses), and a virtual clock that advances only in
// delay_us() - which also steps the device, as time passing would.
class fake_platform {
 public:
  explicit fake_platform(fake_nvme_controller& c) : ctrl_(c) {}
  ~fake_platform() {
    for (void* p : allocs_) std::free(p);
  }

  result<mmio_window> map_bar(int bar) {
    if (bar != 0) return status{errc::invalid_argument, "fake has registers in BAR 0 only"};
    return ctrl_.window();
  }
  result<std::uint32_t> config_read32(std::uint32_t off) {
    if (ctrl_.removed) return 0xffffffffu;
    if (off == 0) return (std::uint32_t{ctrl_.device_id} << 16) | ctrl_.vendor;
    if (off == 8) return 0x01080200u;
    return 0u;
  }
  status enable_bus_master() {
    bus_master = true;
    return ok_status;
  }
  result<dma_region> dma_alloc(std::size_t n) {
    const std::size_t len = (n + 4095) & ~std::size_t{4095};
    void* p = std::aligned_alloc(4096, len);
    if (!p) return status{errc::no_memory, "fake DMA allocation failed"};
    std::memset(p, 0, len);
    allocs_.push_back(p);
    return dma_region{p, dev_addr{reinterpret_cast<std::uint64_t>(p)}, len};
  }
  status dma_free(const dma_region& r) {
    for (auto& p : allocs_)
      if (p == r.cpu) {
        std::free(p);
        p = nullptr;
        return ok_status;
      }
    return {errc::invalid_argument, "not a fake DMA region"};
  }
  std::uint64_t now_ns() const noexcept { return now_.load(std::memory_order_relaxed); }
  void delay_us(std::uint32_t us) noexcept {
    now_.fetch_add(std::uint64_t{us} * 1000, std::memory_order_relaxed);
    ctrl_.step();
  }
  void advance_ms(std::uint64_t ms) noexcept { now_.fetch_add(ms * 1000000, std::memory_order_relaxed); }

  bool bus_master = false;

 private:
  fake_nvme_controller& ctrl_;
  std::atomic<std::uint64_t> now_{1000000000};  // threaded tests read it from every thread
  std::vector<void*> allocs_;
};

}  // namespace dkq::test
