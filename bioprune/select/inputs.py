"""Load a merged score table and line it up with the pool it was computed on.

The candidates of a selection are the scored sequences. Each score row is mapped to its row in the pool
table (and so in the pool FASTA, which has the same order) by a join over the ids: none when the table
is in pool order, else the sort join of :mod:`bioprune.select.join`, checked id by id; the exact Arrow
hash join only runs to name an id that is not in the pool.
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

from bioprune.errors import ConfigError, InputError
from bioprune.influence.score_table import check_score_columns, read_scores
from bioprune.pool import io as pool
from bioprune.select.join import match_rows

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("self_influence", "loss")


@dataclass
class Candidates:
    """The scored sequences, in score-table order. Their ids are not held (250 MB at 20M): each is the
    pool table's id at its row, checked when loading (``pool.take_ids`` reads those of some rows)."""

    pool_rows: np.ndarray  # row of each candidate in the pool table / FASTA
    scores: dict[str, np.ndarray]  # score column -> float64 values
    lengths: np.ndarray  # residues, from the pool table
    n_pool: int  # rows in the pool table (scored or not)
    families: np.ndarray | None = None  # dense family code per candidate, -1 = no family
    family_names: list[str] | None = None
    clusters: np.ndarray | None = None  # cluster code per candidate (codes of unscored clusters are unused)
    score_stats: dict | None = None  # the score table's stored statistics (influence.score_stats), if any

    def __len__(self) -> int:
        return len(self.pool_rows)


def _columns(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc


def _read_parquet(path: Path, columns: list[str]) -> pa.Table:
    names = _columns(path)
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; it has {', '.join(names)}")
    return pq.ParquetFile(path).read(columns=columns)  # not read_table: no pyarrow.dataset import (0.4 s)


def load_candidates(
    scores_path: os.PathLike | str,
    pool_dir: os.PathLike | str,
    score_columns: list[str],
    *,
    family_regex: str | None = None,
    need_clusters: bool = False,
    families=None,
) -> Candidates:
    """The scored sequences of ``pool_dir`` with the ``score_columns`` asked for. Families: from
    ``families`` (a :class:`bioprune.select.families.Families` of this pool, checked by its ids digest)
    when given, else from the descriptions by ``family_regex`` (None: no families)."""
    scores_path, pool_dir = Path(scores_path), Path(pool_dir)
    check_score_columns(scores_path, score_columns)  # a missing column fails before any reading
    ids = read_scores(scores_path, []).ids  # the values are read after the join: less held at its peak
    _release()
    table_file = pool.table_path(pool_dir)
    pool_cols = _columns(table_file)
    if families is None and family_regex is not None and "description" not in pool_cols:
        raise InputError(
            table_file, "no 'description' column to take families from (use --family-regex none)"
        )
    has_clusters = "cluster" in pool_cols
    if need_clusters and not has_clusters:
        raise InputError(
            table_file,
            "no 'cluster' column: cluster-balanced selection needs a clustered pool (cluster step)",
        )
    pool_ids = _read_parquet(table_file, ["id"]).column("id").combine_chunks()
    n_pool = len(pool_ids)
    _release()

    log.info("joining %d scores to a pool of %d sequences", len(ids), n_pool)
    if len(ids) == n_pool and _same(ids.slice(0, 1024), pool_ids[:1024]) and _same(ids, pool_ids):
        # scores in pool order (one shard, or merged in pool order): no join needed
        pool_rows = np.arange(n_pool, dtype=np.int64)
    else:
        pool_rows = match_rows(ids, pool_ids)  # None: some id has no match; the exact join names it
    if pool_rows is None:
        rows = pc.index_in(ids, value_set=pool_ids)
        if rows.null_count:
            first = pc.filter(ids, pc.is_null(rows))[0].as_py()
            raise InputError(
                scores_path,
                f"{rows.null_count} scored ids are not in the pool {pool_dir} (e.g. {first!r}); "
                "were the scores computed on another pool?",
            )
        pool_rows = rows.to_numpy().astype(np.int64)
        del rows
    seen = np.bincount(pool_rows, minlength=n_pool)
    if (seen > 1).any():
        dup = pool_ids[int(np.flatnonzero(seen > 1)[0])].as_py()
        raise InputError(scores_path, f"{int((seen > 1).sum())} ids are scored more than once (e.g. {dup!r})")
    if families is not None and (
        len(families.codes) != n_pool or families.ids_digest != pool.ids_digest(pool_ids)
    ):
        raise InputError(
            families.path or table_file,
            f"computed on another pool than {pool_dir} (their ids differ): rerun bioprune families",
        )
    del seen, pool_ids
    _release()

    # the codes before the scores: less is held while the Parquet reader decodes their dictionaries
    cand = Candidates(pool_rows, {}, np.empty(0, np.int32), n_pool)
    # One column at a time, read dictionary-encoded: distinct strings are held once, rows as codes.
    if families is not None:
        cand.families, cand.family_names = families.codes[pool_rows], families.names
    elif family_regex is not None:
        row_family, cand.family_names = family_codes(table_file, family_regex)
        cand.families = row_family[pool_rows]
        del row_family
        _release()
    if has_clusters:
        codes, _ = column_codes(table_file, "cluster", values=False)
        if (codes < 0).any():
            raise InputError(table_file, f"{int((codes < 0).sum())} rows have no cluster")
        cand.clusters = codes[pool_rows]
        del codes
        _release()
    table = read_scores(scores_path, score_columns, ids=False, record_ids=ids)
    cand.scores, cand.score_stats = table.columns, table.stats
    del table
    cand.lengths = _read_parquet(table_file, ["length"]).column("length").to_numpy()[pool_rows]
    del ids
    _release()
    return cand


def candidate_rows(pool_dir: os.PathLike | str, cand: Candidates, ids: list[str]) -> np.ndarray:
    """Candidate row of each of ``ids`` (-1: not scored), streaming the pool table's ids once."""
    want = pa.array(ids, pa.string())
    found: dict[str, int] = {}
    start = 0
    for batch in pool.parquet_file(pool.table_path(pool_dir)).iter_batches(
        columns=["id"], batch_size=pool.BATCH_ROWS
    ):
        hit = pc.is_valid(pc.index_in(batch.column(0), value_set=want))
        if pc.any(hit).as_py():
            rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False)) + start
            found.update(zip(batch.column(0).filter(hit).to_pylist(), rows.tolist(), strict=True))
        start += batch.num_rows
    of_pool = np.full(cand.n_pool, -1, np.int64)
    of_pool[cand.pool_rows] = np.arange(len(cand.pool_rows))
    pool_rows = np.array([found.get(i, -1) for i in ids], np.int64)
    return np.where(pool_rows >= 0, of_pool[pool_rows], -1)


def _release() -> None:
    """Hand the memory Arrow freed (Parquet read buffers, columns dropped) back to the system: its
    allocator keeps it otherwise, and numpy's arrays come on top (~0.5 GB of peak at 20M ids)."""
    pa.default_memory_pool().release_unused()


def _same(a, b) -> bool:
    return bool(pc.all(pc.equal(a, b)).as_py())


def column_codes(path: Path, name: str, values: bool = True) -> tuple[np.ndarray, list[str] | None]:
    """A string column as (int32 code per row, -1 for null; the distinct strings if ``values``),
    without materialising one Python or Arrow string per row."""
    col = pq.ParquetFile(path, read_dictionary=[name]).read(columns=[name]).unify_dictionaries().column(name)
    if col.num_chunks == 0:
        return np.empty(0, dtype=np.int32), []
    codes = np.empty(len(col), np.int32)  # filled chunk by chunk: no list of copies to concatenate
    at = 0
    for c in col.chunks:
        indices = c.indices.fill_null(-1) if c.null_count else c.indices
        codes[at : at + len(c)] = indices.to_numpy(zero_copy_only=False)
        at += len(c)
    names = col.chunk(0).dictionary.to_pylist() if values else None
    del col
    _release()
    return codes, names


def parse_family_regex(text: str | None, setting: str = "--family-regex") -> str | None:
    """The family regex to use (None: no families, for '', 'none', 'null'); ConfigError naming ``setting``
    when it does not compile, so the workflow can refuse it at start-up rather than after scoring."""
    if text is None or text.strip().lower() in ("", "none", "null"):
        return None
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{setting} {text!r} is not a valid regular expression ({exc})") from None
    return text


def family_codes(table_file: Path, regex: str) -> tuple[np.ndarray, list[str]]:
    """Family code of every row of a pool table by ``regex`` (-1: none, or no description), and the
    sorted family names: the description column coded, the regex run once per distinct description."""
    codes, texts = column_codes(table_file, "description")
    text_family, names = family_of_texts(texts, regex)
    return text_family[codes], names  # code -1 (no description) maps to the -1 appended


def family_of_texts(texts: list[str], regex: str) -> tuple[np.ndarray, list[str]]:
    """Family code of each distinct description: the regex's first group (or whole match if it has no
    group), -1 where it does not match; plus the sorted family names. The returned array has one more
    entry, -1, so that code -1 (a null description) indexes it."""
    pattern = re.compile(regex)
    found = []
    for text in texts:
        m = pattern.search(text)
        found.append((m.group(1) if pattern.groups else m.group(0)) if m else None)
    names = sorted({f for f in found if f})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[f] if f else -1 for f in found] + [-1], dtype=np.int32), names
