#!/bin/sh
# Guest side of ublk_perf.py: interleaved rounds of fio 4 KiB random reads at
# QD 1 and 32 through /dev/ublkbN served by dkq-nvme and through Linux's nvme
# driver on the same controller, plus dkq-nvme perf (the device path without
# ublk) for the cost breakdown. Usage: ublk_perf.sh BDF SECS ROUNDS MODULE...
. /progs/ublk_lib.sh
bdf=$1 secs=$2 rounds=$3 modes=$(echo "$4" | tr , ' ')
shift 4
mods="$*"
dev_dir=/sys/bus/pci/devices/$bdf
loaded=0
to_linux() {
  if [ $loaded -eq 0 ]; then
    for m in $mods; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
    loaded=1
  fi
  echo > $dev_dir/driver_override
  [ -e $dev_dir/driver ] && echo $bdf > $dev_dir/driver/unbind
  echo $bdf > /sys/bus/pci/drivers_probe
  KDEV=""
  i=0
  while [ -z "$KDEV" ] && [ $i -lt 100 ]; do
    c=$(ls $dev_dir/nvme 2> /dev/null | head -n 1)
    [ -n "$c" ] && [ -b /dev/${c}n1 ] && KDEV=/dev/${c}n1
    [ -z "$KDEV" ] && sleep 0.1
    i=$((i + 1))
  done
  [ -n "$KDEV" ] || fail "Linux's nvme driver did not bring up the namespace"
}
to_vfio() {
  echo vfio-pci > $dev_dir/driver_override
  [ -e $dev_dir/driver ] && echo $bdf > $dev_dir/driver/unbind
  echo $bdf > /sys/bus/pci/drivers_probe
  basename "$(readlink $dev_dir/driver)" | grep -q vfio-pci || fail "did not go back to vfio-pci"
}
fiojob() {  # LABEL DEV QD
  dmesg -c > /dev/null
  timeout -s KILL $((secs + 90)) fio --name="$1" --filename="$2" --direct=1 --ioengine=io_uring --rw=randread \
    --bs=4k --iodepth=$3 --time_based --runtime=$secs --size=60M --randrepeat=0 --lat_percentiles=1 --output-format=json > /tmp/f.json 2> /tmp/f.err
  rc=$?
  echo "@@PERF-BEGIN $1 $round"
  cat /tmp/f.json
  echo "@@PERF-END $1 $round rc=$rc stalls=$(dmesg | grep -c 'I/O.*timeout')"
  dmesg | grep -m 3 'timeout' 
}
dkq_direct() {  # QD
  timeout -s KILL $((secs + 60)) /progs/dkq_nvme perf $bdf --ns 1 --bs 4096 --qd $1 --time $secs --irq --json \
    > /tmp/p.json 2> /tmp/p.err
  rc=$?
  echo "@@PERF-BEGIN dkq_direct_qd$1 $round"
  cat /tmp/p.json
  echo "@@PERF-END dkq_direct_qd$1 $round rc=$rc stalls=0"
}
ublk_runs() {
  dkq_direct 1
  dkq_direct 32
  for mode in $modes; do
    flag=""
    [ "$mode" = poll ] && flag=--poll
    [ "$mode" = hybrid ] && flag=--hybrid
    serve_start u$round$mode /progs/dkq_nvme serve $bdf --ns 1 --json $flag
    fiojob ublk_${mode}_qd1 "$DEV" 1
    fiojob ublk_${mode}_qd32 "$DEV" 32
    serve_stop u$round$mode > /tmp/stop.log 2>&1 || { cat /tmp/stop.log; fail "serve stop"; }
    echo "@@STOP ublk_$mode $round $(grep '"event":"stopped"' /tmp/stop.log)"
  done
}
linux_runs() {
  to_linux
  fiojob linux_qd1 "$KDEV" 1
  fiojob linux_qd32 "$KDEV" 32
  to_vfio
}
round=1
while [ $round -le $rounds ]; do
  echo "@@ROUND $round $(cut -d' ' -f1 /proc/uptime)"
  if [ $((round % 2)) -eq 1 ]; then
    ublk_runs
    linux_runs
  else
    linux_runs
    ublk_runs
  fi
  round=$((round + 1))
done
