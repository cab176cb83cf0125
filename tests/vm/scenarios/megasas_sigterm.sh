#!/bin/sh
# SIGTERM in the middle of `dkq-scsi perf` with commands in flight: the
# controller is stopped (in-flight commands completed with an error) before
# any data buffer is unmapped, and the program ends on its own.
out=$(timeout -s TERM 2 /progs/dkq_scsi perf "$@" --time 30 2>&1)
rc=$?
echo "$out"
echo "dkq-scsi exited with status $rc after SIGTERM"
[ $rc -ne 137 ] && echo "$out" | grep -q "stopped by a signal"
