#!/usr/bin/env bash
# Stops the one-node cluster of scripts/slurm_up.sh: its jobs, then slurmd, slurmctld and munged,
# each by the pid in its pid file (nothing else is signalled). Its folder is kept (logs) unless
# --clean is given.
#
#   bash scripts/slurm_down.sh [STATE_DIR] [--clean]   # default $DCC_SLURM_DIR, else /tmp/dcc-slurm
set -uo pipefail
CLEAN=0
ARGS=()
for a in "$@"; do
    if [ "$a" = --clean ]; then CLEAN=1; else ARGS+=("$a"); fi
done
STATE="$(realpath -m "${ARGS[0]:-${DCC_SLURM_DIR:-/tmp/dcc-slurm}}")"

if [ -f "$STATE/slurm.conf" ] && [ -f "$STATE/slurmctld.pid" ]; then
    SLURM_CONF="$STATE/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
stop() {  # stop PIDFILE: TERM, wait up to 10 s, then KILL
    local file="$1" pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$file"
}
stop "$STATE/slurmd.pid"
stop "$STATE/slurmctld.pid"
stop "$STATE/munge/munged.pid"
if [ "$CLEAN" = 1 ]; then
    rm -rf "$STATE"
fi
echo "slurm_down: stopped the cluster of $STATE" >&2
