// Guest program: the VFIO backend against QEMU's MegaRAID SAS 2108 (megasas-gen2, 1000:0079).
//
//   megasas_probe <bdf> <disks> [msix|msi|intx]
//
// This controller is the one that catches "assumed BAR 0": BAR 0 is an I/O
// port BAR, the registers are in 64-bit memory BAR 1 (so BAR 2 is its upper
// half), BAR 3 is a 64-bit stub "queue" BAR (upper half BAR 4), BAR 5 absent.
// The program reads the firmware state through BAR 1 (outbound message 0 and
// scratch pad 0 must show READY), then does the MFI handshake the real driver
// will do: INIT with a reply queue, then DCMD CTRL_GET_INFO, each completion
// arriving as MSI-X vector 0 through its eventfd, with the controller's
// identity checked byte for byte. With `msi` or `intx` the controller was
// started with msix=off (and msi=off): the backend must fall back to that kind,
// and for level-triggered INTx the program clears the cause (outbound doorbell
// clear) and re-arms the line, or the second completion would never arrive.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dkq/platform/vfio/vfio.hpp"
#include "guest/vmcheck.hpp"

namespace vfio = dkq::vfio;
using dkq::errc;

namespace {

// MFI register offsets (Linux megaraid_sas.h / QEMU hw/scsi/mfi.h).
constexpr std::size_t mfi_omsg0 = 0x18, mfi_omsk = 0x34, mfi_iqp = 0x40, mfi_odcr0 = 0xa0, mfi_osp0 = 0xb0,
                      mfi_osp1 = 0xb4;
constexpr std::uint32_t fwstate_mask = 0xf0000000u, fwstate_ready = 0xb0000000u,
                        fwstate_operational = 0xc0000000u, fwstate_msix_supported = 0x04000000u;
constexpr std::uint8_t mfi_cmd_init = 0x00, mfi_cmd_dcmd = 0x05;
constexpr std::uint32_t dcmd_ctrl_get_info = 0x01010000u;
constexpr std::uint16_t frame_sgl64 = 0x02, frame_dir_read = 0x10;
constexpr std::uint32_t ctrl_info_size = 2048;  // struct mfi_ctrl_info

unsigned osp0_reads = 0, omsg0_reads = 0;

std::uint32_t read_osp0(const dkq::mmio_window& r) {
  ++osp0_reads;
  return r.read32(mfi_osp0);
}

template <class T>
void put(dkq::dma_region r, std::size_t off, T v) {
  std::memcpy(r.cpu_at(off), &v, sizeof v);
}
template <class T>
T get(dkq::dma_region r, std::size_t off) {
  T v;
  std::memcpy(&v, r.cpu_at(off), sizeof v);
  return v;
}

// Posts a frame (32-byte aligned, below 4 GiB here) through the inbound queue
// port the way gen2 firmware expects: address | extra-frame count << 1 | 1.
void post(const dkq::mmio_window& r, dkq::dev_addr frame) {
  r.write32(mfi_iqp, static_cast<std::uint32_t>(frame.value()) | 1u);
}

// Waits for vector 0 and checks the reply queue entry `slot` holds `context`.
bool await_reply(const dkq::mmio_window& regs, vfio::interrupts& irq, dkq::dma_region rq, dkq::dma_region idx,
                 std::uint32_t slot, std::uint32_t context) {
  if (irq.kind() == vfio::irq_kind::intx) {
    // Level-triggered, through the dispatcher's waiter: VFIO masked the line
    // when it fired; the waiter unmasks it at the start of the next wait, after
    // we have cleared the cause in the device (outbound doorbell clear) here.
    // A waiter that did not re-arm would never see the second completion.
    const std::uint32_t count = vfio::eventfd_waiter(irq, 5000).wait(0);
    if (!VM_CHECK_MSG(count >= 1, "INTx did not fire within 5 s")) return false;
    regs.write32(mfi_odcr0, 1);
  } else {
    std::uint32_t fired[2];
    auto n = irq.wait(fired, 5000);
    if (!VM_CHECK_OK(n)) return false;
    if (!VM_CHECK_MSG(*n == 1 && fired[0] == 0, "expected vector 0 within 5 s")) return false;
  }
  const auto producer = get<std::uint32_t>(idx, 0);
  dkq::dma_rmb();
  VM_CHECK_MSG(producer == slot + 1, "producer index " + std::to_string(producer));
  const auto ctx = get<std::uint32_t>(rq, slot * 4u);
  VM_CHECK_MSG(ctx == context, "reply queue carries context " + std::to_string(ctx));
  put<std::uint32_t>(idx, 4, producer);  // consumer index: we took everything
  vmcheck::note("interrupt: %s vector 0, reply[%u] = context 0x%x", vfio::irq_kind_name(irq.kind()), slot, ctx);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::printf("usage: megasas_probe <bdf> <disks> [msix|msi|intx]\n");
    return 2;
  }
  const std::string kind_arg = argc == 4 ? argv[3] : "msix";
  const vfio::irq_kind want_kind = kind_arg == "intx" ? vfio::irq_kind::intx
                                   : kind_arg == "msi" ? vfio::irq_kind::msi
                                                       : vfio::irq_kind::msix;
  const bool msix = want_kind == vfio::irq_kind::msix;
  const unsigned disks = static_cast<unsigned>(std::strtoul(argv[2], nullptr, 0));
  std::string why;
  auto opened = vfio::device::open(argv[1], {}, &why);
  if (!VM_CHECK_OK(opened)) {
    std::printf("%s", why.c_str());
    return vmcheck::finish("megasas_probe");
  }
  vfio::device& dev = *opened;
  VM_CHECK(dev.info().vendor == 0x1000 && dev.info().device == 0x0079);
  VM_CHECK((dev.info().class_code >> 8) == 0x0104u);  // RAID controller
  vmcheck::note("opened %s (%s), IOMMU group %d", vfio::to_string(dev.address()).c_str(),
                vfio::pci_class_name(dev.info().class_code), dev.info().iommu_group);

  // ---- BARs: the driver names BAR 1; BAR 0 must be refused as I/O -----------
  auto b0 = dev.bar(0);
  if (VM_CHECK_OK(b0)) VM_CHECK(b0->kind == vfio::bar_kind::io && b0->size == 256);
  auto io = dev.map_bar(0);
  VM_CHECK(!io.ok());
  if (!io.ok()) {
    VM_CHECK(io.error().code() == errc::not_supported);
    VM_CHECK_MSG(dev.last_explain().find("I/O port BAR") != std::string::npos, dev.last_explain());
    vmcheck::note("map_bar(0): %s", io.error().message());
  }
  const vfio::bar_kind want[6] = {vfio::bar_kind::io,     vfio::bar_kind::memory,     vfio::bar_kind::upper_half,
                                  vfio::bar_kind::memory, vfio::bar_kind::upper_half, vfio::bar_kind::absent};
  for (int i = 0; i < 6; ++i) {
    auto b = dev.bar(i);
    if (VM_CHECK_OK(b)) VM_CHECK_MSG(b->kind == want[i], "BAR " + std::to_string(i) + " kind");
  }
  auto b1 = dev.bar(1);
  if (VM_CHECK_OK(b1)) VM_CHECK(b1->is_64bit && b1->size == 0x4000);
  VM_CHECK(dev.map_bar(2).error().code() == errc::invalid_argument);
  VM_CHECK(dev.map_bar(5).error().code() == errc::invalid_argument);

  // No FLR on this model and it sits on the root bus (no bus reset): the
  // backend must say so rather than pretend.
  vmcheck::note("function reset: %s", dev.can_reset() ? "available" : "none");
  if (!dev.can_reset()) VM_CHECK(dev.reset().code() == errc::not_supported);

  auto bar = dev.map_bar(1);
  if (!VM_CHECK_OK(bar)) return vmcheck::finish("megasas_probe");
  const dkq::mmio_window regs = *bar;
  auto again = dev.map_bar(1);  // mapped once, same window
  if (VM_CHECK_OK(again)) VM_CHECK(again->base() == regs.base());

  // ---- firmware state through BAR 1 ------------------------------------------
  const std::uint32_t osp0 = read_osp0(regs);
  ++omsg0_reads;
  const std::uint32_t omsg0 = regs.read32(mfi_omsg0);
  const std::uint32_t osp1 = regs.read32(mfi_osp1);
  vmcheck::note("OSP0 0x%08x OMSG0 0x%08x OSP1 %u: state %s, %u max commands, %u SGEs, MSI-X %s", osp0, omsg0, osp1,
                (osp0 & fwstate_mask) == fwstate_ready ? "READY" : "not ready", osp0 & 0xffffu, (osp0 >> 16) & 0xffu,
                (osp0 & fwstate_msix_supported) ? "supported" : "no");
  VM_CHECK((osp0 & fwstate_mask) == fwstate_ready);
  VM_CHECK(omsg0 == osp0);
  VM_CHECK(((osp0 & fwstate_msix_supported) != 0) == msix);
  VM_CHECK((osp0 & 0xffffu) == 1008u);  // megasas-gen2 max_cmds default
  VM_CHECK(((osp0 >> 16) & 0xffu) == 80u);  // max_sge default
  VM_CHECK(osp1 == 15u);

  // ---- DMA and MSI-X ------------------------------------------------------------
  VM_CHECK_OK(dev.enable_bus_master());
  VM_CHECK_OK(dev.irq().enable(1));  // asks for MSI-X; falls back to what the device has
  VM_CHECK_MSG(dev.irq().kind() == want_kind, std::string("got ") + vfio::irq_kind_name(dev.irq().kind()));
  VM_CHECK(dev.irq().available(vfio::irq_kind::msix) == (msix ? 15u : 0u));
  VM_CHECK(dev.irq().available(vfio::irq_kind::intx) == 1u);
  vmcheck::note("interrupts: %s, %u vector(s)", vfio::irq_kind_name(dev.irq().kind()), dev.irq().count());
  // Frames: QEMU maps 2 KiB behind every posted frame, so each frame starts a page.
  // Frames through the dma layer's constraint vocabulary (a 32-bit frame
  // address is what a single IQP write can post), the rest as a placement.
  dkq::dma_constraints frame_limits;
  frame_limits.addressable_bits = 32;
  frame_limits.alignment = 32;  // MFI frames are 32-byte aligned (IQP low bits carry the count)
  auto frames = dev.dma_alloc(2 * 4096, frame_limits);
  auto qinfo = dev.dma_alloc(4096, vfio::dma_placement::below_4g());
  auto rq = dev.dma_alloc(2 * 4096, vfio::dma_placement::below_4g());  // (1008 + 1) * 4 bytes
  auto idx = dev.dma_alloc(4096, vfio::dma_placement::below_4g());     // producer @0, consumer @4
  auto info = dev.dma_alloc(4096, vfio::dma_placement::below_4g());
  if (!VM_CHECK_OK(frames) || !VM_CHECK_OK(qinfo) || !VM_CHECK_OK(rq) || !VM_CHECK_OK(idx) || !VM_CHECK_OK(info))
    return vmcheck::finish("megasas_probe");
  for (auto* r : {&*frames, &*qinfo, &*rq, &*idx, &*info})
    VM_CHECK(r->device.value() + r->size <= (1ull << 32) && r->device.value() % 4096 == 0);

  // Interrupts on (any mask but all-ones; all-ones would also soft-reset).
  regs.write32(mfi_omsk, ~(0x1u | 0x4u));
  vmcheck::expect_trace("megasas_mmio_writel", "reg=MFI_OMSK", 1);

  // MFI INIT: reply queue, producer and consumer indices (struct mfi_init_qinfo).
  const dkq::dma_region f0 = frames->slice(0, 4096).value();
  const dkq::dma_region f1 = frames->slice(4096, 4096).value();
  put<std::uint32_t>(*qinfo, 0, 0);       // flags: 32-bit contexts
  put<std::uint64_t>(*qinfo, 8, rq->device.value());
  put<std::uint64_t>(*qinfo, 16, idx->device.value());      // producer index
  put<std::uint64_t>(*qinfo, 24, idx->device.value() + 4);  // consumer index
  // QEMU refuses rq_entries > fw_cmds (megasas_initq_mismatch); Linux passes
  // max_fw_cmds + 1 against real firmware. We pass fw_cmds, which both accept.
  put<std::uint32_t>(*qinfo, 4, 1008);
  std::memset(f0.cpu, 0, f0.size);
  put<std::uint8_t>(f0, 0, mfi_cmd_init);
  put<std::uint8_t>(f0, 2, 0xff);  // cmd_status: the device overwrites it
  put<std::uint64_t>(f0, 8, 0x1001);  // context
  put<std::uint32_t>(f0, 20, 32);     // data_len: sizeof(mfi_init_qinfo)
  put<std::uint64_t>(f0, 24, qinfo->device.value());  // qinfo_new_addr lo/hi
  post(regs, f0.device);
  vmcheck::expect_trace("megasas_mmio_writel", "reg=MFI_IQP", 1);
  if (await_reply(regs, dev.irq(), *rq, *idx, 0, 0x1001)) {
    VM_CHECK_MSG(get<std::uint8_t>(f0, 2) == 0, "INIT status " + std::to_string(get<std::uint8_t>(f0, 2)));
    VM_CHECK((read_osp0(regs) & fwstate_mask) == fwstate_operational);
  }

  // DCMD CTRL_GET_INFO into `info` with one 64-bit SGE.
  std::memset(info->cpu, 0xa5, info->size);
  std::memset(f1.cpu, 0, f1.size);
  put<std::uint8_t>(f1, 0, mfi_cmd_dcmd);
  put<std::uint8_t>(f1, 2, 0xff);
  put<std::uint8_t>(f1, 7, 1);  // sge_count
  put<std::uint64_t>(f1, 8, 0x1002);
  put<std::uint16_t>(f1, 16, static_cast<std::uint16_t>(frame_sgl64 | frame_dir_read));
  put<std::uint32_t>(f1, 20, ctrl_info_size);
  put<std::uint32_t>(f1, 24, dcmd_ctrl_get_info);
  put<std::uint64_t>(f1, 40, info->device.value());  // sgl64 addr
  put<std::uint32_t>(f1, 48, ctrl_info_size);        // sgl64 len
  post(regs, f1.device);
  vmcheck::expect_trace("megasas_mmio_writel", "reg=MFI_IQP", 1);
  if (await_reply(regs, dev.irq(), *rq, *idx, 1, 0x1002)) {
    VM_CHECK_MSG(get<std::uint8_t>(f1, 2) == 0, "GET_INFO status " + std::to_string(get<std::uint8_t>(f1, 2)));
    VM_CHECK(get<std::uint16_t>(*info, 0) == 0x1000);  // pci.vendor
    VM_CHECK(get<std::uint16_t>(*info, 2) == 0x0079);  // pci.device
    VM_CHECK(get<std::uint16_t>(*info, 6) == 0x9261);  // pci.subdevice
    bool tail_untouched = true;
    for (std::size_t i = ctrl_info_size; i < info->size; ++i) tail_untouched &= info->cpu_at<const std::uint8_t>()[i] == 0xa5;
    VM_CHECK_MSG(tail_untouched, "controller wrote past the 2 KiB controller info");
    vmcheck::note("CTRL_GET_INFO: pci %04x:%04x subsystem %04x:%04x, %u disk(s) expected",
                  get<std::uint16_t>(*info, 0), get<std::uint16_t>(*info, 2), get<std::uint16_t>(*info, 4),
                  get<std::uint16_t>(*info, 6), disks);
  }

  // Two completions, each signalled the way the chosen kind signals.
  if (want_kind == vfio::irq_kind::msix) {
    vmcheck::expect_trace("megasas_msix_raise", "vector=0", 2);
  } else if (want_kind == vfio::irq_kind::msi) {
    vmcheck::expect_trace("megasas_msi_raise", "vector=0", 2);
  } else {
    vmcheck::expect_trace("megasas_irq_raise", "", 2);
    vmcheck::expect_trace("megasas_mmio_writel", "reg=MFI_ODCR0", 2);
  }
  vmcheck::expect_trace("megasas_mmio_readl", "reg=MFI_OSP0", osp0_reads);
  vmcheck::expect_trace("megasas_mmio_readl", "reg=MFI_OMSG0", omsg0_reads);
  vmcheck::expect_trace("megasas_init_firmware", "", 1);
  return vmcheck::finish("megasas_probe");
}
