"""What Snakemake would run, and why, read from its logger plugin interface instead of its text output.

``plan(workdir, *args)`` runs ``snakemake -n`` with the test logger plugin of tests/snakemake_plugins
(``--logger bioprune-plan``), which records each planned job (rule, wildcards, output files, shell
command, reason) and the job stats as JSON lines. The text Snakemake prints for people (job blocks, the
"Job stats" table) changes between versions; its log records' fields are a plugin interface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent / "snakemake_plugins"


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    output: list[str]
    shellcmd: str | None
    reason: str

    @property
    def wildcards_text(self) -> str:
        """Wildcards as Snakemake lists them: "strategy=cci, budget=rate0.8, seed=0" ("" for none)."""
        return ", ".join(f"{k}={v}" for k, v in self.wildcards.items())


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        """Rule -> number of planned jobs (empty when there is nothing to be done)."""
        return Counter(job.rule for job in self.jobs)

    def wildcards(self, rule: str) -> list[dict[str, str]]:
        """The wildcards of every planned job of ``rule``."""
        return [job.wildcards for job in self.jobs if job.rule == rule]

    def outputs(self, rule: str) -> list[str]:
        """The output files of every planned job of ``rule``."""
        return [f for job in self.jobs if job.rule == rule for f in job.output]

    def pairs(self) -> list[tuple[str, str]]:
        """(rule, wildcards text) of every planned job."""
        return [(job.rule, job.wildcards_text) for job in self.jobs]


def plan(
    workdir: Path,
    *args: str,
    snakefile: Path | None = None,
    env: dict[str, str] | None = None,
) -> Plan:
    """The jobs ``snakemake -n *args`` plans in ``workdir`` (the workdir's own Snakefile unless given).
    Fails the test, with the end of Snakemake's stderr, if the dry run fails."""
    fd, log = tempfile.mkstemp(prefix="snakemake-plan-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    env["BIOPRUNE_PLAN_LOG"] = log
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--logger", "bioprune-plan"]
    cmd += ["-d", str(workdir)] + (["-s", str(snakefile)] if snakefile else [])
    try:
        proc = subprocess.run([*cmd, *args], cwd=workdir, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
        lines = [json.loads(line) for line in Path(log).read_text().splitlines()]
    finally:
        os.unlink(log)
    jobs = [x for x in lines if x["event"] == "job"]
    result = Plan([Job(x["rule"], x["wildcards"], x["output"], x["shellcmd"], x["reason"]) for x in jobs])
    stats = [x["stats"] for x in lines if x["event"] == "stats"]
    # Snakemake's own job stats (logged before and after the job list) agree with the jobs recorded
    for table in stats:
        assert Counter({k: v for k, v in table.items() if k != "total"}) == result.counts, (table, result)
        assert table["total"] == len(result.jobs)
    if not stats:
        assert result.jobs == [], "jobs planned without job stats"
    return result
