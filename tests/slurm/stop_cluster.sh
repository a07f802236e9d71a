#!/usr/bin/env bash
# Stop the daemons that start_cluster.sh DIR started, by their PIDs (newest first), then every
# process the test cluster's jobs left behind (a job step's slurmstepd, a step or the Snakemake
# inside a job that outlived its job), and remove the /etc/slurm/slurm.conf link it made.
T=${1:?usage: stop_cluster.sh DIR}
[ -f "$T/pids" ] || exit 0
stop() {  # stop PID: SIGTERM, up to 10 s, then SIGKILL
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 40); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$1" 2>/dev/null || true
}
for pid in $(tac "$T/pids"); do stop "$pid"; done
: > "$T/pids"
# Left by jobs: processes of a job of this cluster (SLURM_CLUSTER_NAME=vcq with a SLURM_JOB_ID) and
# the slurmstepds started by this cluster's slurmd (SLURM_CONF under DIR); never this script's own.
left=()
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] && continue
  env=$( { tr '\0' '\n' < "$dir/environ"; } 2>/dev/null) || continue
  comm=$(cat "$dir/comm" 2>/dev/null) || continue
  if { grep -qx "SLURM_CLUSTER_NAME=vcq" <<< "$env" && grep -q "^SLURM_JOB_ID=" <<< "$env"; } ||
     { [ "$comm" = slurmstepd ] && grep -qx "SLURM_CONF=$T/etc/slurm.conf" <<< "$env"; }; then
    left+=("$pid")
  fi
done
if [ ${#left[@]} -gt 0 ]; then
  echo "slurm cluster: stopping ${#left[@]} process(es) its jobs left: ${left[*]}" >&2
  for pid in "${left[@]}"; do stop "$pid" & done
  wait
fi
if [ -f "$T/created" ]; then
  rm -f "$(cat "$T/created")"
  rm -f "$T/created"
fi
