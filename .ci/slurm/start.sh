#!/usr/bin/env bash
# Start a one-node SLURM (Debian 12: slurm-wlm 22.05 + munge) on this machine, for CI. Needs root.
# Installs the packages when missing, writes /etc/slurm/slurm.conf (the plugin's job-step helper drops
# SLURM_CONF, so the config must sit at the default path), starts munged, slurmctld and slurmd, and waits
# until the node is idle. The node advertises $BIOPRUNE_SLURM_GPUS (default 2) GPUs backed by stand-in
# device files (null devices), so the profile's GPU requests (sbatch --gpus=1) are scheduled as written and
# the jobs run on CPU (CUDA stays unavailable). No accounting (no slurmdbd): status checks go through squeue, which sees
# finished jobs for MinJobAge seconds. .ci/slurm/stop.sh stops exactly what this script started.
set -euo pipefail

STATE=${BIOPRUNE_SLURM_STATE:-/var/tmp/bioprune-ci-slurm}
GPUS=${BIOPRUNE_SLURM_GPUS:-2}
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
MARK="# bioprune CI one-node SLURM, written by .ci/slurm/start.sh (removed by stop.sh)"
log() { echo "[ci/slurm] $*"; }
die() { echo "[ci/slurm] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (installs packages, writes $CONF, starts daemons)"
for f in "$CONF" "$GRES_CONF"; do
    if [ -e "$f" ] && ! grep -qF "$MARK" "$f"; then
        die "$f exists and was not written by this script: refusing to replace a real SLURM set-up"
    fi
done
if [ -e "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    die "a CI SLURM is already running (state in $STATE); run .ci/slurm/stop.sh first"
fi
if pidof slurmctld slurmd >/dev/null; then
    die "slurmctld or slurmd is already running on this machine: not starting a second SLURM"
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
log "$(slurmctld -V)"

rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log" "$STATE/dev"
# slurmd's gpu GRES plugin counts device files: character devices like /dev/null stand in for GPUs
for i in $(seq 0 $((GPUS - 1))); do mknod "$STATE/dev/nvidia$i" c 1 3; done

# munge: reuse a running munged (a host that already has one), else start our own
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; using it"
else
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged did not start"
    log "munged started (pid $(cat "$STATE/munged.pid"))"
fi

HOST=$(hostname -s)
# The node as slurmd sees it (CPUs, sockets, cores, RealMemory), plus the device-less GPUs.
NODE=$(slurmd -C | head -n 1)
case "$NODE" in NodeName=*) ;; *) die "slurmd -C printed no node line: $NODE" ;; esac

cat >"$CONF" <<CONF
$MARK
ClusterName=bioprune-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# squeue reports a finished job for MinJobAge seconds: the plugin uses squeue for status only when this
# is at least 3x its first status-check delay
MinJobAge=600
ReturnToService=2
$NODE NodeAddr=127.0.0.1 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$GRES_CONF" <<CONF
$MARK
AutoDetect=off
NodeName=$HOST Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]
CONF

slurmctld -c   # -c: start from a clean state
slurmd
for _ in $(seq 100); do
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    case "$state" in down* | drain* | unk*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;; esac
    sleep 0.3
done
[ "$state" = idle ] || { tail -n 20 "$STATE"/log/*.log >&2; die "node $HOST is '$state', not idle"; }
log "SLURM up: node $HOST idle, $(sinfo -h -o '%c CPUs, %m MB, gres %G' -n "$HOST"), partition ci"
