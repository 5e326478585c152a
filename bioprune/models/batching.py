"""The one tokenise / batch / mask path of training, influence scoring and evaluation.

As fair-esm's ``Alphabet`` + ``BatchConverter``: a :class:`BatchConverter` (one per model,
``model.converter``) turns residue token ids into model rows ``<cls> residues <eos>`` padded with
``<pad>`` to the longest row of the batch; :func:`bucket` groups sequences into length-sorted batches
within a padded-token budget; :class:`Batch` is what a forward pass takes (token rows plus the loss
tokens, listed flat); :func:`mlm_batch` is the deterministic MLM mask of a batch and
:func:`mlm_loss_sum` its summed cross-entropy.

Which masks are used where
--------------------------
"The MLM mask of a batch" for *measuring* a model is :func:`mlm_batch`: each sequence's mask is
:func:`bioprune.models.masking.draw_mask` of its id, seed and (cropped) residues, so it does not depend
on the batch, shard or order a sequence lands in. Training's validation loss (``val_loss``,
``val_perplexity``) and the evaluation's held-out perplexity both use it, on the same crop (the first
``max_tokens - 2`` residues), so on the same model, sequences, seed and mask rate they give the same
number. Influence scoring draws its masks with the same :func:`draw_mask` (per sequence, with windows;
see :mod:`bioprune.influence.losses`).

Training *steps* keep their own per-batch masks (:func:`bioprune.models.masking.mask_tokens`, drawn
from the batch's generator with a random crop window): they are the data augmentation of the
optimisation, and changing them would change every trained weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bioprune.models.masking import draw_mask


class BatchConverter:
    """Residue token ids -> ``<cls> residues <eos>`` rows padded to the batch's longest (int64).

    ``spec`` is a backend's :class:`bioprune.models.base.TokenSpec` (anything with ``cls_idx``,
    ``eos_idx``, ``pad_idx``)."""

    def __init__(self, spec):
        self.spec = spec

    def frame(self, residues: np.ndarray | Sequence[int]) -> np.ndarray:
        """One row: ``<cls> residues <eos>``."""
        row = np.empty(len(residues) + 2, dtype=np.int64)
        row[0] = self.spec.cls_idx
        row[1:-1] = residues
        row[-1] = self.spec.eos_idx
        return row

    def pad(self, rows: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
        """Rows (already framed) stacked into ``[len(rows), width]``, padded with ``<pad>``; ``width``
        defaults to the longest row."""
        return pad_rows(rows, self.spec.pad_idx, width)

    def __call__(self, residues: Sequence[np.ndarray]) -> np.ndarray:
        """Token matrix ``[B, 2 + longest]`` of residue id arrays: the batch converter."""
        return self.pad([self.frame(res) for res in residues])


def pad_rows(rows: Sequence[np.ndarray], pad_idx: int, width: int | None = None) -> np.ndarray:
    """Rows of token ids stacked into an int64 matrix padded with ``pad_idx`` (to the longest row)."""
    width = max(len(r) for r in rows) if width is None else width
    out = np.full((len(rows), width), pad_idx, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def bucket(
    widths: np.ndarray,
    budget: int,
    *,
    rows: np.ndarray | None = None,
    max_batch_size: int | None = None,
    rng: np.random.Generator | None = None,
    indices: np.ndarray | None = None,
    overhead: int | None = None,
) -> list[np.ndarray]:
    """Length bucketing: sort by padded width, then fill each batch while ``rows x widest <= budget``.

    ``widths``: the padded row width of each item (``<cls>``/``<eos>`` included), indexed by item.
    ``indices``: the items to batch (default all, in order). ``rows``: model rows per item (default 1;
    an item's rows always stay in one batch). ``max_batch_size`` caps the items per batch. An item
    larger than the budget forms a batch alone (callers that forbid that check first).

    ``overhead`` (influence scoring): instead of filling each batch, cut the sorted items into the
    batches that minimise the padded tokens (rows x widest, summed) plus ``overhead`` tokens per batch,
    each within the budget. Filling packs a sparse stretch of lengths (a small sample, the long tail)
    into batches that are mostly padding; a batch that would pad more than ``overhead`` tokens is split.

    Without ``rng``: ties keep input order and batches come in ascending width (deterministic, what
    influence and evaluation use). With ``rng`` (training): ties are broken at random and the batch
    order is shuffled, both from ``rng``. Returns arrays of item indices."""
    idx = np.arange(len(widths)) if indices is None else np.asarray(indices)
    if len(idx) == 0:
        return []
    widths = np.asarray(widths)
    if rng is not None:
        idx = rng.permutation(idx)
    order = idx[np.argsort(widths[idx], kind="stable")]
    w = widths[order].astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(np.ones(len(order), np.int64) if rows is None else rows[order])])
    cap = max_batch_size or len(order)
    if overhead is not None:
        batches = [order[a:b] for a, b in _least_padding(w, cum, budget, cap, overhead)]
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches
    batches = []
    start, n = 0, len(order)
    while start < n:
        # w is sorted, so cost(k) = rows(first k) * w[start + k - 1] grows with k: take the most that fit
        hi = min(n - start, cap, max(1, budget // max(1, int(w[start]))))
        cost = (cum[start + 1 : start + hi + 1] - cum[start]) * w[start : start + hi]
        take = max(1, int(np.count_nonzero(cost <= budget)))
        batches.append(order[start : start + take])
        start += take
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _least_padding(
    w: np.ndarray, cum: np.ndarray, budget: int, cap: int, overhead: int
) -> list[tuple[int, int]]:
    """Cut sorted widths ``w`` (rows prefix sums ``cum``) into runs [a, b) minimising the sum of
    ``(cum[b] - cum[a]) * w[b - 1] + overhead`` with each run within ``budget`` (one item alone always
    is) and at most ``cap`` items: dynamic programming over the run's end, vectorised over its start.
    Ties go to the earliest start (fewer, larger batches), so the cut is deterministic."""
    n = len(w)
    best = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)
    for b in range(1, n + 1):
        width = int(w[b - 1])
        lo = int(np.searchsorted(cum, cum[b] - budget // max(1, width), side="left"))
        lo = min(max(lo, b - cap), b - 1)
        a = np.arange(lo, b)
        total = best[lo:b] + (cum[b] - cum[lo:b]) * width + overhead
        k = int(np.argmin(total))
        best[b], start[b] = total[k], a[k]
    runs = []
    b = n
    while b > 0:
        runs.append((int(start[b]), b))
        b = int(start[b])
    return runs[::-1]


@dataclass
class Batch:
    """Rows for one forward pass and their loss tokens (listed flat, row-major, grouped by sequence).

    Training, validation, evaluation and influence scoring all feed this to the model. ``weights`` are
    the influence losses' per-token weights (None: every loss token counts 1); ``items`` the influence
    stage's per-sequence records (empty elsewhere)."""

    tokens: torch.Tensor  # [R, L] int64 model input (masked positions already replaced)
    flat_idx: torch.Tensor  # [N] index of each loss token into tokens.view(-1), ascending
    targets: torch.Tensor  # [N] target token id of each loss token
    seg: torch.Tensor  # [N] sequence (0..n_seqs-1) of each loss token, non-decreasing
    row_seq: torch.Tensor  # [R] sequence of each row
    n_seqs: int
    weights: torch.Tensor | None = None  # [N] float64
    items: list = field(default_factory=list)

    @property
    def n_masked(self) -> int:
        """Loss tokens."""
        return int(self.targets.numel())

    def n_tokens(self, pad_idx: int) -> int:
        """Non-pad tokens (what a batch costs in compute, for throughput logs)."""
        return int(self.tokens.ne(pad_idx).sum())

    @property
    def labels(self) -> torch.Tensor:
        """``[R, L]`` targets with -100 where no prediction is asked (the usual MLM label layout)."""
        out = torch.full(self.tokens.shape, -100, dtype=torch.long, device=self.tokens.device)
        out.view(-1)[self.flat_idx] = self.targets
        return out

    def to(self, device: torch.device | str) -> Batch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            move(self.tokens),
            move(self.flat_idx),
            move(self.targets),
            move(self.seg),
            move(self.row_seq),
            self.n_seqs,
            move(self.weights),
            self.items,
        )

    @classmethod
    def from_labels(cls, inputs: np.ndarray, labels: np.ndarray) -> Batch:
        """One row per sequence; ``labels`` -100 where no loss is asked."""
        flat = np.flatnonzero(labels.reshape(-1) != -100)
        width = labels.shape[1]
        return cls(
            torch.from_numpy(inputs),
            torch.from_numpy(flat),
            torch.from_numpy(labels.reshape(-1)[flat]),
            torch.from_numpy(flat // width),
            torch.arange(len(inputs)),
            len(inputs),
        )


def mlm_batch(
    converter: BatchConverter,
    ids: Sequence[str],
    residues: Sequence[np.ndarray],
    *,
    seed: int,
    prob: float,
    residue_ids: Sequence[int],
    mask_idx: int,
) -> Batch:
    """The deterministic MLM batch of sequences ``ids`` with residue ids ``residues`` (one row each):
    each sequence masked by :func:`draw_mask` of its id and ``seed`` (see the module doc)."""
    tokens = converter(residues)
    labels = np.full(tokens.shape, -100, dtype=np.int64)
    for row, (rid, res) in enumerate(zip(ids, residues, strict=True)):
        m = draw_mask(rid, res, seed=seed, prob=prob, mask_idx=mask_idx, residue_ids=tuple(residue_ids))
        pos = m.positions + 1  # +1: <cls>
        labels[row, pos] = res[m.positions]
        tokens[row, pos] = m.replacement
    return Batch.from_labels(tokens, labels)


def mlm_loss_sum(model, tokens: torch.Tensor, flat_idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the loss tokens; the head runs on those positions only (pads masked)."""
    hidden = model.embed(tokens)
    xs = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_idx)
    logits = model.head_after_dense(model.head_dense(xs))
    return F.cross_entropy(logits.float(), targets, reduction="sum")
