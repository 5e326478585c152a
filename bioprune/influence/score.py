"""Self-influence of every sequence of a shard, s(z) = sum_j g_j(z)^2 / (F_j + eps), written to Parquet.

The score is reported as a positive number: higher = more influential. The official code stores -s
(its selection code sorts ascending); the selection step here sorts by ``self_influence`` descending.

Output columns: ``id`` (string), ``self_influence`` (float64), ``loss`` (float64, the mean cross-entropy
over the sequence's loss tokens: the loss l(z) the gradient is of, divided by its total token weight, so
it reads the same under every ``loss_norm``), ``n_tokens`` (int32, tokens in that loss: masked residues
in mlm mode, window positions in compat mode), ``length`` (int32, residues of the input sequence). Rows
follow the shard's order. The file's schema metadata key ``bioprune`` holds JSON with the provenance
(model hash, loss definition), eps and the Fisher file's hash; ``bioprune merge-scores``
(:mod:`bioprune.influence.merge`) requires it to agree across shards. The schema, the metadata and the
reader select and report use live in the torch-free :mod:`bioprune.influence.score_table`. Memory is
bounded: results are written in row groups as they come.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bioprune.atomic import atomic_path
from bioprune.errors import InputError
from bioprune.fasta import Record
from bioprune.influence.fisher import Fisher, provenance
from bioprune.influence.grads import GradientEngine
from bioprune.influence.passes import iter_gradients, shard_records
from bioprune.influence.score_table import META_KEY, SCHEMA, SIGN_NOTE
from bioprune.influence.settings import InfluenceSettings
from bioprune.models.base import MaskedLM

log = logging.getLogger(__name__)

ROW_GROUP = 16384  # rows per Parquet row group; results are buffered as Python objects until then


def check_fisher(
    fisher: Fisher, model_sha256: str, settings: InfluenceSettings, engine: GradientEngine, path
) -> None:
    """Refuse a Fisher computed with another model, block or loss definition."""
    mine = provenance(model_sha256, settings)
    if fisher.provenance != mine:
        diff = ", ".join(
            f"{k}: Fisher {fisher.provenance.get(k)!r} vs score {mine.get(k)!r}"
            for k in sorted(set(mine) | set(fisher.provenance))
            if fisher.provenance.get(k) != mine.get(k)
        )
        raise InputError(path, f"Fisher does not match this model and settings ({diff})")
    if fisher.kind != "total":
        raise InputError(path, "is a partial Fisher of one shard; run `bioprune fisher-reduce` first")
    if fisher.n < 1:
        raise InputError(path, "Fisher over zero sequences")
    shapes = {k: tuple(v.shape) for k, v in fisher.sums.items()}
    if shapes != engine.param_shapes:
        raise InputError(
            path, f"Fisher parameters {shapes} do not match the model's block {engine.param_shapes}"
        )


def inverse_fisher(fisher: Fisher, eps: float, engine: GradientEngine) -> torch.Tensor:
    """1 / (F + eps), flattened in the engine's parameter order, in the gradients' dtype."""
    diag = fisher.diagonal()
    flat = torch.cat([diag[k].reshape(-1) for k in engine.param_shapes])
    return (1.0 / (flat + eps)).to(device=engine.device, dtype=engine.grad_dtype())


def score_records(
    model: MaskedLM,
    engine: GradientEngine,
    inv_f: torch.Tensor,
    records: Iterable[Record],
    source,
    settings: InfluenceSettings,
    *,
    progress: bool = True,
    on_item=None,
):
    """Yield pyarrow RecordBatches of scores in input order (about ROW_GROUP rows each)."""
    pending: dict[int, tuple] = {}
    next_order = 0
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}

    def take(item, s, loss):
        # the table's loss is the mean cross-entropy per loss token, whatever loss_norm weighted
        mean_loss = loss / (item.weight * item.n_tokens)
        pending[item.order] = (item.seq_id, s, mean_loss, item.n_tokens, item.length)

    grads = iter_gradients(model, engine, records, source, settings, progress=progress, on_item=on_item)
    for items, losses, chunks in grads:
        for idx, g in chunks:
            s = (g.square() @ inv_f).double().cpu().numpy()
            for j, sj in zip(idx.tolist(), s, strict=True):
                take(items[j], float(sj), float(losses[j]))
        while next_order in pending:
            for name, v in zip(SCHEMA.names, pending.pop(next_order), strict=True):
                cols[name].append(v)
            next_order += 1
        if len(cols["id"]) >= ROW_GROUP:
            yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)
            cols = {name: [] for name in SCHEMA.names}
    if pending:  # cannot happen: every item of every batch is scored
        raise RuntimeError(f"{len(pending)} sequences were not scored")
    if cols["id"]:
        yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)


def score_shard(
    model: MaskedLM,
    model_sha256: str,
    fisher: Fisher,
    fisher_path: os.PathLike | str,
    fisher_sha256: str,
    shard: os.PathLike | str,
    out: os.PathLike | str,
    settings: InfluenceSettings,
    *,
    progress: bool = True,
) -> dict:
    """Score every sequence of ``shard`` into the Parquet file ``out``; return the report dict."""
    device = next(model.parameters()).device
    engine = GradientEngine(model, settings, device)
    check_fisher(fisher, model_sha256, settings, engine, fisher_path)
    inv_f = inverse_fisher(fisher, settings.eps, engine)
    meta = {
        "provenance": provenance(model_sha256, settings),
        "eps": settings.eps,
        "fisher_sha256": fisher_sha256,
        "fisher_n": fisher.n,
        "sign": SIGN_NOTE,
    }
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    counts = {"n_truncated": 0, "n_windowed": 0}

    def count(item):
        counts["n_truncated"] += item.truncated
        counts["n_windowed"] += item.n_windows > 1

    n = 0
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            batches = score_records(
                model, engine, inv_f, shard_records(shard), shard, settings, progress=progress, on_item=count
            )
            for rb in batches:
                writer.write_batch(rb, row_group_size=ROW_GROUP)
                n += rb.num_rows
    seconds = time.perf_counter() - t0
    return {
        "shard": str(shard),
        "n_sequences": n,
        **counts,
        "seconds": round(seconds, 3),
        "sequences_per_s": round(n / seconds, 2) if seconds > 0 else None,
        "block_params": engine.n_params,
        "device": str(device),
        "bf16": engine.bf16,
        **meta,
        "settings": settings.as_dict(),
    }
