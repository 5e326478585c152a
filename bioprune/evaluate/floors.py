"""Floors: what each task scores without a language model, on the records the models are scored on.

``bioprune floor`` computes one floor per task (not per model), after the same reading, model filters
(built from the run's architecture) and seeded caps as ``bioprune evaluate``
(:func:`bioprune.evaluate.runner.prepare_data`), with the same probe seed, so a model's score and its
floor compare like for like:

- rna_ss: the task's structure head (``structure_head``) and decoding on one-hot input only
  (:func:`bioprune.evaluate.structure_heads.fit_structure` with no model): for ``cnn``, the CNN on the
  nucleotide-pair one-hot and the distance bins;
- seq_class / seq_regression: k-mer counts plus length. For each k = 1..``kmer_max``, features are the
  frequencies (count / length) of the k-mers seen in train (the :data:`MAX_KMERS` most frequent) and
  log(length), standardised with train statistics; a multinomial logistic regression (classes) or ridge
  regression (values) is fitted for each L2 strength of :data:`L2_GRID`; k and the strength with the best
  valid score (accuracy / Spearman) give the test metrics.

Output (one JSON per task, ``results/evaluate/floors/<task>.json``)::

    {"task": "nrc", "kind": "seq_class", "strategy": "floor", "budget": "none", "seed": <probe seed>,
     "headline": "accuracy", "floor": "kmer" | "onehot_<head>", "head": ..., "metrics": {...},
     "counts": {split: {"read": n, "used": n, <dropped reason>: n}}, "details": {...}}

``strategy``/``budget``/``seed`` make it a row of the report's tables (strategy ``floor``).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from itertools import product

import numpy as np
import torch
import torch.nn.functional as F

from bioprune import __version__
from bioprune.atomic import write_json
from bioprune.errors import ConfigError
from bioprune.evaluate import metrics as M
from bioprune.evaluate.tasks import FLOOR_KINDS, SPLITS, TaskData, TaskSpec

log = logging.getLogger("bioprune.floor")

MAX_KMERS = 4096
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


# -- k-mer features -------------------------------------------------------------------------------------
def kmer_counts(seq: str, k: int) -> Counter:
    s = seq.upper().replace("T", "U")
    return Counter(s[i : i + k] for i in range(len(s) - k + 1))


def kmer_vocabulary(seqs: list[str], k: int, limit: int = MAX_KMERS) -> list[str]:
    """The k-mers of ``seqs`` (train), most frequent first (ties by name), at most ``limit``."""
    total: Counter = Counter()
    for s in seqs:
        total.update(kmer_counts(s, k))
    return [m for m, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def kmer_features(seqs: list[str], k: int, vocab: list[str]) -> np.ndarray:
    """[N, len(vocab) + 1]: k-mer frequencies (count / length) and log(length)."""
    index = {m: i for i, m in enumerate(vocab)}
    x = np.zeros((len(seqs), len(vocab) + 1))
    for r, s in enumerate(seqs):
        for m, c in kmer_counts(s, k).items():
            if m in index:
                x[r, index[m]] = c / max(len(s), 1)
        x[r, -1] = np.log(max(len(s), 1))
    return x


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mu, sd = train.mean(0), train.std(0)
    sd[sd < 1e-9] = 1.0
    return [torch.from_numpy((a - mu) / sd) for a in (train, *others)]


def logistic_fit(x: torch.Tensor, y: np.ndarray, n_classes: int, l2: float) -> torch.Tensor:
    """Multinomial logistic regression (full-batch L-BFGS, deterministic): weights [D + 1, classes]."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(xb.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, yt) + l2 * (w[:-1] ** 2).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def logistic_predict(w: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    return (torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) @ w).argmax(1).numpy()


def ridge_fit(x: torch.Tensor, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Ridge regression on centred targets: (coefficients, intercept)."""
    xn = x.numpy()
    mu = float(np.mean(y))
    a = xn.T @ xn + l2 * len(xn) * np.eye(xn.shape[1])
    return np.linalg.solve(a, xn.T @ (np.asarray(y, np.float64) - mu)), mu


def kmer_floor(data: TaskData) -> dict:
    """k-mer + length floor of a seq_class / seq_regression task (module doc)."""
    spec = data.spec
    seqs = {s: [e.seq for e in data.splits[s]] for s in SPLITS}
    y = {s: np.asarray([e.target for e in data.splits[s]]) for s in SPLITS}
    classify = spec.kind == "seq_class"
    n_classes = len(data.classes) if classify else None
    grid = []
    best = None
    for k, l2 in product(range(1, spec.kmer_max + 1), L2_GRID):
        vocab = kmer_vocabulary(seqs["train"], k)
        xt, xv, xs = _standardise(*(kmer_features(seqs[s], k, vocab) for s in SPLITS))
        if classify:
            w = logistic_fit(xt, y["train"], n_classes, l2)
            pv, ps = logistic_predict(w, xv), logistic_predict(w, xs)
            valid = M.accuracy(y["valid"], pv)
            test = M.classification_scores(y["test"], ps)
        else:
            coef, b = ridge_fit(xt, y["train"], l2)
            pv, ps = xv.numpy() @ coef + b, xs.numpy() @ coef + b
            valid = M.spearman(y["valid"], pv) if len(pv) > 1 else 0.0
            test = M.regression_scores(y["test"], ps)
        row = {"k": k, "l2": l2, "features": len(vocab) + 1, "valid": float(valid), "test": test}
        grid.append(row)
        if best is None or valid > best["valid"]:
            best = row
    return {
        "floor": "kmer",
        "head": "logistic" if classify else "ridge",
        "metrics": {m: float(v) for m, v in best["test"].items()},
        "details": {"k": best["k"], "l2": best["l2"], "valid_score": best["valid"], "grid": grid},
    }


def structure_floor(data: TaskData, seed: int) -> dict:
    from bioprune.evaluate.structure_heads import fit_structure

    spec = data.spec
    seqs = {s: [e.seq for e in data.splits[s]] for s in SPLITS}
    pairs = {s: [e.target for e in data.splits[s]] for s in SPLITS}
    res = fit_structure(spec, seqs, pairs, None, seed=seed)
    return {
        "floor": f"onehot_{spec.structure_head}",
        "head": spec.structure_head,
        "metrics": res.metrics,
        "details": res.probe,
    }


def compute_floor(spec: TaskSpec, data: TaskData, seed: int) -> dict:
    """The floor of a task on already prepared splits (see module doc for the output)."""
    if spec.kind not in FLOOR_KINDS:
        raise ConfigError(f"task {spec.name}: kind {spec.kind} has no floor (floors: {list(FLOOR_KINDS)})")
    started = time.time()
    out = structure_floor(data, seed) if spec.kind == "rna_ss" else kmer_floor(data)
    for split in SPLITS:
        data.counts[split]["used"] = len(data.splits[split])
    return {
        "task": spec.name,
        "kind": spec.kind,
        "strategy": "floor",
        "budget": "none",
        "seed": seed,
        "probe_seed": seed,
        "headline": spec.headline,
        **out,
        "counts": data.counts,
        "settings": spec.to_dict(),
        "seconds": round(time.time() - started, 2),
        "bioprune_version": __version__,
    }


# -- CLI ------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from bioprune.models.train_cli import add_model_options

    p.add_argument("--task-json", required=True, help="the task's settings as JSON (as bioprune evaluate)")
    p.add_argument("--out", required=True, help="output JSON file (e.g. results/evaluate/floors/TASK.json)")
    p.add_argument("--seed", type=int, default=0, help="probe seed, as bioprune evaluate's --seed")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    add_model_options(p)
    p.add_argument(
        "--arch-from",
        metavar="CHECKPOINT",
        help="the run's architecture comes from this model file (its filters: alphabet, window)",
    )


def run(args: argparse.Namespace) -> int:
    from bioprune.evaluate.evaluate_cli import _task_spec
    from bioprune.evaluate.runner import prepare_data
    from bioprune.pretrain import _model

    args.config = None
    spec = _task_spec(args)
    if spec.kind not in FLOOR_KINDS:
        raise ConfigError(f"task {spec.name}: kind {spec.kind} has no floor (floors: {list(FLOOR_KINDS)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    # the run's architecture (random weights): only its alphabet and window are used, to drop the same
    # records as bioprune evaluate does
    model, _ = _model(args)
    data = prepare_data(spec, model, args.seed)
    result = compute_floor(spec, data, args.seed)
    log.info("floor of %s (%s): %s", spec.name, result["floor"], result["metrics"])
    write_json(args.out, result)
    return 0
