// libFuzzer target: the MegaRAID (MFI) driver core, unchanged
// (examples/scsi/driver/megaraid.hpp), against a device whose behaviour the
// fuzzer chooses. The device is the software MFI controller
// (tests/support/fake_mfi_controller.hpp) with its fault knobs driven by the
// input: firmware status words (any state, max_cmds, max_sge), DCMD payloads
// (controller info, LD and PD lists: bytes patched, truncated, counts
// inflated, frame status), the reply stream (held, dropped, duplicated,
// stale/out-of-range/invented contexts, an impossible producer index),
// frame and SCSI status, sense bytes and sense lengths that lie, ignored
// ABORTs, FAULT or all-ones registers (surprise removal) during a reset.
// Between device actions the input drives the core: submit, poll, wait,
// abort, reset, synchronous SCSI commands, rescan, virtual time.
//
// Invariants, checked after every operation and at the end (any violation
// traps, which libFuzzer reports as a crash):
//  - no memory error (ASan, UBSan);
//  - a completion is delivered only for a request that is in flight, and
//    every accepted request completes exactly once: by the end of the
//    input (after virtual time has passed the longest recovery chain, then
//    stop()) nothing is still pending;
//  - the core's in-flight count equals the requests the harness has pending;
//  - every buffer the device is given is mapped while the device may use it
//    (the model reports any frame, SGE, sense or queue address it cannot
//    translate, and a frame address 0), and no data buffer is unmapped
//    while the device owns a frame;
//  - after stop() every DMA region the core allocated is freed;
//  - bounded run time: virtual time only; libFuzzer's -timeout catches a hang.
//
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined (run_fuzz.sh <...> fuzz_mfi_device).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "examples/scsi/driver/megaraid.hpp"
#include "support/fake_mfi_controller.hpp"

namespace mr = dkq::examples::megaraid;
namespace mfi = dkq::scsi::mfi;
using dkq::errc;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;

namespace {

[[noreturn]] void violation(const char* what, const std::string& why = {}) {
  std::fprintf(stderr, "fuzz_mfi_device: %s%s%s\n", what, why.empty() ? "" : ": ", why.c_str());
  __builtin_trap();
}

// Totals over the run, printed at exit when DKQ_FUZZ_STATS is set: how far
// inputs get (bring-up passed) and how many requests and faults they carry.
struct totals {
  unsigned long inputs = 0, started = 0, submitted = 0, completed = 0, completed_ok = 0, doubled = 0;
  unsigned long stopped = 0, timeouts = 0, reset_calls = 0, failed_resets = 0, driver_resets = 0;
  unsigned long stale = 0, duplicate = 0, bad_context = 0, injected = 0, sense_forced = 0, status_forced = 0;
  unsigned long removed = 0, stop_with_io = 0;
  ~totals() {
    if (std::getenv("DKQ_FUZZ_STATS") == nullptr) return;
    // A lost or doubled completion traps before this is printed; the counts
    // are computed, not assumed.
    std::fprintf(stderr,
                 "fuzz_mfi_device: inputs %lu, started %lu, requests %lu submitted / %lu completed (%lu ok, %lu by "
                 "stop, %lu timeouts), %lu lost, %lu double; stop() with I/O in flight %lu; reset() calls %lu (%lu "
                 "failed), controller resets in all %lu; device faults: %lu stale, %lu duplicate, %lu bad contexts "
                 "seen, %lu contexts injected, %lu forced statuses, %lu forced sense, %lu surprise removals\n",
                 inputs, started, submitted, completed, completed_ok, stopped, timeouts, submitted - completed, doubled,
                 stop_with_io, reset_calls, failed_resets, driver_resets, stale, duplicate, bad_context, injected,
                 status_forced, sense_forced, removed);
  }
} g_totals;

struct ledger;

struct pending_req {
  ledger* owner = nullptr;
  bool in_flight = false;
  int completions = 0;
  dkq::dma_region buf{};
};

struct ledger {
  std::vector<pending_req> reqs;  // reserved up front: pointers stay valid
  fake_dma_space* dma = nullptr;
  fake_mfi_controller* ctl = nullptr;
  std::uint32_t pending = 0;

  static void done(void* u, const mr::completion& c) noexcept {
    auto* r = static_cast<pending_req*>(u);
    ledger* l = r->owner;
    if (!r->in_flight) violation("completion for a request that is not in flight", c.st.message());
    if (++r->completions != 1) {
      ++g_totals.doubled;
      violation("request completed twice");
    }
    r->in_flight = false;
    --l->pending;
    // The buffer is the caller's again now: it must still be mapped (the
    // device may have written it up to this point).
    if (r->buf.valid() && l->dma->translate(r->buf.device.value(), r->buf.size) == nullptr)
      violation("completion delivered for a buffer that is no longer mapped");
    ++g_totals.completed;
    if (c.st.ok()) ++g_totals.completed_ok;
    if (c.stopped) ++g_totals.stopped;
    if (c.st.code() == errc::timeout) ++g_totals.timeouts;
  }
};

// Model errors that mean the driver gave the device memory it cannot use.
void check_model(const fake_mfi_controller& ctl) {
  for (const std::string& e : ctl.c.errors) {
    if (e.find("unmapped") != std::string::npos || e.find("not mapped") != std::string::npos ||
        e.find("address 0") != std::string::npos || e.find("address or length 0") != std::string::npos)
      violation("device was handed memory it cannot use", e);
  }
}

std::uint32_t status_word(FuzzedDataProvider& in) {
  // Mostly plausible words (a state in the high nibble, limits below), with
  // any 32-bit value possible.
  if (in.ConsumeBool()) return in.ConsumeIntegral<std::uint32_t>();
  const std::uint32_t state = in.ConsumeIntegralInRange<std::uint32_t>(0, 15);
  const std::uint32_t sge = in.ConsumeIntegral<std::uint8_t>();
  const std::uint32_t cmds = in.ConsumeIntegralInRange<std::uint32_t>(0, 600);
  return state << 28 | (in.ConsumeBool() ? 1u << 26 : 0u) | sge << 16 | cmds;
}

void tamper_dcmd(FuzzedDataProvider& in, std::uint32_t opcode, std::vector<std::uint8_t>& out, std::uint8_t& st) {
  if (in.remaining_bytes() == 0 || !in.ConsumeBool()) return;  // an honest answer
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: st = in.ConsumeIntegral<std::uint8_t>(); break;  // any frame status
    case 1: out.resize(in.ConsumeIntegralInRange<std::size_t>(0, out.size())); break;  // truncated
    case 2: {  // a count field inflated (LD list: offset 0; PD list: offset 4)
      const std::size_t off = opcode == mfi::dcmd::pd_get_list ? 4 : 0;
      if (out.size() >= off + 4) {
        const std::uint32_t v = in.ConsumeIntegral<std::uint32_t>();
        std::memcpy(&out[off], &v, 4);
      }
      break;
    }
    case 3: {  // controller-info limits: max_cmds, max SGEs, max request size, LD/PD counts
      static constexpr std::size_t offs[] = {mr::ctrl_info_off::max_cmds, mr::ctrl_info_off::max_sg_elements,
                                             mr::ctrl_info_off::max_request_size, mr::ctrl_info_off::lds_present,
                                             mr::ctrl_info_off::pd_present, mfi::ctrl_info::pci_device};
      const std::size_t o = offs[in.ConsumeIntegralInRange<std::size_t>(0, std::size(offs) - 1)];
      if (out.size() >= o + 4) {
        const std::uint32_t v = in.ConsumeIntegral<std::uint32_t>();
        std::memcpy(&out[o], &v, o == mr::ctrl_info_off::max_request_size ? 4 : 2);
      }
      break;
    }
    default: {  // a few bytes anywhere
      const int n = in.ConsumeIntegralInRange<int>(1, 8);
      for (int i = 0; i < n && !out.empty(); ++i)
        out[in.ConsumeIntegralInRange<std::size_t>(0, out.size() - 1)] = in.ConsumeIntegral<std::uint8_t>();
      break;
    }
  }
}

constexpr std::size_t max_requests = 256;
constexpr std::size_t buf_bytes = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  ++g_totals.inputs;

  fake_dma_space dma;
  // Now and then a platform whose allocator ignores the 4 GiB limit for
  // control memory: frames the queue port cannot name must never be posted.
  dma.ignore_limits = in.ConsumeIntegralInRange<int>(0, 15) == 0;
  const std::uint32_t max_cmds = in.ConsumeIntegralInRange<std::uint32_t>(4, 80);
  const std::uint32_t max_sge = in.ConsumeIntegralInRange<std::uint32_t>(1, 90);
  fake_mfi_controller ctl(dma, max_cmds, max_sge);
  const std::uint32_t ndisks = in.ConsumeIntegralInRange<std::uint32_t>(0, 3);
  for (std::uint32_t i = 0; i < ndisks; ++i) ctl.add_disk(static_cast<std::uint8_t>(i), 64 + i * 32);
  ctl.jbod = in.ConsumeBool();  // disks as SYSTEM physical drives, no LDs
  fake_mfi_platform plat(dma, ctl);
  if (in.ConsumeBool()) plat.device_id = 0x0060;  // SAS1078 register layout
  ctl.pci_device = plat.device_id;
  plat.vectors = in.ConsumeBool() ? 1 : 0;
  ctl.reject_sync16 = in.ConsumeBool();
  ctl.dcmd_hook = [&in](std::uint32_t op, std::vector<std::uint8_t>& out, std::uint8_t& st) { tamper_dcmd(in, op, out, st); };
  const int nwords = in.ConsumeIntegralInRange<int>(0, 3);
  for (int i = 0; i < nwords; ++i) ctl.status_words.push_back(status_word(in));
  const int nboot = in.ConsumeIntegralInRange<int>(0, 2);
  for (int i = 0; i < nboot; ++i) ctl.boot_states.push_back(in.ConsumeIntegralInRange<std::uint32_t>(0, 15));

  mr::options o;
  o.use_interrupts = plat.vectors != 0;
  o.mode = in.ConsumeBool() ? dkq::completion_mode::interrupt : dkq::completion_mode::polled;
  o.force_32bit = in.ConsumeBool();
  o.bounce_chunk = 4096;
  o.bounce_chunks = 64;
  o.queue_depth = in.ConsumeIntegralInRange<std::uint32_t>(0, 16);
  o.max_transfer = in.ConsumeIntegralInRange<std::uint32_t>(512, buf_bytes);
  o.command_timeout_ns = 5'000'000;   // virtual time: 5 ms
  o.abort_grace_ns = 2'000'000;
  o.ready_timeout_ns = 3'000'000;
  o.reissue_after_reset = in.ConsumeBool();
  o.wait_slice_ms = 1;
  // Some inputs end with stop() while requests are still in flight (the
  // teardown path); the rest first let every deadline pass.
  const bool stop_with_io = in.ConsumeBool();

  // Everything the driver and the harness allocate comes from `dma`; these
  // are the harness's data buffers, above 4 GiB (bounced in 32-bit mode).
  std::vector<dkq::dma_region> bufs;
  for (int i = 0; i < 4; ++i) {
    auto b = dma.alloc(buf_bytes, mr::no_address_limit);
    if (!b) violation("harness buffer allocation failed");
    bufs.push_back(*b);
  }
  const std::size_t harness_regions = dma.live();

  ledger led;
  led.dma = &dma;
  led.ctl = &ctl;
  led.reqs.reserve(max_requests);

  mr::controller<fake_mfi_platform> drv;
  const dkq::status st = drv.start(plat, o);
  check_model(ctl);
  if (!st) {
    // A failed bring-up frees everything it took.
    if (dma.live() != harness_regions) violation("failed start() leaked DMA memory", st.message());
    if (drv.operational()) violation("failed start() left the controller operational");
    for (auto& b : bufs) (void)dma.free(b);
    return 0;
  }
  ++g_totals.started;

  auto check = [&](const char* after) {
    check_model(ctl);
    if (drv.in_flight() != led.pending)
      violation("core in-flight count differs from the requests pending", std::string(after) + ": core " +
                                                                           std::to_string(drv.in_flight()) +
                                                                           ", harness " + std::to_string(led.pending));
  };

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 200) {
    switch (in.ConsumeIntegralInRange<int>(0, 19)) {
      case 0:
      case 1:
      case 2: {  // submit
        if (led.reqs.size() == max_requests) break;
        mr::request q;
        q.kind = static_cast<mr::op>(in.ConsumeIntegralInRange<int>(0, 3));
        q.target = in.ConsumeIntegralInRange<std::uint8_t>(0, 66);
        q.lun = in.ConsumeIntegralInRange<std::uint8_t>(0, 1) == 1 && in.ConsumeBool() ? 1 : 0;
        q.lba = in.ConsumeIntegralInRange<std::uint64_t>(0, 200);
        const std::uint32_t blocks = in.ConsumeIntegralInRange<std::uint32_t>(0, 130);
        q.blocks = blocks;
        q.dir = in.ConsumeBool() ? dkq::dma_direction::to_device : dkq::dma_direction::from_device;
        if (q.kind == mr::op::ld_write) q.dir = dkq::dma_direction::to_device;
        if (q.kind == mr::op::ld_read) q.dir = dkq::dma_direction::from_device;
        const dkq::dma_region& b = bufs[in.ConsumeIntegralInRange<std::size_t>(0, bufs.size() - 1)];
        const std::size_t bytes =
            q.kind == mr::op::ld_read || q.kind == mr::op::ld_write ? std::size_t{blocks} * 512
                                                                     : in.ConsumeIntegralInRange<std::size_t>(0, buf_bytes);
        if (bytes > buf_bytes) break;
        if (bytes != 0) q.data = dkq::dma_region{b.cpu, b.device, bytes};
        q.cdb_len = in.ConsumeIntegralInRange<std::uint8_t>(0, 17);
        for (std::size_t i = 0; i < q.cdb.size(); ++i) q.cdb[i] = in.ConsumeIntegral<std::uint8_t>();
        if (in.ConsumeBool()) {
          // A well-formed request the device can carry out, so inputs reach
          // the data path and its completions (not only refusals).
          q.target = static_cast<std::uint8_t>(q.target % 4);
          q.lun = 0;
          q.lba = q.lba % 48;
          const std::uint32_t n = 1 + blocks % 8;
          q.cdb = {};
          if (q.kind == mr::op::ld_read || q.kind == mr::op::ld_write) {
            q.blocks = n;
            q.data = dkq::dma_region{b.cpu, b.device, std::size_t{n} * 512};
          } else if (in.ConsumeBool()) {  // READ(10) / WRITE(10)
            const bool wr = q.dir == dkq::dma_direction::to_device;
            q.cdb_len = dkq::scsi::read_write(q.cdb, wr, q.lba, n, false).value_or(0);
            q.data = dkq::dma_region{b.cpu, b.device, std::size_t{n} * 512};
          } else {  // TEST UNIT READY / SYNCHRONIZE CACHE (10): no data
            q.cdb_len = in.ConsumeBool() ? dkq::scsi::test_unit_ready(q.cdb)
                                         : dkq::scsi::synchronize_cache(q.cdb, false).value_or(0);
            q.data = {};
            q.dir = dkq::dma_direction::to_device;
          }
        }
        q.timeout_ms = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint32_t>(1, 20) : 0;
        led.reqs.push_back({});
        pending_req& r = led.reqs.back();
        r.owner = &led;
        r.buf = q.data;
        r.in_flight = true;  // set before submit: a completion may not arrive from inside submit, but be safe
        q.done = ledger::done;
        q.user = &r;
        ++led.pending;
        const dkq::status s = drv.submit(q);
        if (!s) {
          if (r.completions != 0) violation("a refused request was completed", s.message());
          r.in_flight = false;
          --led.pending;
        } else {
          ++g_totals.submitted;
        }
        break;
      }
      case 3: drv.poll(in.ConsumeIntegralInRange<std::uint32_t>(1, 300)); break;
      case 4: drv.wait(in.ConsumeIntegralInRange<int>(0, 5)); break;
      case 5: ctl.hold = in.ConsumeBool(); break;
      case 6: ctl.step(in.ConsumeIntegralInRange<std::size_t>(0, 8)); break;
      case 7: ctl.drop_next += in.ConsumeIntegralInRange<std::uint32_t>(0, 3); break;
      case 8: ctl.duplicate_next += in.ConsumeIntegralInRange<std::uint32_t>(0, 2); break;
      case 9: {  // contexts the firmware invents: any value, or one near live tags
        const int n = in.ConsumeIntegralInRange<int>(1, 4);
        for (int i = 0; i < n; ++i) {
          ++g_totals.injected;
          ctl.inject_contexts.push_back(in.ConsumeBool() ? in.ConsumeIntegral<std::uint32_t>()
                                                         : in.ConsumeIntegralInRange<std::uint32_t>(0, 0x3ff));
        }
        break;
      }
      case 10: ctl.corrupt_producer = true; break;
      case 11: {
        ++g_totals.status_forced;
        ctl.force_status.push_back({in.ConsumeIntegral<std::uint8_t>(), in.ConsumeIntegral<std::uint8_t>()});
        break;
      }
      case 12: {
        ++g_totals.sense_forced;
        fake_mfi_controller::forced_sense fs;
        fs.bytes = in.ConsumeBytes<std::uint8_t>(in.ConsumeIntegralInRange<std::size_t>(0, 140));
        fs.sense_len_said = in.ConsumeIntegral<std::uint8_t>();
        ctl.force_sense.push_back(std::move(fs));
        break;
      }
      case 13: {  // registers: FAULT, all-ones, odd status words, a reset that fails
        switch (in.ConsumeIntegralInRange<int>(0, 4)) {
          case 0: ctl.removed = in.ConsumeBool(); g_totals.removed += ctl.removed; break;
          case 1: ctl.fault = in.ConsumeBool(); break;
          case 2: ctl.fault_after_reset = in.ConsumeBool(); break;
          case 3: ctl.fail_inits += in.ConsumeIntegralInRange<std::uint32_t>(0, 2); break;
          default: ctl.status_words.push_back(status_word(in)); break;
        }
        break;
      }
      case 14: {
        ++g_totals.reset_calls;
        if (!drv.reset()) ++g_totals.failed_resets;
        break;
      }
      case 15: {  // ABORT TASK for some request (in flight or not)
        if (led.reqs.empty()) break;
        pending_req& r = led.reqs[in.ConsumeIntegralInRange<std::size_t>(0, led.reqs.size() - 1)];
        (void)drv.abort(&r);
        break;
      }
      case 16: ctl.ignore_aborts = in.ConsumeBool(); break;
      case 17: plat.clock_ns += in.ConsumeIntegralInRange<std::uint64_t>(0, 20'000'000); break;
      case 18: ctl.error_good_next += in.ConsumeIntegralInRange<std::uint32_t>(0, 2); break;
      default: {  // synchronous paths (internal slots, the scratch buffer, DCMDs)
        const std::uint8_t t = in.ConsumeIntegralInRange<std::uint8_t>(0, 4);
        switch (in.ConsumeIntegralInRange<int>(0, 4)) {
          case 0: (void)drv.synchronize_cache(t, in.ConsumeBool()); break;
          case 1: (void)drv.inquiry(t, in.ConsumeBool()); break;
          case 2: (void)drv.read_capacity(t); break;
          case 3: (void)drv.request_sense(t); break;
          default: (void)drv.rescan(); break;
        }
        break;
      }
    }
    check("operation");
  }

  // Liveness: the device stops misbehaving in ways that hide frames forever
  // is NOT assumed - held frames stay held, ignored aborts stay ignored.
  // Virtual time past the longest recovery chain (timeout, abort grace,
  // reset, re-issue, timeout, abort grace, reset) must end every request.
  if (!stop_with_io) {
    for (int i = 0; i < 64 && led.pending != 0; ++i) {
      plat.clock_ns += 5'000'000;
      drv.poll();
      check("liveness poll");
    }
    if (led.pending != 0)
      violation("requests still pending after every deadline passed", std::to_string(led.pending));
  } else if (led.pending != 0) {
    ++g_totals.stop_with_io;
  }

  // stop(): whatever is left completes now, once; nothing after.
  (void)drv.stop();
  check_model(ctl);
  if (led.pending != 0) violation("stop() left requests pending", std::to_string(led.pending));
  for (const pending_req& r : led.reqs)
    if (r.in_flight || r.completions > 1) violation("request not completed exactly once");
  if (ctl.owned() != 0) violation("device still owns frames after stop()");
  if (dma.live() != harness_regions) violation("stop() leaked DMA memory");
  g_totals.stale += drv.stats().stale;
  g_totals.duplicate += drv.stats().duplicate;
  g_totals.bad_context += drv.stats().bad_context;
  g_totals.driver_resets += drv.stats().resets;
  for (auto& b : bufs) (void)dma.free(b);
  return 0;
}
