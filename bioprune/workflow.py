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
