#!/usr/bin/env bash
# Inside scripts/netns-hosts: the SageMaker-style launch. Runs the same `strand train` command
# on every namespace host (SM_HOSTS = their addresses, SM_CURRENT_HOST = the host's own,
# one STRAND_PS_TOKEN), host i logging to OUT/host-i.log (stderr) and OUT/host-i.out (stdout)
# and leaving its exit status in OUT/host-i.rc. Exits with host 1's status.
# Usage: sm_launch.sh OUT STRAND ARG...
set -uo pipefail
out=$1
shift
[[ -n "${NETNS_MPIRUN_ARGS:-}" ]] || { echo "sm_launch.sh: run me inside scripts/netns-hosts" >&2; exit 2; }
# netns-hosts' rsh agent runs a command line on a host: "agent HOST COMMAND".
agent=$(sed -n 's/.*plm_rsh_agent \([^ ]*\).*/\1/p' <<<"$NETNS_MPIRUN_ARGS")
read -r -a hosts <<<"$NETNS_HOSTS"
export SM_HOSTS="[$(printf '"%s",' "${hosts[@]}" | sed 's/,$//')]"
export STRAND_PS_TOKEN="${STRAND_PS_TOKEN:-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}"
command=$(printf '%q ' "$@")
pids=()
for i in "${!hosts[@]}"; do
  n=$((i + 1))
  SM_CURRENT_HOST=${hosts[$i]} "$agent" "${hosts[$i]}" \
    "$command >'$out/host-$n.out' 2>'$out/host-$n.log'; echo \$? >'$out/host-$n.rc'" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
exit "$(cat "$out/host-1.rc")"
