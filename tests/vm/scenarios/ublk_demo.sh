#!/bin/sh
# The ublk part of the demonstration (scripts/demo-vm.sh): dkq-nvme serves
# namespace 1 as /dev/ublkb0, then ordinary programs use it - mkfs.ext4,
# mount, fio (4 KiB random read/write with crc32c verify, QD 32) on a file of
# the filesystem, fsck - and the server stops with SIGTERM (device flush).
. /progs/ublk_lib.sh
serve_start demo /progs/dkq_nvme serve "$1" --ns 1 --json
mkfs.ext4 -q -F "$DEV" || fail "mkfs.ext4"
mkdir -p /mnt/demo
mount -t ext4 "$DEV" /mnt/demo || fail "mount"
fio --name=demo --filename=/mnt/demo/fio.dat --size=24M --rw=randrw --bs=4k --iodepth=32 --ioengine=io_uring \
    --direct=1 --verify=crc32c --runtime=4 --time_based=0 --fsync=64 --group_reporting \
    | grep -E "read:|write:|lat \(usec\): min|err=" || fail "fio"
df -h /mnt/demo | tail -1
umount /mnt/demo
fsck.ext4 -fn "$DEV" > /dev/null 2>&1 && echo "fsck.ext4 -fn: clean" || fail "fsck.ext4"
serve_stop demo > /tmp/stop.log 2>&1 || { cat /tmp/stop.log; exit 1; }
grep -E "requests|stopped cleanly" /tmp/stop.log
