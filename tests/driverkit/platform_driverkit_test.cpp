// Unit tests of the portable DriverKit backend pieces, with fakes standing in
// for IOPCIDevice (GetBARInfo, MemoryRead32/Write32, ConfigurationRead8/16)
// and PrepareForDMA answers.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "dkq/dispatch/dispatcher.hpp"
#include "dkq/platform/driverkit/driverkit.hpp"

namespace dk = dkq::driverkit;
using dkq::errc;

namespace {

// ---- BAR table -----------------------------------------------------------------
struct fake_bars {
  dk::bar_report r[6]{};
  std::vector<int> asked;
  bool fail_on = false;
  int fail_bar = -1;
  dkq::result<dk::bar_report> operator()(int b) {
    asked.push_back(b);
    if (b == fail_bar) return dkq::status{errc::io_error, "GetBARInfo failed"};
    return r[b];
  }
};

// megasas-gen2-like: BAR0 I/O, BAR1 64-bit registers, BAR3 64-bit queue
// window. The platform's memory array skips the upper halves, so BAR 3 is
// memory index 2, not 3.
fake_bars gen2_layout() {
  fake_bars f;
  f.r[0] = {true, 0, 256, dk::bar_kind::io};
  f.r[1] = {true, 1, 0x4000, dk::bar_kind::mem64};
  f.r[3] = {true, 2, 0x40000, dk::bar_kind::mem64_prefetch};
  return f;
}

TEST(BarTable, ResolvesOnceAndSkipsUpperHalves) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  EXPECT_EQ(f.asked, (std::vector<int>{0, 1, 3, 5}));  // 2 and 4 are upper halves
  EXPECT_EQ(t.kind(2), dk::bar_kind::upper_half);
  EXPECT_EQ(t.kind(5), dk::bar_kind::absent);
  auto b3 = t.memory_bar(3);
  ASSERT_TRUE(b3.ok());
  EXPECT_EQ(b3->memory_index, 2);  // not 3: the mistake docs/porting-a-kext.md warns about
  EXPECT_EQ(b3->size, 0x40000u);
  auto first = t.first_memory_bar();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 1);
}

TEST(BarTable, RefusesIoAbsentAndUpperHalfForRegisters) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  auto io = t.memory_bar(0);
  ASSERT_FALSE(io.ok());
  EXPECT_EQ(io.error().code(), errc::not_supported);
  EXPECT_NE(std::strstr(io.error().message(), "I/O BAR"), nullptr);
  EXPECT_EQ(t.memory_bar(5).error().code(), errc::not_supported);
  EXPECT_EQ(t.memory_bar(2).error().code(), errc::invalid_argument);
  EXPECT_EQ(t.memory_bar(6).error().code(), errc::out_of_range);
  EXPECT_EQ(t.memory_bar(-1).error().code(), errc::out_of_range);
}

TEST(BarTable, UnresolvedTableIsAnError) {
  dk::bar_table t;
  EXPECT_FALSE(t.resolved());
  EXPECT_EQ(t.memory_bar(0).error().code(), errc::not_initialized);
  EXPECT_EQ(t.first_memory_bar().error().code(), errc::not_initialized);
  EXPECT_EQ(t.kind(0), dk::bar_kind::unresolved);
}

TEST(BarTable, InconsistentReportsAreRefusedAndLeaveTableUnresolved) {
  {
    auto f = gen2_layout();
    f.r[3].memory_index = 1;  // same index as BAR 1
    dk::bar_table t;
    auto s = t.resolve(std::ref(f));
    EXPECT_EQ(s.code(), errc::protocol_error);
    EXPECT_FALSE(t.resolved());
  }
  {
    fake_bars f;
    f.r[5] = {true, 0, 4096, dk::bar_kind::mem64};
    dk::bar_table t;
    EXPECT_EQ(t.resolve(std::ref(f)).code(), errc::protocol_error);
  }
  {
    fake_bars f;
    f.r[0] = {true, 0, 0, dk::bar_kind::mem32};
    dk::bar_table t;
    EXPECT_EQ(t.resolve(std::ref(f)).code(), errc::protocol_error);
  }
  {
    fake_bars f;
    f.r[0] = {true, 0, 4096, dk::bar_kind::upper_half};
    dk::bar_table t;
    EXPECT_EQ(t.resolve(std::ref(f)).code(), errc::protocol_error);
  }
  {
    auto f = gen2_layout();
    f.fail_bar = 3;
    dk::bar_table t;
    EXPECT_EQ(t.resolve(std::ref(f)).code(), errc::io_error);
    EXPECT_FALSE(t.resolved());
  }
}

TEST(BarTable, NoMemoryBar) {
  fake_bars f;
  f.r[0] = {true, 0, 256, dk::bar_kind::io};
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  EXPECT_EQ(t.first_memory_bar().error().code(), errc::not_supported);
}

TEST(BarTable, CheckAccess) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  EXPECT_TRUE(t.check_access(1, 0x3ffc, 4));
  EXPECT_EQ(t.check_access(1, 0x4000, 4).code(), errc::out_of_range);
  EXPECT_EQ(t.check_access(1, 0x3ffe, 4).code(), errc::invalid_argument);
  EXPECT_EQ(t.check_access(1, 0, 3).code(), errc::invalid_argument);
  EXPECT_EQ(t.check_access(0, 0, 4).code(), errc::not_supported);
}

// ---- indexed register window -----------------------------------------------------
struct fake_pci {
  struct access {
    bool write;
    std::uint8_t index;
    std::uint64_t off;
    std::uint32_t v;
  };
  mutable std::vector<access> log;
  mutable std::map<std::pair<int, std::uint64_t>, std::uint32_t> regs;
  std::uint32_t read32(std::uint8_t index, std::uint64_t off) const {
    log.push_back({false, index, off, 0});
    auto it = regs.find({index, off});
    return it == regs.end() ? 0 : it->second;
  }
  void write32(std::uint8_t index, std::uint64_t off, std::uint32_t v) const {
    log.push_back({true, index, off, v});
    regs[{index, off}] = v;
  }
};
static_assert(dk::memory_accessor<fake_pci>);

TEST(IndexedWindow, WritesGoToTheMemoryIndexOfTheBar) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  fake_pci pci;
  auto w = dk::indexed_window<fake_pci>::make(&pci, t, 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->memory_index(), 2);
  w->write32(0x40, 0xabcd1234u);
  ASSERT_EQ(pci.log.size(), 1u);
  EXPECT_TRUE(pci.log[0].write);
  EXPECT_EQ(pci.log[0].index, 2);
  EXPECT_EQ(pci.log[0].off, 0x40u);
  EXPECT_EQ(w->read32(0x40), 0xabcd1234u);
  w->write64_lo_hi(0x100, 0x1122334455667788ull);
  EXPECT_EQ(pci.regs[std::make_pair(2, std::uint64_t{0x100})], 0x55667788u);
  EXPECT_EQ(pci.regs[std::make_pair(2, std::uint64_t{0x104})], 0x11223344u);
  EXPECT_EQ(w->read64_lo_hi(0x100), 0x1122334455667788ull);
  EXPECT_EQ(w->bad_accesses(), 0u);
}

TEST(IndexedWindow, BadAccessesAreNotSentAndAreCounted) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  fake_pci pci;
  auto w = dk::indexed_window<fake_pci>::make(&pci, t, 1);
  ASSERT_TRUE(w.ok());
  w->write32(0x4000, 1);  // one past the end
  w->write32(0x2, 1);     // misaligned
  EXPECT_EQ(w->read32(0x4000), 0xffffffffu);
  EXPECT_TRUE(pci.log.empty());
  EXPECT_EQ(w->bad_accesses(), 3u);
  EXPECT_EQ(w->write32_checked(0x4000, 1).code(), errc::out_of_range);
  EXPECT_EQ(w->read32_checked(0x2).error().code(), errc::invalid_argument);
  EXPECT_TRUE(w->write32_checked(0x3ffc, 7));
  EXPECT_EQ(*w->read32_checked(0x3ffc), 7u);
}

TEST(IndexedWindow, SetupRefusesIoBarAndNullAccessor) {
  auto f = gen2_layout();
  dk::bar_table t;
  ASSERT_TRUE(t.resolve(std::ref(f)));
  fake_pci pci;
  EXPECT_EQ(dk::indexed_window<fake_pci>::make(&pci, t, 0).error().code(), errc::not_supported);
  EXPECT_EQ(dk::indexed_window<fake_pci>::make(nullptr, t, 1).error().code(), errc::invalid_argument);
  dk::indexed_window<fake_pci> unbound;
  EXPECT_EQ(unbound.read32(0), 0xffffffffu);
  EXPECT_EQ(unbound.bad_accesses(), 1u);
}

// ---- DMA bookkeeping ----------------------------------------------------------------
TEST(DmaSegments, OneSegmentCoveringTheBufferIsARegion) {
  alignas(4096) static unsigned char buf[8192];
  dkq::dma_segment s{dkq::dev_addr{0x8000'0000}, 8192};
  auto r = dk::region_from_segments(buf, sizeof buf, {&s, 1}, 32, 4096);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cpu, buf);
  EXPECT_EQ(r->device.value(), 0x8000'0000u);
  EXPECT_EQ(r->size, 8192u);
  // A longer segment (page rounding) still gives a region of the asked size.
  dkq::dma_segment longer{dkq::dev_addr{0x1000}, 12288};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&longer, 1}, 64, 4096)->size, 8192u);
}

TEST(DmaSegments, BadAnswersAreErrors) {
  static unsigned char buf[8192];
  dkq::dma_segment two[2] = {{dkq::dev_addr{0x1000}, 4096}, {dkq::dev_addr{0x9000}, 4096}};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, two, 64, 1).error().code(), errc::constraint);
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {}, 64, 1).error().code(), errc::protocol_error);
  dkq::dma_segment shortseg{dkq::dev_addr{0x1000}, 4096};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&shortseg, 1}, 64, 1).error().code(), errc::protocol_error);
  dkq::dma_segment high{dkq::dev_addr{0xffff'f000}, 8192};  // crosses 4 GiB
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&high, 1}, 32, 1).error().code(), errc::constraint);
  dkq::dma_segment above{dkq::dev_addr{0x1'0000'0000}, 8192};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&above, 1}, 32, 1).error().code(), errc::constraint);
  EXPECT_TRUE(dk::region_from_segments(buf, 8192, {&above, 1}, 33, 1).ok());
  dkq::dma_segment odd{dkq::dev_addr{0x1100}, 8192};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&odd, 1}, 64, 4096).error().code(), errc::constraint);
  dkq::dma_segment wrap{dkq::dev_addr{~0ull - 100}, 8192};
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&wrap, 1}, 64, 1).error().code(), errc::protocol_error);
  dkq::dma_segment ok{dkq::dev_addr{0x1000}, 8192};
  EXPECT_EQ(dk::region_from_segments(nullptr, 8192, {&ok, 1}, 64, 1).error().code(), errc::invalid_argument);
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&ok, 1}, 0, 1).error().code(), errc::invalid_argument);
  EXPECT_EQ(dk::region_from_segments(buf, 8192, {&ok, 1}, 64, 3).error().code(), errc::invalid_argument);
}

struct handle {
  int id = 0;
};

TEST(DmaBook, AddRemoveExactly) {
  static unsigned char a[4096], b[4096];
  dk::dma_book<handle, 4> book;
  dkq::dma_region ra{a, dkq::dev_addr{0x10000}, 4096}, rb{b, dkq::dev_addr{0x20000}, 4096};
  ASSERT_TRUE(book.add(ra, {1}));
  ASSERT_TRUE(book.add(rb, {2}));
  EXPECT_EQ(book.live(), 2u);
  EXPECT_EQ(book.bytes_live(), 8192u);
  auto found = book.find_device(dkq::dev_addr{0x20010});
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->cpu, b);
  EXPECT_EQ(book.find_device(dkq::dev_addr{0x30000}).error().code(), errc::out_of_range);
  // Wrong size: refused, nothing released.
  EXPECT_EQ(book.remove({a, dkq::dev_addr{0x10000}, 2048}).error().code(), errc::invalid_argument);
  EXPECT_EQ(book.live(), 2u);
  auto h = book.remove(ra);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->id, 1);
  // Twice: an error, not a second release.
  EXPECT_EQ(book.remove(ra).error().code(), errc::invalid_argument);
  EXPECT_EQ(book.live(), 1u);
}

TEST(DmaBook, OverlapFullAndDrain) {
  static unsigned char mem[4 * 4096];
  dk::dma_book<handle, 2> book;
  dkq::dma_region r0{mem, dkq::dev_addr{0x10000}, 8192};
  ASSERT_TRUE(book.add(r0, {1}));
  EXPECT_EQ(book.add({mem + 4096, dkq::dev_addr{0x90000}, 4096}, {9}).code(), errc::protocol_error);  // cpu overlap
  EXPECT_EQ(book.add({mem + 8192, dkq::dev_addr{0x11000}, 4096}, {9}).code(), errc::protocol_error);  // device overlap
  EXPECT_EQ(book.add({}, {9}).code(), errc::invalid_argument);
  ASSERT_TRUE(book.add({mem + 8192, dkq::dev_addr{0x20000}, 4096}, {2}));
  EXPECT_EQ(book.add({mem + 12288, dkq::dev_addr{0x30000}, 4096}, {3}).code(), errc::no_space);
  std::vector<int> released;
  EXPECT_EQ(book.drain([&](const dkq::dma_region&, const handle& h) { released.push_back(h.id); }), 2u);
  EXPECT_EQ(released, (std::vector<int>{1, 2}));
  EXPECT_EQ(book.live(), 0u);
  EXPECT_EQ(book.bytes_live(), 0u);
}

// ---- interrupt capabilities ---------------------------------------------------------
struct fake_config {
  std::uint8_t cs[256]{};
  void put16(unsigned off, std::uint16_t v) {
    cs[off] = static_cast<std::uint8_t>(v);
    cs[off + 1] = static_cast<std::uint8_t>(v >> 8);
  }
  void cap(unsigned off, std::uint8_t id, std::uint8_t next, std::uint16_t ctrl) {
    cs[off] = id;
    cs[off + 1] = next;
    put16(off + 2, ctrl);
  }
  auto r8() {
    return [this](std::uint8_t off) { return cs[off]; };
  }
  auto r16() {
    return [this](std::uint8_t off) {
      return static_cast<std::uint16_t>(cs[off] | (cs[static_cast<std::uint8_t>(off + 1)] << 8));
    };
  }
};

// QEMU's NVMe device: PM at 0x60? Use a realistic chain: PM -> MSI -> PCIe -> MSI-X.
fake_config nvme_like() {
  fake_config c;
  c.put16(0x06, 0x0010);
  c.cs[0x34] = 0x40;
  c.cap(0x40, 0x01, 0x50, 0x0003);   // power management
  c.cap(0x50, 0x05, 0x60, 0x0086);   // MSI: 64-bit, MMC = 3 (8 vectors)
  c.cap(0x60, 0x10, 0x80, 0x0002);   // PCI Express
  c.cap(0x80, 0x11, 0x00, 0x0040);   // MSI-X: table size 65
  return c;
}

TEST(InterruptCaps, WalksTheCapabilityList) {
  auto c = nvme_like();
  auto caps = dk::read_interrupt_caps(c.r8(), c.r16());
  ASSERT_TRUE(caps.ok());
  EXPECT_EQ(caps->msi_offset, 0x50);
  EXPECT_EQ(caps->msi_vectors, 8u);
  EXPECT_EQ(caps->msix_offset, 0x80);
  EXPECT_EQ(caps->msix_vectors, 65u);
}

TEST(InterruptCaps, DeviceDataThatLiesIsAnError) {
  {
    auto c = nvme_like();
    c.cs[0x81] = 0x50;  // MSI-X points back to MSI: a loop
    EXPECT_EQ(dk::read_interrupt_caps(c.r8(), c.r16()).error().code(), errc::protocol_error);
  }
  {
    auto c = nvme_like();
    c.cs[0x34] = 0x10;  // into the header
    EXPECT_EQ(dk::read_interrupt_caps(c.r8(), c.r16()).error().code(), errc::protocol_error);
  }
  {
    auto c = nvme_like();
    c.put16(0x52, 0x000c);  // MMC = 6: reserved
    EXPECT_EQ(dk::read_interrupt_caps(c.r8(), c.r16()).error().code(), errc::protocol_error);
  }
  {
    fake_config c;
    std::memset(c.cs, 0xff, sizeof c.cs);  // surprise removal
    EXPECT_EQ(dk::read_interrupt_caps(c.r8(), c.r16()).error().code(), errc::removed);
  }
  {
    fake_config c;  // no capability list at all
    auto caps = dk::read_interrupt_caps(c.r8(), c.r16());
    ASSERT_TRUE(caps.ok());
    EXPECT_EQ(caps->msix_offset, 0);
    EXPECT_EQ(dk::plan_interrupts(*caps, 1).error().code(), errc::not_supported);
  }
}

TEST(InterruptPlan, MsixFirstThenMsiPowersOfTwo) {
  dk::interrupt_caps both{0x50, 8, 0x80, 65};
  auto p = dk::plan_interrupts(both, 5);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->type, dk::interrupt_type::msix);
  EXPECT_EQ(p->vectors, 5u);
  EXPECT_EQ(dk::plan_interrupts(both, 100)->vectors, 65u);
  dk::interrupt_caps msi_only{0x50, 8, 0, 0};
  EXPECT_EQ(dk::plan_interrupts(msi_only, 5)->type, dk::interrupt_type::msi);
  EXPECT_EQ(dk::plan_interrupts(msi_only, 5)->vectors, 4u);
  EXPECT_EQ(dk::plan_interrupts(msi_only, 20)->vectors, 8u);
  EXPECT_EQ(dk::plan_interrupts(msi_only, 1)->vectors, 1u);
  EXPECT_EQ(dk::plan_interrupts(both, 0).error().code(), errc::invalid_argument);
}

// ---- interrupt indexes: the legacy pin first, message-signalled vectors after ----------
// A provider's interrupt list as GetInterruptType reports it (IOPCIFamily:
// the pin's index, if any, comes first; ConfigureInterrupts appends one index
// per vector; MSI-X vectors carry both messaged bits).
struct fake_interrupt_list {
  std::vector<std::uint64_t> types;
  std::uint32_t asked = 0;
  auto fn() {
    return [this](std::uint32_t index) -> dkq::result<std::uint64_t> {
      ++asked;
      if (index >= types.size()) return dkq::status{errc::out_of_range, "no such index", index};
      return types[index];
    };
  }
};
constexpr std::uint64_t pin = 0x0 | 0x1;  // kIOInterruptTypeLevel
constexpr std::uint64_t msi = dk::interrupt_type_bits::pci_messaged;
constexpr std::uint64_t msix = dk::interrupt_type_bits::pci_messaged | dk::interrupt_type_bits::pci_messaged_x;

TEST(InterruptIndexes, MessageVectorsFollowTheLegacyPin) {
  fake_interrupt_list l{{pin, msix, msix, msix}};
  std::uint32_t idx[3] = {};
  auto n = dk::find_message_indexes(l.fn(), dk::interrupt_type::msix, idx, 3);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(idx[0], 1u);  // index 0 is the pin: never used for vector 0
  EXPECT_EQ(idx[1], 2u);
  EXPECT_EQ(idx[2], 3u);
}

TEST(InterruptIndexes, NoPinMeansVectorsFromIndexZero) {
  fake_interrupt_list l{{msi, msi}};
  std::uint32_t idx[2] = {};
  ASSERT_TRUE(dk::find_message_indexes(l.fn(), dk::interrupt_type::msi, idx, 2).ok());
  EXPECT_EQ(idx[0], 0u);
  EXPECT_EQ(idx[1], 1u);
}

TEST(InterruptIndexes, MsiVectorIsNotTakenForMsix) {
  // An MSI index has only the first messaged bit: an MSI-X plan must not use it.
  fake_interrupt_list l{{pin, msi}};
  std::uint32_t idx[1] = {};
  EXPECT_EQ(dk::find_message_indexes(l.fn(), dk::interrupt_type::msix, idx, 1).error().code(), errc::not_supported);
  // An MSI-X vector keeps the MSI bit (IOPCIFamily, for compatibility): an MSI plan accepts it.
  fake_interrupt_list x{{pin, msix}};
  ASSERT_TRUE(dk::find_message_indexes(x.fn(), dk::interrupt_type::msi, idx, 1).ok());
  EXPECT_EQ(idx[0], 1u);
}

TEST(InterruptIndexes, StopsAtTheFirstRefusedIndexAndAsksNoFurtherThanNeeded) {
  fake_interrupt_list only_pin{{pin}};
  std::uint32_t idx[2] = {};
  auto r = dk::find_message_indexes(only_pin.fn(), dk::interrupt_type::msix, idx, 1);
  EXPECT_EQ(r.error().code(), errc::not_supported);  // ConfigureInterrupts did not take
  EXPECT_EQ(only_pin.asked, 2u);
  fake_interrupt_list many{{pin, msix, msix, msix, msix}};
  ASSERT_TRUE(dk::find_message_indexes(many.fn(), dk::interrupt_type::msix, idx, 2).ok());
  EXPECT_EQ(many.asked, 3u);  // indexes 0..2: the pin and the two vectors wanted
  fake_interrupt_list one{{pin, msix}};
  EXPECT_EQ(dk::find_message_indexes(one.fn(), dk::interrupt_type::msix, idx, 2).error().code(), errc::not_supported);
  EXPECT_EQ(dk::find_message_indexes(one.fn(), dk::interrupt_type::msix, idx, 0).error().code(),
            errc::invalid_argument);
}

TEST(InterruptIndexes, ProviderThatNeverRefusesIsAnError) {
  std::uint32_t idx[1] = {};
  auto endless = [](std::uint32_t) -> dkq::result<std::uint64_t> { return pin; };
  EXPECT_EQ(dk::find_message_indexes(endless, dk::interrupt_type::msi, idx, 1).error().code(), errc::protocol_error);
}

// ---- InterruptOccurred -> dispatcher ---------------------------------------------------
struct fake_cq {
  std::uint32_t pending = 0;
  std::uint32_t drains = 0;
  std::uint32_t drain(std::uint32_t budget) noexcept {
    ++drains;
    const std::uint32_t n = pending < budget ? pending : budget;
    pending -= n;
    return n;
  }
};

TEST(InterruptBridge, OneCallbackDrainsEverythingWhateverTheCount) {
  dkq::interrupt_dispatcher<4, 4> d;
  d.set_budget(4);
  fake_cq admin, io;
  ASSERT_TRUE(d.bind(0, dkq::completion_target::of(admin)).ok());
  ASSERT_TRUE(d.bind(1, dkq::completion_target::of(io)).ok());
  dk::interrupt_bridge<decltype(d)> br(d);
  ASSERT_TRUE(br.attach(0, 0));
  ASSERT_TRUE(br.attach(1, 1));
  EXPECT_EQ(br.attach(1, 2).code(), errc::busy);

  io.pending = 10;  // more than one budget
  EXPECT_EQ(br.occurred(1, 1, 100), 10u);
  EXPECT_EQ(io.pending, 0u);
  EXPECT_EQ(admin.drains, 0u);  // other vector untouched

  io.pending = 3;  // three messages coalesced into one callback
  EXPECT_EQ(br.occurred(1, 3, 200), 3u);
  io.pending = 2;  // count 0 is still one notification
  EXPECT_EQ(br.occurred(1, 0, 300), 2u);
  EXPECT_EQ(br.occurred(7, 1, 400), 0u);  // unknown source
  const auto& c = br.counters();
  EXPECT_EQ(c.callbacks, 4u);
  EXPECT_EQ(c.coalesced, 1u);
  EXPECT_EQ(c.notifications, 5u);
  EXPECT_EQ(c.completions, 15u);
  EXPECT_EQ(c.stray, 1u);
  EXPECT_EQ(c.last_time, 400u);
  EXPECT_EQ(d.counters(1).notifications, 5u);

  ASSERT_TRUE(br.detach(1));
  EXPECT_EQ(br.detach(1).code(), errc::invalid_argument);
  io.pending = 1;
  EXPECT_EQ(br.occurred(1, 1, 500), 0u);
  EXPECT_EQ(io.pending, 1u);
  EXPECT_EQ(br.attach(40, 0).code(), errc::out_of_range);
}

}  // namespace
