# Sourced by the tests that kill or stop one rank of an mpirun job (after test_lib.sh): finds
# the ranks' processes, and at exit kills whatever is left of the job and removes $work.
# Needs $strand (the binary the ranks run); the test sets $mpirun_pid when it starts the job.
mpirun_pid=
cleanup_job() {
  [[ -n "$mpirun_pid" ]] && kill -9 "$mpirun_pid" 2>/dev/null
  for pid in $(rank_pids); do kill -9 "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup_job EXIT

# The strand processes of this job: mpirun's children that run $strand.
rank_pids() {
  [[ -n "$mpirun_pid" ]] || return 0
  for pid in $(pgrep -P "$mpirun_pid" 2>/dev/null); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$strand")" ]] && echo "$pid"
  done
}
rank_pid() { # RANK
  for pid in $(rank_pids); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && echo "$pid"
  done
}
