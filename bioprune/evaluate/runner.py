"""Evaluate one model on one task: load the data, filter what the model cannot take, embed, probe, score."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from bioprune.errors import InputError
from bioprune.evaluate import metrics as M
from bioprune.evaluate.embed import embed, encodable, fits_model, window
from bioprune.evaluate.perplexity import mlm_perplexity
from bioprune.evaluate.probes import fit_dense
from bioprune.evaluate.structure_heads import Source, fit_structure
from bioprune.evaluate.tasks import SPLITS, TaskData, TaskSpec, cap_splits, load_task, structure_pairs
from bioprune.fasta import open_maybe_gzip
from bioprune.models.base import MaskedLM

log = logging.getLogger(__name__)


def fasta_is_empty(path) -> bool:
    """True for a FASTA file with no bytes of content (e.g. an empty unselected set)."""
    with open_maybe_gzip(path) as fh:
        return not fh.read(1)


def evaluate_task(
    spec: TaskSpec,
    model: MaskedLM,
    *,
    seed: int = 0,
    batch_tokens: int = 16384,
    device: torch.device | str = "cpu",
) -> dict:
    """Scores of ``model`` on ``spec``: ``{"metrics": {...}, "counts": {...}, "probe": {...}, ...}``.

    ``metrics`` holds every metric of the kind (see tasks.METRICS); ``None`` values with a ``note``
    when the task cannot be scored (an empty unselected set)."""
    started = time.time()
    if spec.kind == "mlm_perplexity":
        out = _perplexity(spec, model, batch_tokens=batch_tokens, device=device)
    else:
        data = prepare_data(spec, model, seed)
        out = _probe(data, model, seed=seed, batch_tokens=batch_tokens, device=device)
        for split in SPLITS:
            data.counts[split]["used"] = len(data.splits[split])
        out["counts"] = data.counts
        if data.classes is not None:
            out["classes"] = data.classes
    out["seconds"] = round(time.time() - started, 2)
    return out


def prepare_data(spec: TaskSpec, model: MaskedLM, seed: int) -> TaskData:
    """The splits a model is scored on: read, drop what ``model`` cannot take, cap (seeded). The floors
    (:mod:`bioprune.evaluate.floors`) call this with the run's architecture, so they see the same
    records."""
    data = load_task(spec, seed)
    _model_filters(data, model)
    cap_splits(data, seed)
    if spec.kind == "rna_ss":
        structure_pairs(data)
    for split in SPLITS:
        if not data.splits[split]:
            where = getattr(spec, split) or spec.path or spec.train
            raise InputError(where, f"task {spec.name}: no {split} records left ({data.counts[split]})")
    return data


def _model_filters(data: TaskData, model: MaskedLM) -> None:
    whole = data.spec.kind in ("rna_ss", "per_residue_class")
    for split, exs in data.splits.items():
        data.drop(split, [encodable(model, e.seq) for e in exs], "bad_residue")
        if whole:  # cropping would cut structures / residue labels: drop instead
            data.drop(split, [fits_model(model, e.seq) for e in data.splits[split]], "longer_than_model")
        else:
            n = sum(len(e.seq) > window(model) for e in data.splits[split])
            if n:
                data.counts[split]["cropped_to_window"] = n


def _perplexity(spec: TaskSpec, model: MaskedLM, *, batch_tokens, device) -> dict:
    if fasta_is_empty(spec.test):
        note = f"{spec.test} holds no sequences (every pool sequence was selected by some strategy)"
        log.warning("task %s: %s; perplexity not computed", spec.name, note)
        return {"metrics": {m: None for m in spec.metrics}, "note": note, "counts": {"test": {"read": 0}}}
    data = load_task(spec)
    exs = data.splits["test"]
    data.drop("test", [encodable(model, e.seq) for e in exs], "bad_residue")
    cap_splits(data, spec.mask_seed)
    res = mlm_perplexity(
        model,
        [(e.id, e.seq) for e in data.splits["test"]],
        mask_seed=spec.mask_seed,
        mask_prob=spec.mask_prob,
        batch_tokens=batch_tokens,
        device=device,
    )
    data.counts["test"]["used"] = res["sequences"]
    if res["cropped_to_window"]:
        data.counts["test"]["cropped_to_window"] = res["cropped_to_window"]
    return {
        "metrics": {"perplexity": res["perplexity"], "loss": res["loss"]},
        "counts": data.counts,
        "masked_residues": res["masked_residues"],
    }


def _probe(data: TaskData, model: MaskedLM, *, seed, batch_tokens, device) -> dict:
    s = data.spec
    kind = s.kind
    opts = dict(
        head=s.head, hidden=s.hidden, epochs=s.epochs, lr=s.lr, weight_decay=s.weight_decay,
        batch_size=s.batch_size, seed=seed,
    )  # fmt: skip
    seqs = {split: [e.seq for e in data.splits[split]] for split in SPLITS}
    targets = {split: [e.target for e in data.splits[split]] for split in SPLITS}
    pooled = kind in ("seq_class", "seq_regression")
    extra: dict = {}
    if kind == "rna_ss":
        res = fit_structure(s, seqs, targets, Source(model, batch_tokens, device), seed=seed)
        return {"metrics": res.metrics, "probe": res.probe}
    emb = {
        split: embed(model, seqs[split], pooled=pooled, batch_tokens=batch_tokens, device=device, desc=split)
        for split in SPLITS
    }
    if kind == "per_residue_class":

        def flat(split):
            y = np.concatenate(targets[split])
            keep = y >= 0
            return torch.cat(emb[split])[torch.from_numpy(keep)], y[keep]

        (xt, yt), (xv, yv), (xs, ys) = flat("train"), flat("valid"), flat("test")
        n_classes = len(data.classes) + 1  # + the "label not seen in train" index (never predicted)
        res = fit_dense(xt, yt, xv, yv, task="class", n_classes=n_classes, **opts)
        metrics = M.classification_scores(ys, res.predict(xs))
        extra["evaluated_residues"] = {"train": len(yt), "valid": len(yv), "test": len(ys)}
    else:
        task = "class" if kind == "seq_class" else "regression"
        y = {split: np.asarray(targets[split]) for split in SPLITS}
        n_classes = len(data.classes) if task == "class" else None
        res = fit_dense(
            emb["train"], y["train"], emb["valid"], y["valid"], task=task, n_classes=n_classes, **opts
        )
        pred = res.predict(emb["test"])
        scores = M.classification_scores if task == "class" else M.regression_scores
        metrics = scores(y["test"], pred)
        if s.head != "linear":  # a linear probe beside the MLP: what a linear read-out of the embedding holds
            lin = fit_dense(
                emb["train"], y["train"], emb["valid"], y["valid"], task=task, n_classes=n_classes,
                **{**opts, "head": "linear"},
            )  # fmt: skip
            extra["linear_probe"] = {
                "metrics": {k: float(v) for k, v in scores(y["test"], lin.predict(emb["test"])).items()},
                "best_epoch": lin.best_epoch,
                "valid_score": lin.valid_score,
            }
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "probe": {
            "best_epoch": res.best_epoch,
            "valid_score": res.valid_score,
            "valid_curve": res.history,
            **res.extra,
        },
        **extra,
    }
