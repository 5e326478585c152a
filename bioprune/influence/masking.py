"""Deterministic MLM masks: the mask of a sequence depends only on (sequence id, seed, length).

A score must not depend on the shard, batch or order a sequence was scored in, so masks are not drawn
from a running random generator. Each sequence gets a 64-bit key from xxhash64 of its id (seeded); the
random numbers of residue position p are splitmix64(key + p * golden), a counter-based generator that
is the same on every platform and vectorises in numpy.

The masking rule is BERT's, as RNA-FM and ESM pretraining use: each residue is selected with probability
``prob`` (at least one per sequence); a selected residue becomes <mask> 80% of the time, a random residue
token 10% and stays itself 10%. The loss is over the selected residues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1
# Independent streams of one sequence: which residues, what they become, which random residue.
_STREAM_SELECT, _STREAM_ACTION, _STREAM_TOKEN = 0, 1, 2


def sequence_key(seq_id: str, seed: int, stream: int = 0) -> int:
    """A 64-bit key for one sequence id, seed and stream (stable across runs and platforms)."""
    return xxhash.xxh64_intdigest(seq_id.encode("utf-8"), seed=(seed * 4 + stream) & _MASK64)


def uniforms(key: int, n: int) -> np.ndarray:
    """``n`` float64 numbers in [0, 1) for positions 0..n-1 of the stream ``key`` (splitmix64)."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class MaskDraw:
    """The mask of one sequence over its residue positions 0..n-1."""

    positions: np.ndarray  # int64, sorted residue positions whose token is predicted
    replacement: np.ndarray  # int64 token id fed to the model at each of those positions


def draw_mask(
    seq_id: str,
    residue_tokens: np.ndarray,
    *,
    seed: int,
    prob: float,
    mask_idx: int,
    residue_ids: tuple[int, ...],
) -> MaskDraw:
    """The deterministic BERT-style mask of one sequence given its residue token ids (no specials)."""
    n = len(residue_tokens)
    if n == 0:
        return MaskDraw(np.zeros(0, np.int64), np.zeros(0, np.int64))
    u = uniforms(sequence_key(seq_id, seed, _STREAM_SELECT), n)
    selected = np.flatnonzero(u < prob)
    if selected.size == 0:  # every sequence contributes a loss: take its lowest draw
        selected = np.array([int(np.argmin(u))], dtype=np.int64)
    action = uniforms(sequence_key(seq_id, seed, _STREAM_ACTION), n)[selected]
    pick = uniforms(sequence_key(seq_id, seed, _STREAM_TOKEN), n)[selected]
    choices = np.asarray(residue_ids, dtype=np.int64)
    random_tok = choices[np.minimum((pick * len(choices)).astype(np.int64), len(choices) - 1)]
    replacement = np.where(
        action < MASK_FRACTION,
        mask_idx,
        np.where(action < MASK_FRACTION + RANDOM_FRACTION, random_tok, residue_tokens[selected]),
    )
    return MaskDraw(selected.astype(np.int64), replacement.astype(np.int64))
