#!/bin/sh
# dkq-scsi against a JBOD controller (no logical drives): every command checks
# its target the same way before it sends anything, and says why it refuses.
# Each case must fail (non-zero exit) with the words given.
#   $1: the controller (bound to vfio-pci); targets 0 and 1 are system drives.
bdf=$1
fails=0
expect() {  # expect <words> -- <dkq-scsi arguments>
  words=$1
  shift 2
  out=$(/progs/dkq_scsi "$@" 2>&1)
  rc=$?
  echo "$out"
  if [ $rc -eq 0 ] || ! echo "$out" | grep -q -- "$words"; then
    echo "FAILED CASE: dkq-scsi $* (rc $rc) did not report '$words'"
    fails=$((fails+1))
  else
    echo "ok: dkq-scsi $* -> rc $rc, '$words'"
  fi
}
# A JBOD disk is not a logical drive: LD commands refuse it (and say --pd).
expect "not a logical drive" -- write "$bdf" --target 1 --lba 100 --blocks 8 --seed 5
expect "add --pd" -- read "$bdf" --target 0 --lba 0 --blocks 1
expect "not_found" -- capacity "$bdf" --target 0
expect "not a logical drive" -- inquiry "$bdf" --target 1
expect "no logical drives" -- verify "$bdf" --target all --lba 0 --blocks 8
expect "no logical drives" -- sync "$bdf" --target all
expect "not a logical drive" -- perf "$bdf" --target 0 --ios 10
# Physical drives the controller did not list.
expect "not a physical drive" -- read "$bdf" --pd --target 5 --lba 0 --blocks 1
# Sizes no command can carry: refused before the controller is started, naming the limit.
expect "driver's limit of 1048576 bytes" -- read "$bdf" --pd --target 0 --lba 0 --blocks 4096
expect "driver's limit of 1048576 bytes" -- perf "$bdf" --pd --target 0 --bs 2097152 --ios 10
[ $fails -eq 0 ]
