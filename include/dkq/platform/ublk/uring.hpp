// dkq/platform/ublk/uring.hpp - a minimal io_uring over the raw system calls
// (io_uring_setup, io_uring_enter, the three mapped regions), for the ublk
// server and the kernel benchmark. No liburing: the guest programs are static
// and this is all the project needs of it.
//
// One ring belongs to one thread (ublk requires it: a queue's commands must be
// issued by the task that serves it). Submission entries are prepared with
// sqe(), published and the kernel entered with submit(); completions are read
// in place with reap(). Ordering follows io_uring(7): the SQ tail is stored
// with release after the entries are written, the CQ tail is loaded with
// acquire before the entries are read, the CQ head is stored with release
// after they were consumed.
//
// 128-byte entries (IORING_SETUP_SQE128) are what ublk's control commands
// need (their payload is 32 bytes at sqe->cmd); I/O commands fit in the normal
// 64-byte entry.
#pragma once

#include <linux/io_uring.h>
#include <linux/time_types.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dkq/base/status.hpp"

namespace dkq::ublk {

class uring {
 public:
  uring() noexcept = default;
  uring(const uring&) = delete;
  uring& operator=(const uring&) = delete;
  ~uring() { close(); }

  // entries: submission ring size (the kernel rounds up to a power of two;
  // the completion ring is twice that).
  status init(unsigned entries, bool sqe128 = false) noexcept {
    close();
    io_uring_params p{};
    if (sqe128) p.flags |= IORING_SETUP_SQE128;
    fd_ = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &p));
    if (fd_ < 0) {
      const int e = errno;
      return {e == ENOSYS ? errc::not_supported : errc::io_error,
              e == ENOSYS ? "io_uring_setup: this kernel has no io_uring" : "io_uring_setup failed",
              static_cast<std::uint64_t>(e)};
    }
    if (sqe128 && (p.flags & IORING_SETUP_SQE128) == 0) return {errc::not_supported, "io_uring without 128-byte entries"};
    sqe_size_ = sqe128 ? 128 : 64;
    sq_bytes_ = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
    cq_bytes_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    single_ = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single_) sq_bytes_ = cq_bytes_ = sq_bytes_ > cq_bytes_ ? sq_bytes_ : cq_bytes_;
    sq_ = ::mmap(nullptr, sq_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
    if (sq_ == MAP_FAILED) return map_fail(sq_);
    cq_ = single_ ? sq_
                  : ::mmap(nullptr, cq_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_CQ_RING);
    if (cq_ == MAP_FAILED) return map_fail(cq_);
    sqes_bytes_ = static_cast<std::size_t>(p.sq_entries) * sqe_size_;
    sqes_ = ::mmap(nullptr, sqes_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES);
    if (sqes_ == MAP_FAILED) return map_fail(sqes_);
    auto* sqb = static_cast<char*>(sq_);
    auto* cqb = static_cast<char*>(cq_);
    sq_tail_ = reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.tail);
    sq_head_ = reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.head);
    sq_mask_ = *reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.ring_mask);
    sq_entries_ = p.sq_entries;
    sq_array_ = reinterpret_cast<std::uint32_t*>(sqb + p.sq_off.array);
    cq_head_ = reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.head);
    cq_tail_ = reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<std::uint32_t*>(cqb + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cqb + p.cq_off.cqes);
    local_tail_ = published_ = *sq_tail_;
    return ok_status;
  }

  void close() noexcept {
    if (sqes_ != nullptr && sqes_ != MAP_FAILED) ::munmap(sqes_, sqes_bytes_);
    if (cq_ != nullptr && cq_ != MAP_FAILED && !single_) ::munmap(cq_, cq_bytes_);
    if (sq_ != nullptr && sq_ != MAP_FAILED) ::munmap(sq_, sq_bytes_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    sq_ = cq_ = sqes_ = nullptr;
  }

  int fd() const noexcept { return fd_; }
  unsigned sq_entries() const noexcept { return sq_entries_; }
  // Entries prepared and not yet handed to the kernel.
  unsigned unsubmitted() const noexcept { return local_tail_ - published_; }

  // A zeroed entry, or nullptr when the submission ring is full (submit()
  // first). The entry is 64 or 128 bytes (init's sqe128).
  io_uring_sqe* sqe() noexcept {
    const std::uint32_t head = std::atomic_ref<std::uint32_t>(*sq_head_).load(std::memory_order_acquire);
    if (local_tail_ - head >= sq_entries_) return nullptr;
    const std::uint32_t idx = local_tail_ & sq_mask_;
    auto* e = reinterpret_cast<io_uring_sqe*>(static_cast<char*>(sqes_) + static_cast<std::size_t>(idx) * sqe_size_);
    std::memset(e, 0, sqe_size_);
    sq_array_[idx] = idx;
    ++local_tail_;
    return e;
  }

  // Fills `e` as an IORING_OP_URING_CMD for `fd`: command `op`, its payload
  // (at most 16 bytes in a 64-byte entry, 80 in a 128-byte one) at sqe->cmd.
  static void prep_uring_cmd(io_uring_sqe* e, int fd, std::uint32_t op, std::uint64_t user, const void* payload,
                             std::size_t bytes) noexcept {
    e->opcode = IORING_OP_URING_CMD;
    e->fd = fd;
    e->cmd_op = op;
    e->user_data = user;
    std::memcpy(e->cmd, payload, bytes);
  }

  // Publishes the prepared entries and enters the kernel once: submits them
  // and, when wait_nr > 0, waits for that many completions or `timeout_ns`
  // (0: no limit). Returns the number the kernel consumed. EINTR and ETIME
  // are not errors (the caller looks at the completion ring either way).
  result<unsigned> submit(unsigned wait_nr = 0, std::uint64_t timeout_ns = 0) noexcept {
    std::atomic_ref<std::uint32_t>(*sq_tail_).store(local_tail_, std::memory_order_release);
    const unsigned n = local_tail_ - published_;
    if (n == 0 && wait_nr == 0) return 0u;
    unsigned flags = wait_nr ? IORING_ENTER_GETEVENTS : 0u;
    long r;
    if (wait_nr != 0 && timeout_ns != 0) {
      __kernel_timespec ts{};
      ts.tv_sec = static_cast<long long>(timeout_ns / 1'000'000'000ull);
      ts.tv_nsec = static_cast<long long>(timeout_ns % 1'000'000'000ull);
      io_uring_getevents_arg arg{};
      arg.ts = reinterpret_cast<std::uint64_t>(&ts);
      flags |= IORING_ENTER_EXT_ARG;
      r = ::syscall(__NR_io_uring_enter, fd_, n, wait_nr, flags, &arg, sizeof arg);
    } else {
      r = ::syscall(__NR_io_uring_enter, fd_, n, wait_nr, flags, nullptr, 0);
    }
    if (r < 0) {
      const int e = errno;
      if (e == EINTR || e == ETIME || e == EAGAIN || e == EBUSY) return 0u;
      return status{errc::io_error, "io_uring_enter failed", static_cast<std::uint64_t>(e)};
    }
    published_ += static_cast<unsigned>(r);
    return static_cast<unsigned>(r);
  }

  // Completions ready now (no system call).
  unsigned ready() const noexcept {
    return std::atomic_ref<std::uint32_t>(*cq_tail_).load(std::memory_order_acquire) - *cq_head_;
  }

  // Hands every ready completion to f(const io_uring_cqe&) and frees them.
  template <class F>
  unsigned reap(F&& f) noexcept {
    std::uint32_t head = *cq_head_;
    const std::uint32_t tail = std::atomic_ref<std::uint32_t>(*cq_tail_).load(std::memory_order_acquire);
    unsigned n = 0;
    for (; head != tail; ++head, ++n) {
      const io_uring_cqe c = cqes_[head & cq_mask_];
      std::atomic_ref<std::uint32_t>(*cq_head_).store(head + 1, std::memory_order_release);
      f(c);
    }
    return n;
  }

 private:
  status map_fail(void*& p) noexcept {
    const int e = errno;
    p = nullptr;
    return {errc::io_error, "mmap of an io_uring region failed", static_cast<std::uint64_t>(e)};
  }

  int fd_ = -1;
  bool single_ = false;
  unsigned sqe_size_ = 64;
  std::size_t sq_bytes_ = 0, cq_bytes_ = 0, sqes_bytes_ = 0;
  void *sq_ = nullptr, *cq_ = nullptr, *sqes_ = nullptr;
  std::uint32_t *sq_tail_ = nullptr, *sq_head_ = nullptr, *sq_array_ = nullptr;
  std::uint32_t sq_mask_ = 0, sq_entries_ = 0;
  std::uint32_t *cq_head_ = nullptr, *cq_tail_ = nullptr;
  std::uint32_t cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  std::uint32_t local_tail_ = 0;  // entries prepared (ours alone)
  std::uint32_t published_ = 0;   // entries the kernel has consumed
};

}  // namespace dkq::ublk
