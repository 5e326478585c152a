"""Per-sequence losses: how a sequence becomes model rows, which tokens carry loss, and with what weight.

Every loss here is a weighted sum of per-token cross-entropies, l(z) = sum_t w_t CE_t, which lets one
batched backward pass give each sequence its own gradient (sequences never interact in a batch):

``mlm`` (default)
    BERT-style mask drawn from the sequence id (:func:`bioprune.models.masking.draw_mask`); the loss is a
    weighted sum of the cross-entropies of the n masked residues, each weighted by ``loss_norm``:
    ``mean`` 1/n, ``token_sum`` 1 (each masked token counts as in training), ``sqrt`` 1/sqrt(n),
    ``window`` 1/max_length (the official code's fixed divisor). <cls>/<eos> and pads carry no loss and
    pads are excluded from attention. Rows are padded only to the longest row of their batch.
``compat`` (the official code)
    No masking: the model reconstructs its unmasked input. Every row is padded to the fixed window
    ``max_length`` (1024 for RNA-FM), pads are attended to, and the loss is the mean over all window
    positions, pads, <cls> and <eos> included. With ``truncate``, a sequence of ``max_length - 1`` or
    more residues keeps its first ``max_length`` tokens, <cls> and ``max_length - 1`` residues with no
    <eos>, as the official code's tokenise-then-cut does.

Long sequences (more than ``max_length - 2`` residues): ``truncate`` keeps the first
``max_length - 2`` residues; ``windows`` splits the sequence into the fewest equal-length
non-overlapping windows that fit, each its own row with <cls>/<eos>, and the sequence's loss is the
mean over the loss tokens of all its windows (so its gradient is the sum over windows before squaring).

Rows, batches and length bucketing are the shared ones of :mod:`bioprune.models.batching` (the rows come
from ``model.encode``, the batch converter's ``<cls> residues <eos>``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bioprune.influence.settings import InfluenceSettings
from bioprune.models.base import MaskedLM
from bioprune.models.batching import Batch, bucket, pad_rows
from bioprune.models.masking import draw_mask


@dataclass(slots=True)
class Prepared:
    """One sequence turned into model rows with its loss tokens."""

    order: int  # position in the input stream (results are written back in this order)
    seq_id: str
    length: int  # residues in the input sequence
    rows: list[np.ndarray]  # model input token ids per row (compat: already padded to the window)
    loss_pos: list[np.ndarray]  # positions within each row that carry loss
    targets: list[np.ndarray]  # target token id at each of those positions
    weight: float  # loss weight of every loss token (see loss_weight)
    n_tokens: int  # loss tokens over all rows
    truncated: bool
    n_windows: int

    @property
    def width(self) -> int:
        return max(len(r) for r in self.rows)


def check_tokeniser(model: MaskedLM) -> None:
    """The row building below assumes <cls> + one token per residue + <eos>; check it once per model."""
    ids = model.encode("AAA")
    spec = model.tokens
    if len(ids) != 5 or ids[0] != spec.cls_idx or ids[-1] != spec.eos_idx:
        raise ValueError(
            f"{type(model).__name__}.encode('AAA') gave {ids}: influence scoring needs "
            "<cls> + one token per residue + <eos>"
        )


def _windows(n: int, cap: int) -> list[tuple[int, int]]:
    k = -(-n // cap)
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def _encode(model: MaskedLM, chunk: str) -> np.ndarray:
    ids = model.encode(chunk)
    if len(ids) != len(chunk) + 2:
        raise ValueError(f"tokeniser gave {len(ids)} tokens for {len(chunk)} residues")
    return np.asarray(ids, dtype=np.int64)


def loss_weight(n_tokens: int, settings: InfluenceSettings) -> float:
    """The weight of each of a sequence's ``n_tokens`` loss tokens (compat: the window mean)."""
    if settings.loss_mode == "compat":
        return 1.0 / n_tokens
    norm = settings.loss_norm
    if norm == "mean":
        return 1.0 / n_tokens
    if norm == "sqrt":
        return 1.0 / math.sqrt(n_tokens)
    if norm == "window":
        return 1.0 / settings.max_length
    return 1.0  # token_sum


def _compat_truncated(model: MaskedLM, seq: str, window: int) -> np.ndarray:
    """The official code's row for a sequence too long for the window: tokenise, then keep the first
    ``window`` tokens (<cls> and ``window - 1`` residues, no <eos>)."""
    return _encode(model, seq[: window - 1])[:-1]


def prepare(model: MaskedLM, order: int, seq_id: str, seq: str, settings: InfluenceSettings) -> Prepared:
    """Rows, loss tokens and weights of one sequence. Raises ValueError for a sequence the model
    cannot tokenise (the caller names the file and record)."""
    if not seq:
        raise ValueError("empty sequence")
    cap = settings.max_length - 2
    n = len(seq)
    truncated = False
    if n <= cap:
        spans = [(0, n)]
    elif settings.long_sequences == "truncate":
        spans, truncated = [(0, cap)], True
    else:
        spans = _windows(n, cap)
    spec = model.tokens
    if settings.loss_mode == "compat" and truncated:
        encoded = [_compat_truncated(model, seq, settings.max_length)]
    else:
        encoded = [_encode(model, seq[a:b]) for a, b in spans]

    if settings.loss_mode == "compat":
        window = settings.max_length
        rows = list(pad_rows(encoded, spec.pad_idx, window))
        positions = [np.arange(window, dtype=np.int64)] * len(rows)
        targets = [r.copy() for r in rows]
        n_tokens = window * len(rows)
        weight = loss_weight(n_tokens, settings)
        return Prepared(order, seq_id, n, rows, positions, targets, weight, n_tokens, truncated, len(rows))

    residues = np.concatenate([ids[1:-1] for ids in encoded])
    draw = draw_mask(
        seq_id,
        residues,
        seed=settings.mask_seed,
        prob=settings.mask_prob,
        mask_idx=spec.mask_idx,
        residue_ids=spec.residue_ids,
    )
    rows, positions, targets = [], [], []
    offset = 0
    for ids in encoded:
        n_res = len(ids) - 2
        in_row = (draw.positions >= offset) & (draw.positions < offset + n_res)
        pos = draw.positions[in_row] - offset + 1  # +1: <cls>
        row = ids.copy()
        row[pos] = draw.replacement[in_row]
        rows.append(row)
        positions.append(pos)
        targets.append(ids[pos])
        offset += n_res
    n_tokens = int(draw.positions.size)
    weight = loss_weight(n_tokens, settings)
    return Prepared(order, seq_id, n, rows, positions, targets, weight, n_tokens, truncated, len(rows))


def make_batch(items: list[Prepared], pad_idx: int) -> Batch:
    """One :class:`Batch` of prepared sequences: their rows padded to the widest, loss tokens flat."""
    tokens = pad_rows([row for it in items for row in it.rows], pad_idx)
    width = tokens.shape[1]
    row_seq = np.repeat(np.arange(len(items), dtype=np.int64), [len(it.rows) for it in items])
    flat, seg, tgt, wts = [], [], [], []
    r = 0
    for i, it in enumerate(items):
        for pos, t in zip(it.loss_pos, it.targets, strict=True):
            flat.append(pos + r * width)
            seg.append(np.full(len(pos), i, dtype=np.int64))
            tgt.append(t)
            wts.append(np.full(len(pos), it.weight, dtype=np.float64))
            r += 1
    return Batch(
        tokens=torch.from_numpy(tokens),
        flat_idx=torch.from_numpy(np.concatenate(flat)),
        targets=torch.from_numpy(np.concatenate(tgt)),
        seg=torch.from_numpy(np.concatenate(seg)),
        row_seq=torch.from_numpy(row_seq),
        n_seqs=len(items),
        weights=torch.from_numpy(np.concatenate(wts)),
        items=items,
    )


# Padded tokens a batch costs on top of its tokens (per-batch work: Python, the head, small matmuls):
# length bucketing cuts a sorted run of sequences where that saves more padding than this.
BATCH_OVERHEAD = 512


def make_batches(items: list[Prepared], pad_idx: int, batch_tokens: int) -> Iterator[Batch]:
    """Bucket by length (:func:`bioprune.models.batching.bucket`: sorted by row width, ties in input
    order, cut into the batches of at most ``batch_tokens`` padded tokens that minimise padding plus
    :data:`BATCH_OVERHEAD` per batch). All rows of one sequence stay in one batch; a sequence larger
    than the budget is batched alone."""
    widths = np.array([it.width for it in items], dtype=np.int64)
    rows = np.array([len(it.rows) for it in items], dtype=np.int64)
    by_order = np.argsort([it.order for it in items], kind="stable")  # ties of width: input order
    for idx in bucket(widths, batch_tokens, rows=rows, indices=by_order, overhead=BATCH_OVERHEAD):
        yield make_batch([items[i] for i in idx], pad_idx)


def chunked(iterable: Iterable, size: int) -> Iterator[list]:
    buf: list = []
    for x in iterable:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def weighted_token_losses(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """w_t * CE_t for each loss token, computed in at least float32 (bf16 logits are upcast)."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    ce = F.cross_entropy(logits, targets, reduction="none")
    return ce * weights.to(ce.dtype)
