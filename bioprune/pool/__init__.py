"""The pool stage: the steps that build the sequence pool every later stage reads.

Steps (each a ``bioprune <step>`` subcommand): :mod:`~bioprune.pool.ingest`, :mod:`~bioprune.pool.dedup`,
:mod:`~bioprune.pool.decontaminate`, :mod:`~bioprune.pool.cluster`, :mod:`~bioprune.pool.holdout` and
:mod:`~bioprune.pool.shard`; :mod:`~bioprune.pool.mmseqs` runs MMseqs2 for decontaminate and cluster.

:mod:`bioprune.pool.io` reads and writes a pool folder; its API is re-exported here, so
``from bioprune import pool; pool.fasta_path(...)`` works for the later stages.
"""

from bioprune.pool.io import (
    BATCH_ROWS,
    FASTA_NAME,
    TABLE_COLUMNS,
    TABLE_NAME,
    TABLE_SCHEMA,
    PoolFiles,
    copy_records,
    fasta_path,
    iter_pool,
    open_pool,
    parquet_file,
    read_column,
    read_table,
    refuse_empty,
    table_path,
    take_ids,
    write_pool,
    write_report,
)

__all__ = [
    "BATCH_ROWS",
    "FASTA_NAME",
    "TABLE_COLUMNS",
    "TABLE_NAME",
    "TABLE_SCHEMA",
    "PoolFiles",
    "copy_records",
    "fasta_path",
    "iter_pool",
    "open_pool",
    "parquet_file",
    "read_column",
    "read_table",
    "refuse_empty",
    "table_path",
    "take_ids",
    "write_pool",
    "write_report",
]
