// Guest program: DMA pages land on the NUMA node they are asked for.
//
//   numa_probe <bdf>
//
// The scenario boots the guest with two NUMA nodes. Pages from
// allocate_pages() (what device::dma_alloc uses with the device's sysfs node)
// must be on the requested node, asked page by page with
// get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR); with one online node no policy is
// applied. Built twice: with libnuma linked statically and without it (raw
// mbind fallback). QEMU's emulated controllers cannot sit on node 1 here
// (an expander bridge needs SeaBIOS to number its buses, and SeaBIOS's own
// NVMe/MegaRAID drivers would pollute the device traces), so the device's node
// is checked against sysfs and placement is checked for both nodes directly.
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "dkq/platform/vfio/vfio.hpp"
#include "guest/vmcheck.hpp"

namespace vfio = dkq::vfio;

namespace {
int pages_off_node(const vfio::page_allocation& a, int want) {
  int wrong = 0;
  for (std::size_t off = 0; off < a.size; off += 4096) {
    int node = -1;
    constexpr unsigned long mpol_f_node = 1, mpol_f_addr = 2;
    void* page = static_cast<char*>(a.ptr) + off;
    if (::syscall(SYS_get_mempolicy, &node, nullptr, 0, page, mpol_f_node | mpol_f_addr) != 0) node = -2;
    if (node != want) ++wrong;
  }
  return wrong;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: numa_probe <bdf>\n");
    return 2;
  }
#if defined(DKQ_VFIO_HAVE_LIBNUMA)
  constexpr bool libnuma = true;
#else
  constexpr bool libnuma = false;
#endif
  vmcheck::note("built %s", libnuma ? "with libnuma" : "without libnuma (mbind fallback)");
  vfio::sysfs fs;
  VM_CHECK(fs.online_numa_nodes() == 2);

  for (int node : {1, 0}) {
    auto a = vfio::allocate_pages(16 * 4096, node, fs.online_numa_nodes());
    if (!VM_CHECK_OK(a)) continue;
    VM_CHECK(a->placed);
    VM_CHECK(a->via_libnuma == libnuma);
    const int wrong = pages_off_node(*a, node);
    VM_CHECK_MSG(wrong == 0, std::to_string(wrong) + " of 16 pages not on node " + std::to_string(node));
    vmcheck::note("16 pages for node %d: %s", node, wrong == 0 ? "all on that node" : "MISPLACED");
    vfio::release_pages(*a);
  }
  auto single = vfio::allocate_pages(4096, 1, 1);  // one node online: no policy
  if (VM_CHECK_OK(single)) {
    VM_CHECK(!single->placed);
    vfio::release_pages(*single);
  }

  // The device path: its node as sysfs reports it, and dma_alloc on a 2-node guest.
  std::string why;
  auto dev = vfio::device::open(argv[1], {}, &why);
  if (!VM_CHECK_OK(dev)) {
    std::printf("%s", why.c_str());
    return vmcheck::finish("numa_probe");
  }
  auto node_file = vfio::detail::read_small_file(fs.device_dir(dev->address()) + "/numa_node");
  if (VM_CHECK_OK(node_file)) VM_CHECK(dev->numa_node() == std::atoi(node_file->c_str()));
  vmcheck::note("device %s: NUMA node %d (sysfs)", vfio::to_string(dev->address()).c_str(), dev->numa_node());
  auto r = dev->dma_alloc(8 * 4096);
  if (VM_CHECK_OK(r)) VM_CHECK_OK(dev->dma_free(*r));
  return vmcheck::finish("numa_probe");
}
