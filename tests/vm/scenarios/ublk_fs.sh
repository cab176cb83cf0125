#!/bin/sh
# ublk_fs.sh TAG SERVE-COMMAND...: a filesystem on a dkq-served disk, with
# unmodified Debian programs: mkfs.ext4 (which also discards the whole disk),
# mount, a tree of files with known contents, sync, umount, fsck.ext4 -fn
# clean, remount, every file compared, umount, then the server stopped with
# SIGTERM (device flush, device removed). The host then reads the same files
# out of the disk image with debugfs (ublk_fs.py).
. /progs/ublk_lib.sh
tag=$1
shift
serve_start "$tag" "$@"
mnt=/mnt/$tag
mkdir -p $mnt
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L "dkq-$tag" "$DEV" || fail "mkfs.ext4 on $DEV"
mount -t ext4 "$DEV" $mnt || fail "mount $DEV"
tree_write $mnt "$tag"
sync
umount $mnt || fail "umount"
fsck.ext4 -fn "$DEV"
rc=$?
[ $rc -eq 0 ] || fail "fsck.ext4 -fn $DEV: exit status $rc"
echo "$tag: fsck.ext4 -fn clean"
mount -t ext4 "$DEV" $mnt || fail "remount $DEV"
tree_check $mnt "$tag"
umount $mnt || fail "umount"
serve_stop "$tag"
