// dkq/platform/ublk/ublk.hpp - Linux's user-space block device (ublk_drv,
// Documentation/block/ublk.rst; UAPI include/uapi/linux/ublk_cmd.h) for a
// dkq driver: each served disk is /dev/ublkbN, and its requests arrive here.
//
//   control      /dev/ublk-control: ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV,
//                DEL_DEV, GET_DEV_INFO, START/END_USER_RECOVERY, each one
//                io_uring command (128-byte entries), answered synchronously.
//   serve_queue  one hardware queue of one device, on the calling thread:
//                FETCH_REQ for every tag, then per request the backend posts
//                device commands, and COMMIT_AND_FETCH_REQ returns the result
//                and asks for the next request, in one io_uring submission.
//
// The loop batches the way the device wants it: every request that one
// io_uring wake-up delivers is posted to the device first, then the
// backend's doorbell is rung once, then completions are reaped (one CQ head
// write per batch in the backends), and all the commits go back to the kernel
// in the next single io_uring_enter, which is also the wait. With interrupts,
// the MSI-X eventfd is read through the same ring, so one system call waits
// for both a new request and a device completion.
//
// Data: without UBLK_F_USER_COPY/zero copy (6.12 has both, we use neither),
// the kernel copies a WRITE's data into the tag's buffer before it hands the
// request over, and copies a READ's data out of it after the commit. Our
// buffers are DMA-mapped memory, so the device moves the data straight into
// the buffer the kernel copies from: one copy, the kernel's.
//
// Opcodes: the ioctl-encoded forms (UBLK_U_*, Linux 6.3+ names; the kernel
// accepts them whatever CONFIG_BLKDEV_UBLK_LEGACY_OPCODES says), defined here
// from ublk_cmd.h's own definitions when the installed header predates them.
#pragma once

#include <fcntl.h>
#include <linux/ublk_cmd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>

#include "dkq/base/status.hpp"
#include "dkq/dispatch/dispatcher.hpp"
#include "dkq/platform/ublk/uring.hpp"

#ifndef UBLK_U_CMD_ADD_DEV
#define UBLK_U_CMD_GET_DEV_INFO _IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_ADD_DEV _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV _IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV _IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV _IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS _IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_PARAMS _IOR('u', UBLK_CMD_GET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_USER_RECOVERY _IOWR('u', UBLK_CMD_START_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_END_USER_RECOVERY _IOWR('u', UBLK_CMD_END_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_IO_FETCH_REQ
#define UBLK_U_IO_FETCH_REQ _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ _IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#endif

namespace dkq::ublk {

inline constexpr const char* control_path = "/dev/ublk-control";

// ---- requests -------------------------------------------------------------------------

enum class block_op : std::uint8_t { read, write, flush, discard, write_zeroes, other };

constexpr const char* block_op_name(block_op o) noexcept {
  switch (o) {
    case block_op::read: return "read";
    case block_op::write: return "write";
    case block_op::flush: return "flush";
    case block_op::discard: return "discard";
    case block_op::write_zeroes: return "write-zeroes";
    case block_op::other: return "other";
  }
  return "?";
}

// One request as the kernel describes it (struct ublksrv_io_desc), in
// 512-byte sectors whatever the logical block size.
struct block_request {
  block_op op = block_op::other;
  bool fua = false;       // UBLK_IO_F_FUA: the data is on media when this completes
  bool no_unmap = false;  // UBLK_IO_F_NOUNMAP (write zeroes): keep the blocks allocated
  std::uint32_t raw_op = 0;
  std::uint64_t sector = 0;
  std::uint32_t sectors = 0;
  std::uint64_t bytes() const noexcept { return std::uint64_t{sectors} << 9; }
};

inline block_request decode(const ublksrv_io_desc& d) noexcept {
  block_request r;
  r.raw_op = d.op_flags & 0xffu;
  switch (r.raw_op) {
    case UBLK_IO_OP_READ: r.op = block_op::read; break;
    case UBLK_IO_OP_WRITE: r.op = block_op::write; break;
    case UBLK_IO_OP_FLUSH: r.op = block_op::flush; break;
    case UBLK_IO_OP_DISCARD: r.op = block_op::discard; break;
    case UBLK_IO_OP_WRITE_ZEROES: r.op = block_op::write_zeroes; break;
    default: r.op = block_op::other; break;
  }
  r.fua = (d.op_flags & UBLK_IO_F_FUA) != 0;
  r.no_unmap = (d.op_flags & UBLK_IO_F_NOUNMAP) != 0;
  r.sector = d.start_sector;
  r.sectors = d.nr_sectors;
  return r;
}

// The negative errno a request completes with (the kernel turns it into a
// block status with errno_to_blk_status()).
constexpr std::int32_t to_errno(const status& s) noexcept {
  switch (s.code()) {
    case errc::ok: return 0;
    case errc::invalid_argument:
    case errc::out_of_range:
    case errc::constraint: return -EINVAL;
    case errc::not_supported: return -EOPNOTSUPP;
    case errc::no_space:
    case errc::busy: return -EAGAIN;
    case errc::timeout: return -ETIMEDOUT;
    case errc::removed:
    case errc::not_found: return -ENODEV;
    case errc::no_memory: return -ENOMEM;
    default: return -EIO;
  }
}

// ---- control device ---------------------------------------------------------------------

struct device_limits {
  std::uint32_t logical_block = 512;
  std::uint32_t physical_block = 512;
  std::uint64_t sectors = 0;          // capacity in 512-byte sectors
  std::uint32_t max_io_bytes = 0;     // per request; the kernel splits above it
  bool volatile_cache = false;        // the device has a write cache: FLUSH reaches us
  bool fua = false;                   // FUA writes reach us flagged
  std::uint32_t max_discard_sectors = 0;       // 0: no discard
  std::uint32_t max_write_zeroes_sectors = 0;  // 0: the kernel writes zero pages itself
  std::uint32_t discard_granularity = 0;       // bytes (0: the logical block)
};

inline std::uint8_t log2_exact(std::uint32_t v) noexcept {
  std::uint8_t s = 0;
  while ((1u << s) < v && s < 31) ++s;
  return s;
}

// Checks device_limits the way the kernel will (ublk_validate_params and the
// block layer), so a bad value is a clear error here and not EINVAL there.
inline status check_limits(const device_limits& l) noexcept {
  auto pow2 = [](std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (!pow2(l.logical_block) || l.logical_block < 512 || l.logical_block > 4096)
    return {errc::not_supported, "logical block size must be a power of two, 512..4096 (ublk, PAGE_SIZE)", l.logical_block};
  if (!pow2(l.physical_block) || l.physical_block < l.logical_block)
    return {errc::invalid_argument, "physical block size below the logical block size", l.physical_block};
  if (l.sectors == 0) return {errc::invalid_argument, "device of zero sectors"};
  if (l.sectors % (l.logical_block / 512) != 0)
    return {errc::invalid_argument, "capacity is not a whole number of logical blocks", l.sectors};
  if (l.max_io_bytes < l.logical_block || l.max_io_bytes % l.logical_block != 0)
    return {errc::invalid_argument, "maximum transfer is not a positive multiple of the logical block", l.max_io_bytes};
  if (l.fua && !l.volatile_cache) return {errc::invalid_argument, "FUA without a volatile write cache means nothing"};
  return ok_status;
}

struct device_info {
  std::uint32_t id = 0;
  std::uint16_t queues = 0;
  std::uint16_t depth = 0;
  std::uint16_t state = 0;  // UBLK_S_DEV_DEAD / LIVE / QUIESCED
  std::int32_t server_pid = 0;
  std::uint64_t flags = 0;
  std::uint32_t max_io_bytes = 0;
};

constexpr const char* state_name(std::uint16_t s) noexcept {
  return s == UBLK_S_DEV_DEAD ? "dead" : s == UBLK_S_DEV_LIVE ? "live" : s == UBLK_S_DEV_QUIESCED ? "quiesced" : "?";
}

class control {
 public:
  control() noexcept = default;
  control(const control&) = delete;
  control& operator=(const control&) = delete;
  ~control() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Opens /dev/ublk-control (`path`: another node, for tests). The errors
  // say what is missing.
  status open(const char* path = control_path) noexcept {
    fd_ = ::open(path, O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
      const int e = errno;
      if (e == ENOENT || e == ENODEV || e == ENXIO)
        return {errc::not_supported,
                "/dev/ublk-control does not exist: this kernel has no ublk driver loaded (modprobe ublk_drv; it needs "
                "Linux 6.0 or later built with CONFIG_BLK_DEV_UBLK)",
                static_cast<std::uint64_t>(e)};
      if (e == EACCES || e == EPERM)
        return {errc::not_supported, "/dev/ublk-control: permission denied (serving a disk needs root)",
                static_cast<std::uint64_t>(e)};
      return {errc::io_error, "cannot open /dev/ublk-control", static_cast<std::uint64_t>(e)};
    }
    return ring_.init(4, true);
  }

  // ADD_DEV: a new device (id < 0: the kernel picks the number). flags:
  // UBLK_F_* (UBLK_F_USER_RECOVERY for a device that survives its server).
  result<device_info> add(std::int32_t id, std::uint16_t queues, std::uint16_t depth, std::uint32_t max_io_bytes,
                          std::uint64_t flags) noexcept {
    ublksrv_ctrl_dev_info info{};
    info.nr_hw_queues = queues;
    info.queue_depth = depth;
    info.max_io_buf_bytes = max_io_bytes;
    info.dev_id = static_cast<std::uint32_t>(id);
    info.ublksrv_pid = static_cast<std::int32_t>(::getpid());
    info.flags = flags;
    auto r = cmd(UBLK_U_CMD_ADD_DEV, static_cast<std::uint32_t>(id), &info, sizeof info, 0);
    if (!r) {
      status e = r.error();
      if (e.detail() == EEXIST) return status{errc::busy, "ublk device number already taken", static_cast<std::uint64_t>(id)};
      return status{e.code(), "ublk ADD_DEV failed", e.detail()};
    }
    return to_info(info);
  }

  result<device_info> info(std::uint32_t id) noexcept {
    ublksrv_ctrl_dev_info info{};
    auto r = cmd(UBLK_U_CMD_GET_DEV_INFO, id, &info, sizeof info, 0);
    if (!r) return r.error();
    return to_info(info);
  }

  status set_params(std::uint32_t id, const device_limits& l) noexcept {
    DKQ_TRY(check_limits(l));
    ublk_params p{};
    p.len = sizeof p;
    p.types = UBLK_PARAM_TYPE_BASIC;
    p.basic.logical_bs_shift = log2_exact(l.logical_block);
    p.basic.physical_bs_shift = log2_exact(l.physical_block);
    p.basic.io_min_shift = p.basic.logical_bs_shift;
    p.basic.io_opt_shift = p.basic.physical_bs_shift;
    p.basic.max_sectors = l.max_io_bytes >> 9;
    p.basic.dev_sectors = l.sectors;
    if (l.volatile_cache) p.basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
    if (l.fua) p.basic.attrs |= UBLK_ATTR_FUA;
    if (l.max_discard_sectors != 0 || l.max_write_zeroes_sectors != 0) {
      p.types |= UBLK_PARAM_TYPE_DISCARD;
      p.discard.discard_granularity = l.discard_granularity ? l.discard_granularity : l.logical_block;
      p.discard.max_discard_sectors = l.max_discard_sectors;
      p.discard.max_write_zeroes_sectors = l.max_write_zeroes_sectors;
      p.discard.max_discard_segments = 1;  // ublk supports single-range discard only
    }
    auto r = cmd(UBLK_U_CMD_SET_PARAMS, id, &p, sizeof p, 0);
    if (!r) return {r.error().code(), "ublk SET_PARAMS refused the device limits", r.error().detail()};
    return ok_status;
  }

  // START_DEV returns once every queue has fetched every tag (serve_queue
  // running on each) and /dev/ublkb<id> exists.
  status start(std::uint32_t id) noexcept { return simple(UBLK_U_CMD_START_DEV, id, static_cast<std::uint64_t>(::getpid()), "START_DEV"); }
  status stop(std::uint32_t id) noexcept { return simple(UBLK_U_CMD_STOP_DEV, id, 0, "STOP_DEV"); }
  status remove(std::uint32_t id) noexcept { return simple(UBLK_U_CMD_DEL_DEV, id, 0, "DEL_DEV"); }
  status start_recovery(std::uint32_t id) noexcept {
    return simple(UBLK_U_CMD_START_USER_RECOVERY, id, 0, "START_USER_RECOVERY");
  }
  status end_recovery(std::uint32_t id) noexcept {
    return simple(UBLK_U_CMD_END_USER_RECOVERY, id, static_cast<std::uint64_t>(::getpid()), "END_USER_RECOVERY");
  }

 private:
  static device_info to_info(const ublksrv_ctrl_dev_info& i) noexcept {
    device_info d;
    d.id = i.dev_id;
    d.queues = i.nr_hw_queues;
    d.depth = i.queue_depth;
    d.state = i.state;
    d.server_pid = i.ublksrv_pid;
    d.flags = i.flags;
    d.max_io_bytes = i.max_io_buf_bytes;
    return d;
  }

  status simple(std::uint32_t op, std::uint32_t id, std::uint64_t data0, const char* what) noexcept {
    auto r = cmd(op, id, nullptr, 0, data0);
    if (!r) return {r.error().code(), what, r.error().detail()};
    return ok_status;
  }

  // One control command, waited for. The error's detail is the errno.
  result<std::int32_t> cmd(std::uint32_t op, std::uint32_t id, void* buf, std::uint16_t len, std::uint64_t data0) noexcept {
    if (fd_ < 0) return status{errc::not_initialized, "ublk control not open"};
    io_uring_sqe* e = ring_.sqe();
    if (e == nullptr) return status{errc::busy, "ublk control ring full"};
    ublksrv_ctrl_cmd c{};
    c.dev_id = id;
    c.queue_id = 0xffff;  // "-1": not a queue command
    c.addr = reinterpret_cast<std::uint64_t>(buf);
    c.len = len;
    c.data[0] = data0;
    uring::prep_uring_cmd(e, fd_, op, op, &c, sizeof c);
    for (;;) {
      auto s = ring_.submit(1);
      if (!s) return s.error();
      std::int32_t res = 0;
      bool got = false;
      ring_.reap([&](const io_uring_cqe& c2) {
        res = c2.res;
        got = true;
      });
      if (!got) continue;  // interrupted before the answer
      if (res < 0) {
        const auto e2 = static_cast<std::uint64_t>(-res);
        return status{res == -EOPNOTSUPP || res == -EINVAL ? errc::not_supported : errc::io_error, "ublk control command failed", e2};
      }
      return res;
    }
  }

  int fd_ = -1;
  uring ring_;
};

// ---- one hardware queue ---------------------------------------------------------------------

// A tag's data buffer: where the kernel copies (cpu) and where the device
// transfers (iova), max_io_bytes long.
struct io_buffer {
  void* cpu = nullptr;
  std::uint64_t iova = 0;
  std::uint32_t bytes = 0;
};

enum class wait_mode : std::uint8_t { interrupt, poll, hybrid };

struct queue_options {
  wait_mode mode = wait_mode::interrupt;
  std::uint32_t spin_us_max = 200;      // hybrid: longest spin before sleeping
  std::uint32_t housekeeping_ms = 20;   // timeout scan period (and sleep bound)
  const std::atomic<bool>* quit = nullptr;  // set: leave as soon as the device side is idle
};

struct queue_stats {
  std::uint64_t requests = 0, reads = 0, writes = 0, fua_writes = 0, flushes = 0, discards = 0, write_zeroes = 0;
  std::uint64_t bytes_read = 0, bytes_written = 0;
  std::uint64_t refused = 0, failed = 0;  // refused: never reached the device; failed: the device said no
  std::uint64_t aborted_tags = 0;          // fetches the kernel ended (device stopping)
  std::uint64_t bad_cqes = 0;              // completions with an unexpected result
  std::uint64_t enters = 0;                // io_uring_enter calls
  std::uint64_t batches = 0;               // wake-ups that delivered >= 1 request
  std::uint64_t irq_wakeups = 0;
  std::uint64_t spins_won = 0, spins_lost = 0;  // hybrid: completion seen while spinning / slept
  status last_error{};
};

// Backend (one per queue, used by this thread only):
//   status start(std::uint16_t tag, const block_request&, const io_buffer&)
//       builds and posts the device command(s) without ringing; ok: the
//       request completes later through poll(); an error: the request is
//       completed now, with to_errno() of it, and never reached the device.
//   void ring()                                       one doorbell for the batch
//   template <class F> std::uint32_t poll(F&& done)   done(tag, res) per finished request
//   template <class F> std::uint32_t housekeeping(F&& done)  timeouts, aborts, resets
//   std::uint32_t in_flight() const                   requests at the device
//   int irq_fd() const                                the completion eventfd, -1: none
template <class Backend>
class queue_server {
 public:
  queue_server(int cdev_fd, std::uint16_t q_id, std::uint16_t depth, std::span<const io_buffer> bufs, Backend& be,
               const queue_options& opt, queue_stats& st) noexcept
      : cdev_(cdev_fd), q_(q_id), depth_(depth), bufs_(bufs), be_(be), opt_(opt), st_(st) {}

  queue_server(const queue_server&) = delete;
  queue_server& operator=(const queue_server&) = delete;
  ~queue_server() {
    if (descs_ != nullptr) ::munmap(const_cast<ublksrv_io_desc*>(descs_), desc_bytes_);
  }

  // Maps the descriptor array and posts FETCH_REQ for every tag. `fetched` is
  // set once the kernel has them (START_DEV / END_USER_RECOVERY may go).
  status prepare() noexcept {
    if (depth_ == 0 || depth_ > UBLK_MAX_QUEUE_DEPTH || bufs_.size() < depth_)
      return {errc::invalid_argument, "queue depth outside 1..4096 or fewer buffers than tags", depth_};
    const long page = ::sysconf(_SC_PAGESIZE);
    const std::size_t per_queue_max =
        round_up(static_cast<std::size_t>(UBLK_MAX_QUEUE_DEPTH) * sizeof(ublksrv_io_desc), static_cast<std::size_t>(page));
    desc_bytes_ = round_up(static_cast<std::size_t>(depth_) * sizeof(ublksrv_io_desc), static_cast<std::size_t>(page));
    void* m = ::mmap(nullptr, desc_bytes_, PROT_READ, MAP_SHARED | MAP_POPULATE, cdev_,
                     static_cast<off_t>(UBLKSRV_CMD_BUF_OFFSET + q_ * per_queue_max));
    if (m == MAP_FAILED) return {errc::io_error, "mmap of the ublk request descriptors failed", static_cast<std::uint64_t>(errno)};
    descs_ = static_cast<const ublksrv_io_desc*>(m);
    DKQ_TRY(ring_.init(2u * depth_ + 8u, false));
    for (std::uint16_t t = 0; t < depth_; ++t) {
      state_[t] = tag_state::kernel;
      DKQ_TRY(queue_cmd(UBLK_U_IO_FETCH_REQ, t, 0));
    }
    active_ = depth_;
    if (be_.irq_fd() >= 0) DKQ_TRY(arm_irq());
    auto s = ring_.submit(0);
    if (!s) return s.error();
    ++st_.enters;
    return ok_status;
  }

  // Serves until the kernel has ended every tag (STOP_DEV, DEL_DEV) and the
  // device has nothing in flight, or `quit` is set and the device is idle.
  status run() noexcept {
    auto done = [this](std::uint16_t tag, std::int32_t res) { complete(tag, res); };
    std::uint64_t last_house = now_ms();
    adaptive_spin spin{opt_.spin_us_max / 4, 0, opt_.spin_us_max};
    while (active_ > 0 || be_.in_flight() > 0) {
      if (opt_.quit != nullptr && opt_.quit->load(std::memory_order_acquire) && be_.in_flight() == 0) break;
      // Wait policy. Work already in hand (completions to commit, ready
      // CQEs) never waits; an idle device always sleeps in the kernel.
      unsigned wait = 0;
      if (ring_.ready() == 0 && !irq_pending_) {
        if (be_.in_flight() == 0 || opt_.mode == wait_mode::interrupt) {
          wait = 1;
        } else if (opt_.mode == wait_mode::hybrid) {
          // Spin on the device for up to spin_us; a completion inside the
          // window lengthens the next window, a miss halves it, so a slow
          // device (or a busy host) gets an interrupt-driven thread.
          if (spin_for(spin.budget, done)) {
            ++st_.spins_won;
            spin.won();
          } else {
            ++st_.spins_lost;
            spin.lost();
            wait = 1;
          }
        }
      }
      if (wait != 0 || ring_.unsubmitted() != 0) {
        auto s = ring_.submit(wait, wait ? std::uint64_t{opt_.housekeeping_ms} * 1'000'000ull : 0);
        ++st_.enters;
        if (!s) {
          st_.last_error = s.error();
          return s.error();
        }
      }
      std::uint32_t got = 0;
      ring_.reap([&](const io_uring_cqe& c) { got += on_cqe(c); });
      if (got != 0) {
        ++st_.batches;
        be_.ring();  // one doorbell for every request this wake-up delivered
      }
      be_.poll(done);
      if (irq_pending_) {
        irq_pending_ = false;
        if (auto a = arm_irq(); !a.ok()) return a;
      }
      const std::uint64_t t = now_ms();
      if (t - last_house >= opt_.housekeeping_ms) {
        last_house = t;
        be_.housekeeping(done);
      }
    }
    // Commits still prepared go to the kernel before the ring closes.
    if (ring_.unsubmitted() != 0) (void)ring_.submit(0);
    return ok_status;
  }

  std::uint32_t active_tags() const noexcept { return active_; }

 private:
  enum class tag_state : std::uint8_t { kernel, device, gone };

  static std::size_t round_up(std::size_t v, std::size_t a) noexcept { return (v + a - 1) / a * a; }
  static std::uint64_t now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000ull + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000ull;
  }

  static constexpr std::uint64_t irq_user = 0x1'0000'0000ull;

  status arm_irq() noexcept {
    io_uring_sqe* e = sqe();
    if (e == nullptr) return {errc::busy, "io_uring submission ring full"};
    e->opcode = IORING_OP_READ;
    e->fd = be_.irq_fd();
    e->addr = reinterpret_cast<std::uint64_t>(&irq_count_);
    e->len = sizeof irq_count_;
    e->off = static_cast<std::uint64_t>(-1);
    e->user_data = irq_user;
    return ok_status;
  }

  io_uring_sqe* sqe() noexcept {
    io_uring_sqe* e = ring_.sqe();
    if (e == nullptr) {  // cannot happen with 2 x depth + 8 entries; submit and retry once
      (void)ring_.submit(0);
      e = ring_.sqe();
    }
    return e;
  }

  status queue_cmd(std::uint32_t op, std::uint16_t tag, std::int32_t res) noexcept {
    io_uring_sqe* e = sqe();
    if (e == nullptr) return {errc::busy, "io_uring submission ring full"};
    ublksrv_io_cmd c{};
    c.q_id = q_;
    c.tag = tag;
    c.result = res;
    c.addr = reinterpret_cast<std::uint64_t>(bufs_[tag].cpu);
    static_assert(sizeof c <= 16, "ublksrv_io_cmd fits a 64-byte entry");
    uring::prep_uring_cmd(e, cdev_, op, tag, &c, sizeof c);
    return ok_status;
  }

  // The device (or a refusal) finished the request on `tag`: commit the
  // result and fetch the tag's next request, in the next submission.
  void complete(std::uint16_t tag, std::int32_t res) noexcept {
    if (tag >= depth_ || state_[tag] != tag_state::device) {
      ++st_.bad_cqes;  // a backend bug; never commit a tag twice
      return;
    }
    if (res < 0) ++st_.failed;
    state_[tag] = tag_state::kernel;
    if (auto s = queue_cmd(UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res); !s.ok()) st_.last_error = s;
  }

  std::uint32_t on_cqe(const io_uring_cqe& c) noexcept {
    if (c.user_data == irq_user) {
      ++st_.irq_wakeups;
      irq_pending_ = true;
      if (c.res < 0 && c.res != -EINTR && c.res != -EAGAIN) st_.last_error = {errc::io_error, "interrupt eventfd read failed", static_cast<std::uint64_t>(-c.res)};
      return 0;
    }
    const auto tag = static_cast<std::uint16_t>(c.user_data);
    if (c.user_data >= depth_ || state_[tag] != tag_state::kernel) {
      ++st_.bad_cqes;
      return 0;
    }
    if (c.res == UBLK_IO_RES_ABORT) {  // the device is going away
      state_[tag] = tag_state::gone;
      --active_;
      ++st_.aborted_tags;
      return 0;
    }
    if (c.res != UBLK_IO_RES_OK) {
      ++st_.bad_cqes;
      st_.last_error = {errc::io_error, "ublk refused a fetch/commit", static_cast<std::uint64_t>(c.res < 0 ? -c.res : c.res)};
      state_[tag] = tag_state::gone;
      --active_;
      return 0;
    }
    // A new request. The descriptor is the kernel's: read it once.
    ublksrv_io_desc d;
    std::memcpy(&d, const_cast<const ublksrv_io_desc*>(&descs_[tag]), sizeof d);
    const block_request r = decode(d);
    ++st_.requests;
    switch (r.op) {
      case block_op::read: ++st_.reads; st_.bytes_read += r.bytes(); break;
      case block_op::write:
        ++st_.writes;
        st_.bytes_written += r.bytes();
        if (r.fua) ++st_.fua_writes;
        break;
      case block_op::flush: ++st_.flushes; break;
      case block_op::discard: ++st_.discards; break;
      case block_op::write_zeroes: ++st_.write_zeroes; break;
      case block_op::other: break;
    }
    state_[tag] = tag_state::device;
    status s = (r.op == block_op::other) ? status{errc::not_supported, "ublk operation not served", r.raw_op}
               : (r.bytes() > bufs_[tag].bytes && (r.op == block_op::read || r.op == block_op::write))
                   ? status{errc::invalid_argument, "request larger than the tag's buffer", r.bytes()}
                   : be_.start(tag, r, bufs_[tag]);
    if (!s.ok()) {
      ++st_.refused;
      st_.last_error = s;
      complete(tag, to_errno(s));
    }
    return 1;
  }

  template <class F>
  bool spin_for(std::uint32_t us, F& done) noexcept {
    timespec t0{};
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      if (be_.poll(done) != 0) return true;
      if (ring_.ready() != 0) return true;
      timespec t{};
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      const std::int64_t el = (t.tv_sec - t0.tv_sec) * 1'000'000 + (t.tv_nsec - t0.tv_nsec) / 1000;
      if (el >= static_cast<std::int64_t>(us)) return false;
    }
  }

  int cdev_;
  std::uint16_t q_;
  std::uint16_t depth_;
  std::span<const io_buffer> bufs_;
  Backend& be_;
  queue_options opt_;
  queue_stats& st_;
  uring ring_;
  const ublksrv_io_desc* descs_ = nullptr;
  std::size_t desc_bytes_ = 0;
  tag_state state_[UBLK_MAX_QUEUE_DEPTH]{};
  std::uint32_t active_ = 0;
  std::uint64_t irq_count_ = 0;
  bool irq_pending_ = false;
};

}  // namespace dkq::ublk
