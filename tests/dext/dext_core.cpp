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
  return 0;
}
