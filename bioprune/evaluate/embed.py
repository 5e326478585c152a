"""Frozen embeddings: the final hidden states of :meth:`MaskedLM.embed`, batched by length, no gradient.

Sequences are sorted by length and packed into batches of at most ``batch_tokens`` padded tokens
(:func:`bioprune.models.batching.bucket`, rows from the model's batch converter), so padding stays
small; results come back in input order. Residue ``k`` of a sequence is position
``k + 1`` of the model input (after ``<cls>``); ``<cls>``, ``<eos>`` and pads are never part of an
embedding. Sequences longer than the model's window (``max_tokens - 2`` residues) are cropped to their
first window; callers that need every residue drop such sequences first (see :func:`fits_model`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from bioprune.models.base import MaskedLM
from bioprune.models.batching import bucket

log = logging.getLogger(__name__)

ATTENTION_FLOATS = 1 << 27  # attention probabilities of one batch (512 MB in float32)


def window(model: MaskedLM) -> int:
    """Residues the model sees at once."""
    return model.window


def fits_model(model: MaskedLM, seq: str) -> bool:
    return len(seq) <= window(model)


def encodable(model: MaskedLM, seq: str) -> bool:
    """Whether every character is in the model's alphabet (RNA: T counts as U)."""
    try:
        model.tokenizer.encode_residues(seq)
    except ValueError:
        return False
    return True


def _batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Length buckets of residue ``lengths`` (rows are 2 tokens longer: <cls>, <eos>), ties in order."""
    return bucket(lengths + 2, batch_tokens)


def _cropped(model: MaskedLM, seqs: list[str]) -> tuple[list[str], np.ndarray]:
    """The sequences cut to the model's window, and their lengths; ValueError for an empty one."""
    room = window(model)
    cropped = [s[:room] for s in seqs]
    lengths = np.array([len(s) for s in cropped], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("cannot embed an empty sequence")
    return cropped, lengths


@torch.no_grad()
def embed(
    model: MaskedLM,
    seqs: list[str],
    *,
    pooled: bool,
    batch_tokens: int = 16384,
    device: torch.device | str = "cpu",
    desc: str = "embed",
) -> torch.Tensor | list[torch.Tensor]:
    """Mean-pooled embeddings [N, H] (``pooled``) or per-residue embeddings (a list of [L_i, H]), float32
    on CPU, in the order of ``seqs``. ValueError when a sequence has a character outside the alphabet."""
    model.eval().to(device)
    cropped, lengths = _cropped(model, seqs)
    results: list[torch.Tensor | None] = [None] * len(seqs)
    batches = _batches(lengths, batch_tokens)
    for idx in tqdm(batches, desc=desc, unit="batch", file=sys.stderr, mininterval=30.0, leave=False):
        tokens = model.batch([cropped[i] for i in idx]).to(device)
        hidden = model.embed(tokens).float()
        for row, i in enumerate(idx):
            h = hidden[row, 1 : 1 + lengths[i]]
            results[i] = h.mean(0).cpu() if pooled else h.cpu().clone()
    if pooled:
        return torch.stack(results) if results else torch.zeros(0, 0)
    return results


@torch.no_grad()
def iter_attention(
    model: MaskedLM,
    seqs: list[str],
    *,
    batch_tokens: int = 16384,
    device: torch.device | str = "cpu",
    desc: str = "attention",
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(index, hidden [L, H], attention [layers, heads, L, L])`` per sequence (float32, CPU, residue
    positions only), batched by length as :func:`embed`; yielded batch by batch, so callers can reduce
    the maps (which grow as L^2 x layers x heads) before the next batch. Batches are split further so
    that one batch's maps stay under :data:`ATTENTION_FLOATS` numbers."""
    model.eval().to(device)
    cropped, lengths = _cropped(model, seqs)
    arch = model.arch()
    per_token2 = arch["layers"] * arch["heads"]
    batches = []
    for idx in _batches(lengths, batch_tokens):
        n = int(lengths[idx[-1]]) + 2  # the longest of the batch, with <cls> and <eos>
        rows = max(1, ATTENTION_FLOATS // (per_token2 * n * n))
        batches += [idx[k : k + rows] for k in range(0, len(idx), rows)]
    for idx in tqdm(batches, desc=desc, unit="batch", file=sys.stderr, mininterval=30.0, leave=False):
        tokens = model.batch([cropped[i] for i in idx]).to(device)
        hidden, maps = model.embed_with_attention(tokens)
        for row, i in enumerate(idx):
            n = int(lengths[i])
            yield (
                int(i),
                hidden[row, 1 : 1 + n].float().cpu(),
                maps[row, :, :, 1 : 1 + n, 1 : 1 + n].float().cpu(),
            )
