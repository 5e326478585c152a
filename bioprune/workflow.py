"""Helpers the Snakefile calls at start-up (kept here so they are tested and lint-free)."""

from __future__ import annotations

import os
import sys


def expose_package(basedir: str) -> None:
    """Make rules' ``python -m bioprune`` find this checkout's package and its interpreter.

    PATH: the Python that runs snakemake (a venv's, even when not activated) comes first; under
    ``--sdm conda`` Snakemake puts each job's env before it. PYTHONPATH: the package in ``basedir`` is
    importable inside conda envs, which hold only its dependencies.
    """
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    paths = [basedir, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def slurm_account_problem(default_resources, rule_resources, no_account: bool) -> str | None:
    """Why a SLURM run cannot start as configured, or None.

    Without a ``slurm_account`` resource the SLURM executor plugin guesses one with ``sacct``, which
    fails (or stops the run) on clusters that keep no job accounting. So an account must be given, or
    ``--slurm-no-account`` said on purpose. ``rule_resources``: rule -> its set-resources.
    """
    if no_account or "slurm_account" in (default_resources or {}):
        return None
    if any("slurm_account" in (res or {}) for res in (rule_resources or {}).values()):
        return None
    return (
        "no SLURM account is configured: the SLURM executor would guess one with `sacct`, which fails "
        "on clusters without job accounting. Set `slurm_account: <your account>` under "
        "default-resources in the slurm profile (profiles/slurm/config.yaml, or "
        "~/.config/snakemake/slurm/config.yaml once installed; `sacctmgr show associations user=$USER "
        "format=account` lists yours), or run with --slurm-no-account on a cluster without accounts."
    )
