// Guest program: the VFIO backend's user-facing errors against a real kernel.
//
//   vfio_errors <unbound-bdf> <bound-bdf> <missing-bdf> <non-viable-bdf> <host-owned-bdf>
//
//   - a device no driver owns: "not bound to vfio-pci" plus the exact commands;
//   - an address with no device: says so;
//   - a device bound to vfio-pci whose IOMMU group also holds a device a host
//     driver owns: "group not viable", naming that device, its driver and the
//     command that fixes it;
//   - RLIMIT_MEMLOCK too low: the process gives up CAP_IPC_LOCK (root would
//     otherwise bypass the limit), sets a 64 KiB limit, and a 1 MiB DMA
//     allocation must fail with no_memory and a text that says how to raise it,
//     while a 16 KiB one still works.
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "dkq/platform/vfio/vfio.hpp"
#include "guest/vmcheck.hpp"

namespace vfio = dkq::vfio;
using dkq::errc;

namespace {
bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// Clears CAP_IPC_LOCK from the effective set (capset(2), no libcap in the guest).
bool drop_ipc_lock() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  return ::syscall(SYS_capset, &hdr, data) == 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::printf("usage: vfio_errors <unbound-bdf> <bound-bdf> <missing-bdf> <non-viable-bdf> <host-owned-bdf>\n");
    return 2;
  }
  std::string why;
  auto unbound = vfio::device::open(argv[1], {}, &why);
  VM_CHECK(!unbound.ok());
  if (!unbound.ok()) {
    VM_CHECK(unbound.error().code() == errc::invalid_argument);
    VM_CHECK_MSG(contains(why, "not bound to any driver"), why);
    VM_CHECK_MSG(contains(why, "echo vfio-pci | sudo tee /sys/bus/pci/devices/"), why);
    VM_CHECK_MSG(contains(why, "/sys/bus/pci/drivers_probe"), why);
    vmcheck::note("unbound device: %s\n%s", unbound.error().message(), why.c_str());
  }

  auto missing = vfio::device::open(argv[3], {}, &why);
  VM_CHECK(!missing.ok());
  VM_CHECK_MSG(contains(why, "no PCI device"), why);
  vmcheck::note("missing device: %s", why.c_str());

  auto nonviable = vfio::device::open(argv[4], {}, &why);
  VM_CHECK(!nonviable.ok());
  if (!nonviable.ok()) {
    VM_CHECK_MSG(nonviable.error().code() == errc::busy, vmcheck::describe(nonviable.error()));
    VM_CHECK_MSG(contains(why, "is not viable"), why);
    const std::string other = std::string(argv[5]);
    VM_CHECK_MSG(contains(why, (other + " [").c_str()), why);
    VM_CHECK_MSG(contains(why, "driver: ahci"), why);
    VM_CHECK_MSG(contains(why, ("dkq-pci bind " + other).c_str()), why);
    vmcheck::note("non-viable group: %s\n%s", nonviable.error().message(), why.c_str());
  }

  VM_CHECK_MSG(drop_ipc_lock(), "capset failed");
  rlimit rl{64 * 1024, 64 * 1024};
  VM_CHECK(::setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
  auto dev = vfio::device::open(argv[2], {}, &why);
  if (!VM_CHECK_OK(dev)) {
    std::printf("%s", why.c_str());
    return vmcheck::finish("vfio_errors");
  }
  auto small = dev->dma_alloc(16 * 1024);
  VM_CHECK_OK(small);
  auto big = dev->dma_alloc(1024 * 1024);
  VM_CHECK(!big.ok());
  if (!big.ok()) {
    VM_CHECK_MSG(big.error().code() == errc::no_memory, vmcheck::describe(big.error()));
    VM_CHECK_MSG(contains(dev->last_explain(), "RLIMIT_MEMLOCK is 64 KiB"), dev->last_explain());
    VM_CHECK_MSG(contains(dev->last_explain(), "ulimit -l"), dev->last_explain());
    vmcheck::note("1 MiB under a 64 KiB memlock limit: %s\n%s", big.error().message(), dev->last_explain().c_str());
  }
  // The failed mapping left nothing behind: its IOVA range is free again.
  auto again = dev->dma_alloc(16 * 1024);
  VM_CHECK_OK(again);
  return vmcheck::finish("vfio_errors");
}
