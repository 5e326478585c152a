"""Shared fixtures: the real-data folder (skipped when absent), small FASTA files written by tests, and
the shared example run (whose tests carry the ``workflow`` marker: ``pytest -m "not workflow and not
slow"`` is the fast lane, see pyproject.toml)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

# ../shared/data beside the checkout (read-only real data; never copied into the repo).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    """A test of the shared example run is a workflow test even if its marker was forgotten: the fast lane
    (-m "not workflow and not slow") must never start the run."""
    for item in items:
        if "example_run" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("workflow"):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder, or a skip saying why real-data tests cannot run."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: real-data tests need ../shared/data beside the checkout")
    return SHARED_DATA


@pytest.fixture
def write_fasta(tmp_path):
    """``write_fasta(name, text)``: write str or bytes to tmp_path/name, gzipped if the name ends in .gz."""

    def _write(name: str, text: str | bytes) -> Path:
        data = text.encode() if isinstance(text, str) else text
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return _write


@pytest.fixture
def small_blocks(monkeypatch):
    """Make iter_blocks read a few bytes at a time, so block boundaries fall inside records and lines."""

    def _set(size: int = 7) -> None:
        monkeypatch.setattr("bioprune.fasta.BLOCK_SIZE", size)

    return _set


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """One finished run of the whole workflow on the (trimmed) embedded example, shared by every test
    that reads a run's outputs or plans reruns against it: (run folder, its config file). Each job runs
    with only its conda environment's packages importable (tests/test_envs.py checks the log)."""
    from test_envs import envcheck_environ
    from test_workflow import example_config, run_snakemake

    tmp_path = tmp_path_factory.mktemp("example_run")
    config = example_config(tmp_path)
    proc = run_snakemake(tmp_path, config, "--cores", "2", env=envcheck_environ(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp_path, config
