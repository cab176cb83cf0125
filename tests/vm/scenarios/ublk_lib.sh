# Shared by the ublk guest scripts (sourced; busybox sh). Each script is packed
# into /progs by the harness together with this file.
#
# serve_start TAG CMD...   runs a `serve` in the background, waits for its
#                          {"event":"serving"} line, sets SRV (pid) and DEV
#                          (/dev/ublkbN) - or fails after 20 s.
# serve_stop TAG           SIGTERM, waits, checks exit status 0 and that the
#                          block device is gone; prints the server's output.
# gen TAG FILE LINES       the known contents of one file (the host rebuilds
#                          the same bytes: ublk_checks.py expected_file()).
# tree_write/tree_check DIR TAG   the tree of files with known contents.

fail() { echo "FAIL: $*"; exit 1; }

serve_start() {
  tag=$1; shift
  "$@" > /tmp/serve-$tag.out 2> /tmp/serve-$tag.err &
  SRV=$!
  DEV=""
  i=0
  while [ $i -lt 400 ]; do
    DEV=$(sed -n 's/.*"event":"serving".*"device":"\([^"]*\)".*/\1/p' /tmp/serve-$tag.out | tail -1)
    [ -n "$DEV" ] && [ -b "$DEV" ] && break
    if ! kill -0 $SRV 2>/dev/null; then
      cat /tmp/serve-$tag.err
      fail "$tag: server exited before serving"
    fi
    sleep 0.05
    i=$((i + 1))
  done
  [ -n "$DEV" ] && [ -b "$DEV" ] || { cat /tmp/serve-$tag.err; fail "$tag: no block device after 20 s"; }
  b=${DEV#/dev/}
  echo "$tag: serving on $DEV: logical block $(cat /sys/block/$b/queue/logical_block_size)," \
       "max request $(cat /sys/block/$b/queue/max_sectors_kb) KiB, write cache '$(cat /sys/block/$b/queue/write_cache)'," \
       "fua $(cat /sys/block/$b/queue/fua), discard max $(cat /sys/block/$b/queue/discard_max_bytes)," \
       "write zeroes max $(cat /sys/block/$b/queue/write_zeroes_max_bytes), size $(cat /sys/block/$b/size) sectors"
}

serve_stop() {
  tag=$1
  kill -TERM $SRV
  wait $SRV
  rc=$?
  echo "----- $tag server stderr"
  cat /tmp/serve-$tag.err
  echo "----- $tag server stdout"
  cat /tmp/serve-$tag.out
  [ $rc -eq 0 ] || fail "$tag: server exited with $rc after SIGTERM"
  [ -e "$DEV" ] && fail "$tag: $DEV still exists after the server stopped"
  grep -q '"event":"stopped".*"final_flush":true' /tmp/serve-$tag.out || fail "$tag: no final flush reported"
  echo "$tag: server stopped cleanly, $DEV removed"
}

gen() {
  awk -v t="$1" -v f="$2" -v n="$3" \
    'BEGIN { for (j = 0; j < n; j++) printf "dkq %s %s %07d the quick brown fox jumps over the lazy dog\n", t, f, j }'
}

# name:lines - the same list is in ublk_checks.py (TREE)
TREE="d1/a:10 d1/b:1000 d2/c:30000 d2/d3/e:1 f:60000"

tree_write() {
  for spec in $TREE; do
    f=${spec%%:*}
    n=${spec##*:}
    mkdir -p "$(dirname "$1/$f")"
    gen "$2" "$f" "$n" > "$1/$f" || fail "writing $1/$f"
  done
}

tree_check() {
  for spec in $TREE; do
    f=${spec%%:*}
    n=${spec##*:}
    gen "$2" "$f" "$n" > /tmp/expect || fail "gen"
    cmp /tmp/expect "$1/$f" || fail "$1/$f differs from what was written"
  done
  echo "tree $2 in $1: every file identical"
}
