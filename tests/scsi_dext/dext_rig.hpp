// tests/scsi_dext/dext_rig.hpp - the MegaRAID dext's portable half wired the
// way DkqMegaRAID.cpp wires it (registers through an indexed window over a
// memory index, DMA by address bits, tasks in and responses out through the
// task engine), against the software MFI controller model
// (tests/support/fake_mfi_controller.hpp, a test double). Shared by the
// translation tests and the threaded test.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "dkq/platform/driverkit/bar_table.hpp"
#include "dkq/platform/driverkit/indexed_window.hpp"
#include "dkq/platform/driverkit/interrupts.hpp"
#include "examples/scsi/driverkit/dext_platform.hpp"
#include "examples/scsi/driverkit/task_translation.hpp"
#include "support/fake_mfi_controller.hpp"

namespace dkq::testing::mr_dext {

namespace mr = dkq::examples::megaraid;
namespace dx = dkq::examples::megaraid::dext;
namespace dk = dkq::driverkit;
namespace mfi = dkq::scsi::mfi;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;

// ---- fakes with the shape of dkq::driverkit::apple::{pci_device, dma_allocator} ----

// gen2 layout: BAR 0 I/O, BAR 1 64-bit registers, BAR 3 64-bit. The memory
// indices are positions in the platform's memory array, deliberately not the
// BAR numbers: registers are memory index 0 here, so a driver writing to
// "index 1" (the BAR number) would hit the wrong range.
constexpr std::uint8_t reg_index = 0;

struct fake_pci {
  struct accessor {
    fake_pci* p = nullptr;
    std::uint32_t read32(std::uint8_t index, std::uint64_t off) const {
      if (index != reg_index) {
        ++p->wrong_index;
        return 0xffffffffu;
      }
      ++p->reads;
      return p->ctl->mmio_read(static_cast<std::size_t>(off));
    }
    void write32(std::uint8_t index, std::uint64_t off, std::uint32_t v) const {
      if (index != reg_index) {
        ++p->wrong_index;
        return;
      }
      ++p->writes;
      if (off == mfi::reg::inbound_queue_port) p->posted.push_back(v);
      p->ctl->mmio_write(static_cast<std::size_t>(off), v);
    }
  };

  explicit fake_pci(fake_mfi_controller& c) : ctl(&c) {
    acc.p = this;
    dkq::status s = bars_.resolve([](int b) -> dkq::result<dk::bar_report> {
      if (b == 0) return dk::bar_report{true, 2, 256, dk::bar_kind::io};
      if (b == 1) return dk::bar_report{true, reg_index, 0x4000, dk::bar_kind::mem64};
      if (b == 3) return dk::bar_report{true, 1, 0x40000, dk::bar_kind::mem64_prefetch};
      return dk::bar_report{};
    });
    EXPECT_TRUE(s.ok());
  }

  std::uint16_t config_read16(std::uint32_t off) const {
    if (off == 0) return 0x1000;
    if (off == 2) return device_id;
    return 0;
  }
  const dk::bar_table& bars() const { return bars_; }
  dkq::result<dk::indexed_window<accessor>> window(int bar) const {
    return dk::indexed_window<accessor>::make(&acc, bars_, bar);
  }
  dkq::status enable_bus_master() {
    bus_master = true;
    return dkq::ok_status;
  }

  fake_mfi_controller* ctl;
  accessor acc;
  dk::bar_table bars_;
  std::uint16_t device_id = 0x0079;
  bool bus_master = false;
  mutable std::uint64_t reads = 0, writes = 0, wrong_index = 0;
  std::vector<std::uint32_t> posted;  // inbound queue port writes
};

struct fake_dma {
  fake_dma_space* space;
  std::multiset<unsigned> bits_asked;
  dkq::result<dkq::dma_region> alloc(std::size_t n, unsigned bits, std::size_t align) {
    bits_asked.insert(bits);
    EXPECT_EQ(align, 4096u);
    return space->alloc(n, bits >= 64 ? mr::no_address_limit : std::uint64_t{1} << bits);
  }
  dkq::status free(const dkq::dma_region& r) { return space->free(r); }
};

struct fake_clock {
  std::uint64_t t = 1'000'000'000;
  std::uint64_t now_ns() { return t += 1000; }
  void delay_us(std::uint32_t us) { t += std::uint64_t{us} * 1000; }
};

using platform = dx::dext_platform<fake_pci, fake_dma, fake_clock>;
static_assert(mr::mfi_platform<platform>);

struct rig {
  fake_dma_space dma;
  fake_mfi_controller ctl;
  fake_pci pci;
  fake_dma dad{&dma, {}};
  fake_clock clk;
  platform plat;
  mr::controller<platform> core;
  dx::task_engine<platform> eng;
  std::vector<dx::response_view> responses;
  std::vector<void*> tokens;

  explicit rig(std::uint32_t disks = 2, std::uint32_t max_cmds = 64)
      : ctl(dma, max_cmds), pci(ctl), plat(pci, dad, clk) {
    for (std::uint32_t i = 0; i < disks; ++i) ctl.add_disk(static_cast<std::uint8_t>(i), 2048 + i * 1024);
  }
  static void sink(void* ctx, void* token, const dx::response_view& r) noexcept {
    auto* self = static_cast<rig*>(ctx);
    self->responses.push_back(r);
    self->tokens.push_back(token);
  }
  void start(bool force32 = false, mr::options o = {}) {
    o.force_32bit = force32;
    ASSERT_TRUE(core.start(plat, o).ok());
    ASSERT_TRUE(eng.attach(core, plat, &rig::sink, this).ok());
  }
  std::uint32_t map() {
    auto id = eng.map_task();
    EXPECT_TRUE(id.ok());
    return id.ok() ? *id : 0;
  }
  dkq::dma_region buffer(std::size_t n, std::uint64_t limit = mr::no_address_limit) {
    auto r = dma.alloc(n, limit);
    EXPECT_TRUE(r.ok());
    return *r;
  }
  // The frame behind the last inbound-queue-port write.
  mfi::frame_header last_frame(std::vector<std::pair<std::uint64_t, std::uint32_t>>& sgl) {
    mfi::frame_header h{};
    EXPECT_FALSE(pci.posted.empty());
    const std::uint64_t fa = pci.posted.back() & ~0x1fu;
    const std::uint8_t* f = dma.translate(fa, 512);
    EXPECT_NE(f, nullptr);
    std::memcpy(&h, f, sizeof h);
    const bool s64 = (h.flags & dkq::scsi::mfi_frame_sgl64) != 0;
    for (unsigned i = 0; i < h.sge_count; ++i) {
      const std::uint8_t* e = f + mfi::pass_sgl_offset + i * (s64 ? 12u : 8u);
      std::uint64_t a = 0;
      std::uint32_t l = 0;
      if (s64) {
        std::memcpy(&a, e, 8);
        std::memcpy(&l, e + 8, 4);
      } else {
        std::uint32_t a32 = 0;
        std::memcpy(&a32, e, 4);
        std::memcpy(&l, e + 4, 4);
        a = a32;
      }
      sgl.push_back({a, l});
    }
    return h;
  }
};

inline dx::task_view rw_task(std::uint32_t id, std::uint8_t target, bool write, std::uint32_t lba, std::uint16_t blocks,
                      std::uint64_t iovm) {
  dx::task_view t;
  t.version = 1;
  t.target_id = target;
  dkq::scsi::cdb_bytes c{};
  auto len = dkq::scsi::read_write(c, write, lba, blocks, false);
  EXPECT_TRUE(len.ok());
  std::memcpy(t.cdb, c.data(), 16);
  t.cdb_length = *len;
  t.dir = write ? dx::transfer_dir::to_target : dx::transfer_dir::from_target;
  t.requested_count = std::uint64_t{blocks} * 512;
  t.buffer_iovm_addr = iovm;
  t.timeout_ms = 30000;
  t.controller_task_id = id;
  return t;
}

inline dx::task_view cdb_task(std::uint32_t id, std::uint8_t target, std::initializer_list<std::uint8_t> cdb) {
  dx::task_view t;
  t.version = 1;
  t.target_id = target;
  std::size_t i = 0;
  for (std::uint8_t b : cdb) t.cdb[i++] = b;
  t.cdb_length = static_cast<std::uint8_t>(cdb.size());
  t.controller_task_id = id;
  return t;
}

inline dx::task_view sync16_task(std::uint32_t id, std::uint8_t target, std::uint64_t lba, std::uint32_t blocks) {
  dx::task_view t = cdb_task(id, target, {});
  t.cdb[0] = dkq::scsi::op::synchronize_cache_16;
  dkq::scsi::detail::put_be64(&t.cdb[2], lba);
  dkq::scsi::detail::put_be32(&t.cdb[10], blocks);
  t.cdb_length = 16;
  return t;
}

inline void fill(std::uint8_t* p, std::size_t n, std::uint8_t seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(i * 13 + seed);
}

}  // namespace dkq::testing::mr_dext
