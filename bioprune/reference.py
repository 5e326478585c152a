"""``bioprune reference``: draw D_sub from the pool and build the reference model θ̃ (docs/influence.md).

D_sub is a seeded uniform sample without replacement of the pool's records (``--dsub-size`` records or
``--dsub-fraction`` of them). Then, in the paper's order of preference:

- ``--init CHECKPOINT`` (official RNA-FM/ESM-C weights or a bioprune model): fine-tune it on D_sub,
  one epoch by default, as the paper does (their ablation: skipping this hurts);
- ``--init CHECKPOINT --no-finetune``: use the checkpoint as it is;
- no checkpoint: train a model of ``--backend/--size`` from scratch on D_sub (10 epochs by default).

Outputs (``--out``): ``model.pt`` (bioprune model format), ``dsub_ids.txt`` (one id per line, pool
order), ``dsub.fasta.gz``, ``train_log.jsonl`` / ``train_report.json`` when it trained, and
``reference_report.json`` (moved last). Everything is written into ``--out``/``in_progress/`` (where a
killed run's training checkpoint waits to be resumed) and moved into ``--out`` only once all of it
exists: a failed or killed run leaves none of the outputs, so Snakemake never sees a partial set.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bioprune.atomic import output_errors, staged_dir, write_json
from bioprune.cli import seed
from bioprune.errors import ConfigError
from bioprune.fasta import read_fasta
from bioprune.models.registry import save_model, spec_of
from bioprune.models.train import TrainSettings, init_distributed_from_env, train
from bioprune.models.train_cli import (
    add_model_options,
    add_training_options,
    model_from_args,
    settings_from_args,
)
from bioprune.pool import io as pool_mod

log = logging.getLogger(__name__)

IN_PROGRESS = "in_progress"  # --out's folder for a run's files until all of them exist
PUBLISHED = ("model.pt", "train_log.jsonl", "train_report.json", "reference_report.json")
FINETUNE_EPOCHS = 1
SCRATCH_EPOCHS = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool folder (sequences.parquet + sequences.fasta.gz)")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("D_sub")
    g.add_argument("--dsub-size", type=int, help="number of pool records in D_sub")
    g.add_argument("--dsub-fraction", type=float, help="fraction of the pool in D_sub")
    g.add_argument("--dsub-seed", type=seed, default=0, help="seed of the D_sub draw")
    add_model_options(p)
    p.add_argument("--no-finetune", action="store_true", help="with --init: use the checkpoint unchanged")
    g = p.add_argument_group("has the reference learned? (validation loss against D_sub's residue entropy)")
    g.add_argument(
        "--min-entropy-gain",
        type=float,
        default=0.02,
        help="fraction of the residue entropy the validation loss must be below (default %(default)s)",
    )
    g.add_argument(
        "--unlearned",
        choices=("warn", "fail"),
        default="warn",
        help="what a reference within --min-entropy-gain of the entropy does (default %(default)s)",
    )
    add_training_options(p)
    p.set_defaults(epochs=None)


def dsub_count(n_pool: int, size: int | None, fraction: float | None) -> int:
    if (size is None) == (fraction is None):
        raise ConfigError("give exactly one of --dsub-size and --dsub-fraction")
    if size is not None:
        if size < 1:
            raise ConfigError(f"--dsub-size must be >= 1, got {size}")
        k = size
    else:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--dsub-fraction must be in (0, 1], got {fraction}")
        k = max(1, round(fraction * n_pool))
    if k > n_pool:
        log.warning("D_sub of %d requested but the pool has %d records; using the whole pool", k, n_pool)
    return min(k, n_pool)


def draw_dsub(pool_dir: Path, k: int, seed: int, out: Path) -> dict:
    """Write ``dsub.fasta.gz`` and ``dsub_ids.txt`` for a seeded sample of ``k`` pool records."""
    files = pool_mod.open_pool(pool_dir)
    n = files.n_rows
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    rows = np.flatnonzero(chosen)
    ids = pool_mod.take_ids(pool_dir, rows)  # streamed, so memory stays bounded
    with staged_dir(out) as stage:
        # every copied record checked against the table
        pool_mod.copy_rows(files, rows, ids, stage / "dsub.fasta.gz")
        (stage / "dsub_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    return {"pool_records": n, "dsub_records": k, "dsub_seed": seed}


def residue_entropy(fasta: Path, model) -> float:
    """Entropy (nats) of the residue tokens of a FASTA file as ``model`` tokenises them: the MLM loss of
    a model that predicts every masked residue from the residue frequencies alone, ignoring context."""
    counts = np.zeros(256, dtype=np.int64)
    for rec in read_fasta(fasta):
        counts += np.bincount(np.frombuffer(rec.seq, dtype=np.uint8), minlength=256)
    per_token: dict[int, int] = {}
    for byte in np.flatnonzero(counts):
        token = model.encode(chr(byte))[1]  # <cls> residue <eos>: T -> U, lower case, unknown letters
        per_token[token] = per_token.get(token, 0) + int(counts[byte])
    p = np.array(list(per_token.values()), dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def learning_check(entropy: float, val_loss: float | None, min_gain: float, action: str) -> dict:
    """Compare a reference's validation loss with the residue entropy; warn or fail when it is not at
    least ``min_gain`` (a fraction of the entropy) below it: scores from such a model rank sequences by
    what an untrained model sees (mostly length and composition)."""
    out = {"residue_entropy": entropy, "val_loss": val_loss, "min_entropy_gain": min_gain}
    if val_loss is None:
        out.update(learned=None, note="no validation loss (too few D_sub records for a validation split)")
        return out
    gain = (entropy - val_loss) / entropy
    out.update(entropy_gain=gain, learned=bool(gain >= min_gain))
    if not out["learned"]:
        msg = (
            f"the reference model's validation loss {val_loss:.4f} is {abs(gain):.1%} "
            f"{'below' if gain >= 0 else 'above'} the residue entropy of D_sub ({entropy:.4f} nats; "
            f"required: {min_gain:.0%} below): it has learned little beyond residue frequencies, so its "
            "influence scores say little; train longer (reference.scratch_epochs or reference.max_steps), "
            "a larger D_sub, or start from a pretrained model.checkpoint"
        )
        if action == "fail":
            raise ConfigError(msg)
        log.warning("%s", msg)
    return out


def run(args: argparse.Namespace) -> int:
    pool_dir = Path(args.pool)
    out = Path(args.out)
    if args.no_finetune and not args.init:
        raise ConfigError("--no-finetune needs --init CHECKPOINT")
    mode = "scratch" if not args.init else ("checkpoint" if args.no_finetune else "finetune")
    if args.epochs is None and args.max_steps is None:
        args.epochs = SCRATCH_EPOCHS if mode == "scratch" else FINETUNE_EPOCHS
    settings: TrainSettings = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_pool = pq.ParquetFile(pool_mod.table_path(pool_dir)).metadata.num_rows
    k = dsub_count(n_pool, args.dsub_size, args.dsub_fraction)
    work = out / IN_PROGRESS
    launched = init_distributed_from_env()
    try:
        model, init = model_from_args(args)  # a bad checkpoint fails before anything is written
        dsub = {}
        if launched.main:  # draw_dsub creates work/ (through staged_dir, so disk errors are one line)
            with output_errors(work):  # an earlier failed run's finished files; its checkpoint stays
                for name in PUBLISHED:
                    (work / name).unlink(missing_ok=True)
            dsub = draw_dsub(pool_dir, k, args.dsub_seed, work)
            log.info("D_sub: %d of %d pool records (seed %d)", k, n_pool, args.dsub_seed)
        if launched.world > 1:
            torch.distributed.barrier()
        train_report = None
        if mode == "checkpoint":
            if launched.main:
                save_model(model, work / "model.pt")
        else:
            train_report = train(model, work / "dsub.fasta.gz", work, settings, init=init)
            if "stopped_at_step" in train_report:
                return 0
    finally:
        if launched.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if launched.main:
        learned = None
        if train_report is not None:
            entropy = residue_entropy(work / "dsub.fasta.gz", model)
            val = train_report.get("val_loss")
            learned = learning_check(entropy, val, args.min_entropy_gain, args.unlearned)
            log.info(
                "reference: validation loss %s against a residue entropy of %.4f nats (%s)",
                "n/a" if learned["val_loss"] is None else f"{learned['val_loss']:.4f}",
                entropy,
                "n/a" if learned.get("entropy_gain") is None else f"{learned['entropy_gain']:.1%} below it",
            )
        report = {
            "pool": str(pool_dir),
            **dsub,
            "mode": mode,
            "init": init,
            "model": spec_of(model).to_dict(),
            "train": None
            if train_report is None
            else {
                k: train_report[k]
                for k in (
                    "steps",
                    "epochs_completed",
                    "final_train_loss",
                    "val_loss",
                    "val_perplexity",
                    "uniform_loss",
                )
            },
            "learned": learned,
        }
        write_json(work / "reference_report.json", report)
        with output_errors(out):
            publish_outputs(work, out)
    return 0


def publish_outputs(work: Path, out: Path) -> None:
    """Move the finished run's files from ``work`` into ``out`` (report last); drop ``work`` when empty
    (it keeps the training work folder under ``--keep-work``)."""
    files = [p for p in work.iterdir() if p.is_file() and not p.name.startswith(".")]
    for path in sorted(files, key=lambda p: ("report" in p.name, p.name)):
        os.replace(path, out / path.name)
    with contextlib.suppress(OSError):
        work.rmdir()
