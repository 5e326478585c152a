"""Sanity check of MLM training on real data: does a tiny model learn in a few CPU minutes?

Trains (from scratch, through the ``bioprune train`` CLI) a tiny RNA-FM on the Rfam 14.2 seed
sequences and a tiny ESM-C on the 20k UniProt proteins of the MMseqs2 example, then writes
``benchmarks/results/train_sanity.md`` with the validation loss curve against the uniform-guess loss
ln(vocabulary) and the residue-frequency floor (the entropy of the training residues: what a model that
ignores context can reach).

    nice -n 10 python benchmarks/train_sanity.py [--steps 300] [--threads 2]

Needs ../shared/data (skips a dataset that is absent). Work files go to benchmarks/work/train_sanity.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from bioprune.cli import main as cli  # noqa: E402
from bioprune.fasta import read_fasta  # noqa: E402

DATASETS = {
    "rnafm": ("Rfam 14.2 seeds", DATA / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"),
    "esmc": ("UniProt (MMseqs2 example DB)", DATA / "uniprot_mmseqs2_example" / "DB.fasta.gz"),
}


def residue_entropy(path: Path, rna: bool) -> float:
    """Entropy (nats) of the residue frequencies: the loss of the best context-free predictor."""
    counts = np.zeros(256, dtype=np.int64)
    for rec in read_fasta(path):
        seq = rec.seq.upper()
        counts += np.bincount(np.frombuffer(seq.replace(b"T", b"U") if rna else seq, np.uint8), minlength=256)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def run_one(backend: str, args: argparse.Namespace, work: Path) -> dict | None:
    name, path = DATASETS[backend]
    if not path.exists():
        print(f"skipping {backend}: {path} is absent", file=sys.stderr)
        return None
    out = work / backend
    cmd = [
        "train",
        str(path),
        "--out",
        str(out),
        "--backend",
        backend,
        "--size",
        "tiny",
        "--max-steps",
        str(args.steps),
        "--lr",
        "1e-3",
        "--warmup",
        "0.05",
        "--max-tokens-per-batch",
        str(args.batch_tokens),
        "--val-fraction",
        "0.01",
        "--eval-every",
        str(max(1, args.steps // 6)),
        "--threads",
        str(args.threads),
        "--seed",
        "0",
    ]
    start = time.time()
    rc = cli(cmd)
    wall = time.time() - start
    if rc != 0:
        raise SystemExit(f"bioprune train failed for {backend} (exit {rc})")
    report = json.loads((out / "train_report.json").read_text())
    curve = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "backend": backend,
        "dataset": name,
        "path": str(path),
        "command": "bioprune " + " ".join(cmd),
        "wall_s": round(wall, 1),
        "report": report,
        "val_curve": [(x["step"], x["val_loss"]) for x in curve if x["kind"] == "val"],
        "residue_entropy": residue_entropy(path, rna=backend == "rnafm"),
    }


def write_markdown(results: list[dict], args: argparse.Namespace, path: Path) -> None:
    lines = [
        "# MLM training sanity check (tiny models, CPU)",
        "",
        "Command: `nice -n 10 python benchmarks/train_sanity.py "
        f"--steps {args.steps} --threads {args.threads} --batch-tokens {args.batch_tokens}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads (shared 2-core machine; wall times include other users' load).",
        "",
        "Each model is trained from scratch by `bioprune train` for a fixed number of optimizer steps. The "
        "validation split is 1% of the records, chosen by seeded id hash. Rfam seed families have many "
        "members, so held-out records have relatives in the training split: this checks that the training "
        "machinery learns, not generalisation across families.",
        "",
        "Reference losses (nats per masked token): **uniform** = ln(vocabulary), a model that knows nothing; "
        "**residue entropy** = entropy of the residue frequencies, the best a model ignoring context can do.",
        "",
        "| model | data | params | steps | tokens seen | wall | uniform ln(V) | residue entropy | "
        "final val loss | val perplexity |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rep = r["report"]
        lines.append(
            f"| {r['backend']} tiny | {r['dataset']} ({rep['data']['train_sequences']:,} train / "
            f"{rep['data']['val_sequences']:,} val seqs) | {rep['parameters']:,} | {rep['steps']} | "
            f"{rep['tokens_seen_this_run']:,} | {r['wall_s']:.0f} s | {rep['uniform_loss']:.3f} | "
            f"{r['residue_entropy']:.3f} | **{rep['val_loss']:.3f}** | {rep['val_perplexity']:.2f} |"
        )
    lines += [""]
    for r in results:
        rep = r["report"]
        lines.append(
            f"- {r['backend']}: final validation loss {rep['uniform_loss'] - rep['val_loss']:.2f} nats below "
            f"ln(V) and {r['residue_entropy'] - rep['val_loss']:.3f} below the residue entropy (the model "
            "uses context, not only residue frequencies)."
        )
    lines += ["", "Validation loss during training:", ""]
    for r in results:
        curve = ", ".join(f"{s}: {v:.3f}" for s, v in r["val_curve"])
        lines.append(f"- {r['backend']}: {curve}")
    lines += ["", "Exact commands run:", ""]
    lines += [f"- `{r['command']}`" for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--only", choices=list(DATASETS), help="run one backend")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_sanity.md"))
    args = p.parse_args()
    work = ROOT / "benchmarks" / "work" / "train_sanity"
    results = [r for b in DATASETS if args.only in (None, b) if (r := run_one(b, args, work))]
    for r in results:
        print(
            json.dumps({"backend": r["backend"], "val_loss": r["report"]["val_loss"], "wall_s": r["wall_s"]})
        )
    if results:
        write_markdown(results, args, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
