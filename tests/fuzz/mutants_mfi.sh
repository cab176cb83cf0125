#!/bin/sh
# Mutation smoke test for fuzz_mfi_device (not part of ctest): each mutant
# puts back one of the MegaRAID defects of issue #13 in a copy of the tree;
# the fuzzer must trap on every one within the time budget.
#   tests/fuzz/mutants_mfi.sh [seconds per mutant, default 45]
#   ONLY="reset_fails" tests/fuzz/mutants_mfi.sh
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-45}
WORK=${TMPDIR:-/tmp}/dkq-mfi-mutants.$$
CXX=$(command -v clang++ || command -v clang++-14)
failed=0
run() {
  name=$1 file=$2 from=$3 to=$4
  case " ${ONLY:-$name} " in *" $name "*) ;; *) return ;; esac
  rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$SRC/include" "$SRC/tests" "$SRC/examples" "$WORK/"
  if ! grep -qF "$from" "$WORK/$file"; then echo "$name: pattern not found (update mutants_mfi.sh)"; failed=1; return; fi
  python3 -c "import sys;p=sys.argv[1];s=open(p).read();open(p,'w').write(s.replace(sys.argv[2],sys.argv[3],1))" \
    "$WORK/$file" "$from" "$to"
  if sh "$WORK/tests/fuzz/run_fuzz.sh" "$CXX" "$WORK" "$WORK/fz" "$SECS" fuzz_mfi_device \
    "$WORK/tests/fuzz/corpus/mfi_device" > "$WORK.log" 2>&1; then
    echo "$name: NOT caught"; failed=1
  else
    echo "$name: caught: $(grep -m1 'fuzz_mfi_device:' "$WORK.log")"
  fi
}
D=examples/scsi/driver/megaraid.hpp
# Defect 5: a reset whose firmware never reaches READY returns before collecting the in-flight commands.
run reset_fails $D "    if (!ready) fence_dma();" "    if (!ready) return ready;"
# Defect 6: stop() frees everything without completing what is in flight.
run stop_loses $D "    if (owned) {
      fence_dma();" "    if (false) {
      fence_dma();"
# Defect 10: post() writes frame address 0 when the frame cannot be named.
run post_zero $D "    if (!v) return v.error();" "    if (!v) { regs_.write32(mfi::reg::inbound_queue_port, 0); return v.error(); }"
# Defect 5, second half: INIT fails after READY and the re-issue candidates are never completed.
run init_fails $D "      for (std::uint32_t i = 0; i < nre; ++i) {
        --io_in_flight_;" "      for (std::uint32_t i = 0; i < 0; ++i) {
        --io_in_flight_;"
rm -rf "$WORK" "$WORK.log"
exit $failed
