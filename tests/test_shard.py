"""``bioprune shard``: residue balance, determinism, all N files, streaming helpers and error exits."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from bioprune.cli import main
from bioprune.errors import InputError
from bioprune.fasta import FastaWriter, read_fasta
from bioprune.pool import shard as shard_mod
from bioprune.pool.io import TABLE_SCHEMA, iter_pool, write_pool
from bioprune.pool.shard import assign_shards, shard_name


def make_pool(folder: Path, records: list[tuple[str, str]]) -> Path:
    """A pool folder written directly (as ingest would): FASTA + table in the same order."""
    folder.mkdir(parents=True, exist_ok=True)
    with FastaWriter(folder / "sequences.fasta.gz") as fasta:
        for rec_id, seq in records:
            fasta.write(rec_id, seq.encode(), f"desc of {rec_id}")
    table = pa.table(
        {
            "id": [r for r, _ in records],
            "description": [f"desc of {r}" for r, _ in records],
            "source": ["test.fasta"] * len(records),
            "length": pa.array([len(s) for _, s in records], pa.int32()),
            "hash": [xxhash.xxh3_128(s.encode()).hexdigest() for _, s in records],
        },
        schema=TABLE_SCHEMA,
    )
    pq.write_table(table, folder / "sequences.parquet")
    return folder


def random_records(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"s{i}", "".join(rng.choice("ACGU") for _ in range(rng.randint(5, 300)))) for i in range(n)]


def shard_contents(out: Path, n: int) -> list[list[tuple[str, bytes]]]:
    result = []
    for i in range(n):
        path = out / shard_name(i)
        if gzip.open(path).read() == b"":
            result.append([])
        else:
            result.append([(r.id, r.seq) for r in read_fasta(path)])
    return result


# -- the assignment rule ----------------------------------------------------------------------------


def test_assign_is_balanced_within_one_sequence():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 1000, 5000)
    for n in (1, 3, 16, 64):
        shard = assign_shards(lengths, n)
        loads = np.bincount(shard, weights=lengths, minlength=n)
        assert loads.sum() == lengths.sum()
        # Greedy longest-first: no shard exceeds the mean by more than the longest sequence.
        assert loads.max() - loads.mean() <= lengths.max()
        assert loads.max() / loads.mean() - 1 < 0.01


def test_assign_is_deterministic_and_breaks_ties_by_order():
    lengths = np.array([10, 10, 10, 10, 10, 10, 30])
    # The longest goes first to shard 0; equal lengths then fill the least-loaded shard, lowest index.
    assert assign_shards(lengths, 3).tolist() == [1, 2, 1, 2, 1, 2, 0]
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 50, 2000)  # many ties
    assert np.array_equal(assign_shards(lengths, 7), assign_shards(lengths.copy(), 7))


def test_assign_beats_round_robin_on_skewed_lengths():
    lengths = np.array([1000] + [1] * 999)
    loads = np.bincount(assign_shards(lengths, 4), weights=lengths, minlength=4)
    assert loads.max() == 1000  # the long one alone; the short ones share the other three shards
    assert sorted(loads.tolist()) == [333, 333, 333, 1000]


# -- the step -------------------------------------------------------------------------------------


def run_shard(src: Path, out: Path, n: int) -> int:
    return main(["shard", "--n-shards", str(n), "--out", str(out), str(src)])


def test_shard_step_writes_every_record_once(tmp_path):
    records = random_records(120)
    src = make_pool(tmp_path / "pool", records)
    assert run_shard(src, tmp_path / "out", 5) == 0
    out = tmp_path / "out"
    contents = shard_contents(out, 5)
    seen = sorted((rid, seq) for shard in contents for rid, seq in shard)
    assert seen == sorted((rid, seq.encode()) for rid, seq in records)
    # Within a shard, pool order is kept.
    order = {rid: i for i, (rid, _) in enumerate(records)}
    for shard in contents:
        assert [order[r] for r, _ in shard] == sorted(order[r] for r, _ in shard)
    table = pq.read_table(out / "shards.parquet").to_pydict()
    assert table["id"] == [r for r, _ in records]
    assert table["length"] == [len(s) for _, s in records]
    for i, shard in enumerate(contents):
        assert {r for r, _ in shard} == {
            r for r, s in zip(table["id"], table["shard"], strict=True) if s == i
        }
    report = json.loads((out / "shard_report.json").read_text())
    residues = [sum(len(s) for _, s in shard) for shard in contents]
    assert [s["residues"] for s in report["shards"]] == residues
    assert [s["sequences"] for s in report["shards"]] == [len(s) for s in contents]
    assert report["sequences"] == 120 and report["empty_shards"] == 0
    assert report["imbalance"] == pytest.approx(max(residues) / np.mean(residues) - 1)
    assert max(residues) - np.mean(residues) <= max(len(s) for _, s in records)
    assert not list(out.glob(".staging-*"))


def test_shard_step_is_deterministic(tmp_path):
    src = make_pool(tmp_path / "pool", random_records(80, seed=3))
    run_shard(src, tmp_path / "a", 4)
    run_shard(src, tmp_path / "b", 4)
    for i in range(4):
        a = gzip.open(tmp_path / "a" / shard_name(i)).read()
        assert a == gzip.open(tmp_path / "b" / shard_name(i)).read()
    assert pq.read_table(tmp_path / "a" / "shards.parquet").equals(
        pq.read_table(tmp_path / "b" / "shards.parquet")
    )


def test_more_shards_than_sequences_writes_all_files(tmp_path):
    src = make_pool(tmp_path / "pool", random_records(3))
    out = tmp_path / "out"
    assert run_shard(src, out, 6) == 0
    names = sorted(p.name for p in out.glob("shard_*.fasta.gz"))
    assert names == [shard_name(i) for i in range(6)]
    contents = shard_contents(out, 6)
    assert sum(len(c) for c in contents) == 3
    report = json.loads((out / "shard_report.json").read_text())
    assert report["empty_shards"] == 3
    assert sum(1 for s in report["shards"] if s["sequences"] == 0) == 3


def test_many_shards_use_several_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_mod, "MAX_OPEN_SHARDS", 2)
    records = random_records(40, seed=4)
    src = make_pool(tmp_path / "pool", records)
    assert run_shard(src, tmp_path / "few", 5) == 0
    table = pq.read_table(tmp_path / "few" / "shards.parquet").to_pydict()
    contents = shard_contents(tmp_path / "few", 5)
    for i, shard in enumerate(contents):
        assert [r for r, _ in shard] == [
            r for r, s in zip(table["id"], table["shard"], strict=True) if s == i
        ]


def test_empty_pool_is_an_error(tmp_path, capsys):
    """Sharding 0 sequences used to succeed, and the run failed later at `reference` (issue 12.8)."""
    src = make_pool(tmp_path / "pool", [])
    assert run_shard(src, tmp_path / "out", 2) == 2
    assert "the pool is empty (0 sequences), nothing to shard" in capsys.readouterr().err
    assert not (tmp_path / "out" / "shard_report.json").exists()


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", ["0", "-1", "100001"])
def test_bad_shard_count_is_a_one_line_error(tmp_path, capsys, n):
    src = make_pool(tmp_path / "pool", random_records(3))
    assert main(["shard", "--n-shards", n, "--out", str(tmp_path / "out"), str(src)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bioprune shard: error: --n-shards") and "Traceback" not in "".join(err)
    assert not (tmp_path / "out" / "shard_report.json").exists()


def test_missing_pool_is_a_one_line_error(tmp_path, capsys):
    assert run_shard(tmp_path / "nothing", tmp_path / "out", 2) == 2
    err = capsys.readouterr().err
    assert "not a bioprune pool folder" in err and str(tmp_path / "nothing") in err


def test_fasta_and_table_out_of_step_fail_and_leave_nothing(tmp_path, capsys):
    records = random_records(10)
    src = make_pool(tmp_path / "pool", records)
    swapped = records[:4] + [records[5], records[4]] + records[6:]
    with FastaWriter(src / "sequences.fasta.gz") as fasta:
        for rid, seq in swapped:
            fasta.write(rid, seq.encode())
    out = tmp_path / "out"
    assert run_shard(src, out, 2) == 2
    err = capsys.readouterr().err
    assert "sequences.fasta.gz:9" in err and "'s5' is row 4" in err
    assert list(out.iterdir()) == []  # staged outputs removed


def test_iter_pool_counts_must_match(tmp_path):
    src = make_pool(tmp_path / "pool", random_records(5))
    with FastaWriter(src / "sequences.fasta.gz") as fasta:
        for rid, seq in random_records(6):
            fasta.write(rid, seq.encode())
    with pytest.raises(InputError, match="more records than the 5 rows"):
        list(iter_pool(src))


def test_write_pool_filters_and_adds_columns(tmp_path):
    records = random_records(7)
    src = make_pool(tmp_path / "pool", records)
    stage = tmp_path / "stage"
    stage.mkdir()
    keep = np.array([True, False, True, True, False, False, True])
    n = write_pool(
        src,
        stage,
        keep,
        new_columns=[pa.field("row", pa.int64())],
        columns_for=lambda s, e: [pa.array(np.arange(s, e))],
    )
    assert n == 4
    table = pq.read_table(stage / "sequences.parquet").to_pydict()
    assert table["row"] == [0, 2, 3, 6]
    assert [r.id for r in read_fasta(stage / "sequences.fasta.gz")] == ["s0", "s2", "s3", "s6"]
    assert table["id"] == ["s0", "s2", "s3", "s6"]
