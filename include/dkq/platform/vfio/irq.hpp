// dkq/platform/vfio/irq.hpp - device interrupts as eventfds, waited on with epoll.
//
// VFIO delivers each interrupt vector by signalling an eventfd the user gave it
// (VFIO_DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER). One epoll instance
// watches all of them, so the dispatch layer can either
//   - call wait(): block up to a timeout and get the list of vectors that fired
//     (their counters are read, i.e. consumed), or
//   - take epoll_fd() / eventfd(v) and put them into its own event loop.
// MSI-X is preferred (one vector per queue), then MSI (vectors share one
// address, often only 1), then INTx (one shared, level-triggered line).
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dkq/base/status.hpp"
#include "dkq/platform/vfio/uapi.hpp"

namespace dkq::vfio {

enum class irq_kind : std::uint8_t { none, intx, msi, msix };

constexpr const char* irq_kind_name(irq_kind k) noexcept {
  switch (k) {
    case irq_kind::none: return "none";
    case irq_kind::intx: return "INTx";
    case irq_kind::msi: return "MSI";
    case irq_kind::msix: return "MSI-X";
  }
  return "?";
}

class interrupts {
 public:
  interrupts() = default;
  explicit interrupts(int device_fd) noexcept : device_fd_(device_fd) {}
  interrupts(const interrupts&) = delete;
  interrupts& operator=(const interrupts&) = delete;
  interrupts(interrupts&& o) noexcept { take(o); }
  interrupts& operator=(interrupts&& o) noexcept {
    if (this != &o) {
      (void)disable();
      take(o);
    }
    return *this;
  }
  ~interrupts() { (void)disable(); }

  // How many vectors of `k` the device offers (0 when it has none).
  std::uint32_t available(irq_kind k) const noexcept {
    vfio_irq_info info{};
    info.argsz = sizeof info;
    info.index = vfio_index(k);
    if (k == irq_kind::none || ::ioctl(device_fd_, VFIO_DEVICE_GET_IRQ_INFO, &info) != 0) return 0;
    return info.count;
  }

  // Enables `count` vectors. With `want` = msix the best available kind is
  // used (MSI-X, else MSI, else INTx) and the count is trimmed to what that kind
  // offers; kind() and count() tell what was chosen. Vector v is eventfd(v).
  status enable(std::uint32_t count, irq_kind want = irq_kind::msix) {
    if (device_fd_ < 0) return {errc::not_initialized, "interrupts of a device that is not open"};
    if (count == 0) return {errc::invalid_argument, "enable at least one interrupt vector"};
    if (kind_ != irq_kind::none) DKQ_TRY(disable());
    irq_kind order[3] = {irq_kind::msix, irq_kind::msi, irq_kind::intx};
    std::size_t first = want == irq_kind::msix ? 0 : want == irq_kind::msi ? 1 : 2;
    for (std::size_t i = first; i < 3; ++i) {
      std::uint32_t have = available(order[i]);
      if (have == 0) continue;
      std::uint32_t n = count < have ? count : have;
      return enable_exact(order[i], n);
    }
    return {errc::not_supported, "device offers no MSI-X, MSI or INTx interrupt"};
  }

  status disable() noexcept {
    if (kind_ != irq_kind::none && device_fd_ >= 0) {
      vfio_irq_set set{};
      set.argsz = sizeof set;
      set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
      set.index = vfio_index(kind_);
      set.start = 0;
      set.count = 0;  // count 0 + DATA_NONE: disable every vector of this index
      (void)::ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, &set);
    }
    for (int fd : fds_) ::close(fd);
    fds_.clear();
    if (epoll_ >= 0) ::close(epoll_);
    epoll_ = -1;
    kind_ = irq_kind::none;
    return ok_status;
  }

  irq_kind kind() const noexcept { return kind_; }
  std::uint32_t count() const noexcept { return static_cast<std::uint32_t>(fds_.size()); }
  int eventfd(std::uint32_t vector) const noexcept { return vector < fds_.size() ? fds_[vector] : -1; }
  int epoll_fd() const noexcept { return epoll_; }

  // Waits up to timeout_ms (-1: forever, 0: poll) for any vector. Each vector
  // that fired is written once into `fired` (its eventfd counter is consumed);
  // returns how many were written, 0 on timeout. A signal interrupting the wait
  // returns 0 as well, so a caller's loop re-checks its own deadline.
  result<std::uint32_t> wait(std::span<std::uint32_t> fired, int timeout_ms) noexcept {
    if (epoll_ < 0) return status{errc::not_initialized, "interrupts are not enabled"};
    if (fired.empty()) return status{errc::invalid_argument, "wait needs room for at least one vector"};
    epoll_event ev[32];
    int max = fired.size() < 32 ? static_cast<int>(fired.size()) : 32;
    int n = ::epoll_wait(epoll_, ev, max, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return std::uint32_t{0};
      return status{errc::io_error, "epoll_wait failed", static_cast<std::uint64_t>(errno)};
    }
    std::uint32_t out = 0;
    for (int i = 0; i < n; ++i) {
      std::uint32_t v = ev[i].data.u32;
      std::uint64_t counter = 0;
      // Non-blocking eventfd: EAGAIN means another reader consumed it; skip.
      if (::read(fds_[v], &counter, sizeof counter) == static_cast<ssize_t>(sizeof counter)) fired[out++] = v;
    }
    return out;
  }

  // INTx is level-triggered: VFIO masks the line when it fires and the driver
  // unmasks it after it has cleared the cause in the device. MSI/MSI-X need
  // nothing, so drivers call rearm() unconditionally after handling a vector.
  status rearm(std::uint32_t vector) noexcept {
    if (kind_ != irq_kind::intx) return ok_status;
    vfio_irq_set set{};
    set.argsz = sizeof set;
    set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
    set.index = VFIO_PCI_INTX_IRQ_INDEX;
    set.start = vector;
    set.count = 1;
    if (::ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, &set) != 0)
      return {errc::io_error, "VFIO refused to unmask INTx", static_cast<std::uint64_t>(errno)};
    return ok_status;
  }

 private:
  static std::uint32_t vfio_index(irq_kind k) noexcept {
    switch (k) {
      case irq_kind::msix: return VFIO_PCI_MSIX_IRQ_INDEX;
      case irq_kind::msi: return VFIO_PCI_MSI_IRQ_INDEX;
      default: return VFIO_PCI_INTX_IRQ_INDEX;
    }
  }

  status enable_exact(irq_kind k, std::uint32_t n) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) return {errc::io_error, "epoll_create1 failed", static_cast<std::uint64_t>(errno)};
    for (std::uint32_t v = 0; v < n; ++v) {
      int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) {
        int e = errno;
        (void)disable();
        return {errc::io_error, "eventfd failed", static_cast<std::uint64_t>(e)};
      }
      fds_.push_back(fd);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = v;
      if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        (void)disable();
        return {errc::io_error, "epoll_ctl failed", static_cast<std::uint64_t>(e)};
      }
    }
    // vfio_irq_set is followed by `n` s32 eventfds.
    std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + n * sizeof(std::int32_t));
    vfio_irq_set set{};
    set.argsz = static_cast<std::uint32_t>(buf.size());
    set.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    set.index = vfio_index(k);
    set.start = 0;
    set.count = n;
    std::memcpy(buf.data(), &set, sizeof set);
    for (std::uint32_t v = 0; v < n; ++v) {
      std::int32_t fd = fds_[v];
      std::memcpy(buf.data() + sizeof set + v * sizeof fd, &fd, sizeof fd);
    }
    if (::ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, buf.data()) != 0) {
      int e = errno;
      for (int fd : fds_) ::close(fd);
      fds_.clear();
      ::close(epoll_);
      epoll_ = -1;
      return {errc::io_error, "VFIO_DEVICE_SET_IRQS refused the eventfds (see dmesg)", static_cast<std::uint64_t>(e)};
    }
    kind_ = k;
    return ok_status;
  }

  void take(interrupts& o) noexcept {
    device_fd_ = o.device_fd_;
    epoll_ = o.epoll_;
    fds_ = std::move(o.fds_);
    kind_ = o.kind_;
    o.epoll_ = -1;
    o.fds_.clear();
    o.kind_ = irq_kind::none;
  }

  int device_fd_ = -1;
  int epoll_ = -1;
  std::vector<int> fds_;
  irq_kind kind_ = irq_kind::none;
};

}  // namespace dkq::vfio
