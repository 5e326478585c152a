"""The GPU throughput benchmark runs (tiny model, CPU) and reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train_throughput.py"


def test_throughput_script_runs_tiny_on_cpu():
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--batch-sizes", "2", "4"]
    cmd += ["--seq-len", "32", "--steps", "2", "--warmup", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["precision"] == "fp32" and info["parameters"] > 0
    assert [(r["batch"], r["seq_len"]) for r in info["results"]] == [(2, 32), (4, 32)]
    for r in info["results"]:
        assert r["finite"] and r["tokens_per_s"] > 0
        assert abs(r["tokens_per_s"] * r["step_s"] - r["tokens_per_step"]) < 0.01 * r["tokens_per_step"]
