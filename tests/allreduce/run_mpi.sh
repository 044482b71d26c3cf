#!/usr/bin/env bash
# Runs PROGRAM under 'mpirun -np NP' the way every allreduce test does: allowed as root, more
# ranks than cores allowed, no binding. On this machine TCP stays on loopback; inside
# scripts/netns-hosts (NETNS_MPIRUN_ARGS set) it uses the namespace hosts, placed by
# MPI_HOSTS (mpirun's -H list, e.g. "10.77.0.1:2,10.77.0.2:2").
# Usage: run_mpi.sh NP PROGRAM [ARG...]
set -euo pipefail
np=$1
shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [[ -n "${NETNS_MPIRUN_ARGS:-}" ]]; then
  # shellcheck disable=SC2086  # NETNS_MPIRUN_ARGS is a list of options
  exec mpirun -np "$np" --oversubscribe --bind-to none --mca btl self,vader,tcp $NETNS_MPIRUN_ARGS \
    ${MPI_HOSTS:+-H "$MPI_HOSTS"} "$@"
fi
exec mpirun -np "$np" --oversubscribe --bind-to none --mca btl self,vader,tcp \
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$@"
