// examples/scsi/linux/session.hpp - what dkq-scsi holds for one controller:
// the device, the platform over it, the driver core and the data buffers
// mapped for the device, and the one order in which they may go away.
//
// Teardown order (issue #13 defect 8): stop the controller first - the
// firmware is told to drop every frame and each request still in flight
// completes once, with an error, while its buffer is still mapped and the
// caller's bookkeeping still exists - then unmap the data buffers, then
// destroy the core, the platform and the device, in that order. Unmapping
// first would let the device DMA to addresses that are no longer ours.
//
// Templated on the device, platform and controller types so the order is
// tested against the software controller model (tests/scsi_driver).
#pragma once

#include <memory>
#include <vector>

#include "dkq/base/status.hpp"
#include "dkq/dma/region.hpp"

namespace dkq::scsi_linux {

template <class Device, class Platform, class Controller>
struct basic_session {
  // Declaration order is destruction order reversed: ctrl, plat, dev.
  std::unique_ptr<Device> dev;
  std::unique_ptr<Platform> plat;
  std::unique_ptr<Controller> ctrl;
  std::vector<dma_region> buffers;

  basic_session() = default;
  basic_session(const basic_session&) = delete;
  basic_session& operator=(const basic_session&) = delete;
  ~basic_session() { (void)close(); }

  // Stops the controller (cache flush DCMD, shutdown, in-flight requests
  // completed with an error) if it runs. Safe to call more than once.
  status stop_controller() {
    if (!ctrl) return ok_status;
    return ctrl->stop();
  }

  // The whole teardown, in order; returns the controller's stop status.
  status close() {
    const status s = stop_controller();
    if (dev)
      for (auto& b : buffers) (void)dev->dma_free(b);
    buffers.clear();
    ctrl.reset();
    plat.reset();
    dev.reset();
    return s;
  }
};

// Stops the controller when a command's scope ends with requests still in
// flight (an early return, SIGTERM): their done callbacks point into the
// command's locals, so they must run before those locals go. Declare it
// after the state the callbacks use.
template <class Session>
struct stop_in_flight_on_exit {
  Session& s;
  ~stop_in_flight_on_exit() {
    if (s.ctrl && s.ctrl->in_flight() != 0) (void)s.stop_controller();
  }
};

}  // namespace dkq::scsi_linux
