"""The pool folder every pool step reads and writes.

A pool folder holds ``sequences.fasta.gz`` (normalised, unwrapped) and ``sequences.parquet``, one
row per sequence in the same order, with at least the columns of :data:`TABLE_COLUMNS`. Later steps
may add columns (``cluster``...). Each step also writes its own ``<step>_report.json``.

:func:`iter_pool` streams a pool's records checked against its table; :func:`write_pool` copies a pool,
filtered and with new columns, holding one batch of table rows at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune.errors import InputError
from bioprune.fasta import FastaWriter, Record, read_fasta

log = logging.getLogger(__name__)

FASTA_NAME = "sequences.fasta.gz"
TABLE_NAME = "sequences.parquet"

# id: first word of the header; description: the rest; source: input file the record came from;
# length: residues after normalisation; hash: hex xxh3-128 of the normalised sequence.
TABLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("description", pa.string()),
        ("source", pa.string()),
        ("length", pa.int32()),
        ("hash", pa.string()),
    ]
)
TABLE_COLUMNS = TABLE_SCHEMA.names
BATCH_ROWS = 1 << 16  # table rows streamed at a time
PROGRESS_EVERY = 1_000_000


def fasta_path(pool_dir: os.PathLike | str) -> Path:
    return _existing(Path(pool_dir) / FASTA_NAME)


def table_path(pool_dir: os.PathLike | str) -> Path:
    return _existing(Path(pool_dir) / TABLE_NAME)


def read_table(pool_dir: os.PathLike | str, columns: list[str] | None = None) -> pa.Table:
    path = table_path(pool_dir)
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc


def _existing(path: Path) -> Path:
    if not path.exists():
        raise InputError(path.parent, f"not a bioprune pool folder: {path.name} is missing")
    return path


def refuse_empty(pool_dir: os.PathLike | str, n_rows: int, step: str) -> None:
    """A step never passes on an empty pool: the run would only fail later, far from the cause."""
    if n_rows == 0:
        raise InputError(
            pool_dir,
            f"the pool is empty (0 sequences), nothing to {step}; see the report of the step that wrote it",
        )


def write_report(path: os.PathLike | str, report: dict) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


# -- streaming a pool folder (shared by the pool steps) --------------------------------------------


def iter_pool(pool_dir: Path) -> Iterator[tuple[int, Record]]:
    """Yield ``(row, record)`` for every sequence of a pool folder, in table order.

    Each FASTA record's id is checked against the table's ``id`` column, so a FASTA and table that do not
    belong together fail loudly (file and line named) instead of shifting every later row.
    """
    fasta, table = fasta_path(pool_dir), table_path(pool_dir)
    pf = parquet_file(table)
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


def parquet_file(path: Path) -> pq.ParquetFile:
    """A Parquet table opened for streaming; an unreadable file is an InputError naming it."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc


def read_column(pool_dir: Path, name: str) -> pa.ChunkedArray:
    """One column of the pool table (e.g. ``length``), without reading the others."""
    path = table_path(pool_dir)
    pf = parquet_file(path)
    if name not in pf.schema_arrow.names:
        raise InputError(path, f"has no {name!r} column; not a bioprune pool table?")
    return pf.read(columns=[name]).column(0)


def take_ids(pool_dir: Path, rows: np.ndarray) -> list[str]:
    """Ids of the given rows (sorted ascending), streaming the id column instead of holding it."""
    out: list[str] = []
    if len(rows) == 0:
        return out
    pf = parquet_file(table_path(pool_dir))
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
    pf = parquet_file(table)
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
