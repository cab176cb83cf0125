// dkq/platform/vfio/vfio.hpp - the Linux VFIO platform backend, all of it.
//
//   sysfs.hpp       PCI addresses, sysfs facts, bind/unbind, help texts (unit-tested)
//   iova_space.hpp  the backend's small IOVA allocator
//   irq.hpp         MSI-X / MSI / INTx vectors as eventfds, epoll wait
//   clock.hpp       monotonic_clock: now_ns() for deadlines, sleep_us()
//   numa.hpp        page-aligned memory on a NUMA node (libnuma optional)
//   device.hpp      open by PCI address, BARs by number, config space, DMA, NUMA
//   uapi.hpp        iommufd / vfio cdev declarations missing from older headers
#pragma once

#include "dkq/platform/vfio/clock.hpp"
#include "dkq/platform/vfio/device.hpp"
#include "dkq/platform/vfio/iova_space.hpp"
#include "dkq/platform/vfio/irq.hpp"
#include "dkq/platform/vfio/numa.hpp"
#include "dkq/platform/vfio/sysfs.hpp"
