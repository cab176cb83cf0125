#!/bin/sh
# Mutation smoke test for the fuzz target and its checkers (not part of ctest:
# ~75 s per mutant). Each mutant plants one bug (wire format or allocator) in a
# copy of the headers; the fuzzer must trap on every one within the time budget.
#   tests/fuzz/mutants.sh [seconds per mutant, default 45]
#   ONLY="prp_chain ieee_nco" tests/fuzz/mutants.sh     # a subset
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-45}
WORK=${TMPDIR:-/tmp}/dkq-mutants.$$
CXX=$(command -v clang++ || command -v clang++-14)
failed=0
run() {
  name=$1 file=$2 from=$3 to=$4
  case " ${ONLY:-$name} " in *" $name "*) ;; *) return ;; esac
  rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$SRC/include" "$SRC/tests" "$WORK/"
  if ! grep -qF "$from" "$WORK/$file"; then echo "$name: pattern not found (update mutants.sh)"; failed=1; return; fi
  python3 -c "import sys;p=sys.argv[1];s=open(p).read();open(p,'w').write(s.replace(sys.argv[2],sys.argv[3],1))" \
    "$WORK/$file" "$from" "$to"
  if sh "$WORK/tests/fuzz/run_fuzz.sh" "$CXX" "$WORK" "$WORK/fz" "$SECS" > "$WORK.log" 2>&1; then
    echo "$name: NOT caught"; failed=1
  else
    echo "$name: caught: $(grep -m1 'fuzz_sg:' "$WORK.log")"
  fi
}
# libvfn PR #67: chaining when exactly one entry remains.
run prp_chain include/dkq/nvme/prp.hpp "slots == 1 && remaining > 1" "slots == 1 && remaining > 0"
run prp_gap include/dkq/nvme/prp.hpp "    if (i + 1 != n && (end & mask) != 0)" "    if (false && (end & mask) != 0)"
run sgl_last include/dkq/nvme/sgl.hpp "const bool last = remaining <= cap;" "const bool last = remaining < cap;"
run ieee_nco include/dkq/scsi/mfi_sgl.hpp "again ? cap - 1 : 0" "again ? cap - 2 : 0"
run mfi_sgl32 include/dkq/scsi/mfi_sgl.hpp "if (last > 0xFFFFFFFFull)" "if (last > 0x1FFFFFFFFull)"
run split_boundary include/dkq/dma/constraints.hpp "if (piece > to_boundary) piece = to_boundary;" \
  "if (piece > to_boundary + 1) piece = to_boundary + 1;"
run iova_double_free include/dkq/dma/iova.hpp "if (pos < n_ && ext_[pos].start < end)" \
  "if (false && ext_[pos].start < end)"
run iova_window include/dkq/dma/iova.hpp "if (end > e_end || end > hi || start < e.start)" \
  "if (end > e_end || end > hi + 4096 || start < e.start)"
rm -rf "$WORK" "$WORK.log"
exit $failed
