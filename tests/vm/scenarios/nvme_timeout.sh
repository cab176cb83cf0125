#!/bin/sh
# Per-command timeouts against QEMU: controller $1's namespace sits behind a
# throttle group (2 I/Os per second), so with a 300 ms command timeout reads
# expire in the device. dkq-nvme must abort them, reset the controller when
# the abort does not complete them (QEMU's Abort never aborts), re-post the
# others once, fail what expires again - every command accounted for, exit
# with a clear error, no hang - and a second run with a generous timeout must
# then read correctly from the same controller.
bdf=$1
shift
out=$(/progs/dkq_nvme read "$bdf" --ns 1 --lba 0 --blocks 512 --qd 16 --timeout-ms 300 "$@" 2>&1)
rc=$?
echo "$out"
echo "first run exited with status $rc"
fails=0
[ $rc -ne 0 ] || { echo "FAILED: timed-out reads were not reported"; fails=1; }
echo "$out" | grep -q "resetting the controller" || { echo "FAILED: no controller reset"; fails=1; }
echo "$out" | grep -q "timed out" || { echo "FAILED: no command reported as timed out"; fails=1; }
out=$(/progs/dkq_nvme read "$bdf" --ns 1 --lba 0 --blocks 32 --qd 2 --timeout-ms 30000 "$@" 2>&1)
rc=$?
echo "$out" | grep -v '^000'
echo "second run exited with status $rc"
[ $rc -eq 0 ] || fails=1
[ $fails -eq 0 ]
