"""Load a merged score table and line it up with the pool it was computed on.

The candidates of a selection are the scored sequences. Each score row is mapped to its row in the pool
table (and so in the pool FASTA, which has the same order) by a join over the ids: none when the table
is in pool order, else the sort join of :mod:`bioprune.select.join`, checked id by id; the exact Arrow
hash join only runs to name an id that is not in the pool. A table that looks in pool order (the pool's
row count and first ids) is not joined while loading: :func:`kept_ids` compares every id later, in the
pass that reads the kept rows' ids, and says when the order was wrong after all.
"""

from __future__ import annotations

import contextlib
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
HEAD_ROWS = 1024  # first ids compared while loading: a table not in pool order almost always differs there


@dataclass
class Candidates:
    """The scored sequences, in score-table order. Their ids are not held (250 MB at 20M): each is the
    pool table's id at its row (:func:`kept_ids` reads those of some rows).

    A score table with as many rows as the pool, whose first ids are the pool's, is taken to be in pool
    order (``order_checked`` False): every id is compared later, in the one pass that also reads the kept
    rows' ids (:func:`kept_ids`), before anything is written. Otherwise the ids are joined and checked
    while loading."""

    pool_rows: np.ndarray | None  # row of each candidate in the pool table / FASTA; None: the pool's rows
    scores: dict[str, np.ndarray]  # score column -> float64 values
    lengths: np.ndarray  # residues, from the pool table
    n_pool: int  # rows in the pool table (scored or not)
    families: np.ndarray | None = None  # dense family code per candidate, -1 = no family
    family_names: list[str] | None = None
    clusters: np.ndarray | None = None  # cluster code per candidate (codes of unscored clusters are unused)
    score_stats: dict | None = None  # the score table's stored statistics (influence.score_stats), if any
    order_checked: bool = True  # False: the pool order is assumed; kept_ids compares every id
    families_source: object = None  # the Families given (kept_ids checks its digest if not yet checked)

    def __len__(self) -> int:
        return self.n_pool if self.pool_rows is None else len(self.pool_rows)

    def in_pool(self, rows: np.ndarray) -> np.ndarray:
        """The pool rows of candidate ``rows``."""
        return rows if self.pool_rows is None else self.pool_rows[rows]


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
    assume_pool_order: bool = True,
) -> Candidates:
    """The scored sequences of ``pool_dir`` with the ``score_columns`` asked for. Families: from
    ``families`` (a :class:`bioprune.select.families.Families` of this pool, checked by its ids digest)
    when given, else from the descriptions by ``family_regex`` (None: no families).
    ``assume_pool_order`` False: join by id even when the table looks in pool order (after
    :func:`kept_ids` found it is not)."""
    scores_path, pool_dir = Path(scores_path), Path(pool_dir)
    check_score_columns(scores_path, score_columns)  # a missing column fails before any reading
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
    n_pool = pool.parquet_file(table_file).metadata.num_rows
    if assume_pool_order and _starts_in_pool_order(scores_path, table_file, n_pool):
        # scores in pool order (one shard, or merged in pool order): no join; every id is compared by
        # kept_ids, in the pass that reads the kept ids anyway
        log.info("%d scores in the order of the pool (first ids compared; all compared later)", n_pool)
        pool_rows, checked = None, False  # the pool's rows: no arange (160 MB at 20M)
    else:
        pool_rows, checked = _joined_rows(scores_path, table_file, families), True

    # the codes before the scores: less is held while the Parquet reader decodes their dictionaries
    cand = Candidates(pool_rows, {}, np.empty(0, np.int32), n_pool, order_checked=checked)
    if families is not None:
        if len(families.codes) != n_pool:
            raise InputError(
                families.path or table_file,
                f"holds {len(families.codes)} rows for a pool of {n_pool}: rerun bioprune families",
            )
        cand.families, cand.family_names = _at(families.codes, pool_rows), families.names
        cand.families_source = families
    elif family_regex is not None:
        row_family, cand.family_names = family_codes(table_file, family_regex)
        cand.families = _at(row_family, pool_rows)
        del row_family
        _release()
    if has_clusters:
        codes = _cluster_codes(table_file, families)
        if (codes < 0).any():
            raise InputError(table_file, f"{int((codes < 0).sum())} rows have no cluster")
        cand.clusters = _at(codes, pool_rows)
        del codes
        _release()
    table = read_scores(scores_path, score_columns, ids=False)
    cand.scores, cand.score_stats = table.columns, table.stats
    del table
    lengths = pool.to_numpy(_read_parquet(table_file, ["length"]).column("length"))
    cand.lengths = _at(lengths, pool_rows)
    _release()
    return cand


def _cluster_codes(table_file: Path, families) -> np.ndarray:
    """The cluster code of every pool row: the families table's, coded by the families step, while the
    pool's cluster column is the one they were coded from (its stored bytes unchanged); else coded here."""
    if families is not None and families.clusters is not None:
        if families.clusters_of == pool.column_fingerprint(table_file, "cluster"):
            return families.clusters
        log.info("%s: its cluster codes are of another cluster column; coding the pool's", families.path)
    return column_codes(table_file, "cluster", values=False)[0]


def _at(values: np.ndarray, pool_rows: np.ndarray | None) -> np.ndarray:
    """``values`` (one per pool row) of each candidate: no copy when the candidates are the pool's rows."""
    return values if pool_rows is None else values[pool_rows]


def _starts_in_pool_order(scores_path: Path, table_file: Path, n_pool: int) -> bool:
    """Same row count, and the first ids equal: a table not in pool order (sorted, shuffled, another
    pool's) almost always differs there, and goes to the join without costing a selection first."""
    if pool.parquet_file(scores_path, "score table").metadata.num_rows != n_pool:
        return False
    heads = [
        next(pool.parquet_file(p).iter_batches(columns=["id"], batch_size=HEAD_ROWS), None)
        for p in (scores_path, table_file)
    ]
    if any(h is None for h in heads):
        return n_pool == 0
    a, b = (h.column(0) for h in heads)
    return len(a) == len(b) and not a.null_count and _same(a, b)


def _joined_rows(scores_path: Path, table_file: Path, families) -> np.ndarray | None:
    """The pool row of every score row, by id (every id checked); the families' digest checked."""
    ids = read_scores(scores_path, []).ids
    _release()
    pool_ids = _read_parquet(table_file, ["id"]).column("id").combine_chunks()
    n_pool = len(pool_ids)
    _release()
    log.info("joining %d scores to a pool of %d sequences", len(ids), n_pool)
    if len(ids) == n_pool and _same(ids, pool_ids):
        pool_rows = None  # in pool order after all (asked to join anyway)
    else:
        pool_rows = _match(ids, pool_ids, scores_path, table_file)
    if families is not None:
        _check_families(families, pool.ids_digest(pool_ids), table_file)
    del pool_ids, ids
    _release()
    return pool_rows


def _match(ids: pa.ChunkedArray, pool_ids: pa.Array, scores_path: Path, table_file: Path) -> np.ndarray:
    """The pool row of each score id; InputError when one is not in the pool or occurs twice."""
    pool_rows = match_rows(ids, pool_ids)  # None: some id has no match; the exact join names it
    if pool_rows is None:
        rows = pc.index_in(ids, value_set=pool_ids)
        if rows.null_count:
            first = pc.filter(ids, pc.is_null(rows))[0].as_py()
            raise InputError(
                scores_path,
                f"{rows.null_count} scored ids are not in the pool {table_file.parent} (e.g. {first!r}); "
                "were the scores computed on another pool?",
            )
        pool_rows = pool.to_numpy(rows).astype(np.int64)
        del rows
    seen = np.bincount(pool_rows, minlength=len(pool_ids))
    if (seen > 1).any():
        dup = pool_ids[int(np.flatnonzero(seen > 1)[0])].as_py()
        raise InputError(scores_path, f"{int((seen > 1).sum())} ids are scored more than once (e.g. {dup!r})")
    return pool_rows


def _check_families(families, digest: str, table_file: Path) -> None:
    if families.ids_digest != digest:
        raise InputError(
            families.path or table_file,
            f"computed on another pool than {table_file.parent} (their ids differ): rerun bioprune families",
        )


def kept_ids(
    scores_path: os.PathLike | str, pool_dir: os.PathLike | str, cand: Candidates, rows: np.ndarray
) -> list[str] | None:
    """The pool ids of pool ``rows`` (sorted ascending), for ids.txt and the coreset's check. When the
    pool order was assumed (``cand.order_checked`` False), every score id is compared with the pool's id
    at its row in the same pass, both columns streamed and decoded on helper threads, and the families'
    digest is checked: None when the score table is not in pool order after all (then load again with
    ``assume_pool_order=False``)."""
    table_file = pool.table_path(Path(pool_dir))
    if cand.order_checked:
        return pool.take_ids(Path(pool_dir), rows)
    digest = pool.IdsDigest() if cand.families_source is not None else None
    out: list[str] = []
    scores = pool.id_batches(Path(scores_path))
    held = None  # score ids read but not yet compared
    start = 0
    with contextlib.closing(scores), contextlib.closing(pool.id_batches(table_file)) as pool_batches:
        for batch in pool_batches:
            if digest is not None:
                digest.update(batch)
            out += pool.ids_at(batch, rows, start)
            at = 0
            while at < len(batch):
                if held is None or not len(held):
                    held = next(scores, None)
                    if held is None or held.null_count:
                        return None  # fewer score rows, or a missing id: the join path says which
                m = min(len(held), len(batch) - at)
                if not _same(held.slice(0, m), batch.slice(at, m)):
                    return None
                held, at = held.slice(m), at + m
            start += len(batch)
        if (held is not None and len(held)) or next(scores, None) is not None:
            return None
    if digest is not None:
        _check_families(cand.families_source, digest.hexdigest(), table_file)
    cand.order_checked = True
    return out


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
            rows = np.flatnonzero(pool.to_numpy(hit)) + start
            found.update(zip(batch.column(0).filter(hit).to_pylist(), rows.tolist(), strict=True))
        start += batch.num_rows
    of_pool = np.full(cand.n_pool, -1, np.int64)
    of_pool[cand.in_pool(np.arange(len(cand)))] = np.arange(len(cand))
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
        codes[at : at + len(c)] = pool.to_numpy(indices)
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
