#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost for the SLURM tests: munged, slurmctld and
# slurmd started directly (no systemd), config, state and logs under DIR.
#
#   .ci/slurm-up.sh DIR        then: export SLURM_CONF=DIR/slurm.conf; .ci/slurm-down.sh DIR
#
# Needs root and Debian's slurm-wlm + munge. Partition 'debug' (the default) holds the one
# node 'localhost' with this machine's memory and at least 4 CPUs, so that several one-thread
# jobs (the K fold jobs of a stage) run side by side even on a 2-core machine. No accounting:
# job status comes from squeue, so finished jobs stay listed for MinJobAge seconds; every run
# of a job (each requeued attempt too) is recorded with its start and end in DIR/jobcomp.log.
set -euo pipefail

DIR=${1:?usage: slurm-up.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/slurm.conf
# Inside a job, the Snakemake jobstep plugin strips every SLURM_* variable (SLURM_CONF too)
# before its srun, which then reads the compiled-in default path: point it at this cluster.
SYSTEM_CONF=/etc/slurm/slurm.conf

for bin in munged slurmctld slurmd sinfo; do
    command -v "$bin" >/dev/null || { echo "slurm-up: $bin not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
if [ -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ]; then
    echo "slurm-up: $SYSTEM_CONF is a real file (a configured Slurm?); not replacing it" >&2
    exit 1
fi
if [ -L "$SYSTEM_CONF" ] && [ -e "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" != "$CONF" ]; then
    echo "slurm-up: $SYSTEM_CONF points at another running test cluster ($(readlink "$SYSTEM_CONF"))" >&2
    exit 1
fi

mkdir -p "$DIR"/{munge,state,spool}
chmod 0755 "$DIR/munge"  # clients open the socket in here

# --- munge: a private key and socket ------------------------------------------------------
if [ ! -f "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
    chmod 0400 "$DIR/munge/munge.key"
fi
SOCKET=$DIR/munge/munge.socket
munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" --origin=127.0.0.1

# --- slurm.conf -----------------------------------------------------------------------------
# The node: this machine's memory (as slurmd -C reports it) and max(its CPUs, 4) CPUs, counted
# one by one (CR_CPU: a hyperthreaded core is two slots); config_overrides keeps slurmd from
# draining a node declared bigger than the hardware.
MEMORY=$(slurmd -C | head -n1 | sed -n -e 's/.*RealMemory=\([0-9]*\).*/\1/p')
CPUS=$(nproc)
[ "$CPUS" -ge 4 ] || CPUS=4
cat >"$CONF" <<EOF
ClusterName=newstopic
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long (+1 s) before it may start again (default 120).
AuthInfo=socket=$SOCKET,cred_expire=10
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# Finished jobs stay visible to squeue for 10 min: the executor plugin reads their state there.
MinJobAge=600
ReturnToService=2
SchedulerParameters=sched_interval=2
NodeName=localhost CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
ln -sfn "$CONF" "$SYSTEM_CONF"

export SLURM_CONF=$CONF
slurmctld -f "$CONF"
slurmd -f "$CONF" -N localhost

# --- wait until the node takes jobs ---------------------------------------------------------
for _ in $(seq 60); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case $state in
    idle* | mixed* | allocated*) echo "slurm-up: cluster ready (SLURM_CONF=$CONF)"; exit 0 ;;
    down* | drain*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
echo "slurm-up: node not ready after 30 s (state '${state:-?}'); logs in $DIR" >&2
tail -n 5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
