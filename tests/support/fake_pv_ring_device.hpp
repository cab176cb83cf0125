// tests/support/fake_pv_ring_device.hpp - TEST DOUBLE: a software model of a
// paravirtual SCSI HBA with PVSCSI-shaped rings (the shape of VMware's
// PVSCSI, Linux drivers/scsi/vmw_pvscsi.h; not its exact wire format):
//
//   rings state page (host memory):  req_prod, req_cons, cmp_prod, cmp_cons,
//                                    free-running 32-bit indices
//   request ring (host memory):      64-byte requests, 64-bit context
//   completion ring (host memory):   32-byte completions, 64-bit context
//   kick register (BAR):             "look at req_prod now"
//
// The driver publishes req_prod in the state page and then writes the kick
// register (a composite doorbell); the model, stepped by the test, fetches
// requests from req_cons to req_prod in order, runs them against an in-memory
// disk (READ(10) / WRITE(10) / TEST UNIT READY), writes one completion each,
// then cmp_prod (release), and advances req_cons. Device addresses are host
// pointers. It counts what a trace would: kicks, requests, and the values the
// driver published. Fault injection: a wild cmp_prod, a duplicated or
// corrupted completion context, a dropped request.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dkq/base/barrier.hpp"

namespace dkq::test {

struct pv_rings_state {
  std::uint32_t req_prod;
  std::uint32_t req_cons;
  std::uint32_t cmp_prod;
  std::uint32_t cmp_cons;
};

struct pv_request {
  std::uint64_t context;
  std::uint64_t data_addr;
  std::uint32_t data_len;
  std::uint8_t target;
  std::uint8_t cdb_len;
  std::uint8_t flags;  // 1: data in (device to host), 2: data out
  std::uint8_t reserved;
  std::uint8_t cdb[16];
  std::uint8_t pad[24];
};
static_assert(sizeof(pv_request) == 64);

struct pv_completion {
  std::uint64_t context;
  std::uint64_t data_len;
  std::uint32_t sense_len;
  std::uint16_t host_status;  // 0: ok
  std::uint16_t scsi_status;  // SAM status byte
  std::uint64_t reserved;
};
static_assert(sizeof(pv_completion) == 32);

class fake_pv_ring_device {
 public:
  // Rings of 2^req_log2 / 2^cmp_log2 entries; disk of `blocks` 512-byte blocks.
  fake_pv_ring_device(pv_rings_state* state, pv_request* req, unsigned req_log2, pv_completion* cmp,
                      unsigned cmp_log2, std::uint64_t blocks)
      : state_(state), req_(req), cmp_(cmp), req_mask_((1u << req_log2) - 1), cmp_mask_((1u << cmp_log2) - 1),
        disk_(blocks * 512, 0) {}

  // The kick register: an MMIO write traps into the device, which looks at
  // req_prod as it is at that moment (so it must already be published).
  void kick() {
    ++kicks;
    last_req_prod_at_kick = load_acquire(&state_->req_prod);
    pending_kick_ = true;
  }

  // The driver's kick doorbell for tests (what writing the register does).
  struct kick_doorbell {
    fake_pv_ring_device* dev = nullptr;
    void write(std::uint32_t) noexcept { dev->kick(); }
  };
  kick_doorbell kick_db() { return {this}; }

  // ---- fault injection ----
  std::uint32_t wild_cmp_prod_once = 0;  // nonzero: publish this as cmp_prod, once
  std::uint32_t duplicate_next = 0;      // post the next N completions twice
  std::uint32_t corrupt_context_next = 0;  // next N completions carry context ^ 0x8000
  std::uint32_t drop_next = 0;           // next N requests are consumed and never completed

  // ---- observations ----
  std::uint64_t kicks = 0, requests = 0, completions = 0, reads = 0, writes = 0;
  std::uint32_t last_req_prod_at_kick = 0;
  std::vector<std::uint8_t>& disk() { return disk_; }

  // One device step: if kicked, fetch every published request, complete it.
  // Returns completions posted.
  std::uint32_t step() {
    if (!pending_kick_) return 0;  // the device looks only when kicked
    pending_kick_ = false;
    const std::uint32_t prod = last_req_prod_at_kick;
    std::uint32_t cons = state_->req_cons;
    std::uint32_t posted = 0;
    while (cons != prod) {
      pv_request r;
      std::memcpy(&r, &req_[cons & req_mask_], sizeof r);
      ++cons;
      ++requests;
      store_release(&state_->req_cons, cons);
      if (drop_next != 0) {
        --drop_next;
        continue;
      }
      pv_completion c{};
      c.context = r.context;
      run(r, c);
      posted += post(c);
      if (duplicate_next != 0) {
        --duplicate_next;
        posted += post(c);
      }
    }
    if (wild_cmp_prod_once != 0) {
      store_release(&state_->cmp_prod, wild_cmp_prod_once);
      wild_cmp_prod_once = 0;
    }
    return posted;
  }

  // The model's own view of cmp_prod (what it will publish next time).
  std::uint32_t cmp_prod() const { return cmp_prod_; }
  void restore_cmp_prod() { store_release(&state_->cmp_prod, cmp_prod_); }

 private:
  std::uint32_t post(pv_completion c) {
    if (cmp_prod_ - load_acquire(&state_->cmp_cons) > cmp_mask_) return 0;  // ring full: the host did not consume
    if (corrupt_context_next != 0) {
      --corrupt_context_next;
      c.context ^= 0x8000;
    }
    std::memcpy(&cmp_[cmp_prod_ & cmp_mask_], &c, sizeof c);
    ++cmp_prod_;
    ++completions;
    store_release(&state_->cmp_prod, cmp_prod_);
    return 1;
  }

  void run(const pv_request& r, pv_completion& c) {
    const std::uint8_t op = r.cdb[0];
    if (op == 0x00) return;  // TEST UNIT READY
    if (op == 0x28 || op == 0x2a) {
      const std::uint64_t lba = (std::uint64_t{r.cdb[2]} << 24) | (std::uint64_t{r.cdb[3]} << 16) |
                                (std::uint64_t{r.cdb[4]} << 8) | r.cdb[5];
      const std::uint64_t n = (std::uint64_t{r.cdb[7]} << 8) | r.cdb[8];
      if ((lba + n) * 512 > disk_.size() || n * 512 != r.data_len) {
        c.scsi_status = 0x02;  // CHECK CONDITION
        c.sense_len = 18;
        return;
      }
      auto* p = reinterpret_cast<std::uint8_t*>(r.data_addr);
      if (op == 0x28) {
        std::memcpy(p, disk_.data() + lba * 512, r.data_len);
        ++reads;
      } else {
        std::memcpy(disk_.data() + lba * 512, p, r.data_len);
        ++writes;
      }
      c.data_len = r.data_len;
      return;
    }
    c.scsi_status = 0x02;
    c.sense_len = 18;
  }

  pv_rings_state* state_;
  pv_request* req_;
  pv_completion* cmp_;
  std::uint32_t req_mask_, cmp_mask_;
  std::uint32_t cmp_prod_ = 0;
  bool pending_kick_ = false;
  std::vector<std::uint8_t> disk_;

 public:
  // Start the model's completion index where the driver starts (free-running
  // rings may start anywhere; tests start near 2^32 to cross the wrap).
  void start_at(std::uint32_t i) {
    cmp_prod_ = i;
    state_->req_prod = state_->req_cons = state_->cmp_prod = state_->cmp_cons = i;
  }
};

}  // namespace dkq::test
