"""``bioprune merge-scores``: collect the per-shard score tables into one table (torch-free).

With ``--order`` (the shard step's ``shards.parquet``: every pool id in pool order and its shard), the
merged rows follow the pool's order. Each shard's table is in its shard's order, which is pool order
restricted to that shard, so the pool order is a streamed k-way merge guided by the ``shard`` column; every
merged id is then compared with the pool's id at its row, so a table scored from another pool, or given
out of shard order, fails with the first id that differs. Pool order matters downstream: select then
needs no id join (the cost of every selection job at 20M scores), and a seeded random selection draws
from the same candidate order whatever ``shard.n_shards`` is.

Without ``--order`` the tables are concatenated as given, and every id is checked to occur once.
Either way the tables must agree on provenance (model, loss definition), eps and Fisher. Rows are
streamed in row groups; the ``self_influence`` and ``loss`` columns are also collected whole (8 bytes a
row each, 320 MB at 20M), for the statistics of the merged table that every selection reports
(:mod:`bioprune.influence.score_stats`): they are stored in the table, and the length diagnostics also go
to the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from bioprune.atomic import atomic_path, write_json
from bioprune.errors import InputError
from bioprune.influence.length import subsample
from bioprune.influence.score_stats import COLUMNS, STATS_KEY, table_stats
from bioprune.influence.score_table import META_KEY, SCHEMA, read_score_meta
from bioprune.pool.io import parquet_file, to_numpy

log = logging.getLogger(__name__)

ROW_GROUP = 16384  # rows per Parquet row group, as ``bioprune score`` writes them
ORDER_COLUMNS = ("id", "shard")


def merge_scores(
    paths: list[os.PathLike | str], out: os.PathLike | str, order: os.PathLike | str | None = None
) -> dict:
    """Merge per-shard score tables into ``out``; in the pool order of ``order`` (a shard table,
    ``paths`` given as shard 0, 1, ...) when it is given, else concatenated. Refuses tables scored with
    a different model, loss definition, eps or Fisher, and any id that occurs twice."""
    if not paths:
        raise InputError("merge-scores", "no score files given")
    paths = [Path(p) for p in paths]
    metas = [read_score_meta(p) for p in paths]
    keys = ("provenance", "eps", "fisher_sha256")
    for p, m in zip(paths[1:], metas[1:], strict=True):
        diff = [k for k in keys if m.get(k) != metas[0].get(k)]
        if diff:
            raise InputError(p, f"scored with a different {', '.join(diff)} than {paths[0].name}")
    meta = {k: metas[0][k] for k in (*keys, "fisher_n", "sign") if k in metas[0]}
    meta["shards"] = [p.name for p in paths]
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    rows = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    per_file = dict(zip((p.name for p in paths), rows, strict=True))
    n_rows = sum(rows)  # not per_file's: a table given twice is merged twice (then refused as duplicates)
    step = subsample(n_rows).step
    columns = {c: np.empty(n_rows, np.float64) for c in COLUMNS}  # whole: exact quantiles need them
    lengths: list[np.ndarray] = []  # rows 0, step, 2 step, ...: all the length diagnostics use
    hashes: list[np.ndarray] = []
    seen = 0
    with atomic_path(out) as tmp:
        if order is None:
            batches = _concatenated(paths, hashes)
        else:
            batches = _in_pool_order(paths, Path(order), per_file)
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for rb in batches:
                writer.write_batch(pa.RecordBatch.from_arrays(rb.columns, schema=SCHEMA))
                for col, whole in columns.items():
                    whole[seen : seen + rb.num_rows] = to_numpy(rb.column(col))
                first = (-seen) % step  # rows whose global index is a multiple of step
                lengths.append(to_numpy(rb.column("length"))[first::step].copy())
                seen += rb.num_rows
            if seen != n_rows:  # cannot happen: the row counts come from the same files
                raise RuntimeError(f"merged {seen} rows, the tables hold {n_rows}")
            if order is None:
                _check_unique_ids(paths, hashes)
            sampled = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
            pa.default_memory_pool().release_unused()  # the streamed batches', before the statistics' copies
            stats = table_stats(columns, sampled, what=Path(out).name)
            # in the footer, written at close (the schema's META_KEY stays as it is); in the key order of
            # the dicts, which select's summary.json keeps
            writer.add_key_value_metadata({STATS_KEY: json.dumps(stats).encode()})
    diagnostics = stats["length_diagnostics"]
    row_order = "pool" if order is not None else "shards concatenated"
    return {
        "n_sequences": n_rows,
        "per_shard": per_file,
        "row_order": row_order,
        "length": diagnostics,
    } | meta


def _concatenated(paths: list[Path], hashes: list[np.ndarray]) -> Iterator[pa.RecordBatch]:
    """The tables' rows as given, hashing every id into ``hashes`` for the uniqueness check."""
    for p in paths:
        for rb in pq.ParquetFile(p).iter_batches(batch_size=ROW_GROUP):
            ids = rb.column(0).to_pylist()
            hashes.append(np.fromiter((xxhash.xxh64_intdigest(x.encode()) for x in ids), np.uint64, len(ids)))
            yield rb


class _Rows:
    """A score table read forward: :meth:`take` returns its next ``n`` rows."""

    def __init__(self, path: Path):
        self.path = path
        self._batches = pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP)
        self._held = pa.Table.from_batches([], SCHEMA)

    def take(self, n: int) -> pa.Table:
        parts = [self._held]
        have = len(self._held)
        while have < n:
            rb = next(self._batches, None)
            if rb is None:  # cannot happen once the row counts have been checked
                raise InputError(self.path, f"ends {n - have} rows early")
            parts.append(pa.Table.from_batches([pa.RecordBatch.from_arrays(rb.columns, schema=SCHEMA)]))
            have += rb.num_rows
        rows = pa.concat_tables(parts)
        self._held = rows.slice(n)
        return rows.slice(0, n)


def _in_pool_order(paths: list[Path], order: Path, per_file: dict[str, int]) -> Iterator[pa.RecordBatch]:
    """The tables' rows in the pool order of the shard table ``order``, every id checked against it."""
    table = parquet_file(order, "shard table")
    missing = [c for c in ORDER_COLUMNS if c not in table.schema_arrow.names]
    if missing:
        raise InputError(order, f"missing column(s) {', '.join(missing)}: not a shard table (bioprune shard)")
    shard = to_numpy(table.read(columns=["shard"]).column(0))  # 4 bytes a sequence
    counts = np.bincount(shard, minlength=len(paths)) if len(shard) else np.zeros(len(paths), np.int64)
    if len(counts) != len(paths):
        raise InputError(order, f"lists {len(counts)} shards but {len(paths)} score tables were given")
    for i, p in enumerate(paths):
        if per_file[p.name] != counts[i]:
            raise InputError(
                p,
                f"has {per_file[p.name]} rows but shard {i} of {order.name} has {counts[i]} sequences "
                "(the tables must be given in shard order, scored from the shards of this table)",
            )
    readers = [_Rows(p) for p in paths]
    start = 0
    for want in table.iter_batches(columns=["id"], batch_size=ROW_GROUP):
        block = shard[start : start + want.num_rows]
        # rows of shard 0, then shard 1, ...: each a run of that shard's table, in pool order
        parts = [readers[i].take(int(c)) for i, c in enumerate(np.bincount(block, minlength=len(paths)))]
        by_shard = np.argsort(block, kind="stable")
        back = np.empty_like(by_shard)
        back[by_shard] = np.arange(len(block))
        rows = pa.concat_tables(parts).take(pa.array(back)).combine_chunks()
        got = rows.column("id")
        same = pc.equal(got, want.column(0))
        if not pc.all(same).as_py():
            at = int(np.flatnonzero(~to_numpy(same))[0])
            i = int(block[at])
            raise InputError(
                paths[i],
                f"id {got[at].as_py()!r} where pool row {start + at} of {order.name} is "
                f"{want.column(0)[at].as_py()!r} (shard {i}): scored from another pool or shard, "
                "or the tables are not given in shard order",
            )
        yield from rows.to_batches()
        start += len(block)


def _check_unique_ids(paths: list[Path], hashes: list[np.ndarray]) -> None:
    """Hash ids (8 bytes each, not the strings); re-read only the ids whose hashes collide."""
    if not hashes:
        return
    h = np.concatenate(hashes)
    h_sorted = np.sort(h)
    suspects = set(h_sorted[1:][h_sorted[1:] == h_sorted[:-1]].tolist())
    if not suspects:
        return
    where: dict[str, Path] = {}
    for p in paths:
        for rb in pq.ParquetFile(p).iter_batches(batch_size=ROW_GROUP, columns=["id"]):
            for rid in rb.column(0).to_pylist():
                if xxhash.xxh64_intdigest(rid.encode()) in suspects:
                    if rid in where:
                        raise InputError(p, f"sequence id {rid!r} occurs twice (also in {where[rid].name})")
                    where[rid] = p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tables", nargs="+", help="per-shard score tables (.parquet); in shard order with --order"
    )
    parser.add_argument("--out", required=True, help="merged score table to write (.parquet)")
    parser.add_argument(
        "--order",
        help="the shard step's shards.parquet: write rows in its (pool) order, each id checked against it",
    )
    parser.add_argument("--report", help="JSON report to write (rows per shard, provenance)")


def run(args: argparse.Namespace) -> int:
    report = merge_scores(args.tables, args.out, args.order)
    if args.report:
        write_json(args.report, report, sort_keys=True)
    log.info(
        "merge-scores: %d tables, %d sequences (%s order) -> %s",
        len(args.tables),
        report["n_sequences"],
        report["row_order"],
        args.out,
    )
    return 0
