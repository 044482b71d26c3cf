#!/usr/bin/env bash
# Allreduce across two namespace hosts (scripts/netns-hosts), 4 ranks, 2 per host: exact sums
# for every algorithm over real TCP, and nothing of the hosts is left behind.
# Usage: test_netns_hosts.sh TEST_ALLREDUCE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
before=$(ip netns list 2>/dev/null | grep -c '^strand-')
rc=0
MPI_HOSTS=10.77.0.1:2,10.77.0.2:2 "$here/../../scripts/netns-hosts" -k 2 -- "$here/run_mpi.sh" 4 "$1" || rc=$?
((rc == 77)) && exit 77
after=$(ip netns list 2>/dev/null | grep -c '^strand-')
((after == before)) || { echo "FAIL: namespaces left behind: $(ip netns list)"; exit 1; }
((rc == 0)) || { echo "FAIL: allreduce across namespace hosts exited $rc"; exit 1; }
echo PASS
