"""Training throughput of RNA-FM at official size (random init), bf16 autocast on a GPU.

Times the training step of ``bioprune train`` (BERT masking, the MLM objective on masked positions,
backward, gradient clipping, AdamW) on synthetic RNA batches of fixed length, at each batch size, and
prints one JSON line: tokens/s, seconds/step, peak GPU memory and achieved TFLOP/s (6 x parameters x
tokens, attention excluded, so a lower bound).

    python benchmarks/gpu_train_throughput.py                   # GPU: official size, batches 32 and 128
    python benchmarks/gpu_train_throughput.py --tiny --device cpu --batch-sizes 2 4 --seq-len 32 --steps 2

``--tiny`` swaps in the tiny model so the script itself can be tested on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bioprune.models.batching import Batch  # noqa: E402
from bioprune.models.masking import mask_tokens  # noqa: E402
from bioprune.models.registry import build_model, param_count  # noqa: E402
from bioprune.models.train import MLMObjective, _param_groups  # noqa: E402


def synthetic_tokens(model, batch: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    t = model.tokens
    tokens = rng.choice(np.asarray(t.residue_ids), size=(batch, seq_len))
    tokens[:, 0] = t.cls_idx
    tokens[:, -1] = t.eos_idx
    return tokens.astype(np.int64)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, device, batch: int, seq_len: int, steps: int, warmup: int, bf16: bool) -> dict:
    objective = MLMObjective(model)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.01), lr=1e-4, betas=(0.9, 0.98))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    rng = np.random.default_rng(0)
    tokens = synthetic_tokens(model, batch, seq_len, rng)
    losses = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        b = Batch.from_labels(*mask_tokens(tokens, model.tokens, rng)).to(device)
        n_masked = b.n_masked
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = objective(b.tokens, b.flat_idx, b.targets)
        (loss / n_masked).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()) / n_masked)

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    tokens_per_s = batch * seq_len * steps / elapsed
    out = {
        "batch": batch,
        "seq_len": seq_len,
        "tokens_per_step": batch * seq_len,
        "steps_timed": steps,
        "step_s": round(elapsed / steps, 5),
        "tokens_per_s": round(tokens_per_s, 1),
        "tflops_lower_bound": round(6 * param_count(model) * tokens_per_s / 1e12, 2),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "finite": bool(np.isfinite(losses).all()),
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model instead of the official size")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument(
        "--seq-len", type=int, nargs="+", default=[512], help="tokens per sequence incl. <cls>/<eos>"
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernel selection, allocator)")
    p.add_argument("--threads", type=int, help="CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    results = []
    for seq_len in args.seq_len:
        for batch in args.batch_sizes:
            model = build_model("rnafm", "tiny" if args.tiny else "official", seed=0).to(device).train()
            if seq_len > model.max_tokens:
                raise SystemExit(f"--seq-len {seq_len} exceeds the model's {model.max_tokens} tokens")
            try:
                results.append(measure(model, device, batch, seq_len, args.steps, args.warmup, bf16))
            except torch.OutOfMemoryError:
                results.append({"batch": batch, "seq_len": seq_len, "error": "out of memory"})
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    with torch.device("meta"):  # count without allocating
        n_params = param_count(build_model("rnafm", "tiny" if args.tiny else "official"))
    info = {
        "benchmark": "rnafm_train_throughput",
        "model": "rnafm tiny" if args.tiny else "rnafm official (12x640x20, random init)",
        "parameters": n_params,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "precision": "bf16 autocast" if bf16 else "fp32",
        "torch": torch.__version__,
        "results": results,
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
