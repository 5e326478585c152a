"""Held-out MLM perplexity, and the set of pool sequences no selection picked.

Perplexity = exp(mean cross-entropy over masked residues), summed over every sequence before the
mean (a token mean, as training reports it). Masks are the deterministic ones of
:func:`bioprune.models.batching.mlm_batch` (drawn from the sequence id and ``mask_seed``), so every
model is scored on exactly the same masked positions, and training's validation loss is this same
measurement (with the training seed as ``mask_seed``). Pads are excluded from attention and loss;
sequences longer than the model window are cropped to their first window (counted).

The unselected set (``bioprune perplexity-set``): pool sequences that are in none of the given
selections (``ids.txt`` files, typically every strategy and seed at one budget), a seeded uniform sample
of at most ``max_sequences`` of them, in pool order. Membership uses 64-bit id hashes held in numpy
arrays, so memory is 8 bytes per selected id, not the ids themselves.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import xxhash
from tqdm import tqdm

from bioprune.arrays import unique
from bioprune.errors import InputError
from bioprune.evaluate.embed import _batches
from bioprune.fasta import FastaWriter, read_fasta
from bioprune.models.base import MaskedLM
from bioprune.models.batching import mlm_batch, mlm_loss_sum


@torch.no_grad()
def mlm_perplexity(
    model: MaskedLM,
    records: list[tuple[str, str]],
    *,
    mask_seed: int = 0,
    mask_prob: float = 0.15,
    batch_tokens: int = 16384,
    device: torch.device | str = "cpu",
) -> dict:
    """``records``: (id, sequence). Returns perplexity, loss (nats per masked residue) and counts."""
    model.eval().to(device)
    room = model.window
    spec = model.tokens
    rows, n_cropped = [], 0
    for _, seq in records:
        res = model.tokenizer.encode_residues(seq).astype(np.int64)
        if len(res) > room:
            res, n_cropped = res[:room], n_cropped + 1
        rows.append(res)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    total, count = 0.0, 0
    for idx in tqdm(
        _batches(lengths, batch_tokens), desc="perplexity", file=sys.stderr, mininterval=30.0, leave=False
    ):
        b = mlm_batch(
            model.converter,
            [records[i][0] for i in idx],
            [rows[i] for i in idx],
            seed=mask_seed,
            prob=mask_prob,
            residue_ids=spec.residue_ids,
            mask_idx=spec.mask_idx,
        ).to(device)
        total += float(mlm_loss_sum(model, b.tokens, b.flat_idx, b.targets))
        count += b.n_masked
    if count == 0:
        raise ValueError("no masked residues to score")
    loss = total / count
    return {
        "perplexity": math.exp(min(loss, 50.0)),
        "loss": loss,
        "masked_residues": count,
        "sequences": len(records),
        "cropped_to_window": n_cropped,
    }


def _hash_ids(ids) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode()) for i in ids), dtype=np.uint64)


def read_id_hashes(paths: list[os.PathLike | str]) -> np.ndarray:
    """Sorted unique hashes of every id listed (one per line) in ``paths``."""
    parts = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputError(p, "no such id list")
        try:
            with open(p, encoding="utf-8") as fh:
                parts.append(_hash_ids(line.strip() for line in fh if line.strip()))
        except UnicodeDecodeError as exc:
            raise InputError(p, f"is not UTF-8 text (byte {exc.start}): expected one id per line") from None
    return unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def write_unselected_set(
    pool_fasta: os.PathLike | str,
    id_lists: list[os.PathLike | str],
    out_dir: os.PathLike | str,
    *,
    max_sequences: int,
    seed: int = 0,
) -> dict:
    """Write ``sequences.fasta.gz`` (a seeded sample of pool records in no id list) into ``out_dir`` (a
    staging folder: the CLI moves it into place); return the counts (the report the CLI writes)."""
    selected = read_id_hashes(id_lists)
    rng = np.random.default_rng([seed, 31337])
    reservoir: list[tuple[int, str, bytes, str]] = []
    n_pool = n_free = 0
    for rec in read_fasta(pool_fasta):
        h = np.uint64(xxhash.xxh3_64_intdigest(rec.id.encode()))
        k = np.searchsorted(selected, h)
        n_pool += 1
        if k < len(selected) and selected[k] == h:
            continue
        # reservoir sampling (algorithm R): a uniform sample of max_sequences without holding them all
        if len(reservoir) < max_sequences:
            reservoir.append((n_pool, rec.id, rec.seq, rec.description))
        else:
            j = int(rng.integers(0, n_free + 1))
            if j < max_sequences:
                reservoir[j] = (n_pool, rec.id, rec.seq, rec.description)
        n_free += 1
    reservoir.sort()
    with FastaWriter(Path(out_dir) / "sequences.fasta.gz") as w:
        for _, rid, seq, desc in reservoir:
            w.write(rid, seq, desc)
    return {
        "pool": str(pool_fasta),
        "id_lists": [str(p) for p in id_lists],
        "pool_records": n_pool,
        "selected_ids": int(len(selected)),
        "never_selected": n_free,
        "sampled": len(reservoir),
        "max_sequences": max_sequences,
        "seed": seed,
    }
