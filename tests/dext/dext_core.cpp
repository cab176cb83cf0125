// Compiled with clang++ -stdlib=libc++ -std=gnu++20 -fno-exceptions -fno-rtti,
// the way Xcode compiles a DriverKit extension. Includes every core header
// (generated list) and instantiates the templates a driver would.
#include "all_core_headers.hpp"

#if defined(__cpp_exceptions) || defined(__cpp_rtti)
#error "this translation unit must be built with -fno-exceptions -fno-rtti"
#endif

namespace {
struct elem {
  unsigned long a;
  unsigned b;
};

template <class Ring>
bool exercise(Ring& r) {
  elem in[4] = {{1, 2}, {3, 4}, {5, 6}, {7, 8}}, out[4] = {};
  if (r.push_bulk(in, 4) != 4) return false;
  if (r.pop_burst(out, 4) != 4) return false;
  return out[3].a == 7 && out[3].b == 8;
}
}  // namespace

// Queue and dispatch layers: every template a driver instantiates, over
// static "DMA" memory and a register window in ordinary memory.
namespace queue_check {
alignas(4096) unsigned char sq_mem[64 * 8];
alignas(4096) unsigned char cq_mem[16 * 8];
alignas(8) unsigned bar[16];
unsigned shadow[2], eventidx[2], reply_producer, reply_consumer;
alignas(8) unsigned reply_mem[8];
struct target {
  unsigned drain(unsigned) noexcept { return 0; }
  void flush() noexcept {}
};
struct waiter {
  void arm(unsigned short) noexcept {}
  void disarm(unsigned short) noexcept {}
  unsigned wait(unsigned short) noexcept { return 0; }
};
bool run() {
  using db = dkq::shadow_doorbell<dkq::mmio_doorbell>;
  auto sq_db = dkq::mmio_doorbell::make(dkq::mmio_window(bar, sizeof bar), 0x8);
  auto cq_db = dkq::mmio_doorbell::make(dkq::mmio_window(bar, sizeof bar), 0xc);
  if (!sq_db.ok() || !cq_db.ok()) return false;
  dkq::queue_pair<dkq::nvme_queue_layout, db, db, void*> qp;
  if (!qp.init({sq_mem, dkq::dev_addr{0x1000}, sizeof sq_mem}, {cq_mem, dkq::dev_addr{0x2000}, sizeof cq_mem}, 8,
               db(&shadow[0], &eventidx[0], *sq_db), db(&shadow[1], &eventidx[1], *cq_db)))
    return false;
  unsigned char cmd[64] = {};
  auto cid = qp.submit(cmd, nullptr, 100);
  if (!cid.ok() || !qp.flush() || bar[2] != 1) return false;
  qp.process_completions(8, [](void*&, const dkq::nvme_cqe&) {}, [](dkq::status, const dkq::nvme_cqe&) {});
  qp.timeout_scan(200, [](unsigned short, void*&) {});
  qp.reset([](unsigned short, void*&, bool) {});
  dkq::index_reply_queue<unsigned, dkq::host_word_doorbell> rq;
  if (!rq.init({reply_mem, dkq::dev_addr{0x3000}, sizeof reply_mem}, 8, &reply_producer,
               dkq::host_word_doorbell{&reply_consumer}))
    return false;
  if (!rq.reap(8, [](unsigned) {}).ok()) return false;
  static target t;
  static dkq::interrupt_dispatcher<2, 4> d;
  if (!d.bind(1, dkq::completion_target::of(t)).ok()) return false;
  waiter w;
  d.run_once(1, dkq::completion_mode::hybrid, w, 2);
  d.on_interrupt(1, 1);
  static dkq::spsc_ring<unsigned> ring;
  if (!ring.init(8u)) return false;
  dkq::completion_handoff<dkq::spsc_ring<unsigned>> h(ring);
  return h.budget(4) == 4 && h.push(1);
}
}  // namespace queue_check

// DMA layer and scatter-gather builders over static "DMA" memory.
namespace dma_check {
alignas(4096) unsigned char pool_mem[4 * 4096];
alignas(4096) unsigned char bounce_mem[2 * 4096];
alignas(16) unsigned char frame[256];
bool run() {
  const dkq::dev_addr base{0x10'0000};
  dkq::dma_pool pool;
  if (!pool.init({pool_mem, base, sizeof pool_mem}, 4096, 4096, 4096)) return false;
  auto page = pool.get();
  if (!page.ok()) return false;
  const dkq::dma_segment data[2] = {{dkq::dev_addr{0x20'0200}, 4096 - 0x200}, {dkq::dev_addr{0x40'0000}, 3 * 4096}};
  auto prp = dkq::nvme::build_prp(dkq::nvme::prp_config{}, data, std::span<const dkq::dma_region>(&page->mem, 1));
  auto sgl = dkq::nvme::build_sgl(dkq::nvme::sgl_caps::from_sgls(2), data,
                                  std::span<const dkq::dma_region>(&page->mem, 1));
  auto pick = dkq::nvme::choose_data_pointer(dkq::nvme::dptr_policy{}, dkq::nvme::prp_config{}, data);
  auto mdts = dkq::nvme::prp_mdts_chunk(dkq::nvme::prp_config{4096, 8192}, data, 0, 512);
  auto mfi = dkq::scsi::build_mfi_sgl(dkq::scsi::mfi_sgl_format::sgl64, data,
                                      std::span<std::byte>(reinterpret_cast<std::byte*>(frame), sizeof frame), 128);
  auto ieee = dkq::scsi::build_ieee_sgl(data, std::span<std::byte>(reinterpret_cast<std::byte*>(frame), sizeof frame),
                                        16, std::span<const dkq::dma_region>(&page->mem, 1));
  dkq::dma_constraints c;
  c.addressable_bits = 32;
  c.boundary = 4096;
  dkq::dma_segment out[8];
  auto split = dkq::split_segments(c, data, out);
  if (!prp.ok() || !sgl.ok() || !pick.ok() || !mdts.ok() || !mfi.ok() || !ieee.ok() || !split.ok()) return false;
  if (!pool.put(*page)) return false;
  dkq::iova_allocator iova;
  if (!iova.init(dkq::dev_addr{0x1000}, 1u << 30)) return false;
  auto low = iova.alloc_below_bits(8192, 32);
  if (!low.ok() || !iova.free(*low, 8192)) return false;
  dkq::dma_pool chunks;
  if (!chunks.init({bounce_mem, dkq::dev_addr{0x30'0000}, sizeof bounce_mem}, 4096, 4096)) return false;
  dkq::bounce_buffer bb;
  if (!bb.init(chunks, c)) return false;
  unsigned char host[100] = {1};
  dkq::dma_pool::object slots[2];
  dkq::dma_segment segs[2];
  auto m = bb.map(host, sizeof host, dkq::dma_direction::bidirectional, slots, segs);
  return m.ok() && bb.complete(*m, slots).ok();
}
}  // namespace dma_check

// Coroutine layer: a task with its frame from a static arena awaiting a
// queue-pair command, when_all / when_any and a deadline, resumed by the
// completion path; no exceptions, no RTTI, no heap.
namespace coro_check {
namespace coro = dkq::coro;
alignas(4096) unsigned char sq_mem[64 * 8];
alignas(4096) unsigned char cq_mem[16 * 8];
alignas(8) unsigned bar[16];
alignas(16) unsigned char frames[4 * 1024];
using result_t = coro::queue_completion<dkq::nvme_cqe>;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, dkq::mmio_doorbell, dkq::mmio_doorbell, coro::completion<result_t>*>;
struct rig {
  qp_t qp;
  coro::frame_arena arena;
  coro::timer_queue timers;
  coro::deadline* timer_slots[2];
  coro::frame_arena& coro_frame_arena() noexcept { return arena; }
};
coro::task<dkq::status> one(rig& r) {
  unsigned char cmd[64] = {};
  coro::queue_command<qp_t> a(r.qp, cmd), b(r.qp, cmd);
  auto both = co_await coro::when_all(a, b);
  coro::deadline d = r.timers.at(10);
  coro::queue_command<qp_t> c(r.qp, cmd);
  const std::size_t i = co_await coro::when_any(c, d);
  if (i == 1) (void)co_await c;
  co_return both[0].st;
}
bool run() {
  static rig r;
  auto sq_db = dkq::mmio_doorbell::make(dkq::mmio_window(bar, sizeof bar), 0x8);
  auto cq_db = dkq::mmio_doorbell::make(dkq::mmio_window(bar, sizeof bar), 0xc);
  if (!sq_db.ok() || !cq_db.ok()) return false;
  if (!r.qp.init({sq_mem, dkq::dev_addr{0x1000}, sizeof sq_mem}, {cq_mem, dkq::dev_addr{0x2000}, sizeof cq_mem}, 8,
                 *sq_db, *cq_db))
    return false;
  if (!r.arena.init(frames, sizeof frames, 1024) || !r.timers.init(r.timer_slots)) return false;
  auto t = one(r);
  t.start();
  (void)coro::resume_completions(r.qp, 8);
  // No device here: end the outstanding commands the way a reset would,
  // let the deadline pass, end what the coroutine posted after that.
  auto end_all = [] {
    r.qp.reset([](unsigned short, coro::completion<result_t>*& c, bool) {
      c->complete({dkq::status{dkq::errc::io_error, "reset"}, {}});
    });
  };
  end_all();
  (void)r.timers.fire(10);
  end_all();
  return t.done() && t.value().code() == dkq::errc::io_error;
}
}  // namespace coro_check

int main() {
  dkq::spsc_ring<elem> s;
  dkq::mpsc_ring<elem> m;
  dkq::mpmc_ring<elem, dkq::spin_wait> mm;
  if (!s.init(16u) || !m.init(16u) || !mm.init(16u)) return 1;
  if (!exercise(s) || !exercise(m) || !exercise(mm)) return 2;
  auto zc = s.reserve(3);
  if (zc.size() != 3 || !s.commit(3)) return 3;
  dkq::result<int> r = dkq::status{dkq::errc::timeout, "x"};
  if (r.ok() || r.error().code() != dkq::errc::timeout) return 4;
  if (!queue_check::run()) return 50;
  if (!dma_check::run()) return 60;
  if (!coro_check::run()) return 70;
  return 0;
}
