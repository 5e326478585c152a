"""Small seeded heads trained on frozen embeddings (probes), with model selection on the valid split.

- Dense probes (sequence classification / regression on mean-pooled embeddings, per-residue
  classification on residue embeddings): features standardised with train statistics, then a linear
  layer or a one-hidden-layer MLP, AdamW, ``epochs`` passes in seeded minibatches. After each epoch the
  valid split is scored with the task's headline metric; the best epoch's weights are kept.
- Pair probe (RNA secondary structure): per-residue embeddings -> LayerNorm -> projection q (``proj``
  wide); the pair (i, j) gets ``out(gelu(A(q_i) + A(q_j) + B(q_i * q_j)))``, the outer sum and product of
  the two residues fed to a small MLP. It is symmetric by construction. The loss is binary cross-entropy
  over the pairs with ``j - i > min_loop``, positives weighted by the square root of the train set's
  negative:positive ratio. Predicted structures take pairs above a
  probability threshold greedily, most probable first, each base in at most one pair (pseudoknots are
  allowed); the threshold is tuned on valid (grid 0.05..0.95) unless the task fixes it, and the kept
  epoch is the one with the best valid F1 at its best threshold.

Everything random (initialisation, batch order) comes from the probe seed, so a probe rerun on the
same embeddings gives the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bioprune.evaluate import metrics as M

log = logging.getLogger(__name__)

THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.951, 0.05))
PAIR_PROJ = 16


@contextlib.contextmanager
def seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_mlp(dim: int, out: int, head: str, hidden: int) -> nn.Module:
    if head == "linear":
        return nn.Linear(dim, out)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


@dataclass
class ProbeResult:
    predict: Callable  # features -> predictions (class indices, values, or pair lists)
    best_epoch: int
    valid_score: float
    history: list[float]
    extra: dict


# -- dense probes -----------------------------------------------------------------------------------------
def fit_dense(
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_valid: torch.Tensor,
    y_valid: np.ndarray,
    *,
    task: str,  # "class" | "regression"
    n_classes: int | None = None,
    head: str = "mlp",
    hidden: int = 64,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
) -> ProbeResult:
    """Fit a probe on rows of ``x_train`` (already restricted to labelled rows)."""
    if len(x_train) == 0 or len(x_valid) == 0:
        raise ValueError("a probe needs train and valid rows")
    mu = x_train.mean(0, keepdim=True)
    sd = x_train.std(0, keepdim=True).clamp_min(1e-6) if len(x_train) > 1 else torch.ones_like(mu)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - mu) / sd

    xt, xv = norm(x_train), norm(x_valid)
    if task == "class":
        yt = torch.as_tensor(y_train, dtype=torch.long)
        out_dim = int(n_classes)
        t_mu, t_sd = 0.0, 1.0
    else:
        t_mu, t_sd = float(np.mean(y_train)), float(np.std(y_train)) or 1.0
        yt = torch.as_tensor((np.asarray(y_train, np.float64) - t_mu) / t_sd, dtype=torch.float32)
        out_dim = 1
    with seeded(seed):
        net = make_mlp(xt.shape[1], out_dim, head, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng([seed, 1])

    def predict_normed(x: torch.Tensor) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(x[i : i + 8192]) for i in range(0, len(x), 8192)]) if len(x) else None
        if out is None:
            return np.zeros(0)
        if task == "class":
            return out.argmax(1).numpy()
        return out.squeeze(1).double().numpy() * t_sd + t_mu

    def score(pred: np.ndarray) -> float:
        if task == "class":
            return M.accuracy(y_valid, pred)
        return M.spearman(y_valid, pred) if len(pred) > 1 else -float(((y_valid - pred) ** 2).mean())

    best, best_state, best_epoch, history = -np.inf, None, 0, []
    for epoch in range(1, epochs + 1):
        net.train()
        perm = rng.permutation(len(xt))
        for i in range(0, len(perm), batch_size):
            idx = torch.as_tensor(perm[i : i + batch_size])
            out = net(xt[idx])
            loss = F.cross_entropy(out, yt[idx]) if task == "class" else F.mse_loss(out.squeeze(1), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        s = score(predict_normed(xv))
        history.append(round(float(s), 6))
        if s > best:
            best, best_state, best_epoch = s, copy.deepcopy(net.state_dict()), epoch
    net.load_state_dict(best_state)
    return ProbeResult(lambda x: predict_normed(norm(x)), best_epoch, float(best), history, {})


# -- pair probe (RNA secondary structure) -------------------------------------------------------------------
class PairHead(nn.Module):
    def __init__(self, dim: int, head: str = "mlp", hidden: int = 32, proj: int = PAIR_PROJ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, proj)
        self.a = nn.Linear(proj, hidden)
        self.b = nn.Linear(proj, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)
        self.linear = head == "linear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-residue embeddings [L, H] -> symmetric pair logits [L, L]."""
        q = self.proj(self.norm(x))
        a = self.a(q)
        h = a[:, None, :] + a[None, :, :] + self.b(q[:, None, :] * q[None, :, :])
        return self.out(h if self.linear else F.gelu(h)).squeeze(-1)


def candidate_mask(length: int, min_loop: int) -> torch.Tensor:
    """Upper-triangle pairs (i, j) with j - i > min_loop."""
    i = torch.arange(length)
    return (i[None, :] - i[:, None]) > min_loop


def pair_matrix(pairs: list[tuple[int, int]], length: int) -> torch.Tensor:
    y = torch.zeros(length, length)
    for i, j in pairs:
        y[i, j] = y[j, i] = 1.0
    return y


def greedy_pairs(
    prob: np.ndarray, threshold: float, min_loop: int, allowed: np.ndarray | None = None
) -> tuple[list[tuple[int, int]], list[float]]:
    """Greedy structure: candidates with probability >= threshold, most probable first, each base in at
    most one pair. Returns the pairs in the order accepted and their probabilities (descending).
    ``allowed`` ([L, L] bool, e.g. :func:`bioprune.evaluate.pairfeatures.allowed_pairs`) restricts the
    candidates further (canonical decoding); pairs always need ``j - i > min_loop``.

    Greedy decisions only depend on earlier candidates, so the structure at any higher threshold t is
    the accepted pairs with probability >= t: one pass serves a whole threshold grid."""
    n = prob.shape[0]
    if allowed is None:
        i, j = np.triu_indices(n, k=min_loop + 1)
    else:
        i, j = np.nonzero(np.triu(allowed, k=min_loop + 1))  # row-major, as triu_indices
    p = prob[i, j]
    keep = p >= threshold
    i, j, p = i[keep], j[keep], p[keep]
    order = np.argsort(-p, kind="stable")
    used = bytearray(n)
    out, probs = [], []
    room = n // 2  # at most n/2 pairs: stop scanning once they are placed
    for a, b, q in zip(i[order].tolist(), j[order].tolist(), p[order].tolist(), strict=True):
        if not used[a] and not used[b]:
            used[a] = used[b] = 1
            out.append((a, b))
            probs.append(q)
            if len(out) == room:
                break
    return out, probs


def decode_pairs(
    prob: np.ndarray, threshold: float, min_loop: int, allowed: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """The greedy structure at ``threshold`` (see :func:`greedy_pairs`), sorted."""
    return sorted(greedy_pairs(prob, threshold, min_loop, allowed)[0])


def threshold_curve(
    probs: list[np.ndarray],
    truths: list[list[tuple[int, int]]],
    grid: tuple[float, ...],
    min_loop: int,
    allowed: list[np.ndarray] | None = None,
) -> dict[float, float]:
    """Mean F1 over sequences at every threshold of ``grid`` (one greedy pass per sequence serves them
    all)."""
    masks = allowed if allowed is not None else [None] * len(probs)
    greedy = [greedy_pairs(p, grid[0], min_loop, a) for p, a in zip(probs, masks, strict=True)]
    curve = {}
    for t in grid:
        scores = [
            M.pair_scores([pr for pr, q in zip(got, qs, strict=True) if q >= t], truth, len(p))["f1"]
            for (got, qs), truth, p in zip(greedy, truths, probs, strict=True)
        ]
        curve[t] = float(np.mean(scores))
    return curve


def best_threshold(curve: dict[float, float]) -> float:
    """The threshold of the highest F1; ties: the one nearest 0.5."""
    return max(curve, key=lambda t: (curve[t], -abs(t - 0.5)))


def fit_pairs(
    train_x: list[torch.Tensor],
    train_pairs: list[list[tuple[int, int]]],
    valid_x: list[torch.Tensor],
    valid_pairs: list[list[tuple[int, int]]],
    *,
    head: str = "mlp",
    hidden: int = 32,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    min_loop: int = 3,
    threshold: float | None = None,
    seed: int = 0,
    valid_allowed: list[np.ndarray] | None = None,
) -> ProbeResult:
    """``valid_allowed``: per valid sequence, the pairs decoding may use (canonical decoding); the
    returned ``predict(xs, allowed=None)`` takes the same for its sequences."""
    if not train_x or not valid_x:
        raise ValueError("a pair probe needs train and valid sequences")
    n_pos = sum(len(p) for p in train_pairs)
    n_cand = sum(int(candidate_mask(len(x), min_loop).sum()) for x in train_x)
    # sqrt of the negative:positive ratio: positives still count, probabilities stay far less inflated
    # than with the full ratio (fewer candidates to decode; the threshold is tuned on valid anyway)
    pos_weight = torch.tensor(max(1.0, ((n_cand - n_pos) / max(n_pos, 1)) ** 0.5))
    with seeded(seed):
        net = PairHead(train_x[0].shape[1], head, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng([seed, 2])
    targets = [pair_matrix(p, len(x)) for x, p in zip(train_x, train_pairs, strict=True)]
    masks = [candidate_mask(len(x), min_loop) for x in train_x]

    def probabilities(xs: list[torch.Tensor]) -> list[np.ndarray]:
        net.eval()
        with torch.no_grad():
            return [torch.sigmoid(net(x.float())).numpy() for x in xs]

    grid = THRESHOLDS if threshold is None else (threshold,)

    def f1_curve(probs: list[np.ndarray]) -> dict[float, float]:
        return threshold_curve(probs, valid_pairs, grid, min_loop, valid_allowed)

    # model selection: the epoch whose best-threshold valid F1 is highest (a fixed cut would judge an
    # epoch by its calibration rather than by how well it ranks pairs)
    best, best_state, best_epoch, history = -np.inf, None, 0, []
    for epoch in range(1, epochs + 1):
        net.train()
        perm = rng.permutation(len(train_x))
        for s in range(0, len(perm), batch_size):
            loss = 0.0
            chunk = perm[s : s + batch_size]
            for k in chunk:
                logits = net(train_x[k].float())
                m = masks[k]
                if not bool(m.any()):
                    continue
                loss = loss + F.binary_cross_entropy_with_logits(
                    logits[m], targets[k][m], pos_weight=pos_weight
                )
            if isinstance(loss, float):
                continue
            opt.zero_grad(set_to_none=True)
            (loss / len(chunk)).backward()
            opt.step()
        curve = f1_curve(probabilities(valid_x))
        f1 = curve[best_threshold(curve)]
        history.append(round(f1, 6))
        if f1 > best:
            best, best_state, best_epoch = f1, copy.deepcopy(net.state_dict()), epoch
    net.load_state_dict(best_state)
    curve = f1_curve(probabilities(valid_x))
    chosen = best_threshold(curve)
    valid_f1 = curve[chosen]

    def predict(
        xs: list[torch.Tensor], allowed: list[np.ndarray] | None = None
    ) -> list[list[tuple[int, int]]]:
        masks = allowed if allowed is not None else [None] * len(xs)
        return [decode_pairs(p, chosen, min_loop, a) for p, a in zip(probabilities(xs), masks, strict=True)]

    extra = {
        "threshold": chosen,
        "pos_weight": float(pos_weight),
        "threshold_curve": curve if threshold is None else {},
    }
    return ProbeResult(predict, best_epoch, valid_f1, history, extra)
