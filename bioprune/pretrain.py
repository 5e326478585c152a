"""``bioprune pretrain``: train the architecture from scratch on one coreset (docs/evaluation.md).

The training itself is :func:`bioprune.models.train.train` (``bioprune train``), so coreset models are
trained exactly like every other model of the pipeline and resume the same way. This step adds the
compute rule and the bookkeeping the comparison needs:

- ``--compute same_epochs`` (the paper): ``--epochs`` passes over the coreset, so a 10x random subset
  also gets 10x the optimizer steps;
- ``--compute same_steps``: the model gets the optimizer steps that ``--steps-like`` (by default the
  workflow passes the random 1x selection of the same budget and seed) takes in ``--epochs`` epochs under
  the same batch settings, so every model at a budget has the same compute and only the data differ;
- ``--untrained``: write the random initialisation (the "no pretraining" baseline) without training.

``pretrain_report.json`` (written last) records the selection, the compute rule, optimizer steps, tokens
seen (non-pad tokens of every batch, summed from ``train_log.jsonl``, so a resumed run counts the steps
of its earlier part too), the final validation loss and the wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import torch

from bioprune import __version__
from bioprune.atomic import write_json
from bioprune.errors import ConfigError, InputError
from bioprune.models import data as D
from bioprune.models.registry import build_from_spec, load_model, param_count, save_model, spec_of
from bioprune.models.train import _BATCH_STREAM, TrainSettings, current_dist, init_distributed_from_env, train
from bioprune.models.train_cli import (
    add_model_options,
    add_training_options,
    model_from_args,
    settings_from_args,
)

log = logging.getLogger("bioprune.pretrain")

COMPUTE_RULES = ("same_epochs", "same_steps")
REPORT = "pretrain_report.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", help="the coreset FASTA (a selection's coreset.fasta.gz)")
    p.add_argument(
        "--out", required=True, help="output folder (model.pt, train_log.jsonl, pretrain_report.json)"
    )
    add_model_options(p)
    p.add_argument(
        "--arch-from",
        metavar="CHECKPOINT",
        help="take the architecture (not the weights) from this model file, e.g. the official RNA-FM",
    )
    add_training_options(p, epochs_default=10)
    c = p.add_argument_group("compute")
    c.add_argument(
        "--compute", choices=COMPUTE_RULES, default="same_epochs", help="same_epochs (paper) or same_steps"
    )
    c.add_argument(
        "--steps-like", metavar="FASTA", help="same_steps: the selection whose --epochs epochs fix the steps"
    )
    c.add_argument("--untrained", action="store_true", help="write the random initialisation, no training")
    g = p.add_argument_group("labels recorded in the report")
    g.add_argument("--selection-summary", help="the selection's summary.json (budget, k, pool size)")
    g.add_argument("--strategy", help="selection strategy (topi, cci, random1x, ...; untrained)")
    g.add_argument("--budget", help="budget token (rate0.99, n500; none for untrained)")
    g.add_argument("--selection-seed", type=int, help="the selection's seed")


def steps_per_epoch(fasta, model, settings: TrainSettings, work: Path) -> int:
    """Optimizer steps one epoch over ``fasta`` takes in :func:`train` with ``settings`` (same split,
    crop, batching and process count; the batch count does not depend on the shuffle)."""
    store = D.build_store(fasta, model.tokenizer, work)
    train_idx, _ = D.split(store, settings.val_fraction, settings.seed)
    lengths = D.padded_lengths(store, model.max_tokens)
    rng = D.rng_for(settings.seed, 0, _BATCH_STREAM)
    n = len(D.make_batches(lengths, train_idx, settings.max_tokens_per_batch, settings.max_batch_size, rng))
    world = current_dist().world
    n += (-n) % world
    return math.ceil(n / (settings.accumulate * world))


def tokens_seen(log_path: Path) -> int:
    total = 0
    with open(log_path) as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("kind") == "train":
                total += int(entry["tokens"])
    return total


def _model(args):
    if args.init:
        raise ConfigError(
            "pretraining starts from scratch: use --arch-from CHECKPOINT to copy an architecture"
        )
    if args.arch_from:
        if args.backend or any(
            getattr(args, f, None) for f in ("layers", "hidden", "heads", "ffn", "max_tokens")
        ):
            raise ConfigError("--arch-from fixes the architecture; drop --backend and the size overrides")
        spec = spec_of(load_model(args.arch_from))
        return build_from_spec(spec, seed=args.seed), {
            "scratch": spec.size,
            "arch_from": str(args.arch_from),
            "seed": args.seed,
        }
    return model_from_args(args)


def run(args: argparse.Namespace) -> int:
    started = time.time()
    out = Path(args.out)
    if args.epochs is None and args.max_steps is None:
        raise ConfigError("give --epochs or --max-steps")
    if args.compute == "same_steps" and not args.steps_like and not args.untrained:
        raise ConfigError(
            "--compute same_steps needs --steps-like FASTA (the selection that fixes the steps)"
        )
    if not args.untrained and not args.data:
        raise ConfigError("give the coreset FASTA (or --untrained)")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = None
    if args.selection_summary:
        try:
            summary = json.loads(Path(args.selection_summary).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(args.selection_summary, f"cannot read the selection summary ({exc})") from None
    launched = init_distributed_from_env()
    settings = settings_from_args(args)
    model, init = _model(args)
    ref_steps = None
    try:
        if args.untrained:
            if launched.main:
                save_model(model, out / "model.pt")
            train_report = None
        else:
            if args.compute == "same_steps" and args.max_steps is None:
                with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
                    ref_steps = steps_per_epoch(args.steps_like, model, settings, Path(tmp) / "tokens")
                settings.max_steps = settings.epochs * ref_steps
                log.info(
                    "same_steps: %d epochs of %s take %d steps/epoch -> %d steps",
                    settings.epochs, args.steps_like, ref_steps, settings.max_steps,
                )  # fmt: skip
            extra = {"pretrain": {"compute": args.compute, "steps_like": args.steps_like}}
            train_report = train(model, args.data, out, settings, init=init, extra_report=extra)
            if "stopped_at_step" in train_report:
                return 0
    finally:
        if launched.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if not launched.main:
        return 0
    report = {
        "strategy": args.strategy,
        "budget": args.budget,
        "seed": args.selection_seed,
        "train_seed": settings.seed,
        "compute": "untrained" if args.untrained else args.compute,
        "epochs_setting": None if args.untrained else settings.epochs,  # the untrained model trains none
        "steps_like": args.steps_like,
        "steps_like_steps_per_epoch": ref_steps,
        "model": spec_of(model).to_dict(),
        "parameters": param_count(model),
        "init": init,
        "selection": None
        if summary is None
        else {
            k: summary.get(k)
            for k in ("strategy", "multiplier", "budget", "n_pool", "n_scored", "n_selected", "fraction_kept")
        },
        "wall_s": round(time.time() - started, 2),
        "bioprune_version": __version__,
    }
    if train_report is None:
        report.update(steps=0, tokens_seen=0, train_sequences=0, val_loss=None, val_perplexity=None)
    else:
        report.update(
            steps=train_report["steps"],
            steps_per_epoch=train_report["steps_per_epoch"],
            epochs_completed=train_report["epochs_completed"],
            tokens_seen=tokens_seen(out / "train_log.jsonl"),
            train_sequences=train_report["data"]["train_sequences"],
            val_sequences=train_report["data"]["val_sequences"],
            residues=train_report["data"]["residues"],
            resumed_from_step=train_report["resumed_from_step"],
            train_elapsed_s=train_report["elapsed_s"],
            device=train_report["device"],
            final_train_loss=train_report["final_train_loss"],
            val_loss=train_report["val_loss"],
            val_perplexity=train_report["val_perplexity"],
        )
    write_json(out / REPORT, report)
    log.info(
        "pretrained %s %s seed %s: %d steps, %s tokens, %.1f s",
        args.strategy, args.budget, args.selection_seed,
        report["steps"], f"{report['tokens_seen']:,}", report["wall_s"],
    )  # fmt: skip
    return 0
