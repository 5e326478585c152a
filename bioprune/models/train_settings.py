"""The settings of a training run (``bioprune train``, ``reference``, ``pretrain``): torch-free, so the
workflow plans with them. Defaults of settings that have a config key (``train:``) come from the schema
(:mod:`bioprune.settings`); the command-line flags are made from :data:`TRAIN_FLAGS`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from bioprune.errors import ConfigError
from bioprune.settings import add_option, default, from_args, options, schema_property


@dataclass
class TrainSettings:
    """Everything that changes the trained weights, plus bookkeeping (marked)."""

    epochs: int | None = None  # budget: whole passes over the training split ...
    max_steps: int | None = None  # ... or optimizer steps (wins when both are set)
    lr: float = default("train", "lr")
    min_lr_ratio: float = default("train", "min_lr_ratio")  # the schedule decays to lr * min_lr_ratio
    warmup: float = default("train", "warmup")  # < 1: fraction of all steps; >= 1: number of steps
    schedule: str = default("train", "schedule")  # cosine | linear | constant
    weight_decay: float = default("train", "weight_decay")
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-8
    grad_clip: float = default("train", "grad_clip")  # max global gradient norm; 0 disables clipping
    accumulate: int = default("train", "accumulate")  # batches per process per optimizer step
    max_tokens_per_batch: int = default("train", "max_tokens_per_batch")  # rows x longest row, pads included
    max_batch_size: int | None = default("train", "max_batch_size")
    mask_prob: float = default("train", "mask_prob")
    val_fraction: float = default("train", "val_fraction")
    seed: int = default("train", "seed")
    precision: str = default("train", "precision")  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    # bookkeeping: do not change the weights
    eval_every: int = 0  # optimizer steps between validations (0: only at the end)
    checkpoint_every: int = default("train", "checkpoint_every")
    keep_work: bool = False
    stop_after_steps: int | None = None  # debug: stop (as if killed) after this many steps, no checkpoint

    BOOKKEEPING = ("eval_every", "checkpoint_every", "keep_work", "stop_after_steps")

    def validate(self) -> None:
        if self.epochs is None and self.max_steps is None:
            raise ConfigError("training needs a budget: set epochs or max_steps")
        for name in ("epochs", "max_steps", "max_batch_size", "stop_after_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        for name in ("schedule", "precision"):  # the schema's choices
            allowed = schema_property("train", name)["enum"]
            if getattr(self, name) not in allowed:
                choices = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
                raise ConfigError(f"{name} must be {choices}, got {getattr(self, name)!r}")
        if not 0 < self.mask_prob < 1:
            raise ConfigError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.accumulate < 1 or self.checkpoint_every < 1 or self.eval_every < 0:
            raise ConfigError("accumulate and checkpoint_every must be >= 1, eval_every >= 0")
        if self.lr <= 0 or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0:
            raise ConfigError("lr must be > 0, warmup >= 0, min_lr_ratio in [0, 1], grad_clip >= 0")

    def weights_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.BOOKKEEPING}


# Flags of the ``train:`` settings, in the order the workflow writes them, with their help. Type,
# default and choices come from TrainSettings and the schema; the workflow's rules pass every one.
TRAIN_FLAGS = {
    "lr": "peak learning rate",
    "min_lr_ratio": "final lr / peak lr",
    "warmup": "warm-up: fraction of steps if < 1, else steps",
    "schedule": "learning-rate schedule",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "max gradient norm (0: off)",
    "accumulate": "batches per process per step",
    "max_tokens_per_batch": "rows x longest row per batch",
    "mask_prob": "fraction of residues masked",
    "val_fraction": "held-out fraction (by id hash)",
    "precision": "auto: bf16 autocast on CUDA, fp32 on CPU",
    "seed": "seeds initialisation, split, batches and masks",
    "checkpoint_every": "steps between checkpoints",
    "max_batch_size": "cap on sequences per batch",
}


def add_training_flags(group) -> None:
    for name, help in TRAIN_FLAGS.items():
        add_option(group, TrainSettings, name, help, "train")


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    s = from_args(TrainSettings, args)
    s.validate()
    return s


def trainer_options(train: dict, lr: float, *, seed: bool) -> list[str]:
    """The rules' command-line pieces of the ``train:`` section (reference and pretrain rules), with the
    stage's learning rate. ``seed=False`` leaves the seed to the caller (the pretrain rule adds it per
    selection seed)."""
    names = [n for n in TRAIN_FLAGS if seed or n != "seed"]
    return options({**train, "lr": lr}, names)
