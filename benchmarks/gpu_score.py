"""GPU check of influence scoring: official-size random-init RNA-FM (12 x 640, 99.5M parameters),
100,000 sequences (goal: >= 10k sequences/s scoring in bf16 on one H200); sequences/s of the Fisher
and score passes, ratio (b) = score time / plain no-grad forward time over the same batches, peak GPU
memory, and agreement of the bf16 scores with fp32 scores computed on the CPU for the first 1,000
sequences (same Fisher).

On the GPU machine (one prepared run, a few minutes):

    python benchmarks/gpu_score.py --out benchmarks/results/gpu_score.json

On CPU, as the test suite does (tiny model, few sequences):

    python benchmarks/gpu_score.py --tiny --n 40 --device cpu

Sequences: the first ``--n`` Rfam 14.2 seed sequences when ../shared/data is present (cycled with new ids
past 72k), else seeded random RNA with Rfam-like lengths (log-normal, median ~95 nt, 20..1500), so the
script needs nothing outside the repository.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, installed or not

from bioprune.fasta import Record, read_fasta  # noqa: E402
from bioprune.influence.fisher import Fisher, _split, provenance, squared_gradient_sum  # noqa: E402
from bioprune.influence.grads import GradientEngine  # noqa: E402
from bioprune.influence.losses import make_batches, prepare  # noqa: E402
from bioprune.influence.score import inverse_fisher, score_records  # noqa: E402
from bioprune.influence.settings import InfluenceSettings  # noqa: E402
from bioprune.models.registry import build_model, param_count  # noqa: E402

RFAM = ROOT.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"


def sequences(n: int, seed: int = 0) -> tuple[list[Record], str]:
    if RFAM.exists():
        out = []
        for k in itertools.count():
            for r in read_fasta(RFAM):
                out.append(Record(f"{r.id}_{k}", "", r.seq, r.line))
                if len(out) == n:
                    return out, f"Rfam 14.2 seeds ({RFAM.name})"
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(95), 0.6, n), 20, 1500).astype(int)
    letters = np.frombuffer(b"ACGU", dtype=np.uint8)
    recs = [
        Record(f"r{i}", "", letters[rng.integers(0, 4, k)].tobytes(), i + 1) for i, k in enumerate(lengths)
    ]
    return recs, "seeded random RNA, log-normal lengths"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def fisher_pass(model, records, s, device) -> Fisher:
    engine = GradientEngine(model, s, device)
    total = squared_gradient_sum(model, engine, records, "gpu_score", s, progress=False)
    return Fisher("total", provenance("gpu_score", s), len(records), _split(total.cpu(), engine.param_shapes))


def score_pass(model, records, s, fisher, device) -> dict[str, float]:
    engine = GradientEngine(model, s, device)
    inv = inverse_fisher(fisher, s.eps, engine)
    out = {}
    for rb in score_records(model, engine, inv, records, "gpu_score", s, progress=False):
        d = rb.to_pydict()
        out.update(zip(d["id"], d["self_influence"], strict=True))
    return out


def forward_pass(model, records, s, device) -> None:
    """No-grad forward of the trunk over the same rows and batches, run as the score pass runs it (same
    autocast, weights prepared once by ``frozen_embed``): the floor of scoring."""
    items = [prepare(model, i, r.id, r.seq.decode(), s) for i, r in enumerate(records)]
    engine = GradientEngine(model, s, device)  # for its autocast and precision settings
    trunk = model.frozen_embed(torch.bfloat16 if engine.bf16 else engine.param_dtype)
    with torch.no_grad(), engine.autocast():
        for batch in make_batches(items, model.tokens.pad_idx, s.batch_tokens):
            trunk(batch.tokens.to(device, non_blocking=True), mask_pads=engine.mask_pads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="sequences scored")
    ap.add_argument("--d-sub", type=int, default=None, help="Fisher sequences (default n/10)")
    ap.add_argument("--tiny", action="store_true", help="the registry's tiny RNA-FM instead of official")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-tokens", type=int, default=None, help="default 65536 on CUDA, 8192 on CPU")
    ap.add_argument("--check-n", type=int, default=1000, help="sequences scored again in fp32")
    ap.add_argument(
        "--check-device", default="cpu", help="where the fp32 check runs (default cpu: the CPU reference)"
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON results")
    args = ap.parse_args(argv)

    device = InfluenceSettings(device=args.device).torch_device()
    batch_tokens = args.batch_tokens or (65536 if device.type == "cuda" else 8192)
    size = "tiny" if args.tiny else "official"
    model = build_model("rnafm", size, seed=0).to(device).eval()
    records, source = sequences(args.n)
    d_sub = records[: args.d_sub or max(1, args.n // 10)]
    s = InfluenceSettings(batch_tokens=batch_tokens, device=str(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    warm = records[: min(200, len(records))]
    forward_pass(model, warm, s, device)
    score_pass(model, warm, s, fisher_pass(model, warm, s, device), device)

    t_fisher, fisher = timed(device, lambda: fisher_pass(model, d_sub, s, device))
    t_fwd, _ = timed(device, lambda: forward_pass(model, records, s, device))
    t_score, scores = timed(device, lambda: score_pass(model, records, s, fisher, device))

    check = records[: args.check_n]
    check_device = InfluenceSettings(device=args.check_device).torch_device()
    check_model = model if check_device == device else copy.deepcopy(model).to(check_device)
    check_tokens = batch_tokens if check_device == device else 8192
    s32 = InfluenceSettings(batch_tokens=check_tokens, device=str(check_device), precision="fp32")
    a = score_pass(check_model, check, s32, fisher, check_device)
    # the main run's scores (bf16 on CUDA) against fp32 (on the CPU by default) on the same sequences and
    # Fisher
    ref = np.array([a[k] for k in a])
    got = np.array([scores[k] for k in a])
    rel = np.abs(got - ref) / np.abs(ref)
    rank = np.corrcoef(np.argsort(np.argsort(ref)), np.argsort(np.argsort(got)))[0, 1]

    result = {
        "model": f"rnafm {size} (random init), {param_count(model) / 1e6:.1f}M parameters",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "sequences": len(records),
        "source": source,
        "mean_length": float(np.mean([len(r.seq) for r in records])),
        "d_sub": len(d_sub),
        "batch_tokens": batch_tokens,
        "precision": "bf16" if s.use_bf16(device) else "fp32",
        "threads": torch.get_num_threads(),
        "fisher_seq_per_s": len(d_sub) / t_fisher,
        "forward_seq_per_s": len(records) / t_fwd,
        "score_seq_per_s": len(records) / t_score,
        "ratio_b_score_over_forward_time": t_score / t_fwd,
        "fp32_check": {"sequences": len(check), "device": str(check_device)},
        "vs_fp32_max_rel_diff": float(rel.max()),
        "vs_fp32_median_rel_diff": float(np.median(rel)),
        "vs_fp32_spearman": float(rank),
        "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "all_finite_positive": bool(all(np.isfinite(v) and v > 0 for v in scores.values())),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "host_cpus": os.cpu_count(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
