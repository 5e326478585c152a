"""2-D structure heads of rna_ss tasks (task setting ``structure_head``), and their one-hot floors.

``structure_head: pair`` is the per-pair probe of :mod:`bioprune.evaluate.probes` (no 2-D context).
The two heads here see the pair map as a whole:

- ``attention``: contact regression on attention maps, as ESM's contact head. Every layer's and head's
  attention map (residue positions only) is symmetrised and APC-corrected
  (:func:`bioprune.evaluate.pairfeatures.attention_features`); a logistic regression over those
  ``layers x heads`` numbers scores each candidate pair. Fitted full-batch with L-BFGS on standardised
  features, L2 penalty ``weight_decay``; train rows are every true pair plus a seeded sample of at most
  :data:`NEGATIVES_PER_POSITIVE` non-pairs per true pair of each sequence (weighted up to stand for all
  of them), positives weighted by the square root of the negative:positive ratio (as the other heads).
  Seconds per model on a CPU.
- ``cnn``: a dilated 2-D residual CNN (``cnn_blocks`` blocks of ``cnn_channels`` channels, dilations
  1, 2, 4, 8, ...) over pair features: the residue embeddings, LayerNorm-ed and projected to
  :data:`CNN_PROJ` channels, outer-concatenated (``[q_i, q_j]``); the attention maps averaged over the
  heads of each layer (symmetrised, APC; ``cnn_attention: false`` leaves them out); the 16 nucleotide-pair
  one-hot channels and the relative-distance bins. Output logits are symmetrised. Trained with binary
  cross-entropy over the candidate pairs (positives weighted by the square root of the negative:positive
  ratio, as the pair probe), AdamW, ``batch_size`` sequences per step, ``epochs`` epochs, seeded; the
  kept epoch is the one with the best valid F1 at its best threshold.

Decoding (both heads, and the pair head when ``canonical_only`` is true): candidates are canonical
(AU, CG) and GU pairs with ``j - i > min_loop``; greedy by probability, one partner per base; the threshold
is tuned on valid over :data:`bioprune.evaluate.probes.THRESHOLDS` unless the task fixes it.

Floors (:func:`fit_structure` with ``source=None``): the same head and decoding on one-hot input only:
the CNN and the regression on the nucleotide-pair one-hot and distance bins, the pair probe on residue
one-hots. A language model's features are worth something when they raise the score above that.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bioprune.evaluate import metrics as M
from bioprune.evaluate.embed import embed, iter_attention
from bioprune.evaluate.pairfeatures import (
    N_DISTANCE,
    allowed_pairs,
    attention_features,
    onehot_pair_input,
    residue_onehot,
)
from bioprune.evaluate.probes import (
    THRESHOLDS,
    best_threshold,
    candidate_mask,
    decode_pairs,
    fit_pairs,
    pair_matrix,
    seeded,
    threshold_curve,
)
from bioprune.models.base import MaskedLM

log = logging.getLogger(__name__)

CNN_PROJ = 8
NEGATIVES_PER_POSITIVE = 20
DILATIONS = (1, 2, 4, 8)


@dataclass
class Source:
    """Where the features come from: a language model (``model``) or nothing (``None``: one-hot floor)."""

    model: MaskedLM | None = None
    batch_tokens: int = 16384
    device: torch.device | str = "cpu"


# -- CNN ----------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv3x3_dilated(elu(instance_norm(x)))."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.elu(self.norm(x)))


class PairCNN(nn.Module):
    """Pair features -> symmetric pair logits [L, L] (see module doc)."""

    def __init__(self, emb_dim: int | None, attn_channels: int, channels: int = 24, blocks: int = 6):
        super().__init__()
        self.emb_dim = emb_dim
        if emb_dim:
            self.norm = nn.LayerNorm(emb_dim)
            self.proj = nn.Linear(emb_dim, CNN_PROJ)
        width = 16 + N_DISTANCE + (2 * CNN_PROJ if emb_dim else 0) + attn_channels
        self.inp = nn.Conv2d(width, channels, 1)
        self.blocks = nn.Sequential(
            *[ResBlock(channels, DILATIONS[k % len(DILATIONS)]) for k in range(blocks)]
        )
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(
        self, base: torch.Tensor, emb: torch.Tensor | None, attn: torch.Tensor | None
    ) -> torch.Tensor:
        parts = [base]
        n = base.shape[-1]
        if self.emb_dim:
            q = self.proj(self.norm(emb)).T  # [P, L]
            parts += [q[:, :, None].expand(-1, n, n), q[:, None, :].expand(-1, n, n)]
        if attn is not None:
            parts.append(attn)
        h = self.blocks(self.inp(torch.cat(parts)[None]))
        logits = self.out(F.elu(h))[0, 0]
        return (logits + logits.T) / 2


# -- logistic regression over pair features -----------------------------------------------------------
def pair_rows(
    feats: torch.Tensor, pairs: list[tuple[int, int]], cand: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train rows of one sequence: every true pair among the candidates ``cand`` plus a seeded sample of
    non-pairs, weighted so that they stand for all of the sequence's non-pairs. ``(X [n, C], y, w)``."""
    truth = np.zeros_like(cand)
    for i, j in pairs:
        truth[min(i, j), max(i, j)] = True
    pos = np.flatnonzero((truth & cand).ravel())
    neg = np.flatnonzero((cand & ~truth).ravel())
    k = min(len(neg), NEGATIVES_PER_POSITIVE * max(len(pos), 1))
    sampled = np.sort(rng.choice(neg, size=k, replace=False)) if k < len(neg) else neg
    idx = np.concatenate([pos, sampled])
    flat = feats.reshape(feats.shape[0], -1)[:, torch.from_numpy(idx)].T.contiguous()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(sampled))])
    w = torch.cat([torch.ones(len(pos)), torch.full((len(sampled),), len(neg) / max(len(sampled), 1))])
    return flat.float(), y, w


class PairLogistic:
    """A fitted logistic regression over pair features (standardised with the train rows' statistics)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, weight_decay: float, seed: int):
        if not bool((y > 0).any()):
            raise ValueError("the train split has no base pair among the candidate pairs")
        x = x.double()
        self.mu = x.mean(0)
        self.sd = x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones_like(self.mu)
        z = (x - self.mu) / self.sd
        w = (w / w.mean()).double()
        y = y.double()
        with seeded(seed):
            coef = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
            bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([coef, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = (F.binary_cross_entropy_with_logits(z @ coef + bias, y, reduction="none") * w).mean()
            loss = loss + weight_decay * (coef * coef).sum() / 2
            loss.backward()
            return loss

        opt.step(closure)
        self.coef, self.bias = coef.detach(), bias.detach()

    def prob(self, feats: torch.Tensor) -> np.ndarray:
        """[C, L, L] features -> [L, L] pair probabilities (symmetric)."""
        c, n, _ = feats.shape
        z = (feats.reshape(c, -1).T.double() - self.mu) / self.sd
        p = torch.sigmoid(z @ self.coef + self.bias).reshape(n, n).numpy()
        return (p + p.T) / 2


# -- shared ---------------------------------------------------------------------------------------------
@dataclass
class StructureResult:
    metrics: dict[str, float]
    probe: dict


def _candidates(seq: str, min_loop: int, canonical: bool) -> np.ndarray:
    if canonical:
        return allowed_pairs(seq, min_loop)
    return candidate_mask(len(seq), min_loop).numpy()


def _score(predicted, truths, seqs) -> dict[str, float]:
    per_seq = [M.pair_scores(p, t, len(s)) for p, t, s in zip(predicted, truths, seqs, strict=True)]
    return {k: float(v) for k, v in M.mean_pair_scores(per_seq).items()}


def _tune_and_test(spec, valid_probs, test_probs, seqs, pairs, canonical: bool) -> tuple[dict, float, dict]:
    grid = THRESHOLDS if spec.threshold is None else (spec.threshold,)
    allowed = {s: [_candidates(q, spec.min_loop, True) for q in seqs[s]] if canonical else None for s in seqs}
    curve = threshold_curve(valid_probs, pairs["valid"], grid, spec.min_loop, allowed["valid"])
    chosen = best_threshold(curve)
    masks = allowed["test"] or [None] * len(test_probs)
    predicted = [decode_pairs(p, chosen, spec.min_loop, a) for p, a in zip(test_probs, masks, strict=True)]
    return _score(predicted, pairs["test"], seqs["test"]), chosen, curve


def fit_structure(
    spec, seqs: dict[str, list[str]], pairs: dict[str, list], source: Source | None, *, seed: int = 0
) -> StructureResult:
    """Train the task's structure head on train, tune on valid, score test. ``source=None``: one-hot floor."""
    head = spec.structure_head
    canonical = spec.canonical
    if head == "pair":
        return _fit_pair_head(spec, seqs, pairs, source, seed=seed, canonical=canonical)
    if head == "attention":
        return _fit_attention(spec, seqs, pairs, source, seed=seed, canonical=canonical)
    return _fit_cnn(spec, seqs, pairs, source, seed=seed, canonical=canonical)


def _fit_pair_head(spec, seqs, pairs, source, *, seed, canonical) -> StructureResult:
    if source is None:
        emb = {s: [residue_onehot(q) for q in seqs[s]] for s in seqs}
    else:
        emb = {
            s: embed(
                source.model,
                seqs[s],
                pooled=False,
                batch_tokens=source.batch_tokens,
                device=source.device,
                desc=s,
            )
            for s in seqs
        }
    allowed = {s: [allowed_pairs(q, spec.min_loop) for q in seqs[s]] if canonical else None for s in seqs}
    res = fit_pairs(
        emb["train"], pairs["train"], emb["valid"], pairs["valid"],
        head=spec.head, hidden=spec.hidden, epochs=spec.epochs, lr=spec.lr, weight_decay=spec.weight_decay,
        batch_size=spec.batch_size, min_loop=spec.min_loop, threshold=spec.threshold, seed=seed,
        valid_allowed=allowed["valid"],
    )  # fmt: skip
    metrics = _score(res.predict(emb["test"], allowed["test"]), pairs["test"], seqs["test"])
    probe = {
        "best_epoch": res.best_epoch,
        "valid_score": res.valid_score,
        "valid_curve": res.history,
        **res.extra,
    }
    return StructureResult(metrics, probe)


# -- attention-map regression ---------------------------------------------------------------------------
def _attention_source(source: Source | None, seqs: list[str], desc: str):
    """(index, [C, L, L] features) per sequence: attention features of every layer and head, or the
    one-hot pair input for the floor."""
    if source is None:
        for i, q in enumerate(seqs):
            yield i, onehot_pair_input(q)
        return
    for i, _, maps in iter_attention(
        source.model, seqs, batch_tokens=source.batch_tokens, device=source.device, desc=desc
    ):
        layers, heads, n, _ = maps.shape
        yield i, attention_features(maps.reshape(layers * heads, n, n))


def _fit_attention(spec, seqs, pairs, source, *, seed, canonical) -> StructureResult:
    rng = np.random.default_rng([seed, 3])
    rows = {}
    for i, feats in _attention_source(source, seqs["train"], "train"):
        rows[i] = pair_rows(
            feats, pairs["train"][i], _candidates(seqs["train"][i], spec.min_loop, canonical), rng
        )
    x, y, w = (torch.cat([rows[i][k] for i in sorted(rows)]) for k in range(3))
    # positives weighted by the square root of the negative:positive ratio, as the other heads: the
    # probabilities then reach the threshold grid instead of sitting at the ~1% base rate
    pos = y > 0
    pos_weight = max(1.0, (float(w[~pos].sum()) / max(int(pos.sum()), 1)) ** 0.5)
    w = torch.where(pos, torch.full_like(w, pos_weight), w)
    reg = PairLogistic(x, y, w, weight_decay=spec.weight_decay, seed=seed)

    def probs(split: str) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(seqs[split])
        for i, feats in _attention_source(source, seqs[split], split):
            out[i] = reg.prob(feats)
        return out

    metrics, chosen, curve = _tune_and_test(spec, probs("valid"), probs("test"), seqs, pairs, canonical)
    probe = {
        "head": "attention",
        "features": int(x.shape[1]),
        "train_rows": len(y),
        "pos_weight": pos_weight,
        "threshold": float(chosen),
        "valid_score": curve[chosen],
        "threshold_curve": curve if spec.threshold is None else {},
    }
    return StructureResult(metrics, probe)


# -- CNN ------------------------------------------------------------------------------------------------
def _cnn_inputs(source: Source | None, seqs: list[str], use_attention: bool, desc: str):
    """Per sequence: (residue embeddings [L, H] or None, per-layer attention features [layers, L, L] or
    None). The floor has neither."""
    if source is None:
        return [(None, None)] * len(seqs)
    if not use_attention:
        emb = embed(
            source.model,
            seqs,
            pooled=False,
            batch_tokens=source.batch_tokens,
            device=source.device,
            desc=desc,
        )
        return [(e, None) for e in emb]
    out: list = [None] * len(seqs)
    for i, hidden, maps in iter_attention(
        source.model, seqs, batch_tokens=source.batch_tokens, device=source.device, desc=desc
    ):
        out[i] = (hidden, attention_features(maps.mean(1)))
    return out


def _fit_cnn(spec, seqs, pairs, source, *, seed, canonical) -> StructureResult:
    use_attention = spec.cnn_attention and source is not None
    inputs = {s: _cnn_inputs(source, seqs[s], use_attention, s) for s in seqs}
    emb0, attn0 = inputs["train"][0]
    with seeded(seed):
        net = PairCNN(
            emb0.shape[1] if emb0 is not None else None,
            attn0.shape[0] if attn0 is not None else 0,
            channels=spec.cnn_channels,
            blocks=spec.cnn_blocks,
        )
    cands = [torch.from_numpy(_candidates(q, spec.min_loop, canonical)) for q in seqs["train"]]
    targets = [pair_matrix(p, len(q)) for p, q in zip(pairs["train"], seqs["train"], strict=True)]
    n_pos = sum(float(t[c].sum()) for t, c in zip(targets, cands, strict=True))
    n_cand = sum(int(c.sum()) for c in cands)
    pos_weight = torch.tensor(max(1.0, ((n_cand - n_pos) / max(n_pos, 1)) ** 0.5))
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    rng = np.random.default_rng([seed, 4])

    def logits(split: str, k: int) -> torch.Tensor:
        emb, attn = inputs[split][k]
        return net(onehot_pair_input(seqs[split][k]), emb, attn)

    def probs(split: str) -> list[np.ndarray]:
        net.eval()
        with torch.no_grad():
            return [torch.sigmoid(logits(split, k)).numpy() for k in range(len(seqs[split]))]

    grid = THRESHOLDS if spec.threshold is None else (spec.threshold,)
    valid_allowed = [_candidates(q, spec.min_loop, True) for q in seqs["valid"]] if canonical else None
    best, best_state, best_epoch, history = -np.inf, None, 0, []
    for epoch in range(1, spec.epochs + 1):
        net.train()
        perm = rng.permutation(len(seqs["train"]))
        for s in range(0, len(perm), spec.batch_size):
            chunk = [k for k in perm[s : s + spec.batch_size] if bool(cands[k].any())]
            if not chunk:
                continue
            loss = sum(
                F.binary_cross_entropy_with_logits(
                    logits("train", k)[cands[k]], targets[k][cands[k]], pos_weight=pos_weight
                )
                for k in chunk
            )
            opt.zero_grad(set_to_none=True)
            (loss / len(chunk)).backward()
            opt.step()
        curve = threshold_curve(probs("valid"), pairs["valid"], grid, spec.min_loop, valid_allowed)
        f1 = curve[best_threshold(curve)]
        history.append(round(f1, 6))
        log.info("cnn epoch %d: valid F1 %.4f", epoch, f1)
        if f1 > best:
            best, best_state, best_epoch = f1, copy.deepcopy(net.state_dict()), epoch
    net.load_state_dict(best_state)
    metrics, chosen, curve = _tune_and_test(spec, probs("valid"), probs("test"), seqs, pairs, canonical)
    probe = {
        "head": "cnn",
        "best_epoch": best_epoch,
        "valid_score": curve[chosen],
        "valid_curve": history,
        "threshold": float(chosen),
        "pos_weight": float(pos_weight),
        "attention_channels": attn0.shape[0] if attn0 is not None else 0,
        "parameters": sum(p.numel() for p in net.parameters()),
        "threshold_curve": curve if spec.threshold is None else {},
    }
    return StructureResult(metrics, probe)
