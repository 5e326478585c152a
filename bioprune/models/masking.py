"""MLM masks: the deterministic per-sequence mask (influence, validation, evaluation) and training's
per-batch mask.

:func:`draw_mask` (the mask a model is *measured* on): the mask of a sequence depends only on
(sequence id, seed, residues). A score must not depend on the shard, batch or order a sequence was
scored in, so these masks are not drawn from a running random generator. Each sequence gets a 64-bit
key from xxhash64 of its id (seeded); the random numbers of residue position p are
splitmix64(key + p * golden), a counter-based generator that is the same on every platform and
vectorises in numpy. Each residue is selected with probability ``prob`` (at least one per sequence).
Influence scoring, training's validation loss and the evaluation's held-out perplexity all use it (see
:mod:`bioprune.models.batching`).

:func:`mask_tokens` (training steps only): per batch, from the batch's seeded generator, exactly
``floor(prob * n + u)`` residues of each sequence. It is the optimisation's data augmentation; it stays
as it was so that trained weights do not change.

Both follow BERT's rule, as RNA-FM and ESM pretraining do: a selected residue becomes <mask> 80% of the
time, a random residue token 10% and stays itself 10%; the loss is over the selected residues.
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


def mask_tokens(
    tokens: np.ndarray,
    spec,
    rng: np.random.Generator,
    mask_prob: float = 0.15,
    replace_prob: tuple[float, float] = (MASK_FRACTION, RANDOM_FRACTION),
) -> tuple[np.ndarray, np.ndarray]:
    """Training's BERT masking of a token matrix. Returns (inputs, labels); labels are -100 where no
    prediction is asked. ``spec``: the backend's :class:`bioprune.models.base.TokenSpec`.

    Per sequence, ``floor(mask_prob * n + u)`` (u uniform in [0, 1), at least one) of its ``n`` residue
    positions are chosen uniformly; <cls>, <eos> and pads never are. Of the chosen, 80% become
    <mask>, 10% a random residue (``spec.residue_ids``), 10% stay unchanged."""
    special = (tokens == spec.pad_idx) | (tokens == spec.cls_idx) | (tokens == spec.eos_idx)
    n_res = (~special).sum(axis=1)
    n_mask = np.floor(mask_prob * n_res + rng.random(len(tokens))).astype(np.int64)
    n_mask = np.clip(n_mask, np.minimum(n_res, 1), n_res)
    scores = rng.random(tokens.shape)
    scores[special] = 2.0  # never chosen: real scores are < 1
    rank = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < n_mask[:, None]
    labels = np.where(chosen, tokens, -100)
    r = rng.random(tokens.shape)
    p_mask, p_random = replace_prob
    inputs = tokens.copy()
    inputs[chosen & (r < p_mask)] = spec.mask_idx
    to_random = chosen & (r >= p_mask) & (r < p_mask + p_random)
    residues = np.asarray(spec.residue_ids, dtype=np.int64)
    inputs[to_random] = residues[rng.integers(0, len(residues), size=int(to_random.sum()))]
    return inputs, labels
