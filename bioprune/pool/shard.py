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
"""

from __future__ import annotations

import argparse
import heapq
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune import __version__
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError, InputError
from bioprune.fasta import FastaWriter
from bioprune.pool.io import (
    BATCH_ROWS,
    PROGRESS_EVERY,
    fasta_path,
    iter_pool,
    parquet_file,
    read_column,
    refuse_empty,
    table_path,
    to_numpy,
    write_report,
)

log = logging.getLogger(__name__)

REPORT_NAME = "shard_report.json"
SHARD_TABLE = "shards.parquet"
MAX_OPEN_SHARDS = 256  # well under the usual 1024 open files
# A shard writer's buffered bytes before it is flushed: keeps memory flat with many open shards.
FLUSH_BYTES = 1 << 20


def shard_name(index: int) -> str:
    return f"shard_{index:03d}.fasta.gz"


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
    lengths = to_numpy(read_column(src, "length")).astype(np.int64)
    refuse_empty(src, len(lengths), "shard")
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
    pf = parquet_file(table_path(src))
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
