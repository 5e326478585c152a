"""Load a merged score table and line it up with the pool it was computed on.

The candidates of a selection are the scored sequences. Each score row is mapped to its row in the pool
table (and so in the pool FASTA, which has the same order) with one hash join over the ids.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioprune import pool
from bioprune.errors import InputError

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("self_influence", "loss")


@dataclass
class Candidates:
    """The scored sequences, in score-table order."""

    ids: pa.ChunkedArray
    pool_rows: np.ndarray  # row of each candidate in the pool table / FASTA
    scores: dict[str, np.ndarray]  # score column -> float64 values
    lengths: np.ndarray  # residues, from the pool table
    n_pool: int  # rows in the pool table (scored or not)
    families: np.ndarray | None = None  # dense family code per candidate, -1 = no family
    family_names: list[str] | None = None
    clusters: np.ndarray | None = None  # cluster code per candidate (codes of unscored clusters are unused)

    def __len__(self) -> int:
        return len(self.pool_rows)


def _read_parquet(path: Path, columns: list[str]) -> pa.Table:
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; it has {', '.join(names)}")
    return pq.read_table(path, columns=columns)


def read_scores(path: os.PathLike | str, columns: list[str]) -> tuple[pa.ChunkedArray, dict[str, np.ndarray]]:
    """Ids and the named score columns as float64. Rejects nulls, NaN/inf and negative self-influence."""
    path = Path(path)
    table = _read_parquet(path, ["id", *columns])
    ids = table.column("id")
    if ids.null_count:
        raise InputError(path, f"{ids.null_count} rows have no id")
    scores = {}
    for name in columns:
        col = table.column(name)
        values = col.to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.argmax(bad))
            raise InputError(
                path,
                f"column {name}: {int(bad.sum())} missing or non-finite values",
                record=ids[first].as_py(),
            )
        if name == "self_influence" and (values < 0).any():
            first = int(np.argmax(values < 0))
            raise InputError(
                path,
                f"column self_influence: {int((values < 0).sum())} negative values; self-influence is a sum "
                "of squares (the official code stores -s: negate such scores before selection)",
                record=ids[first].as_py(),
            )
        scores[name] = values
    return ids, scores


def load_candidates(
    scores_path: os.PathLike | str,
    pool_dir: os.PathLike | str,
    score_columns: list[str],
    *,
    family_regex: str | None = None,
    need_clusters: bool = False,
) -> Candidates:
    scores_path, pool_dir = Path(scores_path), Path(pool_dir)
    ids, scores = read_scores(scores_path, score_columns)
    table_file = pool.table_path(pool_dir)
    pool_cols = pq.read_schema(table_file).names
    want = ["id", "length"]
    if family_regex is not None:
        want.append("description")
    has_clusters = "cluster" in pool_cols
    if need_clusters and not has_clusters:
        raise InputError(
            table_file,
            "no 'cluster' column: cluster-balanced selection needs a clustered pool (cluster step)",
        )
    if has_clusters:
        want.append("cluster")
    table = _read_parquet(table_file, want)
    n_pool = table.num_rows

    log.info("joining %d scores to a pool of %d sequences", len(ids), n_pool)
    rows = pc.index_in(ids, value_set=table.column("id").combine_chunks())
    if rows.null_count:
        first = pc.filter(ids, pc.is_null(rows))[0].as_py()
        raise InputError(
            scores_path,
            f"{rows.null_count} scored ids are not in the pool {pool_dir} (e.g. {first!r}); "
            "were the scores computed on another pool?",
        )
    pool_rows = rows.to_numpy().astype(np.int64)
    seen = np.bincount(pool_rows, minlength=n_pool)
    if (seen > 1).any():
        dup = table.column("id")[int(np.flatnonzero(seen > 1)[0])].as_py()
        raise InputError(scores_path, f"{int((seen > 1).sum())} ids are scored more than once (e.g. {dup!r})")
    del seen

    lengths = table.column("length").to_numpy()[pool_rows]
    cand = Candidates(ids, pool_rows, scores, lengths, n_pool)
    if family_regex is not None:
        codes, names = family_codes(table.column("description"), family_regex)
        cand.families, cand.family_names = codes[pool_rows], names
    if has_clusters:
        cand.clusters = dense_codes(table.column("cluster"))[pool_rows]
    return cand


def dense_codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integer code per row (equal strings, equal codes) without a Python loop over rows."""
    encoded = pc.fill_null(column, "").combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def family_codes(descriptions: pa.ChunkedArray, regex: str) -> tuple[np.ndarray, list[str]]:
    """Family code per row from the description: the regex's first group (or whole match, if it has no
    group), searched in each distinct description; -1 where it does not match. Distinct descriptions
    are few for family-labelled pools (Rfam: one per family), so the regex runs once per distinct text."""
    pattern = re.compile(regex)
    encoded = pc.fill_null(descriptions, "").combine_chunks().dictionary_encode()
    per_text = []
    for text in encoded.dictionary.to_pylist():
        m = pattern.search(text)
        per_text.append((m.group(1) if pattern.groups else m.group(0)) if m else None)
    names = sorted({f for f in per_text if f})
    index = {name: i for i, name in enumerate(names)}
    text_code = np.array([index.get(f, -1) if f else -1 for f in per_text], dtype=np.int64)
    return text_code[encoded.indices.to_numpy(zero_copy_only=False)], names
