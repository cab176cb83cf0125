#!/bin/sh
# ublk_fio.sh TAG SERVE-COMMAND...: fio (unmodified) through a dkq-served disk:
# random writes with crc32c verify at 4 KiB and 128 KiB, queue depth 32, an
# fsync every 32 writes; then O_DSYNC direct writes, which the block layer
# sends as FUA writes; then 128 writes each followed by its own fsync. fio exits non-zero on any verify error. Its JSON goes
# to the console between markers; ublk_fio.py compares fio's fsync count and
# the server's FUA count with what QEMU traced.
. /progs/ublk_lib.sh
tag=$1
shift
serve_start "$tag" "$@"
common="--filename=$DEV --direct=1 --ioengine=io_uring --output-format=json"
run() {
  name=$1
  shift
  fio --name="$tag-$name" $common "$@" > /tmp/fio.json 2> /tmp/fio.err
  rc=$?
  echo "@@FIO-JSON-BEGIN $tag $name"
  cat /tmp/fio.json
  echo "@@FIO-JSON-END $tag $name rc=$rc"
  cat /tmp/fio.err
  [ $rc -eq 0 ] || fail "fio $name: exit status $rc"
}
run verify4k --rw=randwrite --bs=4k --iodepth=32 --size=8M --verify=crc32c --do_verify=1 --fsync=32 --randrepeat=0
run verify128k --rw=randwrite --bs=128k --iodepth=32 --offset=16M --size=16M --verify=crc32c --do_verify=1 --fsync=32
run fua --rw=randwrite --bs=4k --iodepth=8 --offset=40M --size=1M --sync=dsync
# One write, one fsync, in turn: no two flushes can be merged by the block
# layer (block/blk-flush.c coalesces flushes that are pending together).
fio --name="$tag-fsync1" --filename=$DEV --direct=1 --ioengine=psync --rw=randwrite --bs=4k --offset=44M \
    --size=512k --fsync=1 --output-format=json > /tmp/fio.json 2> /tmp/fio.err
rc=$?
echo "@@FIO-JSON-BEGIN $tag fsync1"
cat /tmp/fio.json
echo "@@FIO-JSON-END $tag fsync1 rc=$rc"
[ $rc -eq 0 ] || fail "fio fsync1: exit status $rc"
serve_stop "$tag"
