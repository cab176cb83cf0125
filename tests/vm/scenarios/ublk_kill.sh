#!/bin/sh
# ublk_kill.sh BDF: the NVMe server killed (SIGKILL) under fio load.
#  1. plain serve: mkfs, mount, tree A written and synced; fio writing into a
#     file on that filesystem; SIGKILL the server. fio must end with I/O
#     errors (not hang), /dev/ublkbN must go away, the kernel log must show no
#     warning; then a fresh serve of the same namespace: tree A intact.
#  2. serve --recoverable: tree B written and synced, filesystem left mounted,
#     SIGKILL; the disk stays (quiesced); serve --recover re-attaches it under
#     the mounted filesystem; tree B reads back (page cache dropped), more
#     writes and a sync go through, then a clean stop.
. /progs/ublk_lib.sh
bdf=$1
N="/progs/dkq_nvme serve $bdf --ns 1 --json"
serve_start k1 $N
mkdir -p /mnt/k
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$DEV" || fail "mkfs.ext4"
mount -t ext4 -o noatime "$DEV" /mnt/k || fail "mount"
tree_write /mnt/k A
sync
dmesg -c > /dev/null
fio --name=load --filename=/mnt/k/load --size=16M --rw=randwrite --bs=4k --iodepth=16 --ioengine=io_uring \
    --direct=1 --time_based --runtime=60 > /tmp/fio-load.out 2>&1 &
fio=$!
sleep 3
kill -0 $fio || { cat /tmp/fio-load.out; fail "fio ended before the kill"; }
old=$DEV
kill -KILL $SRV
echo "server killed with SIGKILL under fio load"
i=0
while kill -0 $fio 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $fio 2>/dev/null && fail "fio still running 30 s after the server died (hung)"
wait $fio
frc=$?
tail -5 /tmp/fio-load.out
[ $frc -ne 0 ] || fail "fio reported success with its disk gone"
grep -qi "error" /tmp/fio-load.out || fail "fio printed no I/O error"
echo "fio ended with status $frc and I/O errors, $((i / 10)) s after the kill"
i=0
while [ -b "$old" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$old" ] && fail "$old still present 10 s after its server died"
echo "$old is gone"
umount /mnt/k 2> /dev/null || umount -l /mnt/k
dmesg > /tmp/dmesg
if grep -E "WARNING|BUG|Call Trace|hung_task" /tmp/dmesg; then fail "kernel warning after the kill"; fi
echo "kernel log: no warning ($(grep -c . /tmp/dmesg) lines, I/O errors only)"
serve_start k2 $N
grep -q "removed /dev/ublkc0, left dead by a server that is gone: done" /tmp/serve-k2.err || fail "the dead device of the killed server was not reclaimed"
[ "$(ls /dev/ublkc* | wc -l)" -eq 1 ] || fail "more than one ublk device registered: $(ls /dev/ublkc*)"
echo "fresh serve: the killed server's dead /dev/ublkc0 was removed; one device registered"
mount -t ext4 -o noatime "$DEV" /mnt/k || fail "mount after a fresh serve"
tree_check /mnt/k A
umount /mnt/k || fail "umount"
serve_stop k2

# 2. recovery
serve_start k3 /progs/dkq_nvme serve $bdf --ns 1 --json --recoverable
id=${DEV#/dev/ublkb}
mount -t ext4 -o noatime "$DEV" /mnt/k || fail "mount"
tree_write /mnt/k B
sync
kill -KILL $SRV
wait $SRV 2> /dev/null
sleep 1
[ -b "$DEV" ] || fail "the recoverable disk went away with its server"
echo "server killed; $DEV stays, filesystem still mounted"
serve_start k4 /progs/dkq_nvme serve $bdf --ns 1 --json --recover $id
grep -q '"recovered":true' /tmp/serve-k4.out || fail "not reported as recovered"
sync
echo 3 > /proc/sys/vm/drop_caches
tree_check /mnt/k B
tree_write /mnt/k/after B
sync
umount /mnt/k || fail "umount after recovery"
serve_stop k4
dmesg > /tmp/dmesg
if grep -E "WARNING|BUG|Call Trace" /tmp/dmesg; then fail "kernel warning"; fi
echo "recovery: tree B intact under the mounted filesystem, writes after it synced"
