#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from scratch (for the cluster tests and for trying
# `dcc sweep --executor slurm` without a cluster): Debian's slurm-wlm and munge (installed with
# apt-get when missing, as root), a munge key, a slurm.conf and every daemon's state in one folder,
# munged, slurmctld and slurmd started as root (no systemd), localhost only, proctrack/linuxproc,
# task/none, no accounting (sacct does not work: the sweep then reads the queue instead).
#
#   bash scripts/slurm_up.sh [STATE_DIR]     # default $DCC_SLURM_DIR, else /tmp/dcc-slurm
#   source STATE_DIR/env                     # SLURM_CONF for sbatch, squeue, sinfo, dcc sweep
#   bash scripts/slurm_down.sh [STATE_DIR]   # stops the daemons by their pids
#
# Partition "debug" (the default): this host's CPUs, no GPUs. Ports: $DCC_SLURM_PORT (default
# 6817) for slurmctld, the next one for slurmd. Exit status 0 once `sinfo` shows the node idle.
set -euo pipefail
STATE="$(realpath -m "${1:-${DCC_SLURM_DIR:-/tmp/dcc-slurm}}")"
PORT="${DCC_SLURM_PORT:-6817}"
say() { echo "slurm_up: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "needs root (slurmd runs jobs as their users; munged and the daemons run as root here)"
    exit 3
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || { say "slurm-wlm and munge are missing and there is no apt-get"; exit 3; }
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    say "already running in $STATE (bash scripts/slurm_down.sh $STATE stops it)"
    exit 0
fi

mkdir -p "$STATE"/{munge,ctld,spool,log}
chmod 700 "$STATE/munge"
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"

# munge: its own key, socket, pid and seed files (the system's munged, if any, is left alone)
if [ ! -s "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
fi
chmod 400 "$STATE/munge/munge.key"
SOCKET="$STATE/munge/munge.socket"
munged --force --key-file="$STATE/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
    --log-file="$STATE/log/munged.log"

cat > "$STATE/slurm.conf" <<EOF
ClusterName=dcc
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
LaunchParameters=use_interactive_step
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
echo "export SLURM_CONF=$STATE/slurm.conf" > "$STATE/env"
export SLURM_CONF="$STATE/slurm.conf"

slurmctld -i -f "$SLURM_CONF"   # -i: ignore state from an earlier cluster in this folder
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    state="$(sinfo -h -o %T -n "$HOST" 2>/dev/null || true)"
    if [ "$state" = idle ]; then
        say "up: partition debug, node $HOST ($CPUS CPUs, no GPUs); source $STATE/env"
        exit 0
    fi
    sleep 1
done
say "the node did not become idle in 60 s (state: ${state:-none}); logs in $STATE/log"
exit 1
