"""The benchmark scripts run (tiny sizes, CPU), and the benchmark's official-style reference
(vmap over jacrev, 1024-token window) agrees with our compat mode."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from bioprune.fasta import Record

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_score():
    return load("gpu_score")


def test_gpu_score_runs_on_cpu_with_synthetic_data(gpu_score, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_score, "RFAM", tmp_path / "absent.fasta.gz")  # as on a machine without data
    out = tmp_path / "gpu.json"
    assert (
        gpu_score.main(["--tiny", "--n", "20", "--device", "cpu", "--check-n", "6", "--out", str(out)]) == 0
    )
    res = json.loads(out.read_text())
    assert res["sequences"] == 20 and res["d_sub"] == 2 and res["source"].startswith("seeded random")
    assert res["precision"] == "fp32" and res["peak_gpu_mib"] is None
    assert res["score_seq_per_s"] > 0 and res["ratio_b_score_over_forward_time"] > 0
    assert res["all_finite_positive"]
    assert res["vs_fp32_max_rel_diff"] < 1e-5  # fp32 on CPU: the same computation twice


def test_synthetic_sequences_are_seeded(gpu_score, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_score, "RFAM", tmp_path / "absent.fasta.gz")
    a, _ = gpu_score.sequences(50, seed=1)
    b, _ = gpu_score.sequences(50, seed=1)
    c, _ = gpu_score.sequences(50, seed=2)
    assert [r.seq for r in a] == [r.seq for r in b] != [r.seq for r in c]
    assert all(20 <= len(r.seq) <= 1500 and set(r.seq) <= set(b"ACGU") for r in a)


def test_official_style_reference_agrees_with_compat_mode():
    bench = load("bench_scoring")
    from bioprune.influence.settings import InfluenceSettings
    from bioprune.models.registry import build_model

    model = build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    recs = [
        Record(f"r{i}", "", bytes(b"ACGU"[j] for j in torch.randint(0, 4, (n,), generator=gen)), i)
        for i, n in enumerate((30, 75, 12, 50))
    ]
    s = InfluenceSettings(loss_mode="compat", max_length=128)  # a short window keeps the test fast
    _, fisher = bench.run_fisher(model, recs, s)
    _, ours = bench.run_score(model, recs, s, fisher)
    _, ref = bench.run_reference(model, recs, fisher, s.eps, window=128, batch=3)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], rel=1e-3)
