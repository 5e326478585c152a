"""``copy_rows``: a few records cut out of a pool's FASTA at the offsets of its ``fasta_bytes`` column,
byte-identical to the checked pass (``copy_records``), and a FASTA that disagrees with its table caught."""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune.errors import InputError
from bioprune.fasta import FastaWriter
from bioprune.pool import io as pool_io
from bioprune.pool.dedup import dedup
from bioprune.pool.ingest import ingest


def _records(n: int, seed: int = 0) -> str:
    """Headers with descriptions (some holding '>'), sequences of 1-2,000 nt."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        desc = rng.choice(["", " tRNA", " 5S rRNA >fragment", "\tHomo sapiens"])
        seq = "".join(rng.choice("ACGU") for _ in range(rng.choice([1, 40, 120, 2000])))
        out.append(f">r{i}{desc}\n{seq}\n")
    return "".join(out)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 KB: records straddle many chunk boundaries."""
    monkeypatch.setattr("bioprune.fasta.BLOCK_SIZE", 4096)


def _ingested(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "in.fa"
    src.write_text(text)
    ingest([src], tmp_path / "pool", "rna")
    return tmp_path / "pool"


def _both(pool: Path, rows: np.ndarray, tmp_path: Path) -> tuple[bytes, bytes]:
    """(copy_rows' file, copy_records' file) for the same rows, as gzip bytes."""
    ids = pool_io.take_ids(pool, rows)
    keep = np.zeros(pool_io.open_pool(pool).n_rows, dtype=bool)
    keep[rows] = True
    out = {}
    for how in ("fast", "checked"):  # one file name: gzip's header holds it
        (tmp_path / how).mkdir(exist_ok=True)
        path = tmp_path / how / "out.fa.gz"
        if how == "fast":
            assert pool_io.copy_rows(pool, rows, ids, path) == len(rows)
        else:
            assert pool_io.copy_records(pool, keep, path) == len(rows)
        out[how] = path.read_bytes()
    return out["fast"], out["checked"]


@pytest.mark.parametrize("share", [0.0, 0.01, 0.3, 1.0])
def test_same_bytes_as_the_checked_pass(tmp_path, small_chunks, share, caplog):
    pool = _ingested(tmp_path, _records(3000))
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(3000, int(share * 3000), replace=False))
    with caplog.at_level(logging.WARNING):
        fast, checked = _both(pool, rows, tmp_path)
    assert fast == checked
    assert "full check" not in caplog.text  # cut at the offsets, not read again
    kept = gzip.decompress(fast).split(b"\n")[0::2][:-1]
    assert [h.split()[0][1:].decode() for h in kept] == [f"r{i}" for i in rows]


def test_a_dedup_pool_keeps_its_offsets(tmp_path, shared_data):
    """Real Rfam seeds through ingest and dedup: the pool's fasta_bytes still cut its FASTA right."""
    ingest([shared_data / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"], tmp_path / "ingested", "rna")
    dedup(tmp_path / "ingested", tmp_path / "pool")
    n = pool_io.open_pool(tmp_path / "pool").n_rows
    rows = np.sort(np.random.default_rng(0).choice(n, n // 20, replace=False))
    fast, checked = _both(tmp_path / "pool", rows, tmp_path)
    assert fast == checked


def _rewrite_table(pool: Path, column: str, values: list) -> None:
    table = pq.read_table(pool / "sequences.parquet")
    i = table.schema.get_field_index(column)
    table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    pq.write_table(table, pool / "sequences.parquet")


def test_a_fasta_of_another_table_fails_naming_the_record(tmp_path, small_chunks):
    """Two records of the FASTA swapped (same sizes elsewhere): the copied ids differ from the table's,
    and the checked pass names the file and line."""
    pool = _ingested(tmp_path, _records(500))
    records = gzip.decompress((pool / "sequences.fasta.gz").read_bytes()).split(b"\n>")
    records[10], records[11] = records[11], records[10]
    with FastaWriter(pool / "sequences.fasta.gz") as w:
        w.write_block(b"\n>".join(records), len(records))
    ids = pool_io.take_ids(pool, np.array([10, 200]))
    with pytest.raises(InputError, match=r"record 'r11' is row 10 but the pool table has 'r10'"):
        pool_io.copy_rows(pool, np.array([10, 200]), ids, tmp_path / "out.fa.gz")


def test_a_wrong_size_column_still_writes_the_right_records(tmp_path, small_chunks, caplog):
    pool = _ingested(tmp_path, _records(500))
    sizes = pq.read_table(pool / "sequences.parquet").column("fasta_bytes").to_pylist()
    sizes[3], sizes[4] = sizes[3] + 1, sizes[4] - 1  # the total stays right, record 4 starts a byte late
    _rewrite_table(pool, "fasta_bytes", sizes)
    rows = np.array([4, 100, 499])
    with caplog.at_level(logging.WARNING):
        fast, checked = _both(pool, rows, tmp_path)
    assert fast == checked
    assert "fasta_bytes column does not match the FASTA" in caplog.text


def test_a_truncated_fasta_fails(tmp_path):
    pool = _ingested(tmp_path, _records(200))
    data = gzip.decompress((pool / "sequences.fasta.gz").read_bytes())
    (pool / "sequences.fasta.gz").write_bytes(gzip.compress(data[: data.rfind(b"\n>") + 1]))
    with pytest.raises(InputError, match="has 199 records but the table has 200 rows"):
        pool_io.copy_rows(pool, np.array([5]), pool_io.take_ids(pool, np.array([5])), tmp_path / "o.fa.gz")


def test_a_table_without_the_column_is_read_by_the_checked_pass(tmp_path):
    pool = _ingested(tmp_path, _records(300))
    table = pq.read_table(pool / "sequences.parquet").drop_columns(["fasta_bytes"])
    pq.write_table(table, pool / "sequences.parquet")
    rows = np.array([0, 7, 299])
    fast, checked = _both(pool, rows, tmp_path)
    assert fast == checked


def test_rows_must_be_ascending(tmp_path):
    pool = _ingested(tmp_path, _records(20))
    with pytest.raises(ValueError, match="ascending"):
        pool_io.copy_rows(pool, np.array([3, 2]), ["r3", "r2"], tmp_path / "o.fa.gz")


@pytest.mark.parametrize(
    "col",
    [
        pa.array(np.arange(40, dtype=np.int32)).slice(13, 9),
        pa.array(np.linspace(0, 1, 11)).slice(4),
        pa.array(np.arange(5, dtype=np.uint8) * 50),
        pa.array([i % 3 == 0 for i in range(37)]).slice(5, 23),  # bits that start mid-byte
        pa.chunked_array([pa.array([1, 2], pa.int64()), pa.array([3], pa.int64())]),
        pa.chunked_array([pa.array([0.5]).slice(1), pa.array([1.5, 2.5])]),
        pa.chunked_array([], pa.int16()),
        pa.array([1.0, None, 3.0]),  # nulls: Arrow's own conversion (NaN)
    ],
)
def test_to_numpy_reads_values_from_the_buffers(col):
    got = pool_io.to_numpy(col)
    want = col.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
