#!/usr/bin/env bash
# Runs PROGRAM under 'mpirun -np NP' on this machine, the way every allreduce test does:
# allowed as root, more ranks than cores allowed, shared memory without the single-copy
# mechanism (containers often forbid the ptrace-like process_vm_readv it needs).
# Usage: run_mpi.sh NP PROGRAM [ARG...]
set -euo pipefail
np=$1
shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np "$np" --oversubscribe --bind-to none --mca btl self,vader,tcp \
  --mca btl_vader_single_copy_mechanism none --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$@"
