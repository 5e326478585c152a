#!/usr/bin/env bash
# CI: run the embedded example through `snakemake --profile slurm` (the shipped profile installed as a lab would,
# `bioprune install-profile slurm` into a fresh HOME) on a real one-node SLURM
# (.ci/slurm/start.sh), then stop it. The profile is used as written: its GPU steps ask for GPUs
# (sbatch --gpus=1), which the node grants from device-less GPU entries, so the jobs run on CPU.
# The example is trimmed (.test/ci_slurm.yaml: one rate, three strategies, two models, two tasks; threads=1
# so two jobs share the 2 CPUs) to keep the step at a few minutes; every rule still runs as a SLURM job.
# Status checks use squeue (no accounting daemon here). Needs root. Usage: .ci/slurm/run.sh [snakemake args]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${BIOPRUNE_BIN:-$REPO/.venv/bin}
[ -x "$BIN/snakemake" ] || BIN=$(dirname "$(command -v snakemake)")
WORK=$(mktemp -d /var/tmp/bioprune-slurm-run.XXXXXX)
log() { echo "[ci/slurm] $*"; }

cleanup() {
    rc=$?
    if [ $rc -ne 0 ]; then
        log "FAILED (exit $rc); last lines of the snakemake log, SLURM job logs and daemon logs:"
        tail -n 40 "$WORK/snakemake.log" 2>/dev/null || true
        find "$WORK/.snakemake/slurm_logs" -name '*.log' -exec tail -n 20 {} + 2>/dev/null | tail -n 60 || true
        tail -n 20 /var/tmp/bioprune-ci-slurm/log/*.log 2>/dev/null || true
    fi
    "$REPO/.ci/slurm/stop.sh"
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

"$REPO/.ci/slurm/start.sh"

# The example's files are given relative to the run folder.
ln -s "$REPO/example" "$WORK/example"
# The trimmed example config (on top of the defaults), shared with the tests: .test/ci_slurm.yaml.
cp "$REPO/.test/ci_slurm.yaml" "$WORK/config.yaml"

# The profile as a lab installs it: copied into a fresh HOME's ~/.config/snakemake and named bare.
export HOME="$WORK/home" && unset XDG_CONFIG_HOME && mkdir -p "$HOME"
"$BIN/python" -m bioprune install-profile slurm | sed 's/^/[ci\/slurm] /'

# Without an account the run stops at start-up with what to set, before any sbatch or sacct call.
set +e
"$BIN/snakemake" --profile slurm --directory "$WORK" --configfile "$WORK/config.yaml" >"$WORK/no_account.log" 2>&1
status=$?
set -e
grep -q "no SLURM account is configured" "$WORK/no_account.log" && [ $status -ne 0 ] \
    || { tail -n 20 "$WORK/no_account.log"; log "no clear stop without a SLURM account"; exit 1; }
! grep -q "has been submitted with SLURM jobid" "$WORK/no_account.log" || { log "submitted without an account"; exit 1; }
log "no account: stops before submitting ($(grep -o 'no SLURM account is configured' "$WORK/no_account.log"))"

log "snakemake --profile slurm (bare name, installed profile) on the embedded example (work folder $WORK)"
start=$(date +%s)
# Flags that only adapt the plugin to this node: squeue for status (no slurmdbd), no account, short polls.
set +e
"$BIN/snakemake" --profile slurm --directory "$WORK" --configfile "$WORK/config.yaml" \
    --slurm-status-command squeue --slurm-no-account --slurm-init-seconds-before-status-checks 2 \
    --slurm-keep-successful-logs --latency-wait 10 "$@" >"$WORK/snakemake.log" 2>&1 &
pid=$!
tail -n +1 -f "$WORK/snakemake.log" --pid=$pid | grep --line-buffered -E \
    "has been submitted with SLURM jobid|steps \([0-9]+%\) done|Error|error:" | sed -u 's/^/[ci\/slurm]   /'
wait $pid
status=$?
set -e
elapsed=$(( $(date +%s) - start ))
[ $status -eq 0 ] || { log "snakemake exited with $status"; exit $status; }

done_line=$(grep -E "steps \(100%\) done" "$WORK/snakemake.log" | tail -n 1)
[ -n "$done_line" ] || { log "no '100% done' line in the snakemake log"; exit 1; }
submitted=$(grep -c "has been submitted with SLURM jobid" "$WORK/snakemake.log")
# Every job the run submitted, as SLURM saw it (squeue keeps finished jobs for MinJobAge): id|state|tres|comment
squeue --states=all --noheader -O "JobID:|,State:|,tres-per-job:|,Comment:" >"$WORK/jobs.txt"
completed=$(grep -c '|COMPLETED|' "$WORK/jobs.txt" || true)
gpu_jobs=$(grep '|COMPLETED|gres:gpu' "$WORK/jobs.txt" | wc -l)
[ "$completed" -eq "$submitted" ] || { cat "$WORK/jobs.txt"; log "$completed of $submitted SLURM jobs COMPLETED"; exit 1; }
[ "$gpu_jobs" -gt 0 ] || { cat "$WORK/jobs.txt"; log "no job asked for a GPU"; exit 1; }
# rule name per job, from the plugin's job comment rule_<name>[_wildcards_<values>]
rules=$(cut -d'|' -f4 "$WORK/jobs.txt" | sed -E 's/^rule_//; s/_wildcards_.*$//' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
gpu_rules=$(grep '|gres:gpu' "$WORK/jobs.txt" | cut -d'|' -f4 | sed -E 's/^rule_//; s/_wildcards_.*$//' | sort -u | paste -sd, -)
report="$WORK/results/report/report.md"
[ -s "$report" ] || { log "no report at $report"; exit 1; }
log "snakemake: $done_line"
log "SLURM: $submitted jobs submitted, $completed COMPLETED; $gpu_jobs ran with a GPU (gres:gpu:1: $gpu_rules)"
log "SLURM jobs per rule: $rules"
log "report: results/report/report.md ($(wc -l <"$report") lines)"
log "OK: the embedded example ran through snakemake --profile slurm in ${elapsed} s"

# A pruning rate changed from the command line plans only selection and what follows it.
"$BIN/snakemake" -n --directory "$WORK" --configfile "$WORK/config.yaml" --config 'select={rates: [0.95]}' \
    >"$WORK/rate.log" 2>&1 || { tail -n 20 "$WORK/rate.log"; log "--config rate change failed"; exit 1; }
planned=$(awk '/^Job stats:/{f=1; next} f && /^total/{exit} f && NF == 2 && $2 ~ /^[0-9]+$/ {printf "%s%s x%s", sep, $1, $2; sep=", "}' "$WORK/rate.log")
log "--config 'select={rates: [0.95]}' plans: $planned"
if echo "$planned" | grep -qE "(^|, )(ingest|dedup|decontaminate|holdout|shard|reference|fisher|fisher_reduce|score|merge_scores) x"; then
    log "a rate change replans steps before selection"; exit 1
fi
