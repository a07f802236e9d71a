#!/usr/bin/env bash
# Start a throw-away SLURM 22.05 cluster under DIR: munged, MariaDB, slurmdbd, slurmctld and one
# slurmd sized to this machine, plus two GPU nodes (8 GPUs, 128 CPUs each) that are declared but
# never started, for `sbatch --test-only` at paper scale, and a partition `short` (MaxTime 5 min)
# on this host for the preflight's MaxTime check. slurmctld only plans jobs on nodes that
# answer its pings, so the GPU nodes' address is this host's (its slurmd answers for them); no job
# is ever sent there, their partition is only used with --test-only. No systemd: every daemon runs in the
# foreground of a background job and its PID goes to DIR/pids; stop_cluster.sh DIR kills them.
#   usage: start_cluster.sh DIR [accounting|noaccounting]
set -euo pipefail
# the daemons live in sbin, which a minimal PATH (CI, cron, env -i) leaves out
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
T=$(realpath "$1")
MODE=${2:-accounting}
mkdir -p "$T"/{etc,munge,mysql,state,spool,log,run}
: > "$T/pids"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
PORT_BASE=${VCQ_SLURM_PORT_BASE:-16817}

started() { echo "$1" >> "$T/pids"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "slurm cluster: $what did not come up within ${limit}s (logs in $T/log)" >&2
  return 1
}

# munge: a fresh key; munged refuses to run as root without --force
if [ ! -f "$T/munge/munge.key" ]; then
  dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$T/munge/munge.key"
fi
chmod 700 "$T/munge"
munged --foreground --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.socket" \
  --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/seed" >> "$T/log/munged.out" 2>&1 &
started $!
wait_for 10 munged test -S "$T/munge/munge.socket"

if [ "$MODE" = accounting ]; then
  if [ ! -d "$T/mysql/mysql" ]; then
    mariadb-install-db --datadir="$T/mysql" --user=root --auth-root-authentication-method=normal \
      > "$T/log/mariadb-install.log" 2>&1
  fi
  mariadbd --datadir="$T/mysql" --socket="$T/run/mysql.sock" --port=$((PORT_BASE + 3)) \
    --bind-address=127.0.0.1 --user=root --pid-file="$T/run/mysql.pid" \
    --log-error="$T/log/mariadb.log" --skip-log-bin >> "$T/log/mariadbd-out.out" 2>&1 &
  started $!
  wait_for 60 MariaDB mariadb -S "$T/run/mysql.sock" -u root -e "select 1"
  mariadb -S "$T/run/mysql.sock" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'vcq';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT_BASE + 2))
# the munge socket of the slurmdbd connection (slurm.conf's AuthInfo does not reach it in 22.05)
AccountingStoragePass=$T/munge/munge.socket
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

cat > "$T/etc/slurm.conf" <<CONF
ClusterName=vcq
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
AuthType=auth/munge
# a requeued job may start again after the launch credential's lifetime (default 120 s): 10 s
# keeps the slice tests short
AuthInfo=socket=$T/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd-%n.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MessageTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
$ACCT
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
NodeName=gpu[1-2] NodeAddr=127.0.0.2 CPUs=128 RealMemory=1000000 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=gpu[1-2] MaxTime=INFINITE State=UP
PartitionName=short Nodes=$HOST MaxTime=5 State=UP
CONF
cat > "$T/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=gpu[1-2] Name=gpu Count=8
CONF
export SLURM_CONF="$T/etc/slurm.conf"
# The plugin's job step drops SLURM_CONF from the environment of its srun, so srun inside a job
# reads the default /etc/slurm/slurm.conf (as on any real cluster): link it there while we run.
if [ ! -e /etc/slurm/slurm.conf ]; then
  mkdir -p /etc/slurm
  ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
  echo /etc/slurm/slurm.conf > "$T/created"
elif [ "$(readlink /etc/slurm/slurm.conf)" != "$SLURM_CONF" ]; then
  echo "slurm cluster: /etc/slurm/slurm.conf exists (a real cluster?); not starting a test cluster here" >&2
  exit 1
fi

if [ "$MODE" = accounting ]; then
  cat > "$T/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT_BASE + 2))
SlurmUser=root
PidFile=$T/run/slurmdbd.pid
LogFile=$T/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT_BASE + 3))
StorageUser=slurm
StoragePass=vcq
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$T/etc/slurmdbd.conf"
  slurmdbd -D >> "$T/log/slurmdbd-out.out" 2>&1 &
  started $!
  wait_for 60 slurmdbd sacctmgr -i list cluster
  sacctmgr -i add cluster vcq >/dev/null || true
  sacctmgr -i add account vcq Cluster=vcq Description=vcq Organization=vcq >/dev/null || true
  sacctmgr -i add user root Account=vcq Cluster=vcq >/dev/null || true
fi

slurmctld -D -i >> "$T/log/slurmctld-out.out" 2>&1 &
started $!
wait_for 60 slurmctld scontrol ping
slurmd -D -N "$HOST" >> "$T/log/slurmd-out.out" 2>&1 &
started $!
wait_for 60 "slurmd on $HOST" sh -c "sinfo -h -N -n $HOST -o %t | grep -Eq '^(idle|mix|alloc)'"
wait_for 60 "declared GPU nodes" sh -c "sinfo -h -p gpu -o %t | grep -qx idle"
echo "slurm cluster up under $T (SLURM_CONF=$SLURM_CONF, mode $MODE)"
