#!/bin/sh
# SIGTERM in the middle of `dkq-nvme perf`: the program must stop its threads,
# delete its queues, shut the controller down (CC.SHN, bounded wait) and say so.
out=$(timeout -s TERM 2 /progs/dkq_nvme perf "$@" --time 30 2>&1)
rc=$?
echo "$out"
echo "dkq-nvme exited with status $rc after SIGTERM"
echo "$out" | grep -q "stopped by a signal; controller shut down cleanly"
