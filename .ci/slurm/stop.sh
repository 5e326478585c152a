#!/usr/bin/env bash
# Stop the daemons .ci/slurm/start.sh started (by their pid files) and remove the config it wrote.
set -uo pipefail

STATE=${BIOPRUNE_SLURM_STATE:-/var/tmp/bioprune-ci-slurm}
MARK="# bioprune CI one-node SLURM, written by .ci/slurm/start.sh (removed by stop.sh)"
log() { echo "[ci/slurm] $*"; }

# Jobs first, so that slurmd does not leave job processes behind.
if [ -e "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null; then
    scancel --user=root 2>/dev/null || true
fi
for name in slurmd slurmctld munged; do
    pidfile="$STATE/$name.pid"
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
done
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [ -e "$f" ] && grep -qF "$MARK" "$f"; then rm -f "$f"; fi
done
rm -rf "$STATE"
