#!/usr/bin/env bash
# Stop the daemons that start_cluster.sh DIR started, by their PIDs (newest first), and remove the
# /etc/slurm/slurm.conf link it made.
T=${1:?usage: stop_cluster.sh DIR}
[ -f "$T/pids" ] || exit 0
for pid in $(tac "$T/pids"); do
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
done
: > "$T/pids"
if [ -f "$T/created" ]; then
  rm -f "$(cat "$T/created")"
  rm -f "$T/created"
fi
