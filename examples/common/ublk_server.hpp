// examples/common/ublk_server.hpp - `serve`, shared by dkq-nvme and dkq-scsi:
// each served disk (an NVMe namespace, a MegaRAID logical drive) becomes
// /dev/ublkb<N>, one ublk queue per driver I/O queue, one thread per queue.
//
// Order (docs/ublk.md):
//   1. the caller has the controller up and one backend per queue, so a bad
//      device, namespace or target fails before anything is registered;
//   2. ADD_DEV, SET_PARAMS, open /dev/ublkc<N>; each queue thread maps its
//      descriptors and fetches every tag; START_DEV creates /dev/ublkb<N>
//      (or, with --recover, START/END_USER_RECOVERY re-attach a device whose
//      server died);
//   3. SIGINT/SIGTERM (or a queue that failed): STOP_DEV - the kernel writes
//      back what it holds through the still-running queues, then ends every
//      fetch - the threads finish, each disk gets a device flush (NVMe Flush /
//      SYNCHRONIZE CACHE) that completes only on the device's answer, then
//      DEL_DEV removes it;
//   4. any failure after ADD_DEV removes what was added: nothing stays
//      registered.
// Progress and errors go to stderr; --json prints one status line per event
// on stdout.
#pragma once

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dkq/platform/ublk/ublk.hpp"

namespace dkq_examples::ublk_server {

namespace ublk = dkq::ublk;
using dkq::errc;
using dkq::status;

struct options {
  ublk::wait_mode mode = ublk::wait_mode::interrupt;
  bool json = false;
  bool recoverable = false;     // UBLK_F_USER_RECOVERY: the disk waits for a new server if this one dies
  std::int32_t recover_id = -1;  // >= 0: re-attach to /dev/ublkb<id> instead of adding a device
  const char* prog = "dkq";
};

// One disk to serve. Backend: see dkq/platform/ublk/ublk.hpp; plus
//   status final_flush()   a device flush, waited for (after the queues stopped)
//   void describe_stats(FILE*) optional counters for the stop report
template <class Backend>
struct disk {
  std::string what;                 // "namespace 1", "logical drive 0"
  ublk::device_limits limits{};
  std::uint16_t depth = 0;
  std::vector<Backend*> queues;     // one per ublk hardware queue
  std::vector<std::vector<ublk::io_buffer>> buffers;  // [queue][tag]
  // filled by serve()
  std::uint32_t dev_id = 0;
  std::vector<ublk::queue_stats> stats;
};

namespace detail {
inline void json_stats(FILE* f, const ublk::queue_stats& s) {
  std::fprintf(f,
               "\"requests\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"fua_writes\":%" PRIu64
               ",\"flushes\":%" PRIu64 ",\"discards\":%" PRIu64 ",\"write_zeroes\":%" PRIu64 ",\"bytes_read\":%" PRIu64
               ",\"bytes_written\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"batches\":%" PRIu64
               ",\"enters\":%" PRIu64 ",\"irq_wakeups\":%" PRIu64,
               s.requests, s.reads, s.writes, s.fua_writes, s.flushes, s.discards, s.write_zeroes, s.bytes_read,
               s.bytes_written, s.refused, s.failed, s.batches, s.enters, s.irq_wakeups);
}
inline ublk::queue_stats sum(const std::vector<ublk::queue_stats>& v) {
  ublk::queue_stats t;
  for (const auto& s : v) {
    t.requests += s.requests; t.reads += s.reads; t.writes += s.writes; t.fua_writes += s.fua_writes;
    t.flushes += s.flushes; t.discards += s.discards; t.write_zeroes += s.write_zeroes;
    t.bytes_read += s.bytes_read; t.bytes_written += s.bytes_written; t.refused += s.refused;
    t.failed += s.failed; t.batches += s.batches; t.enters += s.enters; t.irq_wakeups += s.irq_wakeups;
    t.aborted_tags += s.aborted_tags; t.bad_cqes += s.bad_cqes;
    if (!s.last_error.ok()) t.last_error = s.last_error;
  }
  return t;
}
}  // namespace detail

// Devices whose server died without a clean stop stay registered (the
// kernel keeps /dev/ublkc<N> until DEL_DEV). A new server removes those that
// are dead, were not made recoverable, and whose server process is gone;
// anything else (live, quiesced, someone else's running server) is left alone.
inline void reclaim_dead(ublk::control& ctl, const char* prog) {
  DIR* d = ::opendir("/dev");
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    unsigned id = 0;
    char tail = 0;
    if (std::sscanf(e->d_name, "ublkc%u%c", &id, &tail) != 1) continue;
    auto inf = ctl.info(id);
    if (!inf || inf->state != UBLK_S_DEV_DEAD || (inf->flags & UBLK_F_USER_RECOVERY) != 0) continue;
    if (inf->server_pid > 0 && (::kill(inf->server_pid, 0) == 0 || errno != ESRCH)) continue;
    const status s = ctl.remove(id);
    std::fprintf(stderr, "%s: serve: removed /dev/ublkc%u, left dead by a server that is gone: %s\n", prog, id,
                 s.ok() ? "done" : s.message());
  }
  ::closedir(d);
}

// Exit status 1 with one clear line when this kernel cannot serve a disk
// (no ublk_drv, not root); 0 when it can.
inline int check_kernel(const char* prog) {
  ublk::control c;
  const status s = c.open();
  if (s.ok()) return 0;
  std::fprintf(stderr, "%s: serve: %s\n", prog, s.message());
  return 1;
}

// SIGINT/SIGTERM are taken by serve() through a signalfd, so they must be
// blocked in every thread: call this before starting any thread of your own
// (a thread started earlier would take the signal into the process's handler
// and serve() would never see it). serve() calls it again; it is idempotent.
inline sigset_t block_stop_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

// Serves every disk until SIGINT/SIGTERM. Returns the process exit status.
template <class Backend>
int serve(std::vector<disk<Backend>>& disks, const options& o) {
  const char* P = o.prog;
  auto err = [&](const char* what, const status& s) {
    std::fprintf(stderr, "%s: serve: %s: %s [%s", P, what, s.message(), dkq::errc_name(s.code()));
    if (s.detail() != 0) std::fprintf(stderr, ", %" PRIu64, s.detail());
    std::fprintf(stderr, "]\n");
    return 1;
  };
  // Signals are taken by this thread alone, through a signalfd; the queue
  // threads inherit the blocked mask.
  sigset_t sigs = block_stop_signals();
  const int sfd = ::signalfd(-1, &sigs, SFD_CLOEXEC);
  const int wake = ::eventfd(0, EFD_CLOEXEC);

  ublk::control ctl;
  if (status s = ctl.open(); !s.ok()) return err("no ublk", s);

  struct added {
    std::uint32_t id;
    int cdev = -1;
    bool started = false;
  };
  std::vector<added> devs;
  // Closes what was opened and removes what was added. A failed --recover
  // leaves the quiesced device as it found it, for another attempt.
  auto cleanup = [&](bool remove) {
    for (auto& d : devs) {
      if (d.cdev >= 0) ::close(d.cdev);
      d.cdev = -1;
      if (remove)
        if (status s = ctl.remove(d.id); !s.ok()) err("DEL_DEV", s);
    }
    devs.clear();
  };
  const bool remove_on_error = o.recover_id < 0;

  std::atomic<bool> quit{false};
  struct qthread {
    std::thread t;
    std::atomic<bool> fetched{false};
    std::atomic<bool> finished{false};
    status result{};
  };
  std::vector<std::unique_ptr<qthread>> threads;
  auto join_all = [&]() {
    for (auto& q : threads)
      if (q->t.joinable()) q->t.join();
  };

  if (o.recover_id < 0) reclaim_dead(ctl, P);

  for (auto& dk : disks) {
    const auto nq = static_cast<std::uint16_t>(dk.queues.size());
    std::uint32_t id;
    if (o.recover_id >= 0) {
      auto inf = ctl.info(static_cast<std::uint32_t>(o.recover_id));
      if (!inf) {
        cleanup(remove_on_error);
        if (inf.error().detail() == ENODEV) {
          std::fprintf(stderr, "%s: serve --recover %d: there is no ublk device %d to recover\n", P, o.recover_id,
                       o.recover_id);
          return 1;
        }
        return err("GET_DEV_INFO of the device to recover", inf.error());
      }
      if ((inf->flags & UBLK_F_USER_RECOVERY) == 0 || inf->state != UBLK_S_DEV_QUIESCED) {
        std::fprintf(stderr,
                     "%s: serve --recover %d: /dev/ublkb%d is %s%s; only a device served with --recoverable whose "
                     "server died (state quiesced) can be re-attached\n",
                     P, o.recover_id, o.recover_id, ublk::state_name(inf->state),
                     (inf->flags & UBLK_F_USER_RECOVERY) ? "" : " and was not served with --recoverable");
        return 1;
      }
      if (inf->queues != nq || inf->depth != dk.depth) {
        std::fprintf(stderr, "%s: serve --recover: the device has %u queue(s) of depth %u, this server %u of depth %u\n",
                     P, inf->queues, inf->depth, nq, dk.depth);
        return 1;
      }
      if (status s = ctl.start_recovery(inf->id); !s.ok()) return err("START_USER_RECOVERY", s);
      id = inf->id;
    } else {
      auto a = ctl.add(-1, nq, dk.depth, dk.limits.max_io_bytes, o.recoverable ? UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE : 0);
      if (!a) {
        cleanup(true);
        return err("ADD_DEV", a.error());
      }
      id = a->id;
      devs.push_back({id});
      if (a->queues != nq || a->depth != dk.depth) {
        // ublk_drv gives at most one hardware queue per CPU (and caps the depth).
        std::fprintf(stderr, "%s: serve: the kernel granted %u queue(s) of depth %u for %u of depth %u "
                     "(at most one queue per CPU): ask for fewer\n", P, a->queues, a->depth, nq, dk.depth);
        cleanup(true);
        return 1;
      }
      if (status s = ctl.set_params(id, dk.limits); !s.ok()) {
        cleanup(true);
        return err("SET_PARAMS", s);
      }
    }
    if (o.recover_id >= 0) devs.push_back({id});
    dk.dev_id = id;
    const std::string cpath = "/dev/ublkc" + std::to_string(id);
    int cdev = -1;
    for (int i = 0; i < 200 && cdev < 0; ++i) {  // devtmpfs creates the node as ADD_DEV returns; allow 1 s
      cdev = ::open(cpath.c_str(), O_RDWR | O_CLOEXEC);
      if (cdev < 0) ::usleep(5000);
    }
    if (cdev < 0) {
      const int e = errno;
      cleanup(remove_on_error);
      return err(("cannot open " + cpath).c_str(), status{errc::io_error, "open failed", static_cast<std::uint64_t>(e)});
    }
    devs.back().cdev = cdev;
    dk.stats.assign(nq, ublk::queue_stats{});
  }

  // Queue threads: prepare (fetch every tag), then serve.
  for (std::size_t di = 0; di < disks.size(); ++di) {
    auto& dk = disks[di];
    for (std::uint16_t q = 0; q < dk.queues.size(); ++q) {
      auto qt = std::make_unique<qthread>();
      qthread* self = qt.get();
      Backend* be = dk.queues[q];
      const int cdev = devs[di].cdev;
      ublk::queue_options qo;
      qo.mode = o.mode;
      qo.quit = &quit;
      ublk::queue_stats* st = &dk.stats[q];
      const std::uint16_t depth = dk.depth;
      std::span<const ublk::io_buffer> bufs(dk.buffers[q]);
      qt->t = std::thread([=]() {
        auto srv = std::make_unique<ublk::queue_server<Backend>>(cdev, q, depth, bufs, *be, qo, *st);
        status s = srv->prepare();
        self->fetched.store(true, std::memory_order_release);
        if (s.ok()) s = srv->run();
        self->result = s;
        self->finished.store(true, std::memory_order_release);
        std::uint64_t one = 1;
        (void)!::write(wake, &one, sizeof one);
      });
      threads.push_back(std::move(qt));
    }
  }
  for (auto& q : threads)
    while (!q->fetched.load(std::memory_order_acquire)) ::usleep(1000);
  for (auto& q : threads)
    if (q->finished.load(std::memory_order_acquire) && !q->result.ok()) {
      quit.store(true);
      join_all();
      cleanup(remove_on_error);
      return err("queue setup", q->result);
    }

  for (std::size_t di = 0; di < disks.size(); ++di) {
    auto& dk = disks[di];
    const status s = o.recover_id >= 0 ? ctl.end_recovery(dk.dev_id) : ctl.start(dk.dev_id);
    if (!s.ok()) {
      quit.store(true);
      cleanup(remove_on_error);  // DEL_DEV ends the fetches; the threads then leave
      join_all();
      return err(o.recover_id >= 0 ? "END_USER_RECOVERY" : "START_DEV", s);
    }
    devs[di].started = true;
    const auto& l = dk.limits;
    std::fprintf(stderr,
                 "%s: serving %s as /dev/ublkb%u: %" PRIu64 " sectors, %u-byte blocks, %zu queue(s) x %u tags, "
                 "max %u KiB per request, write cache %s, FUA %s, discard %s, write zeroes %s%s\n",
                 P, dk.what.c_str(), dk.dev_id, l.sectors, l.logical_block, dk.queues.size(), dk.depth,
                 l.max_io_bytes >> 10, l.volatile_cache ? "on" : "off", l.fua ? "on" : "off",
                 l.max_discard_sectors ? "on" : "off", l.max_write_zeroes_sectors ? "on" : "off",
                 o.recover_id >= 0 ? " (recovered)" : "");
    if (o.json) {
      std::printf("{\"event\":\"serving\",\"what\":\"%s\",\"device\":\"/dev/ublkb%u\",\"dev_id\":%u,\"queues\":%zu,"
                  "\"depth\":%u,\"logical_block\":%u,\"sectors\":%" PRIu64 ",\"max_io_bytes\":%u,\"write_cache\":%s,"
                  "\"fua\":%s,\"discard\":%s,\"write_zeroes\":%s,\"recovered\":%s,\"pid\":%d}\n",
                  dk.what.c_str(), dk.dev_id, dk.dev_id, dk.queues.size(), dk.depth, l.logical_block, l.sectors,
                  l.max_io_bytes, l.volatile_cache ? "true" : "false", l.fua ? "true" : "false",
                  l.max_discard_sectors ? "true" : "false", l.max_write_zeroes_sectors ? "true" : "false",
                  o.recover_id >= 0 ? "true" : "false", static_cast<int>(::getpid()));
      std::fflush(stdout);
    }
  }

  // Until a signal, or a queue thread ends on its own (the device failed).
  const char* why = "signal";
  for (;;) {
    pollfd p[2] = {{sfd, POLLIN, 0}, {wake, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno == EINTR) continue;
    if (p[0].revents & POLLIN) {
      signalfd_siginfo si{};
      (void)!::read(sfd, &si, sizeof si);
      why = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
      break;
    }
    if (p[1].revents & POLLIN) {
      why = "a queue stopped";
      break;
    }
  }
  std::fprintf(stderr, "%s: serve: %s: stopping (the kernel writes back, then every tag ends)\n", P, why);
  for (auto& d : devs)
    if (d.started) {
      if (status s = ctl.stop(d.id); !s.ok()) err("STOP_DEV", s);
      d.started = false;
    }
  quit.store(true, std::memory_order_release);
  join_all();
  int rc = 0;
  for (auto& q : threads)
    if (!q->result.ok()) rc = err("queue", q->result);
  // The device flush, after the last write the kernel sent and before the
  // disk is removed.
  for (auto& dk : disks) {
    status fs = dkq::ok_status;
    for (Backend* be : dk.queues) {
      fs = be->final_flush();
      break;  // one flush per disk reaches the whole volatile cache
    }
    const auto t = detail::sum(dk.stats);
    std::fprintf(stderr,
                 "%s: /dev/ublkb%u (%s): %" PRIu64 " requests (%" PRIu64 " reads, %" PRIu64 " writes of which %" PRIu64
                 " FUA, %" PRIu64 " flushes, %" PRIu64 " discards, %" PRIu64 " write-zeroes), %" PRIu64 " refused, %" PRIu64
                 " failed; final device flush %s\n",
                 P, dk.dev_id, dk.what.c_str(), t.requests, t.reads, t.writes, t.fua_writes, t.flushes, t.discards,
                 t.write_zeroes, t.refused, t.failed, fs.ok() ? "done" : fs.message());
    if (!fs.ok()) rc = 1;
    if (t.bad_cqes != 0) {
      std::fprintf(stderr, "%s: /dev/ublkb%u: %" PRIu64 " unexpected io_uring completions\n", P, dk.dev_id, t.bad_cqes);
      rc = 1;
    }
    if (o.json) {
      std::printf("{\"event\":\"stopped\",\"device\":\"/dev/ublkb%u\",\"reason\":\"%s\",\"final_flush\":%s,", dk.dev_id,
                  why, fs.ok() ? "true" : "false");
      detail::json_stats(stdout, t);
      std::printf("}\n");
      std::fflush(stdout);
    }
  }
  cleanup(true);
  ::close(sfd);
  ::close(wake);
  return rc;
}

}  // namespace dkq_examples::ublk_server
