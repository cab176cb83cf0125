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
//
// eventfd_waiter adapts one `interrupts` to dkq::interrupt_waiter (the
// dispatch layer's concept: arm/disarm/wait per vector), and wake() lets
// another thread end any wait early (stop requests).
#pragma once

#include <poll.h>
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
    if (wake_ >= 0) ::close(wake_);
    wake_ = -1;
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
      if (v == wake_tag) {
        (void)::read(wake_, &counter, sizeof counter);  // a wake() call: no vector
        continue;
      }
      // Non-blocking eventfd: EAGAIN means another reader consumed it; skip.
      if (::read(fds_[v], &counter, sizeof counter) == static_cast<ssize_t>(sizeof counter)) fired[out++] = v;
    }
    return out;
  }

  // Waits for one vector only; returns its notification count (the eventfd
  // counter: several interrupts may have coalesced), 0 on timeout or wake().
  result<std::uint64_t> wait_vector(std::uint32_t vector, int timeout_ms) noexcept {
    if (vector >= fds_.size()) return status{errc::out_of_range, "interrupt vector not enabled", vector};
    pollfd p[2] = {{fds_[vector], POLLIN, 0}, {wake_, POLLIN, 0}};
    int n = ::poll(p, 2, timeout_ms);
    if (n < 0 && errno != EINTR) return status{errc::io_error, "poll failed", static_cast<std::uint64_t>(errno)};
    std::uint64_t counter = 0;
    if (n > 0 && (p[1].revents & POLLIN)) (void)::read(wake_, &counter, sizeof counter);
    counter = 0;
    if (n > 0 && (p[0].revents & POLLIN)) {
      if (::read(fds_[vector], &counter, sizeof counter) != static_cast<ssize_t>(sizeof counter)) counter = 0;
    }
    return counter;
  }

  // Ends a wait()/wait_vector() in progress (or the next one) with nothing
  // fired. Safe from any thread.
  void wake() noexcept {
    if (wake_ < 0) return;
    std::uint64_t one = 1;
    (void)::write(wake_, &one, sizeof one);
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

  static constexpr std::uint32_t wake_tag = 0xffffffffu;

  status enable_exact(irq_kind k, std::uint32_t n) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) return {errc::io_error, "epoll_create1 failed", static_cast<std::uint64_t>(errno)};
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event wev{};
    wev.events = EPOLLIN;
    wev.data.u32 = wake_tag;
    if (wake_ < 0 || ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &wev) != 0) {
      int e = errno;
      (void)disable();
      return {errc::io_error, "wake eventfd setup failed", static_cast<std::uint64_t>(e)};
    }
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
      (void)disable();  // kind_ is still none: closes the fds without an ioctl
      return {errc::io_error, "VFIO_DEVICE_SET_IRQS refused the eventfds (see dmesg)", static_cast<std::uint64_t>(e)};
    }
    kind_ = k;
    return ok_status;
  }

  void take(interrupts& o) noexcept {
    device_fd_ = o.device_fd_;
    epoll_ = o.epoll_;
    wake_ = o.wake_;
    fds_ = std::move(o.fds_);
    kind_ = o.kind_;
    o.epoll_ = -1;
    o.wake_ = -1;
    o.fds_.clear();
    o.kind_ = irq_kind::none;
  }

  int device_fd_ = -1;
  int epoll_ = -1;
  int wake_ = -1;
  std::vector<int> fds_;
  irq_kind kind_ = irq_kind::none;
};

// dkq::interrupt_waiter over VFIO eventfds, for interrupt_dispatcher::run_once.
//   wait(v)    re-arms v (INTx unmask after the previous drain cleared the
//              cause; nothing for MSI/MSI-X), then blocks until v fires,
//              timeout_ms passes or wake() is called; returns the count, 0 if
//              nothing fired.
//   arm(v)     the same re-arm (hybrid mode arms before its last poll).
//   disarm(v)  nothing: eventfds stay armed, and VFIO cannot mask single
//              MSI/MSI-X vectors on every kernel; a driver that wants quiet
//              polling masks in the device (NVMe INTMS).
class eventfd_waiter {
 public:
  explicit eventfd_waiter(interrupts& irq, int timeout_ms = -1) noexcept : irq_(&irq), timeout_ms_(timeout_ms) {}

  void arm(std::uint16_t v) noexcept { (void)irq_->rearm(v); }
  void disarm(std::uint16_t) noexcept {}
  std::uint32_t wait(std::uint16_t v) noexcept {
    (void)irq_->rearm(v);
    auto n = irq_->wait_vector(v, timeout_ms_);
    if (!n) return 0;
    return *n > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(*n);
  }

 private:
  interrupts* irq_;
  int timeout_ms_;
};

}  // namespace dkq::vfio
