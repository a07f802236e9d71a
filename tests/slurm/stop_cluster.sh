#!/usr/bin/env bash
# Stop the daemons that start_cluster.sh DIR started, by their PIDs (newest first).
T=${1:?usage: stop_cluster.sh DIR}
[ -f "$T/pids" ] || exit 0
for pid in $(tac "$T/pids"); do
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
done
: > "$T/pids"
