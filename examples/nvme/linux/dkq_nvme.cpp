// dkq-nvme - the NVMe example driver as a Linux program over VFIO.
//
//   dkq-nvme list
//   dkq-nvme identify <bdf>
//   dkq-nvme read     <bdf> --ns N --lba L --blocks C [--out FILE]
//   dkq-nvme write    <bdf> --ns N --lba L (--in FILE | --blocks C --seed S)
//   dkq-nvme flush    <bdf> --ns N
//   dkq-nvme zeroes   <bdf> --ns N --lba L --blocks C
//   dkq-nvme trim     <bdf> --ns N --lba L --blocks C
//   dkq-nvme verify   <bdf> --ns N --lba L --blocks C [--seed S] [--qd Q]
//   dkq-nvme reset    <bdf> --ns N [--qd Q]      reset with reads in flight
//   dkq-nvme perf     <bdf> --ns N [--bs B] [--qd Q] [--rw read|write|MIX%] [--seq]
//                     [--threads T] [--irq | --hybrid [--spin N]] [--no-batch] [--time S | --ios N] [--json]
// Common: --shadow auto|on|strict|off, --no-sgl, --timeout-ms MS, --trace-expect
//
// The driver core (../driver) does the NVMe work; this file is the shell:
// argument parsing, buffers, threads, interrupts as eventfds, signals, output.
// It may use the OS freely (threads, stdio); the core may not.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../../common/format.hpp"
#include "../../common/pattern.hpp"
#include "../../common/ublk_server.hpp"
#include "../driver/controller.hpp"
#include "../driverkit/block_translation.hpp"
#include "dkq/coro/completion.hpp"
#include "dkq/coro/task.hpp"
#include "dkq/dispatch/dispatcher.hpp"
#include "vfio_platform.hpp"

namespace drv = dkq::nvme_driver;
namespace vfio = dkq::vfio;
using dkq::dma_region;
using dkq::dma_segment;
using dkq::errc;
using dkq::status;
using ctrl_t = drv::controller<dkq::nvme_linux::vfio_platform>;
using queue_t = drv::io_queue<dkq::nvme_linux::vfio_platform>;
using io_op_t = drv::io_op<dkq::nvme_linux::vfio_platform>;
namespace coro = dkq::coro;

namespace {

volatile sig_atomic_t g_stop = 0;
std::uint64_t g_flushes = 0;  // Flush commands the controller completed (for trace checks)
void on_signal(int) { g_stop = 1; }

// ---- arguments -------------------------------------------------------------------

struct args {
  std::string cmd, bdf;
  std::uint32_t ns = 1;
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
  bool blocks_given = false;
  std::string in, out;
  std::uint64_t seed = 1;
  std::uint32_t bs = 4096, qd = 32, threads = 1;
  int read_pct = 100;
  bool seq = false, irq = false, hybrid = false, batch = true, json = false, trace_expect = false, reread = false;
  std::uint32_t spin_polls = dkq::adaptive_spin_polls;  // --hybrid: adaptive unless --spin N
  // serve
  bool all_ns = false, recoverable = false, poll_mode = false;
  std::int32_t recover_id = -1;
  std::uint32_t queues = 1, depth = 64, max_io_kib = 512;
  double seconds = 5;
  std::uint64_t ios = 0;
  drv::options opt;
};

[[noreturn]] void usage(const char* why = nullptr) {
  if (why) std::fprintf(stderr, "dkq-nvme: %s\n\n", why);
  std::fprintf(stderr,
               "usage: dkq-nvme list\n"
               "       dkq-nvme identify <bdf>\n"
               "       dkq-nvme read   <bdf> --ns N --lba L --blocks C [--out FILE]\n"
               "       dkq-nvme write  <bdf> --ns N --lba L (--in FILE | --blocks C [--seed S])\n"
               "       dkq-nvme flush  <bdf> --ns N\n"
               "       dkq-nvme zeroes <bdf> --ns N --lba L --blocks C\n"
               "       dkq-nvme trim   <bdf> --ns N --lba L --blocks C\n"
               "       dkq-nvme verify <bdf> --ns N --lba L --blocks C [--seed S] [--qd Q]\n"
               "       dkq-nvme reset  <bdf> --ns N [--qd Q]   (controller reset with reads in flight)\n"
               "       dkq-nvme perf   <bdf> --ns N [--bs B] [--qd Q] [--rw read|write|PCT] [--seq]\n"
               "                       [--threads T] [--irq | --hybrid [--spin N]] [--no-batch] [--time S | --ios N] [--json]\n"
               "       dkq-nvme serve  <bdf> [--ns N|all] [--queues Q] [--depth D] [--max-io KiB] [--poll|--hybrid]\n"
               "                       [--recoverable | --recover ID] [--json]   (each namespace as /dev/ublkbN)\n"
               "common: --shadow auto|on|strict|off  --no-sgl  --sgl-threshold B  --timeout-ms MS  --trace-expect\n");
  std::exit(2);
}

std::uint64_t parse_u64(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
    std::fprintf(stderr, "dkq-nvme: %s: '%s' is not a number\n", what, s);
    std::exit(2);
  }
  return v;
}

args parse(int argc, char** argv) {
  args a;
  if (argc < 2) usage();
  a.cmd = argv[1];
  int i = 2;
  if (a.cmd != "list") {
    if (argc < 3 || argv[2][0] == '-') usage("a PCI address (for example 0000:00:04.0) is required");
    a.bdf = argv[2];
    i = 3;
  }
  for (; i < argc; ++i) {
    std::string_view o = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "dkq-nvme: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (o == "--ns") {
      const char* v = val();
      if (std::string_view(v) == "all") a.all_ns = true;
      else a.ns = static_cast<std::uint32_t>(parse_u64(v, "--ns"));
    } else if (o == "--queues") a.queues = static_cast<std::uint32_t>(parse_u64(val(), "--queues"));
    else if (o == "--depth") a.depth = static_cast<std::uint32_t>(parse_u64(val(), "--depth"));
    else if (o == "--max-io") a.max_io_kib = static_cast<std::uint32_t>(parse_u64(val(), "--max-io"));
    else if (o == "--recoverable") a.recoverable = true;
    else if (o == "--recover") a.recover_id = static_cast<std::int32_t>(parse_u64(val(), "--recover"));
    else if (o == "--lba") a.lba = parse_u64(val(), "--lba");
    else if (o == "--blocks") { a.blocks = parse_u64(val(), "--blocks"); a.blocks_given = true; }
    else if (o == "--in") a.in = val();
    else if (o == "--out") a.out = val();
    else if (o == "--seed") a.seed = parse_u64(val(), "--seed");
    else if (o == "--bs") a.bs = static_cast<std::uint32_t>(parse_u64(val(), "--bs"));
    else if (o == "--qd") a.qd = static_cast<std::uint32_t>(parse_u64(val(), "--qd"));
    else if (o == "--threads") a.threads = static_cast<std::uint32_t>(parse_u64(val(), "--threads"));
    else if (o == "--rw") {
      std::string_view v = val();
      if (v == "read") a.read_pct = 100;
      else if (v == "write") a.read_pct = 0;
      else a.read_pct = static_cast<int>(parse_u64(std::string(v).c_str(), "--rw (read percentage)"));
      if (a.read_pct > 100) usage("--rw percentage is 0..100 (share of reads)");
    } else if (o == "--seq") a.seq = true;
    else if (o == "--irq") a.irq = true;
    else if (o == "--hybrid") a.irq = a.hybrid = true;
    else if (o == "--spin") a.spin_polls = static_cast<std::uint32_t>(parse_u64(val(), "--spin"));
    else if (o == "--poll") { a.irq = a.hybrid = false; a.poll_mode = true; }
    else if (o == "--no-batch") a.batch = false;
    else if (o == "--batch") a.batch = true;
    else if (o == "--time") a.seconds = std::atof(val());
    else if (o == "--ios") a.ios = parse_u64(val(), "--ios");
    else if (o == "--json") a.json = true;
    else if (o == "--trace-expect") a.trace_expect = true;
    else if (o == "--no-sgl") a.opt.use_sgl = false;
    else if (o == "--sgl-threshold") a.opt.sgl_threshold = static_cast<std::uint32_t>(parse_u64(val(), "--sgl-threshold"));
    else if (o == "--reread-on-error") a.reread = true;
    else if (o == "--timeout-ms") a.opt.io_timeout_ms = static_cast<std::uint32_t>(parse_u64(val(), "--timeout-ms"));
    else if (o == "--shadow") {
      std::string_view v = val();
      if (v == "on") a.opt.shadow = drv::shadow_mode::on;
      else if (v == "off") a.opt.shadow = drv::shadow_mode::off;
      else if (v == "auto") a.opt.shadow = drv::shadow_mode::automatic;
      else if (v == "strict") {  // on, and the CQ head through EventIdx even on QEMU
        a.opt.shadow = drv::shadow_mode::on;
        a.opt.qemu_cq_head_register = false;
      } else usage("--shadow takes auto, on, strict or off");
    } else {
      std::fprintf(stderr, "dkq-nvme: unknown option %s\n", argv[i]);
      usage();
    }
  }
  if (a.qd == 0 || a.qd > 1023) usage("--qd must be 1..1023");
  if (a.threads == 0 || a.threads > 16) usage("--threads must be 1..16");
  a.opt.max_io_queues = a.threads;
  if (a.cmd == "serve") {
    if (a.queues == 0 || a.queues > 16) usage("--queues must be 1..16");
    if (a.depth == 0 || a.depth > 1023) usage("--depth must be 1..1023");
    if (a.max_io_kib < 4 || a.max_io_kib > 4096 || (a.max_io_kib & (a.max_io_kib - 1)) != 0)
      usage("--max-io must be a power of two, 4..4096 KiB");
    if (a.recoverable && a.recover_id >= 0) usage("--recoverable and --recover exclude each other");
    a.opt.max_io_queues = a.queues * (a.all_ns ? 16 : 1);
  }
  return a;
}

int fail(const char* what, const status& s, const std::string& explain = {}) {
  std::fprintf(stderr, "dkq-nvme: %s: %s [%s", what, s.message(), dkq::errc_name(s.code()));
  if (s.detail() != 0) std::fprintf(stderr, ", detail 0x%" PRIx64, s.detail());
  std::fprintf(stderr, "]\n");
  if (!explain.empty()) std::fprintf(stderr, "%s", explain.c_str());
  return 1;
}

// ---- patterns -----------------------------------------------------------------------
// Every 8-byte word depends on (seed, absolute byte offset on the namespace),
// so a block written to the wrong LBA, a stale read or a torn transfer is
// caught, and the host side of the VM test can regenerate the same bytes.
using dkq_examples::mix;
using dkq_examples::fill_pattern;

// ---- opened device -------------------------------------------------------------------

struct session {
  vfio::device dev;  // empty until open_session(); the platform below refers to it
  std::unique_ptr<dkq::nvme_linux::vfio_platform> plat;
  std::unique_ptr<ctrl_t> ctrl;
  std::vector<std::unique_ptr<queue_t>> queues;
  bool trace_expect = false;

  ~session() { (void)close(); }

  // Deletes the I/O queues and shuts the controller down; false if the
  // shutdown did not complete.
  bool close() {
    if (!ctrl) return true;
    std::vector<std::pair<unsigned, std::uint64_t>> io_db;
    for (auto& q : queues) io_db.push_back({q->qid(), q->sq_mmio_writes()});
    for (auto& q : queues) (void)ctrl->delete_io_queue(*q);
    status s = ctrl->shutdown();
    if (!s.ok()) std::fprintf(stderr, "dkq-nvme: shutdown: %s\n", s.message());
    const bool clean = s.ok();
    if (trace_expect) {
      // Declarations for the VM harness: the device must have seen exactly
      // these register writes (tests/vm/dkqvm.py check_trace_expectations).
      std::printf("@@DKQ-EXPECT-TRACE pci_nvme_mmio_doorbell_sq sqid=0 count=%" PRIu64 "\n",
                  ctrl->admin_sq_mmio_writes());
      std::printf("@@DKQ-EXPECT-TRACE pci_nvme_flush_ns count=%" PRIu64 "\n", g_flushes);
      std::printf("@@DKQ-EXPECT-TRACE pci_nvme_mmio_shutdown_set count=%u\n", ctrl->shutdown_notifications());
      for (auto [qid, n] : io_db)
        std::printf("@@DKQ-EXPECT-TRACE pci_nvme_mmio_doorbell_sq sqid=%u count=%" PRIu64 "\n", qid, n);
    }
    std::fflush(stdout);
    queues.clear();
    ctrl.reset();
    return clean;
  }
};

int open_session(session& s, const args& a) {
  std::string why;
  status op = s.dev.open_in_place(a.bdf, {}, &why);
  if (!op.ok()) return fail(("cannot open " + a.bdf).c_str(), op, why);
  s.plat = std::make_unique<dkq::nvme_linux::vfio_platform>(s.dev);
  s.ctrl = std::make_unique<ctrl_t>();
  s.trace_expect = a.trace_expect;
  status st = s.ctrl->init(*s.plat, a.opt);
  if (!st.ok()) {
    std::string ex = s.dev.last_explain();
    return fail(("controller bring-up of " + a.bdf + " failed").c_str(), st, ex);
  }
  return 0;
}

// One I/O queue per thread; vector i+1 (0 stays with the admin queue).
int add_queues(session& s, std::uint32_t n, std::uint32_t entries, bool irq, bool batch) {
  if (irq) {
    status st = s.dev.irq().enable(n + 1);
    if (!st.ok()) return fail("enabling MSI-X vectors", st);
    if (s.dev.irq().count() < n + 1) {
      std::fprintf(stderr, "dkq-nvme: device offers %u interrupt vectors, need %u\n", s.dev.irq().count(), n + 1);
      return 1;
    }
  }
  if (n > s.ctrl->io_queues_granted()) {
    std::fprintf(stderr, "dkq-nvme: controller granted %u I/O queues, %u requested\n", s.ctrl->io_queues_granted(), n);
    return 1;
  }
  const std::uint32_t mqes = s.ctrl->cap().mqes + 1;
  if (entries > mqes) entries = mqes;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto q = std::make_unique<queue_t>();
    // Polled queues name vector 0: QEMU (and the spec's "Invalid Interrupt
    // Vector") reject a vector beyond what MSI-X has enabled even with IEN=0.
    status st = s.ctrl->create_io_queue(*q, entries, irq, irq ? static_cast<std::uint16_t>(i + 1) : std::uint16_t{0},
                                        batch ? dkq::ring_policy::batched : dkq::ring_policy::immediate);
    if (!st.ok()) return fail("creating I/O queue", st);
    s.queues.push_back(std::move(q));
  }
  return 0;
}

const drv::namespace_info* pick_ns(session& s, std::uint32_t nsid) {
  const drv::namespace_info* n = s.ctrl->find_ns(nsid);
  if (n == nullptr) {
    std::fprintf(stderr, "dkq-nvme: namespace %u is not active on this controller (active:", nsid);
    for (std::uint32_t i = 0; i < s.ctrl->namespace_count(); ++i) std::fprintf(stderr, " %u", s.ctrl->ns(i)->nsid);
    std::fprintf(stderr, ")\n");
    return nullptr;
  }
  if (!n->usable) {
    std::fprintf(stderr, "dkq-nvme: namespace %u cannot be used: %s\n", nsid, n->why_not);
    return nullptr;
  }
  return n;
}

bool check_range(const drv::namespace_info& n, std::uint64_t lba, std::uint64_t blocks) {
  if (blocks == 0) {
    std::fprintf(stderr, "dkq-nvme: --blocks must be at least 1\n");
    return false;
  }
  if (lba >= n.nsze || blocks > n.nsze - lba) {
    std::fprintf(stderr,
                 "dkq-nvme: LBA range %" PRIu64 "..%" PRIu64 " is out of range: namespace %u has %" PRIu64
                 " blocks (0..%" PRIu64 ")\n",
                 lba, lba + blocks - 1, n.nsid, n.nsze, n.nsze - 1);
    return false;
  }
  return true;
}

// Wait for completions on queue q: interrupts (eventfd poll) or a short spin.
void wait_for(session& s, queue_t& q, int timeout_ms) {
  if (!q.interrupts()) return;
  pollfd p{s.dev.irq().eventfd(q.vector()), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) > 0) {
    std::uint64_t c;
    (void)!::read(p.fd, &c, sizeof c);
  }
}

// Runs `blocks` blocks starting at `lba` as commands of at most max_transfer
// each, up to `qd` in flight. op: read or write. The buffer holds everything.
status transfer(session& s, queue_t& q, const drv::namespace_info& n, bool write, std::uint64_t lba,
                std::uint64_t blocks, const dma_region& buf, std::uint32_t qd, std::uint64_t* commands = nullptr,
                std::vector<std::pair<std::uint64_t, std::uint64_t>>* failed = nullptr) {
  const std::uint64_t per_cmd = std::min<std::uint64_t>(q.max_transfer() / n.block_size, 65536);
  std::uint64_t next = 0, done_blocks = 0, cmds = 0;
  std::uint32_t inflight = 0;
  status first_err = dkq::ok_status;
  std::uint64_t errors = 0;
  auto handler = [&](const drv::io_completion& c) {
    --inflight;
    if (!c.st.ok()) {
      if (errors++ == 0) first_err = c.st;
      const std::uint64_t nb = std::min(per_cmd, blocks - c.user);
      std::fprintf(stderr, "dkq-nvme: %s of %" PRIu64 " blocks at LBA %" PRIu64 " of ns %u failed: %s [%s, status 0x%03" PRIx64 "]\n",
                   write ? "write" : "read", nb, lba + c.user, n.nsid, c.st.message(), dkq::errc_name(c.st.code()),
                   c.st.detail());
      if (failed) failed->push_back({c.user, nb});
    }
  };
  const std::uint64_t start = s.plat->now_ns();
  const std::uint32_t resets_at_start = s.ctrl->resets();
  constexpr std::uint32_t max_resets_per_transfer = 4;
  while ((next < blocks || inflight > 0) && !g_stop) {
    while (next < blocks && inflight < qd && (first_err.ok() || failed != nullptr)) {
      const std::uint64_t nb = std::min(per_cmd, blocks - next);
      dma_segment seg{buf.device + next * n.block_size, nb * n.block_size};
      status st = write ? q.write(n.nsid, lba + next, static_cast<std::uint32_t>(nb), seg, next)
                        : q.read(n.nsid, lba + next, static_cast<std::uint32_t>(nb), seg, next);
      if (st.code() == errc::no_space) break;
      // A device that lies about its SQ head: the queue asks for a reset,
      // which the loop below performs (and bounds).
      if (q.needs_reset() && (st.code() == errc::protocol_error || st.code() == errc::busy)) break;
      if (!st.ok()) {
        q.poll(q.depth(), handler);  // what a recovery failed is reported, not dropped
        return st;
      }
      ++inflight;
      ++cmds;
      next += nb;
    }
    if (!first_err.ok() && failed == nullptr && next < blocks) next = blocks;  // stop issuing; drain
    q.ring();
    if (q.poll(256, handler) == 0) {
      wait_for(s, q, 10);
      q.check_timeouts(handler);
      status h = s.ctrl->health();
      if (h.code() == errc::removed) return h;
      if (q.needs_reset() || !h.ok()) {
        // CSTS.CFS, a command neither completed nor aborted, or a stuck SQ
        // head: only a controller reset recovers; in-flight commands are
        // re-posted. A device that needs one reset after another is failed.
        if (s.ctrl->resets() - resets_at_start >= max_resets_per_transfer) {
          q.poll(q.depth(), handler);
          return {errc::device_error, "controller needed too many resets in one transfer; giving up",
                  s.ctrl->resets() - resets_at_start};
        }
        std::fprintf(stderr, "dkq-nvme: %s; resetting the controller\n",
                     !h.ok() ? h.message()
                     : q.protocol_errors() ? q.last_protocol_error()
                                           : "a command did not complete after an abort");
        status r = s.ctrl->reset_and_recover();
        if (!r.ok()) {
          q.poll(q.depth(), handler);  // every command the failed reset ended, with its error
          return r;
        }
      }
    }
  }
  done_blocks = next;
  (void)done_blocks;
  (void)start;
  if (commands) *commands = cmds;
  if (g_stop) return {errc::timeout, "interrupted by a signal"};
  return first_err;
}

status simple_cmd(session& s, queue_t& q, const char* what, status posted) {
  if (!posted.ok()) return posted;
  q.ring();
  status result = dkq::ok_status;
  bool done = false;
  while (!done && !g_stop) {
    if (q.poll(16, [&](const drv::io_completion& c) {
          done = true;
          result = c.st;
        }) == 0) {
      wait_for(s, q, 10);
      q.check_timeouts([&](const drv::io_completion& c) {
        done = true;
        result = c.st;
      });
      if (q.needs_reset()) {
        status r = s.ctrl->reset_and_recover();
        if (!r.ok()) {
          q.poll(q.depth(), [&](const drv::io_completion& c) { result = c.st; });
          return r;
        }
      }
    }
  }
  (void)what;
  return result;
}

// ---- commands -----------------------------------------------------------------------

int cmd_list() {
  vfio::sysfs fs;
  int found = 0;
  std::printf("%-13s %-9s %-10s %-6s %s\n", "ADDRESS", "ID", "DRIVER", "GROUP", "STATE");
  for (const auto& d : fs.list_devices()) {
    if ((d.class_code >> 8) != 0x0108) continue;
    ++found;
    char id[16];
    std::snprintf(id, sizeof id, "%04x:%04x", d.vendor, d.device);
    const char* state = d.driver == "vfio-pci" ? "ready for dkq-nvme"
                        : d.iommu_group < 0    ? "no IOMMU group (IOMMU off)"
                                               : "bind with: dkq-pci bind <address>";
    std::printf("%-13s %-9s %-10s %-6s %s\n", vfio::to_string(d.addr).c_str(), id,
                d.driver.empty() ? "-" : d.driver.c_str(),
                d.iommu_group < 0 ? "-" : std::to_string(d.iommu_group).c_str(), state);
  }
  if (found == 0) std::printf("no NVMe controllers (PCI class 01:08) found\n");
  return 0;
}

using dkq_examples::print_size;

int cmd_identify(session& s) {
  const ctrl_t& c = *s.ctrl;
  const drv::controller_info& i = c.info();
  std::printf("controller %s  PCI %04x:%04x  NVMe %u.%u.%u\n", vfio::to_string(s.dev.address()).c_str(),
              c.pci_vendor(), c.pci_device(), c.version() >> 16, (c.version() >> 8) & 0xff, c.version() & 0xff);
  std::printf("  model        %s\n  serial       %s\n  firmware     %s\n", i.mn, i.sn, i.fr);
  std::printf("  cntlid       %u\n  subnqn       %s\n", i.cntlid, i.subnqn);
  std::printf("  CAP          MQES %u  DSTRD %u  TO %u ms  MPS %" PRIu64 "..%" PRIu64 "  CQR %d\n", c.cap().mqes + 1,
              c.cap().dstrd, c.cap().timeout_ms(), c.cap().min_page_size(), c.cap().max_page_size(), c.cap().cqr);
  std::printf("  MDTS         %u (max transfer per command %" PRIu64 " bytes)\n", i.mdts, c.max_transfer());
  std::printf("  SGLs         %s\n", c.uses_sgl() ? "supported, used by policy" : "not used");
  std::printf("  write cache  %s\n", i.volatile_write_cache() ? "volatile (flush reaches it)" : "none");
  std::printf("  ONCS         0x%04x (write zeroes %s, dataset management %s)\n", i.oncs,
              i.write_zeroes_supported() ? "yes" : "no", i.dsm_supported() ? "yes" : "no");
  std::printf("  I/O queues   %u granted\n", c.io_queues_granted());
  std::printf("  shadow db    %s\n", c.shadow_reason());
  std::printf("  AER          %u outstanding (limit %u), %" PRIu64 " events seen\n", std::min<std::uint32_t>(1, i.aerl + 1u),
              i.aerl + 1u, c.async_events());
  std::printf("  namespaces   %u active of %u\n", c.namespace_count(), i.nn);
  for (std::uint32_t k = 0; k < c.namespace_count(); ++k) {
    const drv::namespace_info& n = *c.ns(k);
    std::printf("  ns %u: ", n.nsid);
    if (!n.usable) {
      std::printf("unusable: %s\n", n.why_not);
      continue;
    }
    std::printf("%" PRIu64 " blocks of %u bytes (", n.nsze, n.block_size);
    print_size(n.bytes());
    std::printf("), format %u of %u:", n.format, n.nlbaf + 1u);
    // Every LBA format as data size (+metadata), the one in use in brackets.
    for (unsigned f = 0; f <= n.nlbaf && f < 16; ++f) {
      const bool cur = f == n.format;
      std::printf(" %s%u", cur ? "[" : "", 1u << n.formats[f].lbads);
      if (n.formats[f].ms) std::printf("+%u", n.formats[f].ms);
      std::printf("%s", cur ? "]" : "");
    }
    std::printf("\n");
  }
  return 0;
}

struct dma_buf {
  vfio::device* dev = nullptr;
  dma_region r{};
  ~dma_buf() {
    if (dev && r.valid()) (void)dev->dma_free(r);
  }
};

int alloc_buf(session& s, dma_buf& b, std::uint64_t bytes) {
  auto r = s.dev.dma_alloc(bytes);
  if (!r) return fail("allocating a DMA buffer", r.error(), s.dev.last_explain());
  b.dev = &s.dev;
  b.r = *r;
  return 0;
}

int cmd_rw(session& s, const args& a, bool write) {
  const drv::namespace_info* n = pick_ns(s, a.ns);
  if (!n) return 1;
  std::vector<std::uint8_t> file;
  std::uint64_t blocks = a.blocks;
  if (write && !a.in.empty()) {
    FILE* f = std::fopen(a.in.c_str(), "rb");
    if (!f) {
      std::fprintf(stderr, "dkq-nvme: cannot open %s: %s\n", a.in.c_str(), std::strerror(errno));
      return 1;
    }
    std::uint8_t tmp[65536];
    std::size_t got;
    while ((got = std::fread(tmp, 1, sizeof tmp, f)) > 0) file.insert(file.end(), tmp, tmp + got);
    std::fclose(f);
    if (file.empty() || file.size() % n->block_size != 0) {
      std::fprintf(stderr, "dkq-nvme: %s is %zu bytes, not a (nonzero) multiple of the %u-byte block size\n",
                   a.in.c_str(), file.size(), n->block_size);
      return 1;
    }
    blocks = file.size() / n->block_size;
  }
  if (!a.blocks_given && file.empty()) {
    std::fprintf(stderr, "dkq-nvme: give --blocks (number of %u-byte blocks)\n", n->block_size);
    return 1;
  }
  if (!check_range(*n, a.lba, blocks)) return 1;
  if (add_queues(s, 1, std::min<std::uint32_t>(a.qd + 1, 256), false, true)) return 1;
  dma_buf b;
  if (alloc_buf(s, b, blocks * n->block_size)) return 1;
  auto* p = b.r.cpu_at<std::uint8_t>();
  if (write) {
    if (!file.empty()) std::memcpy(p, file.data(), file.size());
    else fill_pattern(p, a.lba * n->block_size, blocks * n->block_size, a.seed);
  }
  std::uint64_t cmds = 0;
  status st = transfer(s, *s.queues[0], *n, write, a.lba, blocks, b.r, a.qd, &cmds);
  if (!st.ok()) return fail(write ? "write failed" : "read failed", st);
  if (!write) {
    if (!a.out.empty()) {
      FILE* f = std::fopen(a.out.c_str(), "wb");
      if (!f || std::fwrite(p, 1, blocks * n->block_size, f) != blocks * n->block_size) {
        std::fprintf(stderr, "dkq-nvme: cannot write %s\n", a.out.c_str());
        if (f) std::fclose(f);
        return 1;
      }
      std::fclose(f);
    } else {
      // A short hex dump of the first block, for humans.
      for (std::uint32_t off = 0; off < std::min<std::uint32_t>(n->block_size, 256); off += 16) {
        std::printf("%08" PRIx64 " ", a.lba * n->block_size + off);
        for (int k = 0; k < 16; ++k) std::printf(" %02x", p[off + k]);
        std::printf("\n");
      }
    }
  }
  std::printf("%s %" PRIu64 " blocks at LBA %" PRIu64 " of ns %u in %" PRIu64 " commands\n", write ? "wrote" : "read",
              blocks, a.lba, n->nsid, cmds);
  return 0;
}

int cmd_simple(session& s, const args& a) {
  const drv::namespace_info* n = pick_ns(s, a.ns);
  if (!n) return 1;
  if (a.cmd != "flush" && !check_range(*n, a.lba, a.blocks)) return 1;
  if (a.cmd != "flush" && a.blocks > 65536) {
    std::fprintf(stderr, "dkq-nvme: one %s command covers at most 65536 blocks\n", a.cmd.c_str());
    return 1;
  }
  if (add_queues(s, 1, 16, false, true)) return 1;
  queue_t& q = *s.queues[0];
  status st;
  const auto nb = static_cast<std::uint32_t>(a.blocks);
  if (a.cmd == "flush") {
    st = simple_cmd(s, q, "flush", q.flush(n->nsid, 0));
    if (st.ok()) ++g_flushes;
  }
  else if (a.cmd == "zeroes") st = simple_cmd(s, q, "write zeroes", q.write_zeroes(n->nsid, a.lba, nb, 0));
  else st = simple_cmd(s, q, "deallocate", q.deallocate(n->nsid, a.lba, nb, 0));
  if (!st.ok()) return fail((a.cmd + " failed").c_str(), st);
  std::printf("%s of ns %u completed by the controller\n", a.cmd.c_str(), n->nsid);
  return 0;
}

// Controller reset with I/O in flight: half the commands rung (the device
// may have run them; their completions die with the reset), half only
// posted. reset_and_recover() re-posts every one on the re-created queue;
// each must then complete exactly once, successfully, with the right data.
int cmd_reset(session& s, const args& a) {
  const drv::namespace_info* n = pick_ns(s, a.ns);
  if (!n) return 1;
  const std::uint32_t count = std::min<std::uint32_t>(a.qd, 64);
  const std::uint64_t blocks = std::min<std::uint64_t>(n->nsze, count);
  if (add_queues(s, 1, 128, false, true)) return 1;
  queue_t& q = *s.queues[0];
  dma_buf b;
  if (alloc_buf(s, b, std::uint64_t{count} * n->block_size)) return 1;
  std::memset(b.r.cpu, 0xa5, std::uint64_t{count} * n->block_size);
  for (std::uint32_t i = 0; i < count; ++i) {
    dma_segment seg{b.r.device + std::uint64_t{i} * n->block_size, n->block_size};
    status st = q.read(n->nsid, i % blocks, 1, seg, i);
    if (!st.ok()) return fail("reset: posting a read", st);
    if (i + 1 == count / 2) q.ring();  // the first half reaches the device
  }
  std::printf("reset: %u reads in flight (%u rung, %u only posted); resetting the controller\n", q.in_flight(),
              count / 2, count - count / 2);
  status st = s.ctrl->reset_and_recover();
  if (!st.ok()) return fail("controller reset", st);
  std::vector<int> seen(count, 0);
  std::uint32_t ok = 0, bad = 0;
  const std::uint64_t deadline = s.plat->now_ns() + 10000000000ull;
  while (q.in_flight() > 0 && s.plat->now_ns() < deadline && !g_stop) {
    q.ring();
    q.poll(256, [&](const drv::io_completion& c) {
      if (c.user < count) ++seen[c.user];
      (c.st.ok() ? ok : bad)++;
    });
  }
  q.poll(256, [&](const drv::io_completion& c) {
    if (c.user < count) ++seen[c.user];
    (c.st.ok() ? ok : bad)++;
  });
  std::uint32_t once = 0;
  for (int v : seen) once += v == 1;
  const auto* p = b.r.cpu_at<std::uint8_t>();
  bool filled = true;
  for (std::uint32_t i = 0; i < count; ++i) filled &= p[std::uint64_t{i} * n->block_size] != 0xa5 || p[std::uint64_t{i} * n->block_size + 1] != 0xa5;
  std::printf("reset: controller reset %u time(s); %u of %u reads completed exactly once (%u ok, %u failed), "
              "buffers %s\n",
              s.ctrl->resets(), once, count, ok, bad, filled ? "filled by the device" : "NOT all filled");
  return once == count && bad == 0 && filled ? 0 : 1;
}

// ---- verify, written as coroutines over the awaitable form --------------------------
//
// The I/O reads top to bottom like the protocol: write the range, Flush, read
// it back, re-read what failed. Completions resume the coroutine from the
// queue's poll(); the timeout -> abort -> reset path stays in the loop that
// drives it (run_on_queue), exactly as for the callback form.

using range_list = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
constexpr std::uint32_t co_window_max = 64;  // commands in flight per transfer (the frame holds them)

// `blocks` blocks from `lba`, MDTS-sized commands, up to `qd` in flight,
// awaited oldest first. Ranges that fail go to *failed when given (the
// transfer goes on); without it the first error ends the transfer.
coro::task<status> co_transfer(queue_t& q, const drv::namespace_info& n, bool write, std::uint64_t lba,
                               std::uint64_t blocks, dma_region buf, std::uint32_t qd, std::uint64_t* commands,
                               range_list* failed) {
  const std::uint64_t per_cmd = std::min<std::uint64_t>(q.max_transfer() / n.block_size, 65536);
  const std::uint32_t window = std::min(qd, co_window_max);
  io_op_t ops[co_window_max];
  std::uint64_t off[co_window_max] = {}, len[co_window_max] = {};
  status first = dkq::ok_status;
  std::uint64_t next = 0;
  std::uint32_t k = 0;
  for (std::uint32_t round = 0;; ++round) {
    io_op_t& op = ops[k];
    if (op.pending() || op.done()) {  // the oldest command in the window: its answer first
      const drv::io_completion c = co_await op;
      if (!c.st.ok()) {
        if (first.ok()) first = c.st;
        std::fprintf(stderr, "dkq-nvme: %s of %" PRIu64 " blocks at LBA %" PRIu64 " of ns %u failed: %s [%s]\n",
                     write ? "write" : "read", len[k], lba + off[k], n.nsid, c.st.message(), dkq::errc_name(c.st.code()));
        if (failed != nullptr) failed->push_back({off[k], len[k]});
      }
      op = io_op_t();
    }
    const bool issue = next < blocks && (first.ok() || failed != nullptr);
    if (issue) {
      const std::uint64_t nb = std::min(per_cmd, blocks - next);
      const dma_segment seg{buf.device + next * n.block_size, nb * n.block_size};
      const auto nlb = static_cast<std::uint32_t>(nb);
      op = write ? q.co_write(n.nsid, lba + next, nlb, seg) : q.co_read(n.nsid, lba + next, nlb, seg);
      off[k] = next;
      len[k] = nb;
      (void)op.start();  // a refusal is the op's completion, seen when it comes round
      ++*commands;
      next += nb;
    }
    k = (k + 1) % window;
    if (!issue) {
      bool busy = false;
      for (std::uint32_t i = 0; i < window; ++i) busy |= ops[i].pending() || ops[i].done();
      if (!busy) break;
    }
  }
  co_return first;
}

coro::task<status> co_verify(queue_t& q, const drv::namespace_info& n, std::uint64_t lba, std::uint64_t blocks,
                             dma_region wbuf, dma_region rbuf, std::uint32_t qd, bool reread, std::uint64_t* wcmds,
                             std::uint64_t* rcmds, range_list* failed) {
  status st = co_await co_transfer(q, n, true, lba, blocks, wbuf, qd, wcmds, nullptr);
  if (!st.ok()) co_return st;
  const drv::io_completion f = co_await q.co_flush(n.nsid);
  if (!f.st.ok()) co_return f.st;
  ++g_flushes;
  st = co_await co_transfer(q, n, false, lba, blocks, rbuf, qd, rcmds, reread ? failed : nullptr);
  if (st.ok() || !reread || failed->empty()) co_return st;
  // The device reported an error for some commands and completed the rest;
  // the same queue, same controller, no reset: read the failed ranges again.
  std::fprintf(stderr, "dkq-nvme: verify: %zu read command(s) failed with \"%s\"; re-reading them on the same queue\n",
               failed->size(), st.message());
  for (auto [o, nb] : *failed) {
    const dma_region part{rbuf.cpu_at(o * n.block_size), rbuf.device + o * n.block_size, nb * n.block_size};
    std::uint64_t again_cmds = 0;
    const status again = co_await co_transfer(q, n, false, lba + o, nb, part, qd, &again_cmds, nullptr);
    if (!again.ok()) co_return again;
  }
  std::printf("read error reported (%s) and recovered: re-read of %zu range(s) succeeded\n", st.message(),
              failed->size());
  co_return dkq::ok_status;
}

// Turns the completion path until `t` is done: ring, reap (coroutines
// resume inside poll), and when the queue is quiet wait, run the timeout
// scan and reset the controller when a command neither completed nor
// aborted or the device broke the protocol (at most 4 resets).
status run_on_queue(session& s, queue_t& q, coro::task<status>& t) {
  if (!t.valid()) return t.value();
  const std::uint32_t resets_at_start = s.ctrl->resets();
  auto stray = [](const drv::io_completion& c) {
    std::fprintf(stderr, "dkq-nvme: completion for a callback-form command (user %" PRIu64 ") ignored\n", c.user);
  };
  t.start();
  while (!t.done() && !g_stop) {
    q.ring();
    if (q.poll(256, stray) != 0) continue;
    wait_for(s, q, 10);
    q.check_timeouts(stray);
    s.ctrl->poll_admin();
    const status h = s.ctrl->health();
    if (h.code() == errc::removed) return h;
    if (q.needs_reset() || !h.ok()) {
      if (s.ctrl->resets() - resets_at_start >= 4)
        return {errc::device_error, "controller needed too many resets; giving up", s.ctrl->resets() - resets_at_start};
      std::fprintf(stderr, "dkq-nvme: %s; resetting the controller\n",
                   !h.ok() ? h.message() : q.protocol_errors() ? q.last_protocol_error() : "a command did not complete after an abort");
      const status r = s.ctrl->reset_and_recover();
      q.poll(q.depth(), stray);  // what the reset ended resumes its coroutine here
      if (!r.ok()) return r;
    }
  }
  if (!t.done()) return {errc::timeout, "interrupted by a signal"};
  return t.value();
}

int cmd_verify(session& s, const args& a) {
  const drv::namespace_info* n = pick_ns(s, a.ns);
  if (!n) return 1;
  if (!a.blocks_given) {
    std::fprintf(stderr, "dkq-nvme: give --blocks (number of %u-byte blocks)\n", n->block_size);
    return 1;
  }
  if (!check_range(*n, a.lba, a.blocks)) return 1;
  if (add_queues(s, 1, std::min<std::uint32_t>(a.qd + 1, 256), false, true)) return 1;
  queue_t& q = *s.queues[0];
  // Frames for verify's coroutines: co_verify and one co_transfer at a time.
  if (status st = q.reserve_frames(4, 16384); !st.ok()) return fail("verify: coroutine frames", st);
  const std::uint64_t bytes = a.blocks * n->block_size;
  dma_buf wb, rb;
  if (alloc_buf(s, wb, bytes) || alloc_buf(s, rb, bytes)) return 1;
  fill_pattern(wb.r.cpu_at<std::uint8_t>(), a.lba * n->block_size, bytes, a.seed);
  std::memset(rb.r.cpu, 0xa5, bytes);
  std::uint64_t wcmds = 0, rcmds = 0;
  range_list failed;
  auto t = co_verify(q, *n, a.lba, a.blocks, wb.r, rb.r, a.qd, a.reread, &wcmds, &rcmds, &failed);
  const status st = run_on_queue(s, q, t);
  if (!st.ok()) return fail("verify failed", st);
  const auto* w = wb.r.cpu_at<std::uint8_t>();
  const auto* r = rb.r.cpu_at<std::uint8_t>();
  if (std::memcmp(w, r, bytes) != 0) {
    std::uint64_t first = 0;
    while (w[first] == r[first]) ++first;
    std::fprintf(stderr, "dkq-nvme: verify MISMATCH at byte %" PRIu64 " (LBA %" PRIu64 "): wrote %02x, read %02x\n", first,
                 a.lba + first / n->block_size, w[first], r[first]);
    return 3;
  }
  std::printf("verify ok: %" PRIu64 " blocks x %u bytes at LBA %" PRIu64 " of ns %u (", a.blocks, n->block_size, a.lba,
              n->nsid);
  print_size(bytes);
  std::printf(") written in %" PRIu64 " commands, flushed, read back in %" PRIu64
              " commands, equal (coroutines: %zu frames at most)\n",
              wcmds, rcmds, q.coro_frame_arena().high_water());
  return 0;
}

// ---- perf -----------------------------------------------------------------------------

struct histogram {
  // log2 buckets with 16 linear sub-buckets: < 6.25 % error, fixed size.
  std::uint64_t b[64 * 16]{};
  std::uint64_t n = 0, max = 0, sum = 0;
  static unsigned index(std::uint64_t v) {
    if (v < 16) return static_cast<unsigned>(v);
    const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));
    return (msb - 3) * 16 + static_cast<unsigned>((v >> (msb - 4)) & 15);
  }
  static std::uint64_t lower(unsigned i) {
    if (i < 16) return i;
    const unsigned msb = i / 16 + 3, sub = i % 16;
    return (std::uint64_t{1} << msb) | (std::uint64_t{sub} << (msb - 4));
  }
  void add(std::uint64_t v) {
    ++b[index(v)];
    ++n;
    sum += v;
    if (v > max) max = v;
  }
  void merge(const histogram& o) {
    for (unsigned i = 0; i < 64 * 16; ++i) b[i] += o.b[i];
    n += o.n;
    sum += o.sum;
    max = std::max(max, o.max);
  }
  std::uint64_t pct(double p) const {
    if (n == 0) return 0;
    const auto want = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    std::uint64_t acc = 0;
    for (unsigned i = 0; i < 64 * 16; ++i) {
      acc += b[i];
      if (acc >= want) return lower(i);
    }
    return max;
  }
};

struct worker {
  queue_t* q = nullptr;
  dma_region buf{};
  std::vector<std::uint64_t> started;
  std::uint64_t rng = 0;
  std::uint64_t next_seq = 0;
  histogram lat;
  std::atomic<std::uint64_t> done{0};
  std::uint64_t errors = 0, reads = 0, writes = 0;
  status first_err{};
  std::uint64_t sq_db = 0, cmds = 0;
  std::uint64_t spin_wins = 0, spin_losses = 0, waits = 0;  // hybrid: completions caught spinning / blocks
  bool stalled_reset = false;
};

std::atomic<bool> g_perf_stop{false};

void perf_thread(session& s, const args& a, const drv::namespace_info& n, worker& w, std::uint64_t ios_limit,
                 std::atomic<std::uint64_t>& issued) {
  queue_t& q = *w.q;
  const std::uint32_t bpio = a.bs / n.block_size;
  const std::uint64_t span = n.nsze / bpio;  // I/O-sized slots on the namespace
  auto next_lba = [&]() -> std::uint64_t {
    if (a.seq) return (w.next_seq++ % span) * bpio;
    w.rng ^= w.rng << 13;
    w.rng ^= w.rng >> 7;
    w.rng ^= w.rng << 17;
    return (w.rng % span) * bpio;
  };
  auto submit = [&](std::uint32_t slot) -> bool {
    if (g_perf_stop.load(std::memory_order_relaxed) || g_stop) return false;
    if (ios_limit && issued.fetch_add(1, std::memory_order_relaxed) >= ios_limit) return false;
    const bool rd = a.read_pct == 100 || (a.read_pct > 0 && static_cast<int>(w.rng % 100) < a.read_pct);
    dma_segment seg{w.buf.device + std::uint64_t{slot} * a.bs, a.bs};
    w.started[slot] = s.plat->now_ns();
    status st = rd ? q.read(n.nsid, next_lba(), bpio, seg, slot) : q.write(n.nsid, next_lba(), bpio, seg, slot);
    if (!st.ok()) {
      if (w.errors++ == 0) w.first_err = st;
      return false;
    }
    (rd ? w.reads : w.writes)++;
    return true;
  };
  for (std::uint32_t i = 0; i < a.qd; ++i)
    if (!submit(i)) break;
  q.ring();
  auto handler = [&](const drv::io_completion& c) {
    const auto slot = static_cast<std::uint32_t>(c.user);
    w.lat.add(s.plat->now_ns() - w.started[slot]);
    if (!c.st.ok() && w.errors++ == 0) w.first_err = c.st;
    w.done.fetch_add(1, std::memory_order_relaxed);
    (void)submit(slot);  // re-post into the freed slot; rung once per reap batch
  };
  // Completions come through dkq's dispatcher: this thread's queue is bound
  // to its vector; polled = flush + one pass, interrupt = flush, wait on the
  // eventfd, drain until empty, hybrid = spin first (`--spin N` passes, or
  // adaptive: dkq::adaptive_spin doubles the spin after a completion caught
  // spinning and halves it after a spin that ran out).
  struct drain_adapter {
    queue_t* q;
    decltype(handler)* h;
    std::uint32_t drain(std::uint32_t budget) noexcept { return q->poll(budget, *h); }
    void flush() noexcept { (void)q->ring(); }
  } adapter{&q, &handler};
  // The VFIO backend's waiter: this vector's eventfd, 10 ms at most so the
  // timeout scan keeps running while the device is silent.
  vfio::eventfd_waiter waiter{s.dev.irq(), 10};
  const std::uint16_t vec = q.vector();  // polled queues: 0, never waited on
  dkq::interrupt_dispatcher<17, 1> disp;  // --threads <= 16, vectors 1..16
  disp.set_budget(a.qd);
  (void)disp.bind(vec, dkq::completion_target::of(adapter));
  const dkq::completion_mode mode = !q.interrupts() ? dkq::completion_mode::polled
                                    : a.hybrid      ? dkq::completion_mode::hybrid
                                                    : dkq::completion_mode::interrupt;
  std::uint32_t idle = 0;
  while (q.in_flight() > 0) {
    if (disp.run_once(vec, mode, waiter, a.spin_polls) == 0) {
      if ((++idle & 1023) == 0 || mode != dkq::completion_mode::polled) {
        q.check_timeouts(handler);
        if (q.needs_reset()) {
          // Other threads keep their own queues; a reset needs all of them
          // quiet, so this run stops here and main resets (see docs/nvme.md).
          w.stalled_reset = true;
          g_perf_stop = true;
          break;
        }
      }
    } else {
      idle = 0;
    }
  }
  w.sq_db = q.sq_mmio_writes();
  w.cmds = q.commands_posted();
  w.spin_wins = disp.spin(vec).wins;
  w.spin_losses = disp.spin(vec).losses;
  w.waits = disp.counters(vec).waits;
}

int cmd_perf(session& s, const args& a) {
  const drv::namespace_info* n = pick_ns(s, a.ns);
  if (!n) return 1;
  if (a.bs < n->block_size || a.bs % n->block_size != 0) {
    std::fprintf(stderr, "dkq-nvme: --bs %u is not a multiple of the %u-byte block size\n", a.bs, n->block_size);
    return 1;
  }
  if (a.bs > s.ctrl->max_transfer()) {
    std::fprintf(stderr, "dkq-nvme: --bs %u exceeds the controller's max transfer %" PRIu64 "\n", a.bs,
                 s.ctrl->max_transfer());
    return 1;
  }
  if (add_queues(s, a.threads, std::min<std::uint32_t>(a.qd + 1, s.ctrl->cap().mqes + 1), a.irq, a.batch)) return 1;
  std::vector<std::unique_ptr<worker>> ws;
  std::vector<dma_buf> bufs(a.threads);
  for (std::uint32_t t = 0; t < a.threads; ++t) {
    auto w = std::make_unique<worker>();
    w->q = s.queues[t].get();
    if (alloc_buf(s, bufs[t], std::uint64_t{a.qd} * a.bs)) return 1;
    w->buf = bufs[t].r;
    w->started.assign(a.qd, 0);
    w->rng = 0x9e3779b97f4a7c15ull * (t + 1) ^ a.seed;
    w->next_seq = t * (n->nsze / (a.bs / n->block_size)) / a.threads;
    ws.push_back(std::move(w));
  }
  std::atomic<std::uint64_t> issued{0};
  g_perf_stop = false;
  const std::uint64_t t0 = s.plat->now_ns();
  std::vector<std::thread> th;
  for (std::uint32_t t = 0; t < a.threads; ++t)
    th.emplace_back([&, t] { perf_thread(s, a, *n, *ws[t], a.ios, issued); });
  const bool tty = ::isatty(1) && !a.json;
  std::uint64_t last = 0, last_t = t0;
  for (;;) {
    ::usleep(100000);
    const std::uint64_t now = s.plat->now_ns();
    std::uint64_t total = 0;
    for (auto& w : ws) total += w->done.load(std::memory_order_relaxed);
    const bool time_up = a.ios == 0 && static_cast<double>(now - t0) / 1e9 >= a.seconds;
    const bool count_done = a.ios != 0 && total >= a.ios;
    if (now - last_t >= 1000000000ull || time_up || count_done) {
      const double iops = static_cast<double>(total - last) * 1e9 / static_cast<double>(now - last_t);
      if (!a.json)
        std::fprintf(stderr, "%s[%5.1f s] %10.0f IOPS %8.1f MB/s  %" PRIu64 " I/Os%s", tty ? "\r" : "",
                     static_cast<double>(now - t0) / 1e9, iops, iops * a.bs / 1e6, total, tty ? "   " : "\n");
      last = total;
      last_t = now;
    }
    if (time_up || count_done || g_stop || g_perf_stop) break;
  }
  g_perf_stop = true;
  for (auto& t : th) t.join();
  const std::uint64_t t1 = s.plat->now_ns();
  if (tty) std::fprintf(stderr, "\n");
  histogram all;
  std::uint64_t total = 0, errors = 0, reads = 0, writes = 0, sqdb = 0, cmds = 0, cqdb = 0;
  std::uint64_t spin_wins = 0, spin_losses = 0, waits = 0;
  bool needs_reset = false;
  status first_err{};
  for (auto& w : ws) {
    all.merge(w->lat);
    total += w->done.load();
    errors += w->errors;
    reads += w->reads;
    writes += w->writes;
    sqdb += w->sq_db;
    cmds += w->cmds;
    cqdb += w->q->cq_mmio_writes();
    spin_wins += w->spin_wins;
    spin_losses += w->spin_losses;
    waits += w->waits;
    needs_reset |= w->stalled_reset;
    if (first_err.ok() && !w->first_err.ok()) first_err = w->first_err;
  }
  const double secs = static_cast<double>(t1 - t0) / 1e9;
  const double iops = static_cast<double>(total) / secs;
  const double mbps = iops * a.bs / 1e6;
  const double dpc = cmds ? static_cast<double>(sqdb) / static_cast<double>(cmds) : 0;
  // With shadow doorbells: the controller-written EventIdx words of queue 1
  // after the run (0 for the CQ would mean the controller never updates it).
  const auto sw = s.ctrl->shadow_state(s.queues[0]->qid());
  if (a.json) {
    std::printf(
        "{\"device\":\"%s\",\"ns\":%u,\"bs\":%u,\"qd\":%u,\"threads\":%u,\"read_pct\":%d,\"pattern\":\"%s\","
        "\"mode\":\"%s\",\"batching\":%s,\"shadow_doorbells\":%s,\"seconds\":%.3f,\"ios\":%" PRIu64
        ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"errors\":%" PRIu64
        ",\"iops\":%.0f,\"mb_per_s\":%.2f,\"lat_us\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,"
        "\"p99_9\":%.2f,\"max\":%.2f},\"sq_doorbell_writes\":%" PRIu64 ",\"cq_doorbell_writes\":%" PRIu64
        ",\"commands\":%" PRIu64 ",\"sq_doorbells_per_command\":%.4f,\"reset_needed\":%s,"
        "\"waits\":%" PRIu64 ",\"spin_wins\":%" PRIu64 ",\"spin_losses\":%" PRIu64 ","
        "\"shadow\":{\"sq_tail\":%u,\"sq_eventidx\":%u,\"cq_head\":%u,\"cq_eventidx\":%u}}\n",
        a.bdf.c_str(), n->nsid, a.bs, a.qd, a.threads, a.read_pct, a.seq ? "sequential" : "random",
        a.hybrid ? "hybrid" : a.irq ? "interrupts" : "polled", a.batch ? "true" : "false", s.ctrl->shadow_doorbells() ? "true" : "false",
        secs, total, reads, writes, errors, iops, mbps,
        all.n ? static_cast<double>(all.sum) / static_cast<double>(all.n) / 1e3 : 0.0, static_cast<double>(all.pct(50)) / 1e3,
        static_cast<double>(all.pct(90)) / 1e3, static_cast<double>(all.pct(99)) / 1e3,
        static_cast<double>(all.pct(99.9)) / 1e3, static_cast<double>(all.max) / 1e3, sqdb, cqdb, cmds, dpc,
        needs_reset ? "true" : "false", waits, spin_wins, spin_losses, sw.sq_shadow, sw.sq_eventidx, sw.cq_shadow, sw.cq_eventidx);
  } else {
    std::printf("perf %s ns %u: %u B %s %s, QD %u x %u thread(s), %s, batching %s, shadow doorbells %s\n",
                a.bdf.c_str(), n->nsid, a.bs, a.seq ? "sequential" : "random",
                a.read_pct == 100 ? "reads" : a.read_pct == 0 ? "writes" : "mixed", a.qd, a.threads,
                a.hybrid ? "hybrid" : a.irq ? "interrupts" : "polled", a.batch ? "on" : "off",
                s.ctrl->shadow_doorbells() ? "on" : "off");
    std::printf("  %" PRIu64 " I/Os in %.2f s: %.0f IOPS, %.1f MB/s, %" PRIu64 " errors\n", total, secs, iops, mbps,
                errors);
    std::printf("  latency us: mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
                all.n ? static_cast<double>(all.sum) / static_cast<double>(all.n) / 1e3 : 0.0,
                static_cast<double>(all.pct(50)) / 1e3, static_cast<double>(all.pct(90)) / 1e3,
                static_cast<double>(all.pct(99)) / 1e3, static_cast<double>(all.pct(99.9)) / 1e3,
                static_cast<double>(all.max) / 1e3);
    std::printf("  SQ doorbell writes %" PRIu64 " for %" PRIu64 " commands (%.3f per command), CQ head writes %" PRIu64
                "\n",
                sqdb, cmds, dpc, cqdb);
  }
  if (needs_reset) {
    std::fprintf(stderr, "dkq-nvme: a command neither completed nor aborted; resetting the controller\n");
    status st = s.ctrl->reset_and_recover();
    for (auto& w : ws) w->q->poll(w->q->depth(), [](const drv::io_completion&) {});  // failed ones, if any
    if (!st.ok()) return fail("controller reset", st);
    // Drain what the reset re-posted or failed.
    for (auto& w : ws) {
      const std::uint64_t deadline = s.plat->now_ns() + 10000000000ull;
      while (w->q->in_flight() > 0 && s.plat->now_ns() < deadline) w->q->poll(256, [](const drv::io_completion&) {});
      w->q->poll(256, [](const drv::io_completion&) {});
    }
    return 1;
  }
  if (errors) return fail("perf: I/O errors", first_err);
  return 0;
}

// ---- serve: namespaces as Linux block devices (ublk) ------------------------------------
// The request -> command translation is the dext's (driverkit/
// block_translation.hpp, portable and unit-tested): ublk tag = request ID,
// the tag's DMA-mapped buffer = the data segment. docs/ublk.md.

namespace ublk = dkq::ublk;
namespace dx = dkq::nvme_driver::dext;

struct nvme_ublk_backend {
  session* s = nullptr;
  queue_t* q = nullptr;
  const drv::namespace_info* ns = nullptr;
  dx::block_translator<queue_t, 1024> tr;
  int efd = -1;
  std::uint32_t spb = 1;         // 512-byte sectors per logical block
  bool may_reset = false;        // only when this is the controller's only I/O queue
  bool flush_done = false;
  status flush_status{};
  std::uint64_t errors_logged = 0;

  status start(std::uint16_t tag, const ublk::block_request& r, const ublk::io_buffer& b) noexcept {
    using ublk::block_op;
    if (r.op == block_op::flush) return tr.synchronize(tag);
    if (r.sectors == 0 || r.sector % spb != 0 || r.sectors % spb != 0)
      return {errc::invalid_argument, "request not aligned to the namespace's logical block", r.sector};
    const std::uint64_t lba = r.sector / spb, blocks = r.sectors / spb;
    switch (r.op) {
      case block_op::read:
      case block_op::write: {
        dx::rw_request rw;
        rw.is_read = r.op == block_op::read;
        rw.request_id = tag;
        rw.dma_addr = b.iova;
        rw.size = r.bytes();
        rw.lba = lba;
        rw.blocks = blocks;
        rw.fua = r.fua;
        return tr.read_write(rw);
      }
      case block_op::discard: {
        const dx::unmap_range u{lba, blocks};
        return tr.unmap(tag, std::span<const dx::unmap_range>(&u, 1));
      }
      case block_op::write_zeroes: return tr.write_zeroes(tag, lba, blocks);
      default: return {errc::not_supported, "operation not served"};
    }
  }
  void ring() noexcept { tr.ring(); }
  template <class F>
  void deliver(const dx::block_completion& c, F& done) noexcept {
    if (c.kind == dx::request_kind::internal_flush) {
      flush_done = true;
      flush_status = c.st;
      return;
    }
    if (!c.st.ok() && errors_logged++ < 16)
      std::fprintf(stderr, "dkq-nvme: serve: ns %u tag %u: %s [%s, 0x%" PRIx64 "]\n", ns->nsid, c.request_id,
                   c.st.message(), dkq::errc_name(c.st.code()), c.st.detail());
    done(static_cast<std::uint16_t>(c.request_id), c.st.ok() ? static_cast<std::int32_t>(c.bytes) : ublk::to_errno(c.st));
  }
  template <class F>
  std::uint32_t poll(F&& done) noexcept {
    return tr.poll(256, [&](const dx::block_completion& c) { deliver(c, done); });
  }
  // Timeouts (abort), then a controller reset when the queue or the
  // controller needs one; a failed reset (or one the design cannot do
  // safely with other queue threads running) ends every request with an error.
  template <class F>
  std::uint32_t housekeeping(F&& done) noexcept {
    auto d = [&](const dx::block_completion& c) { deliver(c, done); };
    std::uint32_t n = tr.check_timeouts(d);
    const status h = s->ctrl->health();
    if (!q->needs_reset() && h.ok()) return n;
    if (may_reset && !s->ctrl->failed()) {
      std::fprintf(stderr, "dkq-nvme: serve: %s; resetting the controller\n",
                   !h.ok() ? h.message() : q->protocol_errors() ? q->last_protocol_error() : "a command did not complete after an abort");
      if (s->ctrl->reset_and_recover().ok()) return n;
    }
    n += tr.poll(q->depth(), d);
    n += tr.fail_all({errc::device_error, "controller failed; request ended"}, d);
    return n;
  }
  std::uint32_t in_flight() const noexcept { return tr.in_flight(); }
  int irq_fd() const noexcept { return efd; }

  status final_flush() noexcept {
    if (s->ctrl->failed()) return s->ctrl->failed_status();
    flush_done = false;
    DKQ_TRY(tr.flush_internal());
    tr.ring();
    const std::uint64_t deadline = s->plat->now_ns() + 30'000'000'000ull;
    auto ignore = [](std::uint16_t, std::int32_t) {};
    while (!flush_done && s->plat->now_ns() < deadline) {
      if (poll(ignore) == 0) {
        housekeeping(ignore);
        vfio::monotonic_clock::sleep_us(100);
      }
    }
    if (!flush_done) return {errc::timeout, "device flush did not complete in 30 s"};
    return flush_status;
  }
};

int cmd_serve(session& s, const args& a) {
  std::vector<const drv::namespace_info*> nss;
  if (a.all_ns) {
    for (std::uint32_t i = 0; i < s.ctrl->namespace_count(); ++i) {
      const drv::namespace_info* n = s.ctrl->ns(i);
      if (n->usable) nss.push_back(n);
      else std::fprintf(stderr, "dkq-nvme: serve: namespace %u skipped: %s\n", n->nsid, n->why_not);
    }
    if (nss.empty()) {
      std::fprintf(stderr, "dkq-nvme: serve: no usable namespace on %s\n", a.bdf.c_str());
      return 1;
    }
  } else {
    const drv::namespace_info* n = pick_ns(s, a.ns);
    if (!n) return 1;
    nss.push_back(n);
  }
  const bool irq = !a.poll_mode;
  const std::uint32_t nq = static_cast<std::uint32_t>(nss.size()) * a.queues;
  if (add_queues(s, nq, std::min<std::uint32_t>(a.depth + 1, s.ctrl->cap().mqes + 1), irq, true)) return 1;
  std::vector<std::unique_ptr<nvme_ublk_backend>> bes;
  std::vector<dma_buf> bufs(nq);
  using disk_t = dkq_examples::ublk_server::disk<nvme_ublk_backend>;
  std::vector<disk_t> disks;
  std::uint32_t qi = 0;
  for (const drv::namespace_info* n : nss) {
    disk_t dk;
    dk.what = "namespace " + std::to_string(n->nsid) + " of " + a.bdf;
    const std::uint32_t depth = std::min<std::uint32_t>(a.depth, s.queues[qi]->depth());
    dk.depth = static_cast<std::uint16_t>(depth);
    auto p = dx::make_device_params(s.ctrl->info(), *n, s.queues[qi]->max_transfer(), depth);
    if (!p) return fail(("namespace " + std::to_string(n->nsid)).c_str(), p.error());
    const std::uint64_t max_io = std::min<std::uint64_t>(p->max_io_bytes, std::uint64_t{a.max_io_kib} << 10);
    if (max_io < n->block_size) {
      std::fprintf(stderr, "dkq-nvme: serve: --max-io %u KiB is below the %u-byte block\n", a.max_io_kib, n->block_size);
      return 1;
    }
    auto& l = dk.limits;
    l.logical_block = n->block_size;
    l.physical_block = n->block_size;
    l.sectors = n->nsze * (n->block_size / 512);
    l.max_io_bytes = static_cast<std::uint32_t>(max_io - max_io % n->block_size);
    l.volatile_cache = p->write_cache;
    l.fua = p->write_cache;
    // One Dataset Management range per discard, at most 2^32-1 blocks: the
    // kernel splits larger ones. Capped to keep each command's work bounded.
    if (p->max_unmap_regions != 0)
      l.max_discard_sectors = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{1} << 22, l.sectors));
    if (p->write_zeroes) l.max_write_zeroes_sectors = static_cast<std::uint32_t>(std::uint64_t{65536} * n->block_size / 512);
    for (std::uint32_t k = 0; k < a.queues; ++k, ++qi) {
      auto be = std::make_unique<nvme_ublk_backend>();
      be->s = &s;
      be->q = s.queues[qi].get();
      be->ns = n;
      be->spb = n->block_size / 512;
      be->efd = irq ? s.dev.irq().eventfd(be->q->vector()) : -1;
      be->may_reset = nq == 1;
      if (status st = be->tr.init(*be->q, n->nsid, [&] {
            auto pp = *p;
            pp.max_io_bytes = l.max_io_bytes;
            return pp;
          }()); !st.ok())
        return fail("translator", st);
      if (alloc_buf(s, bufs[qi], std::uint64_t{depth} * l.max_io_bytes)) return 1;
      std::vector<ublk::io_buffer> tb(depth);
      for (std::uint32_t t = 0; t < depth; ++t)
        tb[t] = {bufs[qi].r.cpu_at(std::size_t{t} * l.max_io_bytes), bufs[qi].r.device_at(std::size_t{t} * l.max_io_bytes).value(),
                 l.max_io_bytes};
      dk.buffers.push_back(std::move(tb));
      dk.queues.push_back(be.get());
      bes.push_back(std::move(be));
    }
    disks.push_back(std::move(dk));
  }
  dkq_examples::ublk_server::options o;
  o.mode = a.poll_mode ? ublk::wait_mode::poll : a.hybrid ? ublk::wait_mode::hybrid : ublk::wait_mode::interrupt;
  o.json = a.json;
  o.recoverable = a.recoverable;
  o.recover_id = a.recover_id;
  o.prog = "dkq-nvme";
  const int rc = dkq_examples::ublk_server::serve(disks, o);
  // Every Flush posted (the kernel's and the final one) reached the device:
  // the VM test compares this with QEMU's pci_nvme_flush_ns count.
  std::uint64_t fua = 0, flushes = 0;
  for (auto& be : bes) {
    flushes += be->tr.counters().flushes;
    fua += be->q->fua_writes_posted();
  }
  g_flushes += flushes;
  // What went to the device (QEMU's NVMe model traces Flush but not FUA):
  // the VM tests compare these with what fio asked for.
  if (a.json)
    std::printf("{\"event\":\"nvme-commands\",\"flush\":%" PRIu64 ",\"fua_writes\":%" PRIu64 "}\n", flushes, fua);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  args a = parse(argc, argv);
  if (a.cmd == "list") return cmd_list();
  if (a.cmd != "identify" && a.cmd != "read" && a.cmd != "write" && a.cmd != "flush" && a.cmd != "verify" &&
      a.cmd != "perf" && a.cmd != "zeroes" && a.cmd != "trim" && a.cmd != "reset" && a.cmd != "serve")
    usage(("unknown command " + a.cmd).c_str());
  // SIGINT/SIGTERM end loops; main then shuts the controller down (CC.SHN).
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // serve: a kernel without ublk is told before the controller is touched.
  if (a.cmd == "serve" && dkq_examples::ublk_server::check_kernel("dkq-nvme") != 0) return 1;
  session s;
  if (int rc = open_session(s, a)) return rc;
  int rc = 0;
  if (a.cmd == "identify") rc = cmd_identify(s);
  else if (a.cmd == "read") rc = cmd_rw(s, a, false);
  else if (a.cmd == "write") rc = cmd_rw(s, a, true);
  else if (a.cmd == "verify") rc = cmd_verify(s, a);
  else if (a.cmd == "perf") rc = cmd_perf(s, a);
  else if (a.cmd == "reset") rc = cmd_reset(s, a);
  else if (a.cmd == "serve") rc = cmd_serve(s, a);
  else rc = cmd_simple(s, a);
  const bool clean = s.close();
  if (g_stop)
    std::fprintf(stderr, "dkq-nvme: stopped by a signal; controller %s\n",
                 clean ? "shut down cleanly" : "shutdown did NOT complete");
  return rc;
}
