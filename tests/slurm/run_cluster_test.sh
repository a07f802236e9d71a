#!/usr/bin/env bash
# `make test-slurm`: the workflow against a real single-node SLURM 22.05 cluster started here from
# Debian's packages (needs root and apt-get; skips otherwise). All cluster state lives in a temp
# folder; every daemon started is stopped by PID on exit, also on failure. See cluster_checks.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test-slurm: skipped (needs root and apt-get to install and start a SLURM cluster)"
  exit 0
fi
echo "test-slurm: installing slurm-wlm slurmdbd mariadb-server munge"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmdbd mariadb-server munge >/dev/null
T=$(mktemp -d /tmp/vcq-slurm-cluster.XXXXXX)
trap 'tests/slurm/stop_cluster.sh "$T"' EXIT
export SLURM_CONF="$T/etc/slurm.conf"
tests/slurm/start_cluster.sh "$T" accounting
"$PY" tests/slurm/cluster_checks.py accounting
# the same cluster without slurmdbd: the plugin's squeue status command must see jobs finish
tests/slurm/stop_cluster.sh "$T"
tests/slurm/start_cluster.sh "$T" noaccounting
"$PY" tests/slurm/cluster_checks.py noaccounting
echo "test-slurm: passed"
