#!/bin/sh
# dkq-nvme's error messages for the mistakes users make. Each case must fail
# (non-zero exit) with the words that tell the user what is wrong.
# $1: a bound controller, $2: an NVMe controller not bound to vfio-pci.
bound=$1
unbound=$2
shift 2
fails=0
expect() {  # expect <words> -- <dkq-nvme arguments>
  words=$1
  shift 2
  out=$(/progs/dkq_nvme "$@" 2>&1)
  rc=$?
  echo "$out"
  if [ $rc -eq 0 ] || ! echo "$out" | grep -q "$words"; then
    echo "FAILED CASE: dkq-nvme $* (rc $rc) did not report '$words'"
    fails=$((fails+1))
  else
    echo "ok: dkq-nvme $* -> rc $rc, '$words'"
  fi
}
head -c 1000 /dev/zero > /tmp/odd.bin
expect "no PCI device" -- identify 0000:00:1e.0
expect "not a PCI address" -- identify nvme0
expect "not to vfio-pci" -- identify "$unbound"
expect "out of range" -- read "$bound" --ns 2 --lba 4090 --blocks 8 "$@"
expect "not a (nonzero) multiple" -- write "$bound" --ns 2 --lba 0 --in /tmp/odd.bin "$@"
expect "not a multiple of the 4096-byte block size" -- perf "$bound" --ns 2 --bs 1000 "$@"
expect "not active" -- read "$bound" --ns 7 --lba 0 --blocks 1 "$@"
[ $fails -eq 0 ]
