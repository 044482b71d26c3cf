# Sourced by the Slurm tests (after test_lib.sh): start_slurm starts a one-node Slurm cluster of
# this machine's real daemons (munged, slurmctld, slurmd from Debian's slurm-wlm and munge),
# with its own key, configuration, state and ports under $work/slurm, and points srun/sbatch at
# it (SLURM_CONF); stop_slurm ends the daemons (the test's EXIT trap must call it). Skips the
# test (exit 77) where the daemons are missing or cannot start, saying why.
slurm_dir=
slurm_pids=()
skip() { echo "SKIP: $*"; exit 77; }
stop_slurm() {
  ((${#slurm_pids[@]})) && kill "${slurm_pids[@]}" 2>/dev/null
  ((${#slurm_pids[@]})) && wait "${slurm_pids[@]}" 2>/dev/null
  slurm_pids=()
}
# A free TCP port on 127.0.0.1.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
start_slurm() {
  local m
  for m in munged mungekey slurmctld slurmd srun sbatch sinfo; do
    command -v "$m" >/dev/null || skip "no $m (scripts/setup installs slurm-wlm and munge)"
  done
  ((EUID == 0)) || skip "the Slurm daemons run as root here (not root)"
  slurm_dir=$work/slurm
  mkdir -p "$slurm_dir"/{state,spool,munge}
  chmod 700 "$slurm_dir/munge"
  mungekey --create --keyfile="$slurm_dir/munge/key" >/dev/null 2>&1 ||
    skip "mungekey cannot create a key"
  chmod 400 "$slurm_dir/munge/key"
  munged --force --key-file="$slurm_dir/munge/key" --socket="$slurm_dir/munge/socket" \
    --pid-file="$slurm_dir/munge/pid" --log-file="$slurm_dir/munge/log" \
    --seed-file="$slurm_dir/munge/seed" --foreground &
  slurm_pids+=($!)
  local node ctld_port d_port
  node=$(hostname -s)
  ctld_port=$(free_port)
  d_port=$(free_port)
  # CPUs=4 on a 2-core machine: four one-thread tasks fit; SlurmdParameters lets slurmd take
  # the configured count over the one it finds.
  cat >"$slurm_dir/slurm.conf" <<EOF_CONF
ClusterName=strand-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$slurm_dir/munge/socket
StateSaveLocation=$slurm_dir/state
SlurmdSpoolDir=$slurm_dir/spool
SlurmctldPidFile=$slurm_dir/slurmctld.pid
SlurmdPidFile=$slurm_dir/slurmd.pid
SlurmctldLogFile=$slurm_dir/slurmctld.log
SlurmdLogFile=$slurm_dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF_CONF
  export SLURM_CONF=$slurm_dir/slurm.conf
  for _ in $(seq 50); do [[ -S "$slurm_dir/munge/socket" ]] && break; sleep 0.1; done
  [[ -S "$slurm_dir/munge/socket" ]] || skip "munged did not start: $(tail -n 3 "$slurm_dir/munge/log")"
  slurmctld -D -f "$SLURM_CONF" >"$slurm_dir/slurmctld.out" 2>&1 &
  slurm_pids+=($!)
  slurmd -D -f "$SLURM_CONF" >"$slurm_dir/slurmd.out" 2>&1 &
  slurm_pids+=($!)
  for _ in $(seq 150); do
    sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)' && return 0
    sleep 0.2
  done
  skip "the Slurm node did not come up within 30 s: $(tail -n 3 "$slurm_dir/slurmctld.log" \
    "$slurm_dir/slurmd.log" 2>/dev/null)"
}
