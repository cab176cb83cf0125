// dkq-scsi - the MegaRAID SAS (MFI) example driver as a Linux program over VFIO.
//
//   dkq-scsi list     [<bdf>...]        controllers (bound to vfio-pci: also targets)
//   dkq-scsi inquiry  <bdf> --target T [--vpd PAGE] [--pd]
//   dkq-scsi capacity <bdf> --target T [--pd]
//   dkq-scsi read     <bdf> --target T --lba L --blocks C [--out FILE] [--pd]
//   dkq-scsi write    <bdf> --target T --lba L --blocks C --seed S [--pd]
//   dkq-scsi sync     <bdf> [--target T|all] [--pd]     SYNCHRONIZE CACHE (16 -> 10)
//   dkq-scsi verify   <bdf> [--target T|all] --lba L --blocks C [--seed S] [--qd Q] [--bs B] [--pd]
//   dkq-scsi perf     <bdf> --target T [--bs B] [--qd Q] [--rw read|write|PCT] [--seq] [--pd]
//                     [--time S | --ios N] [--json] [--allow-errors]
//                     (--allow-errors: failed commands, e.g. timeouts against a
//                     throttled disk, do not fail the run; double or lost
//                     completions always do)
// Targets: without --pd, T is a logical drive; with --pd, a physical drive
//         reached through PD SCSI IO frames - for anything that moves data or
//         flushes, only a SYSTEM (JBOD) drive the controller exposes as is.
//         Every command checks its target(s) this one way before it sends
//         anything (resolve_targets).
// Common: --pass (READ/WRITE CDBs in pass-through frames instead of LD
//         read/write frames), --cdb16, --abort-grace-ms MS (0: reset right
//         after an ABORT that did not bring the command back), --force-32bit (SGL32, control memory
//         and bounce buffers below 4 GiB, data buffers placed above 4 GiB on
//         purpose), --poll | --irq | --hybrid, --qdepth N (controller limit),
//         --timeout-ms MS, --no-sync (verify)
//
// The driver core (../driver) does the MegaRAID work; this file is the shell:
// arguments, buffers, output. It may use the OS freely; the core may not.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../../common/format.hpp"
#include "../../common/pattern.hpp"
#include "../../common/ublk_server.hpp"
#include "../driver/block_translation.hpp"
#include "../driver/megaraid.hpp"
#include "dkq/coro/completion.hpp"
#include "dkq/coro/task.hpp"
#include "session.hpp"
#include "vfio_platform.hpp"

namespace mr = dkq::examples::megaraid;
namespace vfio = dkq::vfio;
using dkq::dma_region;
using dkq::errc;
using dkq::status;
using ctrl_t = mr::controller<dkq::scsi_linux::vfio_platform>;
namespace coro = dkq::coro;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct args {
  std::string cmd;
  std::vector<std::string> bdfs;
  int target = -1;  // -1: all (where allowed)
  std::uint64_t lba = 0, blocks = 0, seed = 1, ios = 0;
  std::uint32_t bs = 0, qd = 32, qdepth = 0;
  int read_pct = 100;
  int vpd = -1;
  bool seq = false, json = false, pass = false, cdb16 = false, force32 = false, no_sync = false, pd = false;
  bool allow_errors = false;
  bool recoverable = false;
  std::int32_t recover_id = -1;
  double secs = 5;
  std::string out;
  dkq::completion_mode mode = dkq::completion_mode::hybrid;
  bool irq = true;
  std::uint64_t timeout_ms = 30000;
  std::int64_t abort_grace_ms = -1;  // -1: driver default
};

[[noreturn]] void usage(const char* why = nullptr) {
  if (why) std::fprintf(stderr, "dkq-scsi: %s\n", why);
  std::fprintf(stderr,
               "usage: dkq-scsi list [<bdf>...]\n"
               "       dkq-scsi inquiry  <bdf> --target T [--vpd PAGE] [--pd]\n"
               "       dkq-scsi capacity <bdf> --target T [--pd]\n"
               "       dkq-scsi read     <bdf> --target T --lba L --blocks C [--out FILE] [--pd]\n"
               "       dkq-scsi write    <bdf> --target T --lba L --blocks C --seed S [--pd]\n"
               "       dkq-scsi sync     <bdf> [--target T|all] [--pd]\n"
               "       dkq-scsi verify   <bdf> [--target T|all] --lba L --blocks C [--seed S] [--qd Q] [--bs B] [--pd]\n"
               "       dkq-scsi perf     <bdf> --target T [--bs B] [--qd Q] [--rw read|write|PCT] [--seq] [--pd]\n"
               "                         [--time S | --ios N] [--json]\n"
               "       dkq-scsi serve    <bdf> [--target T|all] [--qd DEPTH] [--bs MAX-IO] [--poll] [--recoverable | --recover ID]\n"
               "                         [--json]   (each logical drive as /dev/ublkbN)\n"
               "targets: logical drives; with --pd physical drives (SYSTEM/JBOD drives for data and sync)\n"
               "common: --pass --cdb16 --force-32bit --poll|--irq|--hybrid --qdepth N --timeout-ms MS\n"
               "        --abort-grace-ms MS --allow-errors (perf)\n");
  std::exit(2);
}

args parse(int argc, char** argv) {
  if (argc < 2) usage();
  args a;
  a.cmd = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string o = argv[i];
    auto v = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + o).c_str());
      return argv[++i];
    };
    auto num = [&]() { return std::strtoull(v().c_str(), nullptr, 0); };
    if (o == "--target") {
      std::string t = v();
      a.target = t == "all" ? -1 : static_cast<int>(std::strtol(t.c_str(), nullptr, 0));
    } else if (o == "--lba") a.lba = num();
    else if (o == "--blocks") a.blocks = num();
    else if (o == "--seed") a.seed = num();
    else if (o == "--bs") a.bs = static_cast<std::uint32_t>(num());
    else if (o == "--qd") a.qd = static_cast<std::uint32_t>(num());
    else if (o == "--qdepth") a.qdepth = static_cast<std::uint32_t>(num());
    else if (o == "--ios") a.ios = num();
    else if (o == "--time") a.secs = std::atof(v().c_str());
    else if (o == "--vpd") a.vpd = static_cast<int>(num());
    else if (o == "--out") a.out = v();
    else if (o == "--rw") {
      std::string m = v();
      a.read_pct = m == "read" ? 100 : m == "write" ? 0 : std::atoi(m.c_str());
    } else if (o == "--timeout-ms") a.timeout_ms = num();
    else if (o == "--abort-grace-ms") a.abort_grace_ms = static_cast<std::int64_t>(num());
    else if (o == "--seq") a.seq = true;
    else if (o == "--json") a.json = true;
    else if (o == "--pass") a.pass = true;
    else if (o == "--cdb16") a.cdb16 = true;
    else if (o == "--force-32bit") a.force32 = true;
    else if (o == "--no-sync") a.no_sync = true;
    else if (o == "--pd") a.pd = true;
    else if (o == "--allow-errors") a.allow_errors = true;
    else if (o == "--recoverable") a.recoverable = true;
    else if (o == "--recover") a.recover_id = static_cast<std::int32_t>(num());
    else if (o == "--poll") a.irq = false;
    else if (o == "--irq") a.mode = dkq::completion_mode::interrupt;
    else if (o == "--hybrid") a.mode = dkq::completion_mode::hybrid;
    else if (!o.empty() && o[0] == '-') usage(("unknown option " + o).c_str());
    else a.bdfs.push_back(o);
  }
  return a;
}

int fail(const char* what, const status& s) {
  std::fprintf(stderr, "dkq-scsi: %s: %s: %s (detail 0x%" PRIx64 ")\n", what, dkq::errc_name(s.code()), s.message(),
               s.detail());
  return 1;
}

std::string sense_text(const mr::completion& c) {
  if (!c.sense_valid) return {};
  char buf[160];
  dkq::scsi::describe(c.sense, buf, sizeof buf);
  return buf;
}

int fail_c(const char* what, const mr::completion& c) {
  std::fprintf(stderr, "dkq-scsi: %s: %s: %s; MFI status 0x%02x (%s), SCSI status 0x%02x (%s)%s%s\n", what,
               dkq::errc_name(c.st.code()), c.st.message(), c.mfi_status, dkq::scsi::mfi::status_name(c.mfi_status),
               c.scsi_status, dkq::scsi::status_name(c.scsi_status), c.sense_valid ? "; sense: " : "",
               sense_text(c).c_str());
  return 1;
}

// Same pattern as dkq-nvme (and kbench verify): each 8-byte word is a hash of
// the seed and the word's byte offset on the drive.
using dkq_examples::mix;
using dkq_examples::fill_pattern;
using dkq_examples::check_pattern;

std::uint64_t now_ns() { return dkq::vfio::monotonic_clock::now_ns(); }

// ---- session ---------------------------------------------------------------------
// Teardown order (session.hpp): controller stopped - in-flight requests
// completed with an error while their buffers are mapped - then the buffers
// unmapped, then core, platform and device destroyed.
struct session : dkq::scsi_linux::basic_session<vfio::device, dkq::scsi_linux::vfio_platform, ctrl_t> {
  std::string bdf;
  ~session() {
    status s = close();  // cache flush DCMD + shutdown, then unmap
    if (!s.ok()) fail("shutdown", s);
  }
  // Data buffers. In forced 32-bit mode they are placed at or above 4 GiB on
  // purpose (IOVA aligned to 4 GiB), so every byte must go through the
  // driver's bounce buffers: the mode is exercised, not just configured.
  dma_region buffer(std::size_t n, bool high) {
    auto r = dev->dma_alloc(n, dkq::scsi_linux::placement(~std::uint64_t{0}, high ? std::uint64_t{1} << 32 : 4096));
    if (!r) {
      fail("data buffer", r.error());
      std::exit(1);
    }
    buffers.push_back(*r);
    return *r;
  }
};

int open_session(session& s, const args& a, const std::string& bdf) {
  std::string why;
  auto d = vfio::device::open(bdf, {}, &why);
  if (!d) {
    std::fprintf(stderr, "%s", why.c_str());
    return fail(("open " + bdf).c_str(), d.error());
  }
  s.dev = std::make_unique<vfio::device>(std::move(*d));
  s.plat = std::make_unique<dkq::scsi_linux::vfio_platform>(*s.dev);
  s.ctrl = std::make_unique<ctrl_t>();
  mr::options o;
  o.force_32bit = a.force32;
  o.use_interrupts = a.irq;
  o.mode = a.mode;
  o.queue_depth = a.qdepth;
  o.command_timeout_ns = a.timeout_ms * 1000000ull;
  if (a.abort_grace_ms >= 0) o.abort_grace_ns = static_cast<std::uint64_t>(a.abort_grace_ms) * 1000000ull;
  status st = s.ctrl->start(*s.plat, o);
  if (!st) {
    s.ctrl.reset();
    return fail(("start " + bdf).c_str(), st);
  }
  return 0;
}

using dkq_examples::print_size;

const char* pd_state_name(std::uint16_t s) {
  switch (s) {
    case dkq::scsi::mfi::pd_state::system: return "system (JBOD)";
    default: return "not exposed to the host";
  }
}

// ---- targets: one check for every command, before anything is sent --------
// Without --pd a target is a logical drive of this controller. With --pd it
// is a physical drive from the controller's PD list, reached through PD SCSI
// IO frames; anything that moves data or flushes (`data`) needs a SYSTEM
// drive - one the firmware exposes to the host as is (JBOD). A drive that
// belongs to a logical drive is never written behind the controller's back.
// "all" (a.target < 0, where allowed) is every such target. False: refused,
// with the reason printed.
enum class target_use { identify, data };
bool resolve_targets(const ctrl_t& c, const args& a, target_use use, bool allow_all, const char* what,
                     std::vector<std::uint8_t>& out) {
  out.clear();
  if (a.target < 0 && !allow_all) usage("this command needs --target T");
  if (a.target > 255) usage("--target is 0..255");
  const auto t = static_cast<std::uint8_t>(a.target < 0 ? 0 : a.target);
  if (!a.pd) {
    if (a.target >= 0) {
      if (c.logical_drive_at(t) == nullptr) {
        fail(what, {errc::not_found, "target is not a logical drive of this controller", t});
        const mr::physical_drive* pd = c.physical_drive_at(t);
        if (pd != nullptr && pd->system)
          std::fprintf(stderr, "dkq-scsi: target %u is a system (JBOD) physical drive: add --pd\n", t);
        return false;
      }
      out.push_back(t);
    } else {
      for (const auto& ld : c.logical_drives()) out.push_back(ld.target);
    }
  } else {
    if (a.target >= 0) {
      const mr::physical_drive* pd = c.physical_drive_at(t);
      if (pd == nullptr) {
        fail(what, {errc::not_found, "target is not a physical drive of this controller", t});
        return false;
      }
      if (use == target_use::data && !pd->system) {
        std::fprintf(stderr, "dkq-scsi: %s: physical drive %u is %s, not a system (JBOD) drive\n", what, t,
                     pd_state_name(pd->fw_state));
        fail(what, {errc::invalid_argument, "the controller does not expose this physical drive to the host",
                    pd->fw_state});
        return false;
      }
      out.push_back(t);
    } else {
      for (const auto& pd : c.physical_drives())
        if (pd.system || use == target_use::identify) out.push_back(pd.target);
    }
  }
  if (out.empty()) {
    fail(what, {errc::not_found, a.pd ? "the controller exposes no system (JBOD) physical drives"
                                      : "the controller has no logical drives (JBOD mode? try --pd)"});
    return false;
  }
  return true;
}

void print_stats(const ctrl_t& c) {
  const auto& s = c.stats();
  std::printf("stats: frames posted %" PRIu64 ", completed %" PRIu64 ", reply entries %" PRIu64
              ", consumer-index writes %" PRIu64 ", reply queue wraps %" PRIu64 ", stale %" PRIu64
              ", duplicate %" PRIu64 ", timeouts %" PRIu64 ", aborts %" PRIu64 ", resets %" PRIu64
              ", bounced %" PRIu64 "\n",
              s.frames_posted, s.completed, s.reply_entries, s.ci_writes, s.reply_wraps, s.stale, s.duplicate,
              s.timeouts, s.aborts, s.resets, s.bounced);
}

// ---- list ----------------------------------------------------------------------------
int cmd_list(const args& a) {
  std::vector<std::string> bdfs = a.bdfs;
  vfio::sysfs fs;
  if (bdfs.empty()) {
    int found = 0;
    std::printf("%-13s %-9s %-10s %-6s %s\n", "ADDRESS", "ID", "DRIVER", "GROUP", "STATE");
    for (const auto& d : fs.list_devices()) {
      if (d.vendor != mr::pci_vendor_lsi || (d.class_code >> 8) != 0x0104) continue;
      ++found;
      char id[16];
      std::snprintf(id, sizeof id, "%04x:%04x", d.vendor, d.device);
      std::printf("%-13s %-9s %-10s %-6s %s\n", vfio::to_string(d.addr).c_str(), id,
                  d.driver.empty() ? "-" : d.driver.c_str(),
                  d.iommu_group < 0 ? "-" : std::to_string(d.iommu_group).c_str(),
                  d.driver == "vfio-pci" ? "ready for dkq-scsi" : "bind with: dkq-pci bind <address>");
      if (d.driver == "vfio-pci") bdfs.push_back(vfio::to_string(d.addr));
    }
    if (found == 0) std::printf("no LSI MegaRAID controllers (PCI 1000:*, class 01:04) found\n");
  }
  int rc = 0;
  for (const std::string& bdf : bdfs) {
    session s;
    if (open_session(s, a, bdf) != 0) {
      rc = 1;
      continue;
    }
    const auto& i = s.ctrl->info();
    std::printf("controller %s  PCI %04x:%04x subsystem %04x:%04x  %s\n", bdf.c_str(), i.vendor, i.device,
                i.subvendor, i.subdevice, i.model);
    std::printf("  product %s  serial %s  registers in BAR %d\n", i.product, i.serial, i.register_bar);
    std::printf("  firmware: status 0x%08x, max commands %u (controller info %u), max SGEs %u (info %u), "
                "max request %u sectors\n",
                i.fw_status, i.fw_max_cmds, i.info_max_cmds, i.fw_max_sge, i.info_max_sge, i.max_request_sectors);
    std::printf("  driver: queue depth %u, reply queue %u entries, %s, %u SGEs/command, %u bytes/command, %s\n",
                i.queue_depth, i.reply_entries, i.sgl == dkq::scsi::mfi_sgl_format::sgl32 ? "SGL32" : "SGL64",
                i.max_sge, i.max_transfer,
                i.vectors ? (s.dev->irq().kind() == vfio::irq_kind::msix ? "MSI-X" : "MSI") : "polled");
    std::printf("  logical drives: %zu  physical drives: %zu\n", s.ctrl->logical_drives().size(),
                s.ctrl->physical_drives().size());
    for (const auto& ld : s.ctrl->logical_drives()) {
      std::printf("  target %2u  state %u  ", ld.target, ld.state);
      print_size(ld.sectors * 512);
      auto inq = s.ctrl->inquiry(ld.target);
      auto cap = s.ctrl->read_capacity(ld.target);
      if (inq) std::printf("  %s %s %s", inq->vendor, inq->product, inq->revision);
      if (cap) std::printf("  %" PRIu64 " x %u B blocks", cap->blocks, cap->block_size);
      std::printf("\n");
      if (!inq) rc = fail("inquiry", inq.error());
      if (!cap) rc = fail("capacity", cap.error());
    }
    for (const auto& pd : s.ctrl->physical_drives()) {
      std::printf("  pd 0x%04x  target %u  slot %u  type 0x%02x  state %s  sas 0x%016" PRIx64, pd.device_id,
                  pd.target, pd.slot, pd.scsi_type, pd_state_name(pd.fw_state), pd.sas_address);
      if (pd.system) {
        auto cap = s.ctrl->read_capacity(pd.target, true);
        if (cap) {
          std::printf("  ");
          print_size(cap->blocks * cap->block_size);
          std::printf("  %" PRIu64 " x %u B blocks (--pd --target %u)", cap->blocks, cap->block_size, pd.target);
        } else {
          rc = fail("capacity (physical drive)", cap.error());
        }
      }
      std::printf("\n");
    }
  }
  return rc;
}

// ---- single-target commands ------------------------------------------------------------
int cmd_inquiry(session& s, const args& a) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::identify, false, "inquiry", ts)) return 1;
  const std::uint8_t t = ts[0];
  if (a.vpd >= 0 && a.pd) usage("--vpd reads logical drives' pages");
  if (a.vpd >= 0) {
    std::uint8_t page[1024];
    auto n = s.ctrl->vpd(t, static_cast<std::uint8_t>(a.vpd), page);
    if (!n) return fail("VPD", n.error());
    std::printf("target %u VPD page 0x%02x: %zu bytes:", t, a.vpd, *n);
    for (std::size_t i = 0; i < std::min<std::size_t>(*n, sizeof page); ++i) std::printf(" %02x", page[i]);
    std::printf("\n");
    return 0;
  }
  if (a.pd) {
    // A physical drive through a PD SCSI IO frame (the controller passes the
    // CDB to the disk behind it instead of its logical-drive layer).
    auto pinq = s.ctrl->inquiry(t, true);
    if (!pinq) return fail("INQUIRY (physical drive)", pinq.error());
    std::printf("physical drive %u (PD frame): type 0x%02x vendor '%s' product '%s' revision '%s'\n", t,
                pinq->device_type, pinq->vendor, pinq->product, pinq->revision);
    return 0;
  }
  auto inq = s.ctrl->inquiry(t);
  if (!inq) return fail("INQUIRY", inq.error());
  std::printf("target %u: type 0x%02x qualifier %u version %u removable %s\n  vendor '%s' product '%s' revision '%s'\n",
              t, inq->device_type, inq->qualifier, inq->version, inq->removable ? "yes" : "no", inq->vendor,
              inq->product, inq->revision);
  std::uint8_t pages[256];
  auto n = s.ctrl->vpd(t, 0x00, pages);
  if (n) {
    std::printf("  VPD pages:");
    for (std::size_t i = 0; i < std::min<std::size_t>(*n, sizeof pages); ++i) std::printf(" 0x%02x", pages[i]);
    std::printf("\n");
  }
  auto us = s.ctrl->vpd(t, 0x80, pages);
  if (us) std::printf("  unit serial '%.*s'\n", static_cast<int>(std::min<std::size_t>(*us, sizeof pages)), pages);
  if (!s.ctrl->test_unit_ready(t).ok()) {
    auto sd = s.ctrl->request_sense(t);
    if (sd) {
      char buf[160];
      dkq::scsi::describe(*sd, buf, sizeof buf);
      std::printf("  not ready: %s\n", buf);
    }
  } else {
    std::printf("  TEST UNIT READY: ready\n");
  }
  return 0;
}

int cmd_capacity(session& s, const args& a) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::identify, false, "capacity", ts)) return 1;
  const std::uint8_t t = ts[0];
  auto c10 = s.ctrl->read_capacity(t, a.pd);
  if (!c10) return fail("READ CAPACITY(10)", c10.error());
  auto c16 = s.ctrl->read_capacity_16(t, a.pd);
  if (!c16) return fail("READ CAPACITY(16)", c16.error());
  std::printf("%s %u: %" PRIu64 " blocks of %u bytes (", a.pd ? "physical drive" : "target", t, c16->blocks,
              c16->block_size);
  print_size(c16->blocks * c16->block_size);
  std::printf("); READ CAPACITY(10) agrees: %s\n",
              c10->blocks == c16->blocks && c10->block_size == c16->block_size ? "yes" : "NO");
  return c10->blocks == c16->blocks ? 0 : 1;
}

// Builds a read/write request: LD read/write frame, or a READ/WRITE CDB in a
// pass-through frame with --pass; with --pd always a READ/WRITE CDB in a PD
// SCSI IO frame.
mr::request rw_request(const args& a, std::uint8_t target, bool write, std::uint64_t lba, std::uint32_t blocks,
                       dma_region data) {
  mr::request r;
  r.target = target;
  r.dir = write ? dkq::dma_direction::to_device : dkq::dma_direction::from_device;
  r.data = data;
  if (a.pass || a.pd) {
    r.kind = a.pd ? mr::op::pd_scsi : mr::op::ld_scsi;
    auto n = dkq::scsi::read_write(r.cdb, write, lba, blocks, a.cdb16 || lba + blocks > 0xffffffffull);
    r.cdb_len = n.value_or(0);
  } else {
    r.kind = write ? mr::op::ld_write : mr::op::ld_read;
    r.lba = lba;
    r.blocks = blocks;
  }
  return r;
}

int cmd_rw(session& s, const args& a, bool write) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::data, false, write ? "write" : "read", ts)) return 1;
  const std::uint8_t t = ts[0];
  if (a.blocks == 0) usage("--blocks C is required");
  const std::uint64_t bytes = a.blocks * 512;
  if (bytes > s.ctrl->info().max_transfer) {
    std::fprintf(stderr, "dkq-scsi: %" PRIu64 " bytes is above this controller's limit of %u bytes per command "
                 "(use verify for large ranges)\n", bytes, s.ctrl->info().max_transfer);
    return fail(write ? "write" : "read", {errc::invalid_argument, "transfer above the controller's limit",
                                           s.ctrl->info().max_transfer});
  }
  dma_region b = s.buffer((bytes + 4095) & ~std::uint64_t{4095}, a.force32);
  if (write) fill_pattern(b.cpu_at<std::uint8_t>(), a.lba * 512, bytes, a.seed);
  auto c = s.ctrl->execute(rw_request(a, t, write, a.lba, static_cast<std::uint32_t>(a.blocks),
                                      dma_region{b.cpu, b.device, bytes}));
  if (!c.st) return fail_c(write ? "write" : "read", c);
  if (!write) {
    if (!a.out.empty()) {
      FILE* f = std::fopen(a.out.c_str(), "wb");
      if (!f || std::fwrite(b.cpu, 1, bytes, f) != bytes) return fail("write output file", {errc::io_error, "fwrite"});
      std::fclose(f);
    } else {
      const auto* p = b.cpu_at<const std::uint8_t>();
      for (std::uint64_t i = 0; i < std::min<std::uint64_t>(bytes, 256); i += 16) {
        std::printf("%08" PRIx64 ":", a.lba * 512 + i);
        for (int k = 0; k < 16; ++k) std::printf(" %02x", p[i + k]);
        std::printf("\n");
      }
    }
  }
  std::printf("%s %s %u: %" PRIu64 " blocks at LBA %" PRIu64 " ok (%s)\n", write ? "wrote" : "read",
              a.pd ? "physical drive" : "target", t, a.blocks, a.lba,
              a.pd ? "PD SCSI IO frame" : a.pass ? "pass-through CDB" : "LD frame");
  return 0;
}

int do_sync(session& s, std::uint8_t t, bool physical) {
  const auto before = s.ctrl->stats();
  auto c = s.ctrl->synchronize_cache(t, true, physical);
  const auto& after = s.ctrl->stats();
  const std::uint64_t sent10 = after.sync_cache_10 - before.sync_cache_10;
  const std::uint64_t sent16 = (after.sync_cache_sent - before.sync_cache_sent) - sent10;
  if (after.sync16_fallbacks != before.sync16_fallbacks)
    std::printf("sync target %u: SYNCHRONIZE CACHE(16) rejected (%s), retried as (10)\n", t, "invalid opcode");
  if (!c.st) return fail_c("SYNCHRONIZE CACHE", c);
  std::printf("sync %s %u: SYNCHRONIZE CACHE completed by the controller (%" PRIu64 " x 16-byte, %" PRIu64
              " x 10-byte sent)\n",
              physical ? "physical drive" : "target", t, sent16, sent10);
  return 0;
}

int cmd_sync(session& s, const args& a) {
  int rc = 0;
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::data, true, "sync", ts)) return 1;
  for (std::uint8_t t : ts) rc |= do_sync(s, t, a.pd);
  std::printf("@@SCSI-SYNC sync16=%" PRIu64 " sync10=%" PRIu64 "\n",
              s.ctrl->stats().sync_cache_sent - s.ctrl->stats().sync_cache_10, s.ctrl->stats().sync_cache_10);
  return rc;
}

// ---- verify: write a pattern to every chosen target at once, read it back -------
struct io_slot {
  std::uint32_t index = 0;
  bool busy = false;
  bool ok = true;
  std::uint64_t started = 0;
  std::uint64_t done_at = 0;
  status st{};
  mr::completion c{};
  std::vector<std::uint32_t>* ready = nullptr;
};

// A completion for a slot that is not busy would be a command completed twice.
std::uint64_t g_double_completions = 0;

void slot_done(void* u, const mr::completion& c) noexcept {
  auto* s = static_cast<io_slot*>(u);
  if (!s->busy) ++g_double_completions;
  s->busy = false;
  s->ok = c.st.ok();
  s->c = c;
  s->done_at = now_ns();
  s->ready->push_back(s->index);
}

// --bs above what one command may carry, named; --qd above the controller's
// queue depth: one notice, then the depth it has.
bool check_bs(const ctrl_t& c, std::uint32_t bs, const char* what) {
  if (bs == 0 || bs % 512) usage("--bs must be a multiple of 512");
  if (bs <= c.info().max_transfer) return true;
  std::fprintf(stderr, "dkq-scsi: --bs %u is above this controller's limit of %u bytes per command\n", bs,
               c.info().max_transfer);
  fail(what, {errc::invalid_argument, "transfer above the controller's limit", c.info().max_transfer});
  return false;
}
std::uint32_t capped_qd(const ctrl_t& c, const args& a) {
  const std::uint32_t depth = c.info().queue_depth;
  if (a.qd <= depth) return a.qd;
  std::printf("dkq-scsi: notice: --qd %u capped to %u, the controller's queue depth\n", a.qd, depth);
  return depth;
}

// ---- verify, written as a coroutine over the awaitable form --------------------------
// A pass writes (or reads back and checks) every job with up to `window`
// commands in flight, awaited oldest first. Completions resume it from the
// controller's wait()/poll(), where the callback form's done() would run;
// timeouts, ABORTs and resets stay in the core. A refusal for lack of room
// (queue depth or, in forced 32-bit mode, the bounce pool) waits for the
// oldest command and tries again, as the callback loop did.

struct verify_job {
  std::uint8_t target;
  std::uint64_t lba;
  std::uint32_t blocks;
};
constexpr std::uint32_t verify_window_max = 64;
using scsi_op_t = ctrl_t::scsi_op;

coro::task<status> co_verify_pass(coro::frame_arena&, ctrl_t& c, const args& a, const std::vector<verify_job>& jobs,
                                  const std::vector<dma_region>& bufs, std::uint32_t window, bool write,
                                  std::uint64_t* errors, std::uint64_t* mismatches) {
  std::optional<scsi_op_t> ops[verify_window_max];
  std::size_t job_of[verify_window_max] = {};
  // The answer for slot j: check it (reads) and free the slot.
  auto settle = [&](std::uint32_t j, const mr::completion& done) {
    const verify_job& jb = jobs[job_of[j]];
    if (!done.st.ok()) {
      ++*errors;
      fail_c(write ? "verify write" : "verify read", done);
    } else if (!write) {
      const std::int64_t bad =
          check_pattern(bufs[j].cpu_at<const std::uint8_t>(), jb.lba * 512, jb.blocks * 512u, a.seed + jb.target);
      if (bad >= 0) {
        ++*mismatches;
        std::fprintf(stderr, "dkq-scsi: MISMATCH target %u byte %" PRIu64 "\n", jb.target,
                     jb.lba * 512 + static_cast<std::uint64_t>(bad));
      }
    }
    ops[j].reset();
  };
  std::size_t next = 0;
  status fatal = dkq::ok_status;
  for (std::uint32_t k = 0;; k = (k + 1) % window) {
    if (ops[k]) settle(k, co_await *ops[k]);  // the oldest command in the window first
    if (next < jobs.size() && !g_stop && fatal.ok()) {
      const verify_job& jb = jobs[next];
      if (write) fill_pattern(bufs[k].cpu_at<std::uint8_t>(), jb.lba * 512, jb.blocks * 512u, a.seed + jb.target);
      else std::memset(bufs[k].cpu, 0, jb.blocks * 512u);
      const mr::request r =
          rw_request(a, jb.target, write, jb.lba, jb.blocks, dma_region{bufs[k].cpu, bufs[k].device, jb.blocks * 512u});
      for (;;) {
        ops[k].emplace(c, r);
        job_of[k] = next;
        if (ops[k]->start()) break;
        const status refused = ops[k]->sink().value().st;
        ops[k].reset();
        std::uint32_t j = (k + 1) % window;
        while (j != k && !ops[j]) j = (j + 1) % window;
        if (refused.code() != errc::no_space || j == k) {
          fatal = refused;  // stop issuing; the commands in flight still end first
          break;
        }
        settle(j, co_await *ops[j]);  // room comes back with the oldest answer
      }
      if (fatal.ok()) ++next;
    } else {
      bool busy = false;
      for (std::uint32_t i = 0; i < window; ++i) busy |= ops[i].has_value();
      if (!busy) break;
    }
  }
  co_return fatal;  // nothing is in flight here: the frame may go
}

int cmd_verify(session& s, const args& a) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::data, true, "verify", ts)) return 1;
  if (a.blocks == 0) usage("--blocks C is required");
  const std::uint32_t bs = a.bs ? a.bs : std::min<std::uint32_t>(64u << 10, s.ctrl->info().max_transfer);
  if (!check_bs(*s.ctrl, bs, "verify")) return 1;
  const std::uint32_t chunk_blocks = bs / 512;
  const std::uint32_t qd = capped_qd(*s.ctrl, a);
  const std::uint32_t window = std::min(qd, verify_window_max);
  // A job = one chunk of one target; targets interleave so several LDs are
  // busy at the same time.
  std::vector<verify_job> jobs;
  for (std::uint64_t off = 0; off < a.blocks; off += chunk_blocks)
    for (std::uint8_t t : ts)
      jobs.push_back({t, a.lba + off, static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_blocks, a.blocks - off))});
  std::vector<dma_region> bufs;
  for (std::uint32_t i = 0; i < window; ++i) bufs.push_back(s.buffer(bs, a.force32));
  // Frames for the pass coroutine (one at a time), allocated here, once.
  coro::frame_arena arena;
  if (status st = arena.init(2, verify_window_max * sizeof(std::optional<scsi_op_t>) + 8192); !st.ok())
    return fail("verify: coroutine frames", st);
  // An early return or SIGTERM with I/O in flight: stop the controller while
  // the coroutine's frame, which the callbacks write, is still alive.
  dkq::scsi_linux::stop_in_flight_on_exit<session> quiesce{s};
  const std::uint64_t t0 = now_ns();
  std::uint64_t mismatches = 0, errors = 0;
  for (int pass = 0; pass < 2; ++pass) {
    auto t = co_verify_pass(arena, *s.ctrl, a, jobs, bufs, window, pass == 0, &errors, &mismatches);
    t.start();
    while (!t.done() && !g_stop) s.ctrl->wait(1000);
    if (!t.done()) {
      (void)s.stop_controller();  // every command in flight completes once (stopped): the pass ends
      while (!t.done()) s.ctrl->poll();
    }
    if (!t.value().ok()) return fail("verify", t.value());
    if (g_stop) break;
  }
  const double secs = static_cast<double>(now_ns() - t0) / 1e9;
  for (std::uint8_t t : ts)
    std::printf("verify %s %u: %" PRIu64 " blocks at LBA %" PRIu64 " written and read back (%s, seed %" PRIu64 ")\n",
                a.pd ? "physical drive" : "target", t, a.blocks, a.lba,
                a.pd     ? "READ/WRITE in PD SCSI IO frames"
                : a.pass ? (a.cdb16 ? "READ/WRITE(16) pass-through" : "READ/WRITE(10) pass-through")
                         : "LD read/write frames",
                a.seed + t);
  std::printf("verify: %zu commands each way, QD %u, %u B each, %.2f s, %" PRIu64 " errors, %" PRIu64
              " mismatches%s (coroutines: %zu frames at most)\n",
              jobs.size(), window, bs, secs, errors, mismatches,
              a.force32 ? ", forced 32-bit (SGL32 + bounce buffers)" : "", arena.high_water());
  int rc = (errors || mismatches || g_stop) ? 1 : 0;
  if (!a.no_sync)
    for (std::uint8_t t : ts) rc |= do_sync(s, t, a.pd);
  print_stats(*s.ctrl);
  if (!a.no_sync)
    std::printf("@@SCSI-SYNC sync16=%" PRIu64 " sync10=%" PRIu64 "\n",
                s.ctrl->stats().sync_cache_sent - s.ctrl->stats().sync_cache_10, s.ctrl->stats().sync_cache_10);
  return rc;
}

// ---- perf ----------------------------------------------------------------------------
int cmd_perf(session& s, const args& a) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::data, false, "perf", ts)) return 1;
  const std::uint8_t t = ts[0];
  const std::uint32_t bs = a.bs ? a.bs : 4096;
  if (!check_bs(*s.ctrl, bs, "perf")) return 1;
  const std::uint32_t qd = capped_qd(*s.ctrl, a);
  auto cap = s.ctrl->read_capacity(t, a.pd);
  if (!cap) return fail("capacity", cap.error());
  const std::uint64_t slots_n = cap->blocks * cap->block_size / bs;
  const std::uint32_t blocks = bs / cap->block_size;
  std::vector<io_slot> slots(qd);
  std::vector<std::uint32_t> ready;
  ready.reserve(qd);
  std::vector<dma_region> bufs;
  for (std::uint32_t i = 0; i < qd; ++i) {
    slots[i].index = i;
    slots[i].ready = &ready;
    bufs.push_back(s.buffer(bs, a.force32));
    fill_pattern(bufs.back().cpu_at<std::uint8_t>(), 0, bs, 99);
  }
  std::vector<std::uint64_t> lat;
  lat.reserve(1 << 20);
  dkq::scsi_linux::stop_in_flight_on_exit<session> quiesce{s};  // see cmd_verify
  std::uint64_t rng = 0x2545f4914f6cdd1dull, seq_next = 0, reads = 0, writes = 0, errors = 0, issued = 0;
  std::uint64_t timed_out = 0;
  const auto st0 = s.ctrl->stats();
  const std::uint64_t t0 = now_ns();
  const std::uint64_t end = a.ios ? ~std::uint64_t{0} : t0 + static_cast<std::uint64_t>(a.secs * 1e9);
  bool stopping = false;
  for (std::uint32_t i = 0; i < qd; ++i) ready.push_back(i);
  std::uint32_t outstanding = 0;
  std::vector<std::uint32_t> free_now;
  free_now.reserve(qd);
  while (!g_stop) {
    // Two vectors with reserved capacity are swapped: no allocation per loop.
    free_now.clear();
    free_now.swap(ready);
    const std::uint64_t now = now_ns();
    if (now >= end || (a.ios && issued >= a.ios)) stopping = true;
    for (std::uint32_t i : free_now) {
      io_slot& sl = slots[i];
      if (sl.started != 0) {
        --outstanding;
        lat.push_back(sl.done_at - sl.started);
        if (!sl.ok) {
          if (sl.c.st.code() == errc::timeout) ++timed_out;
          if (errors++ == 0 && !a.allow_errors) fail_c("perf I/O", sl.c);
        }
        sl.started = 0;
      }
      if (stopping || (a.ios && issued >= a.ios)) continue;
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const std::uint64_t slot = a.seq ? (seq_next++ % slots_n) : (rng % slots_n);
      const bool write = static_cast<int>((rng >> 20) % 100) >= a.read_pct;
      mr::request r = rw_request(a, t, write, slot * blocks, blocks, bufs[i]);
      r.done = slot_done;
      r.user = &sl;
      // Latency starts before the queue-port write: QEMU handles the frame
      // inside that MMIO write, so a clock read after it would hide that time.
      const std::uint64_t t_submit = now_ns();
      status st = s.ctrl->submit(r);
      if (st.code() == errc::no_space) {
        ready.push_back(i);
        continue;
      }
      if (!st) return fail("submit", st);
      (write ? writes : reads)++;
      ++issued;
      ++outstanding;
      sl.busy = true;
      sl.started = t_submit;
    }
    if (stopping && outstanding == 0) break;
    if (ready.empty()) s.ctrl->wait(1000);
    else s.ctrl->poll();
  }
  if (g_stop)
    std::printf("perf: stopped by a signal with %u commands in flight; the controller is stopped before any "
                "buffer is unmapped\n",
                outstanding);
  const double secs = static_cast<double>(now_ns() - t0) / 1e9;
  const auto& st1 = s.ctrl->stats();
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0
                       : static_cast<double>(lat[std::min(lat.size() - 1, static_cast<std::size_t>(p / 100 * static_cast<double>(lat.size())))]) / 1e3;
  };
  double mean = 0;
  for (auto l : lat) mean += static_cast<double>(l);
  mean = lat.empty() ? 0 : mean / static_cast<double>(lat.size()) / 1e3;
  const std::uint64_t total = lat.size();
  const double iops = static_cast<double>(total) / secs, mbps = iops * bs / 1e6;
  const std::uint64_t posted = st1.frames_posted - st0.frames_posted, ciw = st1.ci_writes - st0.ci_writes;
  const std::uint64_t wraps = st1.reply_wraps - st0.reply_wraps;
  const char* mode = s.ctrl->info().vectors == 0 ? "polled"
                     : a.mode == dkq::completion_mode::interrupt ? "interrupts"
                                                                 : "hybrid";
  if (a.json) {
    std::printf("{\"device\":\"%s\",\"target\":%u,\"bs\":%u,\"qd\":%u,\"read_pct\":%d,\"pattern\":\"%s\","
                "\"mode\":\"%s\",\"frames\":\"%s\",\"seconds\":%.3f,\"ios\":%" PRIu64 ",\"reads\":%" PRIu64
                ",\"writes\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"iops\":%.0f,\"mb_per_s\":%.2f,"
                "\"lat_us\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p99_9\":%.2f,\"max\":%.2f},"
                "\"frames_posted\":%" PRIu64 ",\"ci_writes\":%" PRIu64 ",\"reply_wraps\":%" PRIu64
                ",\"reply_entries\":%u,\"timed_out\":%" PRIu64 ",\"aborts\":%" PRIu64 ",\"resets\":%" PRIu64
                ",\"reissued\":%" PRIu64 ",\"double_completions\":%" PRIu64 ",\"in_flight_after\":%u}\n",
                s.bdf.c_str(), t, bs, qd, a.read_pct, a.seq ? "sequential" : "random", mode,
                a.pd ? "pd-scsi-io" : a.pass ? "pass-through" : "ld-io", secs, total, reads, writes, errors, iops, mbps, mean, pct(50),
                pct(90), pct(99), pct(99.9), lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e3, posted, ciw,
                wraps, s.ctrl->info().reply_entries, timed_out, st1.aborts - st0.aborts, st1.resets - st0.resets,
                st1.reissued - st0.reissued, g_double_completions, s.ctrl->in_flight());
  } else {
    std::printf("perf %s target %u: %u B %s %s, QD %u, %s, %s frames\n", s.bdf.c_str(), t, bs,
                a.seq ? "sequential" : "random", a.read_pct == 100 ? "reads" : a.read_pct == 0 ? "writes" : "mixed", qd,
                mode, a.pd ? "PD SCSI IO" : a.pass ? "pass-through" : "LD read/write");
    std::printf("  %" PRIu64 " I/Os in %.2f s: %.0f IOPS, %.1f MB/s, %" PRIu64 " errors\n", total, secs, iops, mbps,
                errors);
    std::printf("  latency us: mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", mean, pct(50),
                pct(90), pct(99), pct(99.9), lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e3);
    std::printf("  frames posted %" PRIu64 " (one inbound queue port write each), reply consumer-index writes %" PRIu64
                " (%.2f completions per write), reply queue wraps %" PRIu64 " (%u entries)\n",
                posted, ciw, ciw ? static_cast<double>(total) / static_cast<double>(ciw) : 0.0, wraps,
                s.ctrl->info().reply_entries);
  }
  if (g_double_completions != 0 || s.ctrl->in_flight() != 0) return 1;  // never acceptable
  if (errors != 0 && a.allow_errors)
    std::printf("perf: %" PRIu64 " errors accepted (--allow-errors), %" PRIu64 " of them timeouts\n", errors, timed_out);
  return errors && !a.allow_errors ? 1 : 0;
}

// ---- serve: logical drives as Linux block devices (ublk) --------------------------------
// The MegaRAID core is driven by one thread at a time (megaraid.hpp), and one
// reply queue carries every drive's completions. So the controller has one
// pump thread that waits for its MSI-X interrupt (or polls), reaps under the
// controller lock and hands each completion to the ublk queue of its drive
// through that queue's mailbox and eventfd; the queues post frames under the
// same lock. Requests -> frames: driver/block_translation.hpp. docs/ublk.md.

namespace ublk = dkq::ublk;

struct scsi_ublk_backend;

struct scsi_pump {
  session* s = nullptr;
  std::mutex mu;  // the controller
  std::atomic<bool> stop{false};
  int msix = -1;  // -1: polled
  std::vector<scsi_ublk_backend*> backends;
  std::thread t;
  void run();
};

struct scsi_tag {
  scsi_ublk_backend* be = nullptr;
  std::uint16_t tag = 0;
  std::uint32_t bytes = 0;
};

struct scsi_ublk_backend {
  scsi_pump* pump = nullptr;
  std::uint8_t target = 0;
  mr::block_limits lim{};
  std::uint32_t spb = 1;
  int nfd = -1;  // the pump's "your completions are in the mailbox"
  std::vector<scsi_tag> tags;
  std::mutex mbx_mu;
  std::vector<std::pair<std::uint16_t, std::int32_t>> mbx, local;
  bool pending_notify = false;  // under pump->mu
  std::atomic<std::uint32_t> inflight{0};
  std::atomic<std::uint64_t> errors_logged{0};
  static constexpr std::uint16_t flush_tag = 0xffff;
  scsi_tag flush_ctx;

  static void on_done(void* u, const mr::completion& c) noexcept {
    auto* t = static_cast<scsi_tag*>(u);
    scsi_ublk_backend* be = t->be;
    if (!c.st.ok() && be->errors_logged.fetch_add(1) < 16) {
      char sense[160] = "";
      if (c.sense_valid) dkq::scsi::describe(c.sense, sense, sizeof sense);
      std::fprintf(stderr, "dkq-scsi: serve: target %u tag %u: %s [%s]; MFI status 0x%02x, SCSI status 0x%02x%s%s\n",
                   be->target, t->tag, c.st.message(), dkq::errc_name(c.st.code()), c.mfi_status, c.scsi_status,
                   c.sense_valid ? "; sense: " : "", sense);
    }
    const std::int32_t res = c.st.ok() ? static_cast<std::int32_t>(t->bytes) : ublk::to_errno(c.st);
    std::lock_guard<std::mutex> g(be->mbx_mu);
    be->mbx.push_back({t->tag, res});
    be->pending_notify = true;
  }

  status start(std::uint16_t tag, const ublk::block_request& r, const ublk::io_buffer& b) noexcept {
    using ublk::block_op;
    mr::block_kind k;
    switch (r.op) {
      case block_op::read: k = mr::block_kind::read; break;
      case block_op::write: k = mr::block_kind::write; break;
      case block_op::flush: k = mr::block_kind::flush; break;
      case block_op::discard: k = mr::block_kind::discard; break;
      case block_op::write_zeroes: k = mr::block_kind::write_zeroes; break;
      default: return {errc::not_supported, "operation not served"};
    }
    if (k != mr::block_kind::flush && (r.sectors == 0 || r.sector % spb != 0 || r.sectors % spb != 0))
      return {errc::invalid_argument, "request not aligned to the drive's logical block", r.sector};
    const dma_region buf{b.cpu, dkq::dev_addr{b.iova}, b.bytes};
    auto req = mr::build_block_request(target, lim, k, r.sector / spb, r.sectors / spb, r.fua, buf);
    if (!req) return req.error();
    scsi_tag& t = tags[tag];
    t.bytes = (k == mr::block_kind::read || k == mr::block_kind::write) ? static_cast<std::uint32_t>(r.bytes()) : 0;
    req->done = &on_done;
    req->user = &t;
    std::lock_guard<std::mutex> g(pump->mu);
    status st = pump->s->ctrl->submit(*req);
    if (st.ok()) inflight.fetch_add(1, std::memory_order_relaxed);
    return st;
  }
  void ring() noexcept {}  // MFI posts each frame as it is built (one inbound-queue write per frame)
  template <class F>
  std::uint32_t poll(F&& done) noexcept {
    {
      std::lock_guard<std::mutex> g(mbx_mu);
      local.swap(mbx);
    }
    std::uint32_t n = 0;
    for (auto [tag, res] : local) {
      inflight.fetch_sub(1, std::memory_order_relaxed);
      if (tag == flush_tag) {
        flush_res = res;
        flush_done = true;
        continue;
      }
      done(tag, res);
      ++n;
    }
    local.clear();
    return n;
  }
  template <class F>
  std::uint32_t housekeeping(F&&) noexcept { return 0; }  // timeouts: the pump's ctrl->poll()
  std::uint32_t in_flight() const noexcept { return inflight.load(std::memory_order_relaxed); }
  int irq_fd() const noexcept { return nfd; }

  std::int32_t flush_res = 0;
  bool flush_done = false;
  status final_flush() noexcept {
    flush_done = false;
    flush_ctx = {this, flush_tag, 0};
    auto req = mr::build_block_request(target, lim, mr::block_kind::flush, 0, 0, false, {});
    if (!req) return req.error();
    req->done = &on_done;
    req->user = &flush_ctx;
    {
      std::lock_guard<std::mutex> g(pump->mu);
      DKQ_TRY(pump->s->ctrl->submit(*req));
    }
    inflight.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t deadline = now_ns() + 60'000'000'000ull;
    auto ignore = [](std::uint16_t, std::int32_t) {};
    while (!flush_done && now_ns() < deadline) {
      if (poll(ignore) == 0) ::usleep(200);
    }
    if (!flush_done) return {errc::timeout, "SYNCHRONIZE CACHE did not complete in 60 s"};
    return flush_res == 0 ? dkq::ok_status : status{errc::device_error, "SYNCHRONIZE CACHE failed", static_cast<std::uint64_t>(-flush_res)};
  }
};

void scsi_pump::run() {
  while (!stop.load(std::memory_order_acquire)) {
    if (msix >= 0) {
      pollfd p{msix, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        std::uint64_t n;
        (void)!::read(msix, &n, sizeof n);
      }
    } else {
      ::usleep(20);
    }
    {
      std::lock_guard<std::mutex> g(mu);
      s->ctrl->poll(256);  // replies, then the timeout scan
    }
    for (scsi_ublk_backend* be : backends) {
      bool notify;
      {
        std::lock_guard<std::mutex> g(be->mbx_mu);
        notify = be->pending_notify;
        be->pending_notify = false;
      }
      if (notify) {
        std::uint64_t one = 1;
        (void)!::write(be->nfd, &one, sizeof one);
      }
    }
  }
}

int cmd_serve(session& s, const args& a) {
  std::vector<std::uint8_t> ts;
  if (!resolve_targets(*s.ctrl, a, target_use::data, true, "serve", ts)) return 1;
  if (a.pd) {
    std::fprintf(stderr, "dkq-scsi: serve: physical (JBOD) drives are not served yet; serve logical drives\n");
    return 1;
  }
  const auto& ci = s.ctrl->info();
  const std::uint32_t ctrl_depth = ci.queue_depth;
  std::uint32_t depth = std::min<std::uint32_t>(a.qd == 32 ? 64 : a.qd, ctrl_depth / static_cast<std::uint32_t>(ts.size()));
  if (depth == 0) {
    std::fprintf(stderr, "dkq-scsi: serve: controller queue depth %u is too small for %zu drives\n", ctrl_depth, ts.size());
    return 1;
  }
  const std::uint32_t max_io_cap = a.bs != 0 ? a.bs : 512u << 10;
  scsi_pump pump;
  pump.s = &s;
  pump.msix = ci.vectors != 0 ? s.dev->irq().eventfd(0) : -1;
  std::vector<std::unique_ptr<scsi_ublk_backend>> bes;
  using disk_t = dkq_examples::ublk_server::disk<scsi_ublk_backend>;
  std::vector<disk_t> disks;
  for (std::uint8_t t : ts) {
    auto cap = s.ctrl->read_capacity(t);
    if (!cap) return fail("serve: READ CAPACITY", cap.error());
    std::uint8_t b0[64] = {}, b2[8] = {};
    auto n0 = s.ctrl->vpd(t, 0xb0, b0);
    auto n2 = s.ctrl->vpd(t, 0xb2, b2);
    auto lim = mr::make_block_limits(cap->block_size, cap->blocks, std::min(ci.max_transfer, max_io_cap),
                                     std::span<const std::uint8_t>(b0, n0 ? *n0 : 0),
                                     std::span<const std::uint8_t>(b2, n2 ? *n2 : 0));
    if (!lim) return fail("serve: drive limits", lim.error());
    if (lim->block_size > 4096) {
      std::fprintf(stderr, "dkq-scsi: serve: target %u has %u-byte blocks; ublk serves 512..4096\n", t, lim->block_size);
      return 1;
    }
    disk_t dk;
    dk.what = "logical drive " + std::to_string(t) + " of " + a.bdfs[0];
    dk.depth = static_cast<std::uint16_t>(depth);
    auto& l = dk.limits;
    l.logical_block = l.physical_block = lim->block_size;
    l.sectors = lim->blocks * (lim->block_size / 512);
    l.max_io_bytes = lim->max_transfer;
    l.volatile_cache = true;  // the LD may cache writes (QEMU's scsi-hd: WCE); flushes always go out
    l.fua = true;
    l.max_discard_sectors = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{lim->max_unmap_blocks} * (lim->block_size / 512), 0xffffffffu));
    l.max_write_zeroes_sectors = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{lim->max_write_same_blocks} * (lim->block_size / 512), 0xffffffffu));
    auto be = std::make_unique<scsi_ublk_backend>();
    be->pump = &pump;
    be->target = t;
    be->lim = *lim;
    be->spb = lim->block_size / 512;
    be->nfd = ::eventfd(0, EFD_CLOEXEC);
    be->tags.resize(depth);
    for (std::uint16_t i = 0; i < depth; ++i) be->tags[i] = {be.get(), i, 0};
    dma_region buf = s.buffer(std::size_t{depth} * l.max_io_bytes, false);
    std::vector<ublk::io_buffer> tb(depth);
    for (std::uint32_t i = 0; i < depth; ++i)
      tb[i] = {buf.cpu_at(std::size_t{i} * l.max_io_bytes), buf.device_at(std::size_t{i} * l.max_io_bytes).value(),
               l.max_io_bytes};
    dk.buffers.push_back(std::move(tb));
    dk.queues.push_back(be.get());
    pump.backends.push_back(be.get());
    bes.push_back(std::move(be));
    disks.push_back(std::move(dk));
  }
  dkq_examples::ublk_server::block_stop_signals();  // before the pump thread exists
  pump.t = std::thread([&] { pump.run(); });
  dkq_examples::ublk_server::options o;
  o.mode = ublk::wait_mode::interrupt;  // the queues wait on their mailbox eventfd; the pump polls or takes MSI-X
  o.json = a.json;
  o.recoverable = a.recoverable;
  o.recover_id = a.recover_id;
  o.prog = "dkq-scsi";
  const int rc = dkq_examples::ublk_server::serve(disks, o);
  pump.stop.store(true, std::memory_order_release);
  pump.t.join();
  for (auto& be : bes) ::close(be->nfd);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  args a = parse(argc, argv);
  if (a.cmd == "list") return cmd_list(a);
  if (a.cmd != "inquiry" && a.cmd != "capacity" && a.cmd != "read" && a.cmd != "write" && a.cmd != "sync" &&
      a.cmd != "verify" && a.cmd != "perf" && a.cmd != "serve")
    usage(("unknown command " + a.cmd).c_str());
  if (a.bdfs.size() != 1) usage("give exactly one controller address");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A size no command of this driver can carry is refused before the
  // controller is touched, naming the limit (the controller's own, often
  // lower, limit is checked right after bring-up, before any I/O).
  const std::uint32_t driver_max = mr::options{}.max_transfer;
  const std::uint64_t want = a.cmd == "read" || a.cmd == "write" ? a.blocks * 512
                             : a.cmd == "verify" || a.cmd == "perf" ? a.bs
                                                                    : 0;
  if (want > driver_max) {
    std::fprintf(stderr, "dkq-scsi: %" PRIu64 " bytes per command is above the driver's limit of %u bytes%s\n", want,
                 driver_max, a.cmd == "read" || a.cmd == "write" ? " (use verify for large ranges)" : "");
    return fail(a.cmd.c_str(), {errc::invalid_argument, "transfer above the driver's per-command limit", driver_max});
  }
  if (a.cmd == "serve") {
    if (a.recoverable && a.recover_id >= 0) usage("--recoverable and --recover exclude each other");
    if (a.bs != 0 && (a.bs < 4096 || (a.bs & (a.bs - 1)) != 0)) usage("serve: --bs (max I/O) must be a power of two of at least 4096");
    // A kernel without ublk is told before the controller is touched.
    if (dkq_examples::ublk_server::check_kernel("dkq-scsi") != 0) return 1;
  }
  session s;
  s.bdf = a.bdfs[0];
  if (int rc = open_session(s, a, a.bdfs[0])) return rc;
  int rc = 0;
  if (a.cmd == "inquiry") rc = cmd_inquiry(s, a);
  else if (a.cmd == "capacity") rc = cmd_capacity(s, a);
  else if (a.cmd == "read") rc = cmd_rw(s, a, false);
  else if (a.cmd == "write") rc = cmd_rw(s, a, true);
  else if (a.cmd == "sync") rc = cmd_sync(s, a);
  else if (a.cmd == "verify") rc = cmd_verify(s, a);
  else if (a.cmd == "perf") rc = cmd_perf(s, a);
  else if (a.cmd == "serve") rc = cmd_serve(s, a);
  return rc;
}
