"""Benchmark: how much of what the model computes on is padding, with bioprune's length bucketing.

Run from the repository root (about a minute; results to benchmarks/results/padding.md):

    python benchmarks/bench_padding.py

Influence scoring batches a shard per buffer of ``BUFFER`` sequences, sorted by length, each batch
filled up to ``influence.batch_tokens`` padded tokens (rows x widest row); training batches its split
the same way within ``train.max_tokens_per_batch``, with random ties and batch order. For the first 2,000
Rfam 14.2 seed sequences (5S rRNAs) and 20,000 drawn at random (seed 0), this counts the real tokens
(``<cls>`` residues ``<eos>``) and the padded slots the model computes on. The padding fraction bounds
what packing several sequences into one row could save in the linear layers (attention, quadratic in the
row width, gains a little more). The official code pads every sequence to 1,024 tokens: its fraction is
given beside ours (column "official").
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioprune.fasta import read_fasta  # noqa: E402
from bioprune.influence.losses import chunked, make_batches, prepare  # noqa: E402
from bioprune.influence.passes import BUFFER  # noqa: E402
from bioprune.influence.settings import InfluenceSettings  # noqa: E402
from bioprune.models.batching import bucket  # noqa: E402
from bioprune.models.registry import build_model  # noqa: E402
from bioprune.models.train_settings import TrainSettings  # noqa: E402

RFAM = ROOT.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
OUT = ROOT / "benchmarks" / "results" / "padding.md"


def scoring(model, records, s: InfluenceSettings) -> tuple[int, int, int]:
    items = [prepare(model, i, r.id, r.seq.decode(), s) for i, r in enumerate(records)]
    real = slots = n = 0
    for chunk in chunked(iter(items), BUFFER):
        for b in make_batches(chunk, model.tokens.pad_idx, s.batch_tokens):
            real += sum(len(row) for it in b.items for row in it.rows)
            slots += b.tokens.numel()
            n += 1
    return real, slots, n


def training(records, budget: int, cap: int) -> tuple[int, int, int]:
    widths = np.array([min(len(r.seq), cap - 2) + 2 for r in records])
    batches = bucket(widths, budget, rng=np.random.default_rng(0))
    real = int(widths.sum())
    slots = sum(len(b) * int(widths[b].max()) for b in batches)
    return real, slots, len(batches)


def main() -> int:
    if not RFAM.exists():
        print(f"skipped: {RFAM} is absent (the Rfam 14.2 seed set)", file=sys.stderr)
        return 0
    pool = list(read_fasta(RFAM))
    model = build_model("rnafm", "tiny", seed=0)
    s, t = InfluenceSettings(), TrainSettings()
    rows = []
    for name, recs in (
        ("first 2,000 (5S rRNA)", pool[:2000]),
        ("20,000 at random", random.Random(0).sample(pool, 20000)),
    ):
        official = sum(min(len(r.seq), 1022) + 2 for r in recs) / (1024 * len(recs))
        for step, (real, slots, n) in (
            (f"scoring (batch_tokens {s.batch_tokens})", scoring(model, recs, s)),
            (
                f"training (max_tokens_per_batch {t.max_tokens_per_batch})",
                training(recs, t.max_tokens_per_batch, 1024),
            ),
        ):
            rows.append(
                f"| {name} | {step} | {n:,} | {real:,} | {slots:,} | {1 - real / slots:.2%} | "
                f"{1 - official:.1%} |"
            )
            print(rows[-1], flush=True)
    OUT.write_text(
        "# Padding with length bucketing\n\nCommand: `python benchmarks/bench_padding.py`\n\n"
        + __doc__.split("\n\n", 3)[3].strip()
        + "\n\n| sequences | step | batches | real tokens | padded slots | padding | official |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
