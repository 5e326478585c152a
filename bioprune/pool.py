"""The pool folder every pool step reads and writes.

A pool folder holds ``sequences.fasta.gz`` (normalised, unwrapped) and ``sequences.parquet``, one
row per sequence in the same order, with at least the columns of :data:`TABLE_COLUMNS`. Later steps
may add columns (``cluster``...). Each step also writes its own ``<step>_report.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bioprune.errors import InputError

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


def write_report(path: os.PathLike | str, report: dict) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
