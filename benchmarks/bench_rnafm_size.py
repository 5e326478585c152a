"""Benchmark at RNA-FM size (12 x 640, 99.5M parameters, random init): bioprune's influence scoring
against the official-style per-sample-gradient code, bf16 on CPU against fp32, and training in both.

Run from the repository root (about 10 minutes on 2 cores; results to
benchmarks/results/scoring_rnafm_size.md):

    nice -n 10 python benchmarks/bench_rnafm_size.py

Per sample (the first ``--n`` Rfam 14.2 seed records, 5S rRNAs; ``--n`` records drawn at random with
``--seed``), in one run:

- ``reference``: the official style (``bench_scoring.run_reference``: ``vmap(jacrev(loss))`` over batches
  of 20, every sequence padded to 1,024 tokens, fp32), timed on the first ``--ref-n`` records of the
  sample. Its cost per sequence does not depend on the sequence (everything is padded to 1,024), so its
  Fisher + score time for the sample is that rate times (D_sub + N) sequences;
- ``ours``: ``bioprune`` default settings, in fp32 and in bf16 (``influence.precision: bf16``); the Fisher
  over D_sub = every 10th record (10%), then the score pass over all ``--n``.

Ratios are speeds (ours / reference): the score pass alone, and Fisher + score with D_sub = 10%.

bf16 is what ``influence.precision: bf16`` does on CPU: the trunk's matmuls in bf16 as under bf16
autocast (AMX / AVX-512 BF16 where the CPU has them; weights cast once per pass), the per-sequence
gradients accumulated in fp32, g^2 and F summed in fp32. Its scores are compared with fp32's (each with
its own Fisher): Spearman correlation, the largest relative difference, and the overlap of the Top-I sets
at 90% pruning (the top 10% by score). Training: ``--train-steps`` optimizer steps on the random sample
from the same initialisation, data order and masks, in fp32 and with ``train.precision: bf16`` (after a
one-step warm-up run).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scoring import RFAM, run_fisher, run_reference, run_score  # noqa: E402

from bioprune.fasta import FastaWriter, read_fasta  # noqa: E402
from bioprune.influence.settings import InfluenceSettings  # noqa: E402
from bioprune.models.registry import build_model, param_count  # noqa: E402
from bioprune.models.train import train  # noqa: E402
from bioprune.models.train_settings import TrainSettings  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "scoring_rnafm_size.md"
HEADER = (
    "| sample | length mean (max) | ours | reference score seq/s | ours score seq/s | score pass ratio "
    "| reference Fisher + score s (D_sub 10%) | ours Fisher + score s | Fisher + score ratio |"
)


def agreement(a: dict[str, float], b: dict[str, float], keep: float = 0.1) -> dict[str, float]:
    ids = list(a)
    x = np.array([a[i] for i in ids])
    y = np.array([b[i] for i in ids])
    rho = pd.Series(x).rank().corr(pd.Series(y).rank())
    rel = np.abs(y - x) / np.abs(x)
    k = max(1, round(keep * len(ids)))
    top_x = set(np.argsort(-x, kind="stable")[:k])
    top_y = set(np.argsort(-y, kind="stable")[:k])
    return {"spearman": float(rho), "max_rel": float(rel.max()), "top_overlap": len(top_x & top_y) / k}


def train_run(records, size: str, precision: str, steps: int, work: Path) -> dict:
    """``steps`` optimizer steps from the same initialisation, data order and masks; the report."""
    fasta = work / "train.fasta.gz"
    work.mkdir(parents=True, exist_ok=True)
    if not fasta.exists():
        with FastaWriter(fasta) as w:
            for r in records:
                w.write(r.id, r.seq, r.description)
    out = work / precision
    settings = TrainSettings(max_steps=steps, precision=precision, val_fraction=0.1, eval_every=0)
    return train(build_model("rnafm", size, seed=0), fasta, out, settings)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--ref-n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="official", help="registry size (smaller for a quick check)")
    p.add_argument("--train-steps", type=int, default=6, help="optimizer steps per training run (0: none)")
    args = p.parse_args()
    if not RFAM.exists():
        print(f"skipped: {RFAM} is absent (the Rfam 14.2 seed set)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    model = build_model("rnafm", args.size, seed=0).eval()
    pool = list(read_fasta(RFAM))
    sets = {
        "first (5S rRNA)": list(itertools.islice(pool, args.n)),
        f"random (seed {args.seed})": random.Random(args.seed).sample(pool, args.n),
    }
    load0 = os.getloadavg()
    rows, agree = [], []
    for name, records in sets.items():
        d_sub = records[::10]
        lengths = [len(r.seq) for r in records]
        fp32 = InfluenceSettings(precision="fp32")
        run_reference(model, records[:2], run_fisher(model, records[:2], fp32)[1], fp32.eps)  # warm-up
        _, ref_fisher = run_fisher(model, records[: args.ref_n], InfluenceSettings(loss_mode="compat"))
        t_ref, _ = run_reference(model, records[: args.ref_n], ref_fisher, fp32.eps)
        ref_rate = args.ref_n / t_ref.wall
        ref_both = (len(d_sub) + len(records)) / ref_rate
        scores = {}
        for precision in ("fp32", "bf16"):
            s = InfluenceSettings(precision=precision)
            t_fisher, fisher = run_fisher(model, d_sub, s)
            t_score, scores[precision] = run_score(model, records, s, fisher)
            rate = len(records) / t_score.wall
            both = t_fisher.wall + t_score.wall
            rows.append(
                f"| {name} | {sum(lengths) / len(lengths):.0f} (max {max(lengths)}) | {precision} "
                f"| {ref_rate:.3f} | {rate:.2f} | {rate / ref_rate:.1f} | {ref_both:.0f} | {both:.1f} "
                f"| {ref_both / both:.1f} |"
            )
            print(rows[-1], flush=True)
        a = agreement(scores["fp32"], scores["bf16"])
        agree.append(f"| {name} | {a['spearman']:.5f} | {a['max_rel']:.2e} | {a['top_overlap']:.3f} |")
        print(agree[-1], flush=True)
    train_rows = []
    if args.train_steps:
        import tempfile

        records = sets[f"random (seed {args.seed})"]
        with tempfile.TemporaryDirectory() as tmp:
            train_run(records, args.size, "fp32", 1, Path(tmp) / "warm-up")  # allocator, thread pools
            reports = {
                prec: train_run(records, args.size, prec, args.train_steps, Path(tmp))
                for prec in ("fp32", "bf16")
            }
        for prec, r in reports.items():
            train_rows.append(
                f"| {prec} | {r['steps']} | {r['elapsed_s']:.1f} | "
                f"{r['tokens_seen_this_run'] / r['elapsed_s']:.0f} | "
                f"{r['final_train_loss']:.4f} | {r['val_loss']:.4f} |"
            )
            print(train_rows[-1], flush=True)
    load1 = os.getloadavg()
    if train_rows:
        what = f"{args.train_steps} steps of train.max_tokens_per_batch tokens, 10% held out"
        training = f"""## Training, random sample: {what}

The time includes tokenising the sample and the final validation.

| precision | steps | wall s | tokens/s | final train loss | validation loss |
|---|---|---|---|---|---|
{chr(10).join(train_rows)}
"""
    else:
        training = "## Training\n\nNot run (`--train-steps 0`).\n"
    caps = f"avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, amx {torch.cpu._is_amx_tile_supported()}"
    OUT.write_text(
        f"""# Influence scoring at RNA-FM size: bioprune against the official-style code

Command: `nice -n 10 python benchmarks/bench_rnafm_size.py {" ".join(sys.argv[1:])}`

Machine: {platform.machine()}, {os.cpu_count()} CPUs ({caps}), torch {torch.__version__},
{args.threads} torch threads; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (other
jobs shared the machine: both sides of each ratio ran in this one process, one after the other). Model:
random-init RNA-FM
`{args.size}` ({param_count(model) / 1e6:.1f}M parameters), W = the MLM head's dense weight.

{__doc__.split(chr(10) + chr(10), 3)[3].strip()}

## Speed against the official-style code

{HEADER}
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## bf16 scores against fp32 scores

| sample | Spearman | max relative difference | Top-I overlap at 90% pruning |
|---|---|---|---|
{chr(10).join(agree)}

{training}"""
    )
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
