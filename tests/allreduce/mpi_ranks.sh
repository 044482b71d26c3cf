# Sourced by the tests that kill or stop one rank of an mpirun job: finds the ranks' processes.
# Needs $strand (the binary the ranks run) and $mpirun_pid (empty before the job starts).

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
