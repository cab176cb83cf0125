// A program outside the dkq tree, built against the installed package.
#include <dkq/base.hpp>
#include <dkq/ring.hpp>

int main() {
  dkq::spsc_ring<int> r;
  if (!r.init(8u)) return 1;
  if (!r.try_push(42)) return 2;
  int v = 0;
  if (!r.try_pop(v) || v != 42) return 3;
  return 0;
}
