// libFuzzer target: the unchanged NVMe driver core (examples/nvme/driver)
// against a controller whose behaviour the input chooses. The software
// controller (tests/support/fake_nvme_controller.hpp) is configured from the
// input - CAP fields (MQES, TO, DSTRD), BAR size, MDTS, SGL and Doorbell
// Buffer support, queue count, ready delay, enable failures - and while it
// runs, the input rewrites Identify pages and every completion entry (CID,
// phase, status, SQ head, dropped or duplicated entries), removes the device,
// sets CSTS.CFS or makes a reset fail. The host side is a random mix of
// reads, writes, flushes, write zeroes and deallocates with right and wrong
// buffer lengths, polling, timeouts, aborts and resets.
//
// Invariants, checked on every input (a violation traps):
//  - no memory error (ASan), no undefined behaviour (UBSan);
//  - a completion is delivered only for a request the core accepted and
//    has not completed yet (never twice, never unknown), with its opcode;
//  - after the device turns honest and time passes, every accepted request
//    has completed exactly once: through the device, a timeout, an abort or
//    a (possibly failed) reset - none is lost;
//  - the run is bounded: virtual time only, bounded loops (libFuzzer's
//    -timeout catches a hang).
//
// Build and run: tests/fuzz/run_fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "../../examples/nvme/driver/controller.hpp"
#include "support/fake_nvme_controller.hpp"

namespace {

namespace drv = dkq::nvme_driver;
using dkq::test::fake_nvme_controller;
using dkq::test::fake_platform;
using ctrl_t = drv::controller<fake_platform>;
using queue_t = drv::io_queue<fake_platform>;

[[noreturn]] void violated(const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
  std::fprintf(stderr, "fuzz_nvme_device: invariant violated: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  __builtin_trap();
}

// Totals over the run, printed at exit with DKQ_FUZZ_STATS=1 (the docs
// quote them: faults injected, requests, completions, 0 lost, 0 double).
struct totals {
  unsigned long long inputs = 0, inits_ok = 0, accepted = 0, completed = 0, errors = 0, faults = 0, resets = 0,
                     failed_resets = 0, protocol_errors = 0;
  ~totals() {
    if (std::getenv("DKQ_FUZZ_STATS") == nullptr) return;
    std::fprintf(stderr,
                 "fuzz_nvme_device: %llu inputs, %llu brought up; %llu requests accepted, %llu completed exactly once "
                 "(%llu with an error), 0 lost, 0 double; %llu device faults injected, %llu protocol errors seen, "
                 "%llu resets (%llu failed)\n",
                 inputs, inits_ok, accepted, completed, errors, faults, protocol_errors, resets, failed_resets);
  }
} g_totals;

struct ledger {
  struct entry {
    std::uint8_t opcode;
    bool done;
  };
  std::map<std::uint64_t, entry> live;  // user -> request
  std::uint64_t accepted = 0, completed = 0, errors = 0;
  void accept(std::uint64_t user, std::uint8_t opcode) {
    if (!live.emplace(user, entry{opcode, false}).second) violated("user id reused by the harness", user);
    ++accepted;
  }
  void operator()(const drv::io_completion& c) {
    auto it = live.find(c.user);
    if (it == live.end()) violated("completion for a request that was never accepted", c.user);
    if (it->second.done) violated("request completed twice", c.user);
    if (c.opcode != it->second.opcode) violated("completion carries another command's opcode", c.opcode,
                                                it->second.opcode);
    it->second.done = true;
    ++completed;
    if (!c.st.ok()) ++errors;
  }
};

// Completion-entry faults the input picks, one byte per entry while it lasts.
int fault_cqe(FuzzedDataProvider& in, dkq::nvme_cqe& e) {
  if (e.sq_id == 0 && in.remaining_bytes() > 0 && (in.ConsumeIntegral<std::uint8_t>() & 7) != 0) return 1;
  if (in.remaining_bytes() == 0) return 1;
  const std::uint8_t a = in.ConsumeIntegral<std::uint8_t>();
  switch (a % 16) {
    case 0: return 2;  // duplicate
    case 1: return 0;  // dropped
    case 2: e.cid = in.ConsumeIntegral<std::uint16_t>(); return 1;
    case 3: e.cid = static_cast<std::uint16_t>(e.cid ^ 0x4000); return 1;  // other generation
    case 4: e.status = static_cast<std::uint16_t>(e.status & ~1u); return 1;  // wrong phase
    case 5: e.status = static_cast<std::uint16_t>((in.ConsumeIntegral<std::uint16_t>() & ~1u) | 1u); return 1;
    case 6: e.sq_head = in.ConsumeIntegral<std::uint16_t>(); return 1;
    case 7: e.dw0 = in.ConsumeIntegral<std::uint32_t>(); return 1;
    default: return 1;  // honest
  }
}

void fault_identify(FuzzedDataProvider& in, std::uint8_t* page) {
  const unsigned edits = in.ConsumeIntegralInRange<unsigned>(0, 12);
  for (unsigned i = 0; i < edits && in.remaining_bytes() > 0; ++i) {
    const std::size_t off = in.ConsumeIntegralInRange<std::size_t>(0, 4095);
    page[off] = in.ConsumeIntegral<std::uint8_t>();
  }
  if (in.remaining_bytes() > 0 && (in.ConsumeIntegral<std::uint8_t>() & 31) == 0) {
    // Truncated: the device wrote only the first part of the page.
    const std::size_t keep = in.ConsumeIntegralInRange<std::size_t>(0, 4096);
    std::memset(page + keep, 0, 4096 - keep);
  }
}

void run_one(FuzzedDataProvider& in) {
  auto dev = std::make_unique<fake_nvme_controller>();
  dev->namespaces = {{1, 64, 9}, {2, 32, 12}};
  dev->mqes = in.ConsumeIntegralInRange<std::uint32_t>(1, 63);
  dev->to_500ms = in.ConsumeIntegralInRange<std::uint8_t>(0, 2);
  dev->mdts = in.ConsumeIntegralInRange<std::uint8_t>(0, 5);
  dev->sgls = in.ConsumeBool() ? 1u : 0u;
  dev->dbbuf = in.ConsumeBool();
  dev->max_queues = in.ConsumeIntegralInRange<std::uint32_t>(1, 4);
  dev->ready_delay_steps = in.ConsumeIntegralInRange<std::uint32_t>(0, 4);
  const std::uint8_t shape = in.ConsumeIntegral<std::uint8_t>();
  if ((shape & 3) == 0) {
    dev->dstrd = in.ConsumeIntegralInRange<std::uint8_t>(0, 15);
    dev->bar_bytes = std::size_t{0x1000} << in.ConsumeIntegralInRange<unsigned>(1, 6);
  }
  if ((shape & 0x1c) == 0x04) dev->vendor = 0x1b36, dev->device_id = 0x0010;  // QEMU's IDs
  dev->fatal_on_enable = (shape & 0xe0) == 0x20;
  dev->never_ready = (shape & 0xe0) == 0x40;
  dev->fail_enable_after = (shape & 0xe0) == 0x60 ? 2 : 0;
  dev->finalize_config();
  dev->identify_hook = [&in](std::uint8_t, std::uint8_t* page) { fault_identify(in, page); };
  dev->cqe_hook = [&in](dkq::nvme_cqe& e) { return fault_cqe(in, e); };

  fake_platform plat(*dev);
  ledger book;
  {
    ctrl_t ctrl;
    drv::options o;
    o.admin_timeout_ms = 3;  // virtual time; keeps a hung admin command cheap
    o.io_timeout_ms = 20;
    o.shadow = in.ConsumeBool() ? drv::shadow_mode::automatic : drv::shadow_mode::on;
    o.use_sgl = in.ConsumeBool();
    o.max_io_queues = 2;
    const dkq::status up = ctrl.init(plat, o);
    if (up.ok()) ++g_totals.inits_ok;
    if (up.ok()) {
      // Whatever Identify said, what is offered for I/O is sane.
      for (std::uint32_t i = 0; i < ctrl.namespace_count(); ++i) {
        const drv::namespace_info* n = ctrl.ns(i);
        if (n == nullptr) violated("ns(i) below namespace_count() is null", i);
        if (n->usable && (n->block_size < 512 || n->block_size > 65536)) violated("usable namespace with odd LBA size");
      }
      if (ctrl.ns(ctrl.namespace_count()) != nullptr) violated("ns(count) is not null");
      if (ctrl.max_transfer() > o.max_transfer_cap) violated("max transfer above the cap");

      queue_t qs[2];
      std::uint32_t nq = 0;
      for (std::uint32_t k = 0; k < 2; ++k) {
        const std::uint32_t entries = in.ConsumeIntegralInRange<std::uint32_t>(2, 16);
        if (ctrl.create_io_queue(qs[nq], entries, false, 0).ok()) ++nq;
      }
      auto data = plat.dma_alloc(64 * 1024);
      if (!data) violated("fake DMA allocation");
      std::uint64_t next_user = 1;
      auto handler = [&](const drv::io_completion& c) { book(c); };

      const unsigned ops = in.ConsumeIntegralInRange<unsigned>(0, 96);
      for (unsigned step = 0; step < ops && nq != 0; ++step) {
        queue_t& q = qs[in.ConsumeIntegralInRange<std::uint32_t>(0, nq - 1)];
        const std::uint8_t op = in.ConsumeIntegral<std::uint8_t>();
        const std::uint32_t nsid = in.ConsumeIntegralInRange<std::uint32_t>(0, 3);
        const std::uint64_t lba = in.ConsumeIntegralInRange<std::uint64_t>(0, 80);
        const std::uint32_t blocks = in.ConsumeIntegralInRange<std::uint32_t>(1, 8);
        const drv::namespace_info* ns = ctrl.find_ns(nsid);
        std::uint64_t len = ns != nullptr && ns->block_size != 0 ? std::uint64_t{blocks} * ns->block_size : 512;
        if ((op & 0x80) != 0) len = in.ConsumeIntegralInRange<std::uint64_t>(1, 64 * 1024);  // maybe wrong
        if (len > 64 * 1024) len = 64 * 1024;
        const std::uint64_t off = in.ConsumeIntegralInRange<std::uint64_t>(0, 64 * 1024 - len) & ~std::uint64_t{3};
        const dkq::dma_segment seg{data->device + off, len};
        dkq::status st;
        std::uint8_t opc = 0;
        bool submitted = true;  // Flush's opcode is 00h: a flag, not opc != 0
        const std::uint64_t user = next_user;
        switch (op % 10) {
          case 0: case 1: st = q.read(nsid, lba, blocks, seg, user); opc = dkq::nvme::io_opc::read; break;
          case 2: case 3: st = q.write(nsid, lba, blocks, seg, user, (op & 0x40) != 0); opc = dkq::nvme::io_opc::write; break;
          case 4: st = q.flush(nsid, user); opc = dkq::nvme::io_opc::flush; break;
          case 5: st = q.write_zeroes(nsid, lba, blocks, user); opc = dkq::nvme::io_opc::write_zeroes; break;
          case 6: st = q.deallocate(nsid, lba, blocks, user); opc = dkq::nvme::io_opc::dataset_management; break;
          case 7: submitted = false; plat.advance_ms(in.ConsumeIntegralInRange<std::uint64_t>(0, 40)); q.check_timeouts(handler); break;
          case 8: {  // the device turns: removed, fatal, failing resets, head mode
            submitted = false;
            const std::uint8_t f = in.ConsumeIntegral<std::uint8_t>();
            ++g_totals.faults;
            if (f % 8 == 0) dev->removed = true;
            else if (f % 8 == 1) dev->fatal();
            else if (f % 8 == 2) dev->never_ready = !dev->never_ready;
            else if (f % 8 == 3) dev->sq_head = fake_nvme_controller::head_mode::stuck;
            else if (f % 8 == 4) dev->sq_head = fake_nvme_controller::head_mode::wild, dev->wild_head = f;
            else if (f % 8 == 5) dev->drop_io = f / 8;
            else if (f % 8 == 6) dev->abort_works = !dev->abort_works;
            else dev->sq_head = fake_nvme_controller::head_mode::honest;
            break;
          }
          default: {
            submitted = false;
            const dkq::status r = ctrl.reset_and_recover();
            ++g_totals.resets;
            if (!r.ok()) ++g_totals.failed_resets;
            break;
          }
        }
        if (std::getenv("DKQ_FUZZ_TRACE") != nullptr)
          std::fprintf(stderr, "op %u kind %u q%u ns %u lba %llu blocks %u len %llu user %llu -> %s\n", step, op % 10,
                       q.qid(), nsid, static_cast<unsigned long long>(lba), blocks,
                       static_cast<unsigned long long>(len), static_cast<unsigned long long>(user), st.message());
        if (submitted && st.ok()) {
          book.accept(user, opc);
          ++next_user;
        }
        q.ring();
        const unsigned steps = in.ConsumeIntegralInRange<unsigned>(0, 3);
        for (unsigned i = 0; i < steps; ++i) dev->step();
        for (std::uint32_t k = 0; k < nq; ++k) qs[k].poll(64, handler);
        if (q.needs_reset() && in.ConsumeBool()) {
          if (!ctrl.reset_and_recover().ok()) ++g_totals.failed_resets;
          ++g_totals.resets;
        }
      }

      // The device turns honest (a removed one stays gone); time passes.
      // Every accepted request must now end exactly once.
      dev->cqe_hook = nullptr;
      dev->identify_hook = nullptr;
      dev->sq_head = fake_nvme_controller::head_mode::honest;
      dev->never_ready = false;
      dev->fatal_on_enable = false;
      dev->fail_enable_after = 0;
      dev->drop_io = 0;
      dev->fail_create_sq_qid = 0;
      for (int round = 0; round < 12 && book.completed < book.accepted; ++round) {
        for (std::uint32_t k = 0; k < nq; ++k) {
          qs[k].ring();
          dev->step();
          qs[k].poll(64, handler);
        }
        plat.advance_ms(o.io_timeout_ms + 1);
        bool reset = !ctrl.health().ok();
        for (std::uint32_t k = 0; k < nq; ++k) {
          qs[k].check_timeouts(handler);
          reset |= qs[k].needs_reset();
        }
        if (reset) {
          ++g_totals.resets;
          if (!ctrl.reset_and_recover().ok()) ++g_totals.failed_resets;
        }
        for (std::uint32_t k = 0; k < nq; ++k) qs[k].poll(64, handler);
      }
      for (std::uint32_t k = 0; k < nq; ++k) g_totals.protocol_errors += qs[k].protocol_errors();
      if (book.completed != book.accepted) {
        for (auto& [u, e] : book.live)
          if (!e.done) violated("request never completed (lost)", u, e.opcode);
      }
      (void)ctrl.shutdown(10);
      // The queues go before the controller (members of this scope); the
      // device is not stepped again, so nothing touches freed queue memory.
    }
  }
  g_totals.accepted += book.accepted;
  g_totals.completed += book.completed;
  g_totals.errors += book.errors;
  g_totals.faults += dev->faults_injected;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  ++g_totals.inputs;
  run_one(in);
  return 0;
}
