"""``bioprune shard``: split a pool into a fixed number of shards balanced by residue count.

Each shard is one scoring job, and scoring time grows with residues, not records, so shards are balanced
on residues: sequences are taken longest first (ties: pool order) and each goes to the shard with the
fewest residues so far (ties: lowest shard index). This greedy rule (LPT) is deterministic and keeps every
shard within one sequence length of the mean (max shard - mean <= longest sequence).

Memory: only the length column (4 bytes a sequence) and the shard of each row (2 bytes) are held; the
sequences are streamed from the pool into the shard files. At most :data:`MAX_OPEN_SHARDS` shard files
are open at once; with more shards the pool is read once per group of shards.

All ``N`` shard files are always written, ``shard_000.fasta.gz`` .. ``shard_{N-1:03d}.fasta.gz``, even when
there are fewer sequences than shards: the extra shards are empty gzip files (no records), the report
counts them (``empty_shards``) and a warning is logged. A workflow can then always expect N files.

Outputs: the shard files; ``shards.parquet`` (``id``, ``shard``, ``length``, one row per sequence in pool
order); ``shard_report.json`` (sequences and residues per shard, imbalance = max / mean residues - 1).

The module also holds :func:`iter_pool` and :func:`write_pool`, the streaming pool readers/writers that
``decontaminate`` and ``cluster`` share.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune import __version__
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError, InputError
from bioprune.fasta import FastaWriter, Record, read_fasta
from bioprune.pool import FASTA_NAME, TABLE_NAME, fasta_path, table_path, write_report

log = logging.getLogger(__name__)

REPORT_NAME = "shard_report.json"
SHARD_TABLE = "shards.parquet"
MAX_OPEN_SHARDS = 256  # well under the usual 1024 open files
# A shard writer's buffered bytes before it is flushed: keeps memory flat with many open shards.
FLUSH_BYTES = 1 << 20
BATCH_ROWS = 1 << 16
PROGRESS_EVERY = 1_000_000


def shard_name(index: int) -> str:
    return f"shard_{index:03d}.fasta.gz"


# --------------------------------------------------------------------------------------------------
# Pool streaming shared by the pool steps


def iter_pool(pool_dir: Path) -> Iterator[tuple[int, Record]]:
    """Yield ``(row, record)`` for every sequence of a pool folder, in table order.

    Each FASTA record's id is checked against the table's ``id`` column, so a FASTA and table that do not
    belong together fail loudly (file and line named) instead of shifting every later row.
    """
    fasta, table = fasta_path(pool_dir), table_path(pool_dir)
    pf = _parquet(table)
    if pf.metadata.num_rows == 0:
        return
    records = read_fasta(fasta)
    row = 0
    for batch in pf.iter_batches(columns=["id"], batch_size=BATCH_ROWS):
        for expected in batch.column(0).to_pylist():
            rec = next(records, None)
            if rec is None:
                raise InputError(fasta, f"has {row} records but {table.name} has {pf.metadata.num_rows} rows")
            if rec.id != expected:
                raise InputError(
                    fasta,
                    f"record {rec.id!r} is row {row} but {table.name} has {expected!r} there",
                    line=rec.line,
                )
            yield row, rec
            row += 1
    extra = next(records, None)
    if extra is not None:
        raise InputError(fasta, f"has more records than the {row} rows of {table.name}", line=extra.line)


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc


def read_column(pool_dir: Path, name: str) -> pa.ChunkedArray:
    """One column of the pool table (e.g. ``length``), without reading the others."""
    path = table_path(pool_dir)
    pf = _parquet(path)
    if name not in pf.schema_arrow.names:
        raise InputError(path, f"has no {name!r} column; not a bioprune pool table?")
    return pf.read(columns=[name]).column(0)


def take_ids(pool_dir: Path, rows: np.ndarray) -> list[str]:
    """Ids of the given rows (sorted ascending), streaming the id column instead of holding it."""
    out: list[str] = []
    if len(rows) == 0:
        return out
    pf = _parquet(table_path(pool_dir))
    start = 0
    for batch in pf.iter_batches(columns=["id"], batch_size=BATCH_ROWS):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            out += batch.column(0).take(pa.array(rows[lo:hi] - start)).to_pylist()
        start = stop
    return out


def write_pool(
    src: Path,
    stage: Path,
    keep: np.ndarray | None = None,
    new_columns: list[pa.Field] | None = None,
    columns_for: Callable[[int, int], list[pa.Array]] | None = None,
) -> int:
    """Copy the pool in ``src`` to ``stage`` (FASTA + table), only rows where ``keep`` is true.

    ``columns_for(start, stop)`` gives the values of ``new_columns`` for table rows ``start:stop`` (before
    filtering); a column of the same name already in the table is replaced. Returns the rows written.
    """
    new_columns = new_columns or []
    table = table_path(src)
    pf = _parquet(table)
    n_rows = pf.metadata.num_rows
    if keep is not None and len(keep) != n_rows:
        raise ValueError(f"keep has {len(keep)} entries for {n_rows} rows")
    replaced = {f.name for f in new_columns}
    base = [f for f in pf.schema_arrow if f.name not in replaced]
    schema = pa.schema(base + new_columns)
    written = 0
    start_time = time.perf_counter()
    next_log = PROGRESS_EVERY
    with (
        FastaWriter(stage / FASTA_NAME) as fasta,
        pq.ParquetWriter(stage / TABLE_NAME, schema, compression="zstd") as writer,
    ):
        records = iter_pool(src)
        start = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            stop = start + batch.num_rows
            mask = None if keep is None else keep[start:stop]
            for i in range(batch.num_rows):
                _, rec = next(records)
                if mask is None or mask[i]:
                    fasta.write(rec.id, rec.seq, rec.description)
            arrays = [batch.column(f.name) for f in base]
            if new_columns:
                arrays += columns_for(start, stop)
            out = pa.RecordBatch.from_arrays(arrays, schema=schema)
            if mask is not None:
                out = out.filter(pa.array(mask))
            writer.write_batch(out)
            written += out.num_rows
            start = stop
            if start >= next_log:
                rate = start / max(time.perf_counter() - start_time, 1e-9)
                log.info("%d / %d rows written (%.0f rows/s)", start, n_rows, rate)
                next_log += PROGRESS_EVERY
        next(records, None)  # runs iter_pool's end-of-file check
    return written


# --------------------------------------------------------------------------------------------------
# Sharding


def assign_shards(lengths: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard index of each sequence: longest first to the least-loaded shard (ties: lowest index)."""
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")  # stable: equal lengths keep pool order
    shard = np.empty(len(lengths), dtype=np.int32)
    heap = [(0, i) for i in range(n_shards)]  # (residues so far, shard): already a valid heap
    replace = heapq.heapreplace
    # Plain ints: numpy scalars in the heap would make every comparison several times slower.
    for row, length in zip(order.tolist(), lengths[order].tolist(), strict=True):
        load, s = heap[0]
        shard[row] = s
        replace(heap, (load + length, s))
    return shard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-shards", type=int, required=True, help="number of shards (all always written)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("input", type=Path, help="pool folder (sequences.fasta.gz + sequences.parquet)")


def run(args: argparse.Namespace) -> int:
    n_shards = args.n_shards
    if not 1 <= n_shards <= 100_000:
        raise ConfigError(f"--n-shards must be between 1 and 100000, got {n_shards}")
    src: Path = args.input
    fasta_path(src)  # fail early, naming the folder, when it is not a pool
    start_time = time.perf_counter()
    lengths = read_column(src, "length").to_numpy(zero_copy_only=False).astype(np.int64)
    if len(lengths) and lengths.min() < 0:
        raise InputError(table_path(src), "negative sequence length")
    shard = assign_shards(lengths, n_shards)
    counts = np.bincount(shard, minlength=n_shards)
    residues = np.bincount(shard, weights=lengths, minlength=n_shards).astype(np.int64)
    log.info(
        "assigned %d sequences to %d shards in %.1f s",
        len(lengths),
        n_shards,
        time.perf_counter() - start_time,
    )

    with staged_dir(args.out) as stage:
        _write_shards(src, stage, shard, n_shards)
        _write_shard_table(src, stage / SHARD_TABLE, shard, lengths)
        empty = int((counts == 0).sum())
        if empty:
            log.warning(
                "%d of %d shards are empty (fewer sequences than shards); their files are empty",
                empty,
                n_shards,
            )
        mean = residues.mean() if n_shards else 0.0
        report = {
            "step": "shard",
            "bioprune_version": __version__,
            "input": str(src),
            "sequences": int(len(lengths)),
            "residues": int(lengths.sum()),
            "n_shards": n_shards,
            "empty_shards": empty,
            "imbalance": float(residues.max() / mean - 1) if mean > 0 else 0.0,
            "max_residues": int(residues.max()),
            "min_residues": int(residues.min()),
            "longest_sequence": int(lengths.max()) if len(lengths) else 0,
            "method": "longest first to the shard with the fewest residues (ties: pool order, lowest shard)",
            "shards": [
                {"shard": i, "file": shard_name(i), "sequences": int(counts[i]), "residues": int(residues[i])}
                for i in range(n_shards)
            ],
        }
        write_report(stage / REPORT_NAME, report)
    log.info(
        "%d sequences into %d shards (imbalance %.4f) in %.1f s",
        len(lengths),
        n_shards,
        report["imbalance"],
        time.perf_counter() - start_time,
    )
    return 0


def _write_shards(src: Path, stage: Path, shard: np.ndarray, n_shards: int) -> None:
    """Stream the pool into the shard files, at most MAX_OPEN_SHARDS files per pass over the pool."""
    for first in range(0, n_shards, MAX_OPEN_SHARDS):
        last = min(first + MAX_OPEN_SHARDS, n_shards)
        if first:
            log.info("pass for shards %d..%d", first, last - 1)
        writers = [FastaWriter(stage / shard_name(i)) for i in range(first, last)]
        pending = [0] * len(writers)
        try:
            if len(shard) and ((shard >= first) & (shard < last)).any():
                start = time.perf_counter()
                for row, rec in iter_pool(src):
                    if row and row % PROGRESS_EVERY == 0:
                        log.info("%d sequences sharded (%.0f/s)", row, row / (time.perf_counter() - start))
                    k = int(shard[row]) - first
                    if 0 <= k < len(writers):
                        writers[k].write(rec.id, rec.seq, rec.description)
                        pending[k] += len(rec.seq) + len(rec.id) + len(rec.description) + 3
                        if pending[k] > FLUSH_BYTES:
                            writers[k].flush()
                            pending[k] = 0
        finally:
            for w in writers:
                w.close()


def _write_shard_table(src: Path, path: Path, shard: np.ndarray, lengths: np.ndarray) -> None:
    schema = pa.schema([("id", pa.string()), ("shard", pa.int32()), ("length", pa.int32())])
    pf = _parquet(table_path(src))
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        start = 0
        for batch in pf.iter_batches(columns=["id"], batch_size=BATCH_ROWS):
            stop = start + batch.num_rows
            writer.write_batch(
                pa.RecordBatch.from_arrays(
                    [batch.column(0), pa.array(shard[start:stop]), pa.array(lengths[start:stop], pa.int32())],
                    schema=schema,
                )
            )
            start = stop
