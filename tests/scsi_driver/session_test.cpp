// dkq-scsi's session teardown (examples/scsi/linux/session.hpp) against the
// software MFI controller model (tests/support/fake_mfi_controller.hpp, a test
// double): the controller is stopped, and every in-flight request completed,
// before any data buffer is unmapped (issue #13 defect 8).
#include <gtest/gtest.h>

#include <vector>

#include "examples/scsi/driver/megaraid.hpp"
#include "examples/scsi/linux/session.hpp"
#include "support/fake_mfi_controller.hpp"

namespace mr = dkq::examples::megaraid;
using dkq::testing::fake_dma_space;
using dkq::testing::fake_mfi_controller;
using dkq::testing::fake_mfi_platform;

namespace {

// The part of vfio::device the session uses: unmapping a data buffer. It
// records what the device still owned at each unmap.
struct fake_device {
  fake_dma_space* dma = nullptr;
  fake_mfi_controller* ctl = nullptr;
  std::vector<std::size_t>* owned_at_unmap = nullptr;
  dkq::status dma_free(const dkq::dma_region& r) {
    owned_at_unmap->push_back(ctl->owned());
    return dma->free(r);
  }
};

using session = dkq::scsi_linux::basic_session<fake_device, fake_mfi_platform, mr::controller<fake_mfi_platform>>;

struct seen {
  fake_dma_space* dma = nullptr;
  dkq::dma_region buf{};
  int calls = 0;
  bool mapped_at_done = false;
  dkq::status last{};
  static void done(void* u, const mr::completion& c) noexcept {
    auto* s = static_cast<seen*>(u);
    ++s->calls;
    s->last = c.st;
    s->mapped_at_done = s->dma->translate(s->buf.device.value(), s->buf.size) != nullptr;
  }
};

struct world {
  fake_dma_space dma;
  fake_mfi_controller ctl{dma};
  std::vector<std::size_t> owned_at_unmap;
  world() { ctl.add_disk(0, 2048); }
  void open(session& s) {
    s.dev = std::make_unique<fake_device>(fake_device{&dma, &ctl, &owned_at_unmap});
    s.plat = std::make_unique<fake_mfi_platform>(dma, ctl);
    s.ctrl = std::make_unique<mr::controller<fake_mfi_platform>>();
    mr::options o;
    o.use_interrupts = false;
    ASSERT_TRUE(s.ctrl->start(*s.plat, o).ok());
  }
  mr::request read(session& s, seen& k) {
    auto b = dma.alloc(4096, mr::no_address_limit);
    EXPECT_TRUE(b.ok());
    s.buffers.push_back(*b);
    k.dma = &dma;
    k.buf = *b;
    mr::request q;
    q.kind = mr::op::ld_read;
    q.blocks = 8;
    q.data = *b;
    q.done = seen::done;
    q.user = &k;
    return q;
  }
};

TEST(ScsiSession, TeardownStopsTheControllerBeforeUnmappingBuffers) {
  world w;
  seen a, b;
  {
    session s;
    w.open(s);
    w.ctl.hold = true;  // the device has both frames and has not answered
    ASSERT_TRUE(s.ctrl->submit(w.read(s, a)).ok());
    w.ctl.hold = false;
    w.ctl.drop_next = 1;  // and sits on this one
    ASSERT_TRUE(s.ctrl->submit(w.read(s, b)).ok());
    ASSERT_EQ(w.ctl.owned(), 2u);
  }  // ~session: SIGTERM or an early return with I/O in flight ends here
  for (seen* k : {&a, &b}) {
    EXPECT_EQ(k->calls, 1);
    EXPECT_FALSE(k->last.ok());
    EXPECT_TRUE(k->mapped_at_done);  // completed while its buffer was still mapped
  }
  ASSERT_EQ(w.owned_at_unmap.size(), 2u);
  for (std::size_t n : w.owned_at_unmap) EXPECT_EQ(n, 0u);  // the device owned no frame at any unmap
  EXPECT_EQ(w.ctl.c.shutdowns, 1u);
  EXPECT_EQ(w.dma.live(), 0u);
}

TEST(ScsiSession, EarlyReturnStopsInFlightIoBeforeTheCallersStateGoes) {
  world w;
  session s;
  w.open(s);
  int completions_seen_alive = 0;
  {
    struct local_state {
      seen k;
      int* alive_count = nullptr;
      ~local_state() { *alive_count += k.calls; }
    } st;
    st.alive_count = &completions_seen_alive;
    dkq::scsi_linux::stop_in_flight_on_exit<session> guard{s};
    w.ctl.hold = true;
    ASSERT_TRUE(s.ctrl->submit(w.read(s, st.k)).ok());
    EXPECT_EQ(s.ctrl->in_flight(), 1u);
  }  // early return: the guard goes first, then the state the callback uses
  EXPECT_EQ(completions_seen_alive, 1);
  EXPECT_FALSE(s.ctrl->operational());
  EXPECT_TRUE(s.close().ok());
  EXPECT_EQ(w.dma.live(), 0u);
}

}  // namespace
