#!/bin/sh
# ublk_errors.sh NVME-BDF MEGASAS-BDF: bad use, one clear message each, exit
# status non-zero, nothing left registered (no /dev/ublkc*, no /dev/ublkb*).
. /progs/ublk_lib.sh
nvme=$1
mfi=$2
nothing_registered() {
  ls /dev/ublkc* /dev/ublkb* 2> /dev/null && fail "$1: a ublk device was left registered"
  echo "$1: nothing registered"
}
expect_refusal() {  # WHAT PATTERN CMD...
  what=$1
  pat=$2
  shift 2
  "$@" > /tmp/out 2>&1
  rc=$?
  cat /tmp/out
  [ $rc -ne 0 ] || fail "$what: exit status 0"
  grep -q "$pat" /tmp/out || fail "$what: message does not say '$pat'"
  echo "$what: refused with status $rc"
  nothing_registered "$what"
}
# A kernel without ublk: the module unloaded.
rmmod ublk_drv || fail "rmmod ublk_drv"
expect_refusal "no ublk (nvme)" "no ublk driver" /progs/dkq_nvme serve $nvme --ns 1
expect_refusal "no ublk (scsi)" "no ublk driver" /progs/dkq_scsi serve $mfi --target 0
insmod /lib/modules/ublk_drv.ko || fail "insmod ublk_drv"
# Targets that do not exist.
expect_refusal "namespace 9" "namespace 9 is not active" /progs/dkq_nvme serve $nvme --ns 9
expect_refusal "target 7" "not a logical drive" /progs/dkq_scsi serve $mfi --target 7
# The good case beside them: every namespace / logical drive at once.
serve_all() {  # WHAT CMD...
  what=$1
  shift
  "$@" --json > /tmp/all.out 2> /tmp/all.err &
  pid=$!
  i=0
  while [ "$(grep -c '"event":"serving"' /tmp/all.out)" -lt 2 ] && [ $i -lt 400 ]; do
    kill -0 $pid 2> /dev/null || { cat /tmp/all.err; fail "$what: server exited"; }
    sleep 0.05
    i=$((i + 1))
  done
  [ "$(grep -c '"event":"serving"' /tmp/all.out)" -eq 2 ] || { cat /tmp/all.err; fail "$what: not two disks"; }
  grep '"event":"serving"' /tmp/all.out | while read -r line; do
    dev=$(echo "$line" | sed -n 's/.*"device":"\([^"]*\)".*/\1/p')
    lbs=$(echo "$line" | sed -n 's/.*"logical_block":\([0-9]*\).*/\1/p')
    sec=$(echo "$line" | sed -n 's/.*"sectors":\([0-9]*\).*/\1/p')
    b=${dev#/dev/}
    [ -b "$dev" ] || fail "$what: $dev missing"
    [ "$(cat /sys/block/$b/queue/logical_block_size)" = "$lbs" ] || fail "$what: $dev block size"
    [ "$(cat /sys/block/$b/size)" = "$sec" ] || fail "$what: $dev size"
    dd if="$dev" of=/dev/null bs=4096 count=16 2> /dev/null || fail "$what: reading $dev"
    echo "$what: $dev: $lbs-byte blocks, $sec sectors, readable"
  done || exit 1
  kill -TERM $pid
  wait $pid || { cat /tmp/all.err; fail "$what: exit status after SIGTERM"; }
  cat /tmp/all.out
  nothing_registered "$what after SIGTERM"
}
serve_all "--ns all" /progs/dkq_nvme serve $nvme --ns all
serve_all "--target all" /progs/dkq_scsi serve $mfi --target all
# The controller already in use by a running server.
serve_start busy /progs/dkq_nvme serve $nvme --ns 1 --json
/progs/dkq_nvme serve $nvme --ns 1 > /tmp/out 2>&1
rc=$?
cat /tmp/out
[ $rc -ne 0 ] || fail "second server on a busy controller: exit status 0"
grep -qi "busy\|in use" /tmp/out || fail "second server: message does not say the device is in use"
[ "$(ls /dev/ublkb* | wc -l)" -eq 1 ] || fail "second server left a device registered"
echo "controller in use: refused with status $rc, only the first server's disk exists"
serve_stop busy
nothing_registered "after the busy test"
# Bad arguments.
expect_refusal "--depth 0" "depth" /progs/dkq_nvme serve $nvme --ns 1 --depth 0
expect_refusal "--recover of a device that does not exist" "no ublk device 5 to recover" /progs/dkq_nvme serve $nvme --ns 1 --recover 5
# More queues than CPUs (the guest has one): ublk_drv grants one per CPU.
expect_refusal "--queues 2 on one CPU" "at most one queue per CPU" /progs/dkq_nvme serve $nvme --ns 1 --queues 2
