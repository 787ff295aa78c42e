#!/usr/bin/env bash
# Stop the test cluster started by slurm-up.sh DIR: each daemon by the PID in its pid file
# (never by name: other clusters or users may run the same programs), then remove the
# /etc/slurm/slurm.conf link if it points at this cluster. Safe to run twice.
set -uo pipefail

DIR=${1:?usage: slurm-down.sh DIR}
DIR=$(cd "$DIR" 2>/dev/null && pwd) || exit 0
export SLURM_CONF=$DIR/slurm.conf

# Cancel what is left so that slurmd has no job steps to wait for.
if [ -f "$DIR/slurmctld.pid" ] && command -v scancel >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi

stop() {  # stop PIDFILE NAME: SIGTERM, wait up to 10 s, then SIGKILL
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-down: $name ($pid) ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

stop "$DIR/slurmd.pid" slurmd
stop "$DIR/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged

if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
echo "slurm-down: stopped (logs kept in $DIR)"
