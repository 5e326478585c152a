"""``bioprune train``: train a masked language model from scratch or fine-tune one (--init).

Examples::

    bioprune train --backend rnafm --size tiny --epochs 5 --out runs/tiny data.fasta.gz
    bioprune train --init RNA-FM_pretrained.pth --epochs 1 --lr 1e-5 --out runs/ft results/pool/cluster
    torchrun --nproc-per-node 4 -m bioprune train --backend rnafm --size official --max-steps 100000 ...

Killed runs resume when restarted with the same command (see bioprune.models.train).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from bioprune.errors import ConfigError
from bioprune.models.registry import ARCH_FIELDS, BACKENDS, SIZES, build_model, load_model
from bioprune.models.train import init_distributed_from_env, train
from bioprune.models.train_settings import TrainSettings, add_training_flags, settings_from_args
from bioprune.settings import flag

log = logging.getLogger(__name__)


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=BACKENDS, help="model family (not needed with --init)")
    sizes = ", ".join(f"{b}: {'/'.join(s)}" for b, s in SIZES.items())
    g.add_argument("--size", default="tiny", help=f"named size ({sizes}); default tiny")
    for field in ARCH_FIELDS:
        g.add_argument(flag(field), type=int, metavar="N", help=f"override the size's {field}")
    g.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="start from these weights (bioprune model file, official RNA-FM_pretrained.pth, "
        "or a transformers ESM-C folder) instead of a random initialisation",
    )


def add_training_options(p: argparse.ArgumentParser, *, epochs_default: int | None = None) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs_default, help="passes over the training split")
    g.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    add_training_flags(g)  # the train: settings, defaults from the schema
    g.add_argument(
        "--eval-every",
        type=int,
        default=TrainSettings.eval_every,
        help="steps between validations (0: end)",
    )
    g.add_argument("--keep-work", action="store_true", help="keep work/ (tokenised data, last checkpoint)")
    g.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # debug: simulates a kill
    g.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="training FASTA (plain or .gz) or a pool folder")
    p.add_argument(
        "--out", required=True, help="output folder (model.pt, train_log.jsonl, train_report.json)"
    )
    add_model_options(p)
    add_training_options(p)


def model_from_args(args: argparse.Namespace):
    """(model, init description) from --init or --backend/--size/overrides."""
    overrides = {f: getattr(args, f) for f in ARCH_FIELDS if getattr(args, f, None) is not None}
    if args.init:
        if overrides:
            flags = sorted(flag(k) for k in overrides)
            raise ConfigError(f"--init takes the architecture from the checkpoint; drop {flags}")
        from bioprune.models.data import file_digest

        model = load_model(args.init)
        if args.backend and model.spec.backend != args.backend:
            raise ConfigError(f"--backend {args.backend} but {args.init} holds a {model.spec.backend} model")
        init = {"checkpoint": str(Path(args.init).resolve())}
        if Path(args.init).is_file():
            init["digest"] = file_digest(args.init)
        return model, init
    if not args.backend:
        raise ConfigError("give --backend (rnafm or esmc) to train from scratch, or --init CHECKPOINT")
    model = build_model(args.backend, args.size, seed=args.seed, **overrides)
    return model, {"scratch": model.spec.size, "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    launched = init_distributed_from_env()
    try:
        model, init = model_from_args(args)
        report = train(model, args.data, Path(args.out), settings, init=init)
    finally:
        if launched.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if "stopped_at_step" in report:
        return 0
    if launched.main:
        log.info("wrote %s", os.path.join(args.out, "model.pt"))
    return 0
