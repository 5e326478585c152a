"""What the Fisher and the score passes share: loading the model, hashing it, and streaming sequences
through the gradient engine in length-bucketed batches, yielding per-sequence gradients in input order
chunk by chunk (memory stays bounded by ``buffer`` sequences)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bioprune.errors import ConfigError, InputError
from bioprune.fasta import Record, open_maybe_gzip, read_fasta
from bioprune.influence.grads import GradientEngine
from bioprune.influence.losses import Prepared, check_tokeniser, chunked, make_batches, prepare
from bioprune.influence.settings import InfluenceSettings
from bioprune.models.base import MaskedLM

log = logging.getLogger(__name__)

# Sequences read, bucketed by length and processed together; results come back in input order.
BUFFER = 4096


class HeapTrimmer:
    """Hand freed heap memory back to the OS when the process has grown by ``slack_mb`` since the last trim.

    Batches of varying shapes fragment glibc's heap (its mmap threshold rises after the first large free,
    so later tensors come from the heap): without this, resident memory creeps up over a long shard
    although nothing is kept. ``malloc_trim`` releases the free pages; calling it only after growth keeps
    its cost (re-faulting pages) to a few calls per shard. A no-op where glibc is not the allocator."""

    def __init__(self, slack_mb: int = 64):
        self.slack = slack_mb << 20
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._trim = None
        if sys.platform.startswith("linux"):
            try:
                self._trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                self._trim = None
        self.base = self.rss()
        self.trims = 0

    def rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def __call__(self) -> None:
        if self._trim is None:
            return
        if self.rss() > self.base + self.slack:
            self._trim(0)
            self.trims += 1
            self.base = self.rss()


def file_sha256(path: os.PathLike | str) -> str:
    """sha256 of a file, or of a folder (sorted relative paths and contents, e.g. a transformers model)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def shard_records(path: os.PathLike | str) -> Iterator[Record]:
    """The records of a shard; an empty shard file (the shard step writes all N, empty ones too) has none.
    Anything else that is not FASTA is an error, as in read_fasta."""
    try:
        with open_maybe_gzip(path) as fh:
            empty = fh.read(1) == b""
    except (OSError, EOFError, zlib.error):  # corrupt gzip: read_fasta names file and line
        empty = False
    return iter(()) if empty else read_fasta(path)


def load_scoring_model(path: os.PathLike | str, device: torch.device) -> tuple[MaskedLM, str]:
    """The model (eval mode, on ``device``) and the sha256 of its checkpoint (its provenance)."""
    from bioprune.models.registry import load_model

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such model checkpoint")
    model = load_model(p)
    digest = file_sha256(p)
    return model.to(device).eval(), digest


def iter_gradients(
    model: MaskedLM,
    engine: GradientEngine,
    records: Iterable[Record],
    source: os.PathLike | str,
    settings: InfluenceSettings,
    *,
    progress: bool = True,
    buffer: int = BUFFER,
    on_item: Callable[[Prepared], None] | None = None,
) -> Iterator[tuple[list[Prepared], np.ndarray, Iterator[tuple[torch.Tensor, torch.Tensor]]]]:
    """For each batch: (its sequences, their losses, chunks of (index into the batch, gradients)).

    Batches are formed per buffer of ``buffer`` sequences sorted by length; callers that need input
    order use ``Prepared.order``."""
    check_tokeniser(model)
    limit = getattr(model, "max_tokens", None)  # learned positions (RNA-FM) cap the input length
    if limit is not None and settings.max_length > limit:
        raise ConfigError(f"influence max_length {settings.max_length} exceeds the model's {limit} tokens")
    bar = tqdm(unit="seq", file=sys.stderr, disable=not progress, mininterval=2.0, desc=Path(source).name)
    order = 0

    def prepared() -> Iterator[Prepared]:
        nonlocal order
        for rec in records:
            try:
                item = prepare(model, order, rec.id, rec.seq.decode("ascii", "replace"), settings)
            except ValueError as exc:
                raise InputError(source, str(exc), line=rec.line, record=rec.id) from exc
            order += 1
            if on_item is not None:
                on_item(item)
            yield item

    trim = HeapTrimmer()
    try:
        for items in chunked(prepared(), buffer):
            for batch in make_batches(items, model.tokens.pad_idx, settings.batch_tokens):
                bg = engine.batch_grads(batch)
                yield batch.items, bg.losses.cpu().numpy(), bg.chunks
                bar.update(batch.n_seqs)
                trim()
    finally:
        bar.close()
        log.debug("heap trimmed %d times", trim.trims)
