"""The score table: its schema, its provenance metadata and the one reader of both (torch-free).

``bioprune score`` writes one table per shard and ``bioprune merge-scores`` joins them
(:mod:`bioprune.influence.score`); select and report read it with :func:`read_scores`, which imports
neither torch nor the scoring code. Columns: ``id`` (string), ``self_influence`` (float64), ``loss``
(float64), ``n_tokens`` (int32), ``length`` (int32); see :mod:`bioprune.influence.score` for what each
means. The schema metadata key ``bioprune`` holds JSON with the provenance (model hash, loss
definition), eps, the Fisher file's hash and the sign convention. A table written by ``merge-scores``
also holds statistics of all its rows in the file's key-value metadata
(:mod:`bioprune.influence.score_stats`), which :func:`read_scores` returns as they are.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune.errors import InputError
from bioprune.influence.score_stats import STATS_KEY
from bioprune.pool.io import parquet_file, to_numpy

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("self_influence", pa.float64()),
        ("loss", pa.float64()),
        ("n_tokens", pa.int32()),
        ("length", pa.int32()),
    ]
)
META_KEY = b"bioprune"
SIGN_NOTE = "positive: s = sum_j g_j^2 / (F_j + eps); the official code stores -s"


def read_score_meta(path: os.PathLike | str) -> dict:
    """The metadata of a table written by ``bioprune score``: refuses any other schema, or no metadata."""
    p = Path(path)
    schema = parquet_file(p, "score file").schema_arrow
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in SCHEMA]:
        raise InputError(p, f"columns {schema.names} are not a bioprune score table {SCHEMA.names}")
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise InputError(p, "score table has no bioprune metadata (not written by `bioprune score`)")
    return json.loads(raw)


@dataclass
class ScoreTable:
    """The columns of a score table that were asked for, typed."""

    path: Path
    ids: pa.ChunkedArray | None  # None when not asked for
    columns: dict[str, np.ndarray]  # column -> float64 values, finite
    meta: dict | None  # the provenance metadata; None for a table made by hand (no metadata)
    stats: dict | None = None  # statistics of all rows stored by merge-scores (score_stats); None: none


def read_scores(
    path: os.PathLike | str,
    columns: list[str],
    *,
    ids: bool = True,
) -> ScoreTable:
    """Read ``columns`` (and ``id`` unless ``ids`` is false) of a score table as float64 arrays.

    Checks: the file is a readable Parquet table with those columns; each is numbers (``id``: text); a
    table that carries bioprune metadata must have it readable, with the provenance and sign convention
    of ``bioprune score``, and the schema's types for its columns; no id is missing; no value is missing
    or non-finite; no self-influence is negative (a sum of squares). One-line InputErrors name the file
    (and the record, where there is one: when ``ids`` is false, its id is read then)."""
    path = Path(path)
    meta, stats = _check_score_columns(path, columns, ids=ids)
    id_col = _read_column(path, "id") if ids else None
    if ids and id_col.null_count:
        raise InputError(path, f"{id_col.null_count} rows have no id")
    out = {}
    for name in columns:  # one at a time, each straight into float64: at 20M rows that is 160 MB a column
        col = _read_column(path, name)
        values = np.empty(len(col), np.float64)
        at = 0
        for chunk in col.chunks:
            values[at : at + len(chunk)] = to_numpy(chunk)
            at += len(chunk)
        del col
        pa.default_memory_pool().release_unused()  # the reader's buffers, before the next column
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(
                path,
                f"column {name}: {int(bad.sum())} missing or non-finite values",
                record=_record(path, id_col, int(np.argmax(bad))),
            )
        if name == "self_influence" and (values < 0).any():
            raise InputError(
                path,
                f"column self_influence: {int((values < 0).sum())} negative values; self-influence is a sum "
                "of squares (the official code stores -s: negate such scores before selection)",
                record=_record(path, id_col, int(np.argmax(values < 0))),
            )
        out[name] = values
    return ScoreTable(path, id_col, out, meta, stats)


def _read_column(path: Path, name: str) -> pa.ChunkedArray:
    try:
        return pq.ParquetFile(path).read(columns=[name]).column(name)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(path, f"cannot read column {name} ({str(exc).splitlines()[0]})") from None


def check_score_columns(path: os.PathLike | str, columns: list[str], *, ids: bool = True) -> dict | None:
    """The checks of :func:`read_scores` that need only the schema (file, columns, types, metadata),
    before anything is read; returns the metadata (None for a table made by hand)."""
    return _check_score_columns(Path(path), columns, ids=ids)[0]


def _check_score_columns(path: Path, columns: list[str], *, ids: bool) -> tuple[dict | None, dict | None]:
    """:func:`check_score_columns`, and the stored statistics (None: none, or not JSON)."""
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        with pq.ParquetFile(path) as pf:  # the footer once: the schema and the file's key-value metadata
            schema, pairs = pf.schema_arrow, pf.metadata.metadata or {}
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable Parquet table ({str(exc).splitlines()[0]})") from exc
    wanted = (["id"] if ids else []) + list(columns)
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}; its columns: {', '.join(schema.names)}"
        )
    for name in columns:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise InputError(path, f"column {name!r} holds {kind}, not numbers")
    return _meta(path, schema, wanted), _stats(path, pairs.get(STATS_KEY))


def _stats(path: Path, raw: bytes | None) -> dict | None:
    """The statistics merge-scores stored; unreadable ones are only a warning (they are computed again)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: stored score statistics are not JSON (%s); not used", path, exc)
        return None


def _meta(path: Path, schema: pa.Schema, wanted: list[str]) -> dict | None:
    """The provenance metadata, checked; None for a table without any (made by hand, say for a test)."""
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"bioprune metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("provenance"), dict):
        raise InputError(path, "bioprune metadata records no provenance (not written by `bioprune score`?)")
    if meta.get("sign", SIGN_NOTE) != SIGN_NOTE:
        raise InputError(
            path, f"scores of another sign convention ({meta['sign']!r}); expected {SIGN_NOTE!r}"
        )
    for name in wanted:
        if name in SCHEMA.names and schema.field(name).type != SCHEMA.field(name).type:
            raise InputError(
                path,
                f"column {name!r} holds {schema.field(name).type}, where `bioprune score` writes "
                f"{SCHEMA.field(name).type}",
            )
    return meta


def _record(path: Path, ids: pa.ChunkedArray | None, row: int) -> str | None:
    """The id of a bad row, for the error message: read now when the ids were not read before."""
    if ids is None:
        try:
            ids = _read_column(path, "id")
        except InputError:
            return None
    return ids[row].as_py()
