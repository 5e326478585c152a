"""The settings of the Fisher and score passes, their validation and their command-line flags.

Two kinds of settings: those that define the per-sequence loss (and so the numbers: they are part of
a Fisher file's provenance and a score file's metadata, see :meth:`InfluenceSettings.loss_definition`)
and those that only change speed or memory (batch size, device, precision, gradient chunking).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import torch

from bioprune.cli import seed
from bioprune.errors import ConfigError
from bioprune.settings import default, from_args

BLOCKS = ("head_dense", "last_block")
LOSS_MODES = ("mlm", "compat")
# How an mlm loss weights its masked tokens (docs/influence.md, "Influence scores and length": maths and
# measurements):
# mean 1/n, token_sum 1 (as training weights them), sqrt 1/sqrt(n), window 1/max_length.
LOSS_NORMS = ("mean", "token_sum", "sqrt", "window")
LONG_RULES = ("truncate", "windows")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class InfluenceSettings:
    # defaults of the settings with a config key (influence:) come from the schema
    # --- define the loss (provenance) ---
    # parameter block W: head_dense (its weight) | last_block (all its params)
    block: str = default("influence", "block")
    # mlm: masked tokens only | compat: the official code's unmasked reconstruction
    loss_mode: str = default("influence", "loss_mode")
    # mlm: weight of each masked token: mean | token_sum | sqrt | window
    loss_norm: str = default("influence", "loss_norm")
    # mlm: the mask of a sequence is drawn from (sequence id, mask_seed)
    mask_seed: int = default("influence", "mask_seed")
    # mlm: fraction of residues masked (at least one per sequence)
    mask_prob: float = default("influence", "mask_prob")
    # tokens per model input incl. <cls>/<eos>; compat: the fixed window
    max_length: int = default("influence", "max_length")
    # truncate | windows (split into equal windows, one loss)
    long_sequences: str = default("influence", "long_sequences")
    # --- score only ---
    eps: float = default("influence", "eps")  # s = sum_j g_j^2 / (F_j + eps)
    # --- speed and memory only ---
    batch_tokens: int = default("influence", "batch_tokens")  # padded tokens per batch (rows x longest row)
    precision: str = default("influence", "precision")  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_memory_mb: int = 256  # per-sample gradients are formed this many MiB at a time

    def __post_init__(self) -> None:
        problems = []
        if self.block not in BLOCKS:
            problems.append(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.loss_mode not in LOSS_MODES:
            problems.append(f"loss_mode must be one of {LOSS_MODES}, got {self.loss_mode!r}")
        if self.loss_norm not in LOSS_NORMS:
            problems.append(f"loss_norm must be one of {LOSS_NORMS}, got {self.loss_norm!r}")
        if self.long_sequences not in LONG_RULES:
            problems.append(f"long_sequences must be one of {LONG_RULES}, got {self.long_sequences!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 < self.mask_prob <= 1.0:
            problems.append(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.max_length < 3:
            problems.append(
                f"max_length must be at least 3 tokens (<cls>, one residue, <eos>), got {self.max_length}"
            )
        if not self.eps > 0:  # F_j = 0 on coordinates no D_sub sequence moves: 0/0 without eps
            problems.append(f"eps must be > 0, got {self.eps}")
        if self.batch_tokens < 1:
            problems.append(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.grad_memory_mb < 1:
            problems.append(f"grad_memory_mb must be >= 1, got {self.grad_memory_mb}")
        if not 0 <= self.mask_seed < 2**62:
            problems.append(f"mask_seed must be in [0, 2^62), got {self.mask_seed}")
        if problems:
            raise ConfigError("influence settings: " + "; ".join(problems))

    def loss_definition(self) -> dict:
        """The settings that change the per-sequence loss (and so every gradient)."""
        out = {
            "block": self.block,
            "loss_mode": self.loss_mode,
            "max_length": self.max_length,
            "long_sequences": self.long_sequences,
        }
        if self.loss_mode == "mlm":  # compat: no masking, the official fixed-window mean
            out.update(mask_seed=self.mask_seed, mask_prob=self.mask_prob, loss_norm=self.loss_norm)
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"influence settings: bad device {self.device!r} ({exc})") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"influence settings: device {self.device!r} asked for but CUDA is not available"
            )
        return dev

    def use_bf16(self, device: torch.device) -> bool:
        if self.precision == "auto":
            return device.type == "cuda"
        return self.precision == "bf16"


def add_settings_arguments(parser: argparse.ArgumentParser, *, score: bool) -> None:
    """Flags shared by ``bioprune fisher`` and ``bioprune score`` (defaults = InfluenceSettings)."""
    d = InfluenceSettings()
    g = parser.add_argument_group("loss definition (must match between fisher and score)")
    g.add_argument("--block", choices=BLOCKS, default=d.block, help="parameter block W (default %(default)s)")
    g.add_argument(
        "--loss-mode",
        choices=LOSS_MODES,
        default=d.loss_mode,
        help="mlm: masked-token loss, pads excluded; compat: the official code's unmasked reconstruction "
        "over a fixed --max-length window, pads in loss and attention (default %(default)s)",
    )
    g.add_argument(
        "--loss-norm",
        choices=LOSS_NORMS,
        default=d.loss_norm,
        help="mlm: weight of each masked token in a sequence's loss: mean 1/n, token_sum 1 (as in training), "
        "sqrt 1/sqrt(n), window 1/max-length (default %(default)s; ignored in compat mode)",
    )
    g.add_argument("--mask-seed", type=seed, default=d.mask_seed, help="mlm mask seed (default %(default)s)")
    g.add_argument("--mask-prob", type=float, default=d.mask_prob, help="mlm mask rate (default %(default)s)")
    g.add_argument(
        "--max-length",
        type=int,
        default=d.max_length,
        help="tokens per model input incl. <cls>/<eos>; the window in compat mode (default %(default)s)",
    )
    g.add_argument(
        "--long-sequences",
        choices=LONG_RULES,
        default=d.long_sequences,
        help="longer sequences: keep the first max_length-2 residues, or split into equal windows whose "
        "losses form one per-sequence loss (default %(default)s)",
    )
    if score:
        parser.add_argument(
            "--eps", type=float, default=d.eps, help="s = sum g^2/(F+eps) (default %(default)s)"
        )
    p = parser.add_argument_group("speed and memory (precision changes rounding only)")
    p.add_argument("--batch-tokens", type=int, default=d.batch_tokens, help="padded tokens per batch")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=d.precision, help="auto: bf16 on CUDA, fp32 on CPU"
    )
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N (default %(default)s)")
    p.add_argument("--grad-memory-mb", type=int, default=d.grad_memory_mb, help="per-sample gradient chunk")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def settings_from_args(args: argparse.Namespace) -> InfluenceSettings:
    """The settings from ``bioprune fisher`` / ``score`` flags (fisher has no --eps: the default)."""
    return from_args(InfluenceSettings, args)
