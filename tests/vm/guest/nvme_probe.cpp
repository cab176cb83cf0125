// Guest program: the VFIO backend against QEMU's NVMe controller (1b36:0010).
//
//   nvme_probe <bdf> <serial> <namespace-blocks>
//
// Opens the controller, checks config space and BARs (BAR 0 is the 64-bit
// register BAR, BAR 1 its upper half, BARs 2-5 absent), reads CAP and VS, maps
// DMA memory, brings up an admin queue pair by hand (the real NVMe driver comes
// later; this is only enough to make the device do DMA and raise MSI-X vector
// 0), and sends Identify Controller and Identify Namespace. Each completion
// must arrive as an eventfd signal. DMA at a caller-chosen IOVA (dma_map_at)
// and IOVA reservations are checked against the kernel's real IOVA ranges, and
// the Identify after the function reset lands in the fixed-IOVA buffer. The
// data is checked byte for byte against
// what the harness configured, and the doorbell writes made here are declared
// so the harness can compare them with QEMU's trace.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dkq/platform/vfio/vfio.hpp"
#include "guest/vmcheck.hpp"

namespace vfio = dkq::vfio;
using dkq::errc;

namespace {

// NVMe 1.4 register offsets (section 3.1).
constexpr std::size_t reg_cap = 0x00, reg_vs = 0x08, reg_cc = 0x14, reg_csts = 0x1c, reg_aqa = 0x24,
                      reg_asq = 0x28, reg_acq = 0x30;
constexpr std::uint32_t queue_entries = 8;

bool wait_ready(const dkq::mmio_window& bar, bool ready) {
  for (int i = 0; i < 5000; ++i) {  // CAP.TO is 0xf (7.5 s) on QEMU; it is ready far sooner
    std::uint32_t csts = bar.read32(reg_csts);
    if (((csts & 1u) != 0) == ready) return true;
    if (csts & 2u) return false;  // CSTS.CFS: controller fatal status
    ::usleep(1000);
  }
  return false;
}

struct admin_queue {
  dkq::mmio_window bar;
  dkq::dma_region sq, cq;
  std::uint32_t sq_tail = 0, cq_head = 0;
  bool phase = true;
  unsigned sq_doorbells = 0, cq_doorbells = 0;
  std::size_t sq_db = 0x1000, cq_db = 0x1004;  // CAP.DSTRD 0: 4-byte stride

  // Posts one admin command and rings the SQ tail doorbell.
  void submit(const std::uint32_t (&sqe)[16]) {
    std::memcpy(sq.cpu_at(sq_tail * 64u), sqe, 64);
    sq_tail = (sq_tail + 1) % queue_entries;
    bar.write32(sq_db, sq_tail);  // ordered after the SQE store (mmio.hpp)
    ++sq_doorbells;
    vmcheck::expect_trace("pci_nvme_mmio_doorbell_sq", "sqid=0 new_tail=" + std::to_string(sq_tail), 1);
  }
};

// Waits for the completion interrupt, checks the CQE and consumes it. The
// first command waits through interrupts::wait (epoll over all vectors), the
// second through eventfd_waiter (the dispatch layer's interrupt_waiter).
bool complete_one(admin_queue& q, vfio::interrupts& irq, std::uint16_t cid, bool via_waiter) {
  if (via_waiter) {
    vfio::eventfd_waiter waiter(irq, 5000);
    const std::uint32_t count = waiter.wait(0);
    if (!VM_CHECK_MSG(count >= 1, "eventfd_waiter: vector 0 did not fire within 5 s")) return false;
    vmcheck::note("interrupt: vector 0 fired, eventfd_waiter count %u", count);
  } else {
    std::uint32_t fired[4];
    auto n = irq.wait(fired, 5000);
    if (!VM_CHECK_OK(n)) return false;
    if (!VM_CHECK_MSG(*n == 1 && fired[0] == 0, "expected exactly vector 0 to fire within 5 s")) return false;
    vmcheck::note("interrupt: vector %u fired through its eventfd (epoll)", fired[0]);
  }
  auto* cqe = q.cq.cpu_at<volatile std::uint32_t>(q.cq_head * 16u);
  std::uint32_t dw3 = cqe[3];
  dkq::dma_rmb();
  VM_CHECK_MSG(((dw3 >> 16) & 1u) == (q.phase ? 1u : 0u), "CQE phase tag not flipped by the device");
  VM_CHECK_MSG((dw3 & 0xffffu) == cid, "CQE carries another command id");
  VM_CHECK_MSG((dw3 >> 17) == 0, "command failed: status " + std::to_string(dw3 >> 17));
  VM_CHECK_MSG((cqe[2] >> 16) == 0, "CQE SQID is not the admin queue");
  q.cq_head = (q.cq_head + 1) % queue_entries;
  if (q.cq_head == 0) q.phase = !q.phase;
  q.bar.write32(q.cq_db, q.cq_head);
  ++q.cq_doorbells;
  vmcheck::expect_trace("pci_nvme_mmio_doorbell_cq", "cqid=0 new_head=" + std::to_string(q.cq_head), 1);
  return true;
}

std::string ascii_field(const std::uint8_t* p, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::printf("usage: nvme_probe <bdf> <serial> <namespace-blocks>\n");
    return 2;
  }
  const std::string serial = argv[2];
  const std::uint64_t ns_blocks = std::strtoull(argv[3], nullptr, 0);

  std::string why;
  auto opened = vfio::device::open(argv[1], {}, &why);
  if (!VM_CHECK_OK(opened)) {
    std::printf("%s", why.c_str());
    return vmcheck::finish("nvme_probe");
  }
  vfio::device& dev = *opened;
  vmcheck::note("opened %s via %s backend, IOMMU group %d, NUMA node %d", vfio::to_string(dev.address()).c_str(),
                dev.backend() == vfio::iommu_backend::iommufd ? "iommufd" : "container/group",
                dev.info().iommu_group, dev.numa_node());
  VM_CHECK(dev.info().vendor == 0x1b36 && dev.info().device == 0x0010);
  VM_CHECK(dev.info().driver == "vfio-pci");

  // ---- a second open of the same device is "busy" and names the holder ----
  {
    std::string busy_why;
    auto again = vfio::device::open(argv[1], {}, &busy_why);
    VM_CHECK(!again.ok());
    if (!again.ok()) {
      VM_CHECK_MSG(again.error().code() == errc::busy, vmcheck::describe(again.error()));
      VM_CHECK_MSG(busy_why.find("already open") != std::string::npos, busy_why);
      VM_CHECK_MSG(busy_why.find("(nvme_probe)") != std::string::npos, busy_why);
      vmcheck::note("second open refused as expected:\n%s", busy_why.c_str());
    }
  }

  // ---- config space -------------------------------------------------------
  auto id = dev.config_read32(0x00);
  if (VM_CHECK_OK(id)) VM_CHECK(*id == 0x00101b36u);
  auto cls = dev.config_read32(0x08);
  if (VM_CHECK_OK(cls)) VM_CHECK((*cls >> 8) == 0x010802u);
  auto msix = dev.find_capability(0x11);
  if (VM_CHECK_OK(msix)) VM_CHECK_MSG(*msix != 0, "no MSI-X capability");
  VM_CHECK_OK(dev.enable_bus_master());
  auto cmd = dev.config_read16(0x04);
  if (VM_CHECK_OK(cmd)) VM_CHECK((*cmd & 0x6u) == 0x6u);
  VM_CHECK(dev.config_read32(0x02).error().code() == errc::invalid_argument);  // unaligned

  // ---- BARs by number -------------------------------------------------------
  auto b0 = dev.bar(0);
  if (VM_CHECK_OK(b0)) {
    VM_CHECK(b0->kind == vfio::bar_kind::memory);
    VM_CHECK(b0->is_64bit);
    VM_CHECK(b0->size >= 0x2000);
    vmcheck::note("BAR 0: memory, 64-bit, %llu bytes", static_cast<unsigned long long>(b0->size));
  }
  auto upper = dev.map_bar(1);
  VM_CHECK(!upper.ok() && upper.error().code() == errc::invalid_argument);
  if (!upper.ok()) vmcheck::note("map_bar(1): %s", upper.error().message());
  for (int i = 2; i <= 5; ++i) {
    auto absent = dev.map_bar(i);
    VM_CHECK_MSG(!absent.ok() && absent.error().code() == errc::invalid_argument, "BAR " + std::to_string(i));
  }
  VM_CHECK(dev.map_bar(6).error().code() == errc::out_of_range);
  auto bar = dev.map_bar(0);
  if (!VM_CHECK_OK(bar)) return vmcheck::finish("nvme_probe");
  const dkq::mmio_window regs = *bar;

  // ---- identity registers through BAR 0 -----------------------------------
  const std::uint64_t cap = regs.read64(reg_cap);
  const std::uint32_t vs = regs.read32(reg_vs);
  vmcheck::note("CAP 0x%016llx VS 0x%08x", static_cast<unsigned long long>(cap), vs);
  VM_CHECK(vs == 0x00010400u);                    // NVMe 1.4
  VM_CHECK((cap & 0xffffu) == 2047u);             // MQES
  VM_CHECK(((cap >> 32) & 0xfu) == 0u);           // DSTRD
  VM_CHECK(((cap >> 37) & 1u) == 1u);             // CSS: NVM command set
  VM_CHECK(!dkq::looks_removed(vs));

  // ---- DMA memory ------------------------------------------------------------
  auto sq = dev.dma_alloc(4096, vfio::dma_placement::below_4g());
  auto cq = dev.dma_alloc(4096, vfio::dma_placement::below_4g());
  auto data = dev.dma_alloc(3 * 4096 + 1);  // rounds up to 4 pages
  if (!VM_CHECK_OK(sq) || !VM_CHECK_OK(cq) || !VM_CHECK_OK(data)) return vmcheck::finish("nvme_probe");
  VM_CHECK(sq->device.value() + sq->size <= (1ull << 32));
  VM_CHECK(sq->device.value() % 4096 == 0 && sq->device.value() != 0);
  VM_CHECK(data->size == 4 * 4096);
  VM_CHECK(sq->device != cq->device);
  vmcheck::note("DMA: SQ iova 0x%llx, CQ iova 0x%llx, data iova 0x%llx (%zu bytes)",
                static_cast<unsigned long long>(sq->device.value()), static_cast<unsigned long long>(cq->device.value()),
                static_cast<unsigned long long>(data->device.value()), data->size);
  {
    // Caller-owned memory: mapped, freed, and a second free is refused.
    void* mine = std::aligned_alloc(4096, 8192);
    auto m = dev.dma_map(mine, 8192);
    if (VM_CHECK_OK(m)) {
      VM_CHECK(m->cpu == mine);
      VM_CHECK_OK(dev.dma_unmap(*m));
      VM_CHECK(dev.dma_unmap(*m).code() == errc::invalid_argument);
    }
    VM_CHECK(dev.dma_map(static_cast<char*>(mine) + 1, 4096).error().code() == errc::invalid_argument);
    std::free(mine);
  }

  // ---- DMA at a caller-chosen IOVA, and reservations -------------------------
  // A buffer the device reaches at an address we fixed (used below: the
  // Identify after the function reset lands in it), taken from the same
  // allocator dma_alloc uses, so nothing else is ever placed there.
  constexpr std::uint64_t fixed_iova = 0x7f000000;  // below 4 GiB, far above what first fit hands out here
  void* fixed_mem = std::aligned_alloc(4096, 8192);
  auto fixed = dev.dma_map_at(fixed_iova, fixed_mem, 8192);
  if (VM_CHECK_OK(fixed)) {
    VM_CHECK(fixed->device.value() == fixed_iova && fixed->cpu == fixed_mem && fixed->size == 8192);
    vmcheck::note("dma_map_at: 8 KiB of caller memory at iova 0x%llx", static_cast<unsigned long long>(fixed_iova));
    auto clash = dev.dma_alloc_at(fixed_iova + 4096, 4096);
    VM_CHECK(!clash.ok() && clash.error().code() == errc::busy && clash.error().detail() == fixed_iova + 4096);
    if (!clash.ok()) vmcheck::note("overlapping dma_alloc_at refused: %s", dev.last_explain().c_str());
    VM_CHECK(dev.reserve_iova(fixed_iova, 4096).code() == errc::busy);
  }
  // The x86 MSI window is not in the ranges the kernel reports as usable.
  auto msi_window = dev.dma_alloc_at(0xfee00000, 4096);
  VM_CHECK(!msi_window.ok() && msi_window.error().code() == errc::out_of_range);
  VM_CHECK(dev.dma_alloc_at(fixed_iova + 0x800, 4096).error().code() == errc::invalid_argument);
  {
    // Reserve exactly where the allocator would place the next buffer: it must go elsewhere,
    // and a fixed mapping there is refused as well.
    const std::uint64_t next = dev.iovas().free_ranges().front().start;
    if (VM_CHECK_OK(dev.reserve_iova(next, 0x10000))) {
      auto around = dev.dma_alloc(4096);
      if (VM_CHECK_OK(around)) {
        VM_CHECK_MSG(around->device.value() >= next + 0x10000, "dma_alloc handed out a reserved IOVA");
        VM_CHECK_OK(dev.dma_free(*around));
      }
      VM_CHECK(dev.dma_alloc_at(next, 4096).error().code() == errc::busy);
      VM_CHECK_OK(dev.unreserve_iova(next, 0x10000));
      auto back = dev.dma_alloc(4096);  // the space is the allocator's again
      if (VM_CHECK_OK(back)) {
        VM_CHECK(back->device.value() == next);
        VM_CHECK_OK(dev.dma_free(*back));
      }
    }
  }

  // ---- interrupts: MSI-X vector 0 for the admin completion queue ------------
  VM_CHECK_OK(dev.irq().enable(1));
  VM_CHECK(dev.irq().kind() == vfio::irq_kind::msix);
  VM_CHECK(dev.irq().count() == 1);
  VM_CHECK(dev.irq().eventfd(0) >= 0 && dev.irq().epoll_fd() >= 0);
  VM_CHECK(dev.irq().available(vfio::irq_kind::msix) >= 1);
  {
    std::uint32_t fired[1];
    auto quiet = dev.irq().wait(fired, 0);  // nothing pending before the device did anything
    VM_CHECK(quiet.ok() && *quiet == 0);
  }

  // ---- admin queue bring-up (NVMe 1.4 section 7.6.1) ------------------------
  regs.write32(reg_cc, 0);
  VM_CHECK_MSG(wait_ready(regs, false), "controller did not disable");
  regs.write32(reg_aqa, ((queue_entries - 1) << 16) | (queue_entries - 1));
  regs.write64(reg_asq, sq->device.value());
  regs.write64(reg_acq, cq->device.value());
  // EN, CSS=NVM, MPS=4 KiB, IOSQES=64 B (2^6), IOCQES=16 B (2^4).
  regs.write32(reg_cc, 1u | (6u << 16) | (4u << 20));
  if (!VM_CHECK_MSG(wait_ready(regs, true), "controller did not become ready")) return vmcheck::finish("nvme_probe");

  admin_queue q{regs, *sq, *cq};

  // Identify Controller (CNS 1) into data[0..4K).
  std::memset(data->cpu, 0xa5, data->size);
  std::uint32_t sqe[16] = {};
  sqe[0] = 0x06u | (0x11u << 16);  // opcode Identify, CID 0x11
  sqe[6] = static_cast<std::uint32_t>(data->device.value());
  sqe[7] = static_cast<std::uint32_t>(data->device.value() >> 32);
  sqe[10] = 1;  // CNS 1: controller
  q.submit(sqe);
  if (complete_one(q, dev.irq(), 0x11, false)) {
    const auto* idc = data->cpu_at<const std::uint8_t>();
    const std::uint16_t vid = static_cast<std::uint16_t>(idc[0] | (idc[1] << 8));
    const std::uint16_t ssvid = static_cast<std::uint16_t>(idc[2] | (idc[3] << 8));
    VM_CHECK_MSG(vid == dev.info().vendor, "Identify VID differs from the PCI vendor id");
    VM_CHECK(ssvid == 0x1af4);  // QEMU's subsystem vendor
    VM_CHECK_MSG(ascii_field(idc + 4, 20) == serial, "serial number is '" + ascii_field(idc + 4, 20) + "'");
    VM_CHECK(ascii_field(idc + 24, 40) == "QEMU NVMe Ctrl");
    vmcheck::note("Identify Controller: VID %04x SSVID %04x SN '%s' MN '%s'", vid, ssvid,
                  ascii_field(idc + 4, 20).c_str(), ascii_field(idc + 24, 40).c_str());
    // Only the 4 KiB Identify page was written; the rest is still our pattern.
    bool tail_untouched = true;
    for (std::size_t i = 4096; i < data->size; ++i) tail_untouched &= data->cpu_at<const std::uint8_t>()[i] == 0xa5;
    VM_CHECK_MSG(tail_untouched, "device wrote past the 4 KiB Identify buffer");
  }

  // wake() ends a wait with nothing fired (how another thread stops a waiter),
  // through both wait forms; the wake is consumed, so the next wait blocks again.
  dev.irq().wake();
  VM_CHECK(vfio::eventfd_waiter(dev.irq(), 5000).wait(0) == 0);
  dev.irq().wake();
  {
    std::uint32_t fired[1];
    auto woke = dev.irq().wait(fired, 5000);
    VM_CHECK(woke.ok() && *woke == 0);
    auto quiet = dev.irq().wait_vector(0, 0);
    VM_CHECK(quiet.ok() && *quiet == 0);
  }
  VM_CHECK(dev.irq().wait_vector(1, 0).error().code() == errc::out_of_range);

  // Identify Namespace 1 (CNS 0) into data[4K..8K): the second page is a
  // separate IOVA page, so this also checks offsets inside a region.
  std::memset(sqe, 0, sizeof sqe);
  sqe[0] = 0x06u | (0x12u << 16);
  sqe[1] = 1;  // NSID
  const dkq::dev_addr page2 = data->device_at(4096);
  sqe[6] = static_cast<std::uint32_t>(page2.value());
  sqe[7] = static_cast<std::uint32_t>(page2.value() >> 32);
  sqe[10] = 0;
  q.submit(sqe);
  if (complete_one(q, dev.irq(), 0x12, true)) {
    const auto* idn = data->cpu_at<const std::uint8_t>(4096);
    std::uint64_t nsze = 0;
    std::memcpy(&nsze, idn, 8);
    const unsigned flbas = idn[26] & 0xfu;
    std::uint32_t lbaf = 0;
    std::memcpy(&lbaf, idn + 128 + 4 * flbas, 4);
    const unsigned lbads = (lbaf >> 16) & 0xffu;
    vmcheck::note("Identify Namespace 1: NSZE %llu blocks of %u bytes", static_cast<unsigned long long>(nsze), 1u << lbads);
    VM_CHECK_MSG(nsze == ns_blocks, "NSZE " + std::to_string(nsze) + " != " + std::to_string(ns_blocks));
    VM_CHECK(lbads == 9);
  }

  // What the device must have seen from us, nothing more: one MSI-X message per
  // completion (QEMU raises the vector when it posts a CQE and the queue is not
  // empty; the head doorbell then empties it).
  vmcheck::note("doorbell writes: %u SQ tail, %u CQ head", q.sq_doorbells, q.cq_doorbells);

  // ---- function reset: the recovery path ---------------------------------
  // QEMU's NVMe has FLR. After VFIO_DEVICE_RESET the controller is disabled
  // with its registers at reset values, the BAR mapping still works, and a
  // fresh bring-up completes a command with an interrupt on the same eventfd
  // (the kernel restores the MSI-X setup it saved around the reset).
  VM_CHECK(dev.can_reset());
  regs.write32(reg_cc, 1u | (6u << 16) | (4u << 20));  // still enabled; reset must clear it
  if (VM_CHECK_OK(dev.reset())) {
    VM_CHECK(regs.read32(reg_cc) == 0);
    VM_CHECK((regs.read32(reg_csts) & 1u) == 0);
    // (AQA/ASQ/ACQ keep their values in QEMU 7.2's model although NVMe says
    // they reset to 0, so they are simply written again below.)
    auto cmd_after = dev.config_read16(0x04);
    if (VM_CHECK_OK(cmd_after)) VM_CHECK_MSG((*cmd_after & 0x6u) == 0x6u, "bus master/memory lost across reset");
    regs.write32(reg_aqa, ((queue_entries - 1) << 16) | (queue_entries - 1));
    regs.write64(reg_asq, sq->device.value());
    regs.write64(reg_acq, cq->device.value());
    std::memset(cq->cpu, 0, cq->size);
    regs.write32(reg_cc, 1u | (6u << 16) | (4u << 20));
    if (VM_CHECK_MSG(wait_ready(regs, true), "controller did not come back after reset")) {
      admin_queue q2{regs, *sq, *cq};
      std::memset(sqe, 0, sizeof sqe);
      // Into the buffer at the fixed IOVA: the device's DMA must go through
      // the mapping dma_map_at made (the vIOMMU translates 0x7f000000).
      sqe[0] = 0x06u | (0x13u << 16);
      sqe[6] = static_cast<std::uint32_t>(fixed_iova);
      sqe[7] = static_cast<std::uint32_t>(fixed_iova >> 32);
      sqe[10] = 1;
      std::memset(fixed_mem, 0, 8192);
      q2.submit(sqe);
      if (fixed.ok() && complete_one(q2, dev.irq(), 0x13, false)) {
        const auto* idc = static_cast<const std::uint8_t*>(fixed_mem);
        VM_CHECK(static_cast<std::uint16_t>(idc[0] | (idc[1] << 8)) == 0x1b36);
        VM_CHECK(ascii_field(idc + 4, 20) == serial);
        vmcheck::note("after reset: Identify Controller completed with an interrupt again, "
                      "into the buffer at fixed iova 0x%llx", static_cast<unsigned long long>(fixed_iova));
      }
    }
  }
  // One MSI-X message per completion: two before the reset, one after.
  vmcheck::expect_trace("pci_nvme_irq_msix", "vector=0", 3);

  // Shut down cleanly so the next program finds an idle controller.
  regs.write32(reg_cc, 0);
  VM_CHECK(wait_ready(regs, false));
  VM_CHECK_OK(dev.irq().disable());
  VM_CHECK_OK(dev.dma_free(*sq));
  VM_CHECK_OK(dev.dma_free(*cq));
  VM_CHECK_OK(dev.dma_free(*data));
  VM_CHECK(dev.dma_free(*data).code() == errc::invalid_argument);
  if (fixed.ok()) VM_CHECK_OK(dev.dma_unmap(*fixed));
  std::free(fixed_mem);
  return vmcheck::finish("nvme_probe");
}
