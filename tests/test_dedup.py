"""``bioprune dedup``: exact duplicates by content hash, first occurrence kept, mapping written."""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune import cli
from bioprune.errors import BiopruneError, InputError
from bioprune.fasta import read_fasta
from bioprune.pool.dedup import dedup, find_duplicates
from bioprune.pool.ingest import ingest


def _pool(tmp_path, write_fasta, text, name="in.fa"):
    pool = tmp_path / "ingest"
    ingest([write_fasta(name, text)], pool, "rna")
    return pool


def _read_tsv(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "duplicate_id\tkept_id"
    return [tuple(ln.split("\t")) for ln in lines[1:]]


def _oracle(records):
    """Kept ids in order and (duplicate, kept) pairs, computed the obvious way (a dict of sequences)."""
    first: dict[bytes, str] = {}
    kept, pairs = [], []
    for rec_id, seq in records:
        if seq in first:
            pairs.append((rec_id, first[seq]))
        else:
            first[seq] = rec_id
            kept.append(rec_id)
    return kept, pairs


@pytest.mark.parametrize(("block", "row_group"), [(None, None), (23, 7)])
def test_mapping_matches_a_dict_oracle(tmp_path, write_fasta, small_blocks, monkeypatch, block, row_group):
    rng = random.Random(5)
    alphabet = "ACGU"
    distinct = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(60)]
    records = [(f"r{i}", rng.choice(distinct)) for i in range(400)]
    if block:
        small_blocks(block)  # ingest and dedup both stream in pieces smaller than a record
        # and a table of many row groups
        monkeypatch.setattr("bioprune.pool.ingest.ROW_GROUP_ROWS", row_group)
    pool = _pool(tmp_path, write_fasta, "".join(f">{i} d{i}\n{s}\n" for i, s in records))
    if block:
        assert pq.ParquetFile(pool / "sequences.parquet").num_row_groups > 20
    report = dedup(pool, tmp_path / "dedup")
    kept, pairs = _oracle([(i, s.encode()) for i, s in records])

    out = tmp_path / "dedup"
    recs = list(read_fasta(out / "sequences.fasta.gz"))
    seq_of = dict(records)
    assert [r.id for r in recs] == kept
    assert all(r.seq.decode() == seq_of[r.id] for r in recs)
    assert [r.description for r in recs] == [f"d{i}" for i in kept]
    table = pq.read_table(out / "sequences.parquet")
    assert table.column("id").to_pylist() == kept
    assert _read_tsv(out / "duplicates.tsv") == pairs
    assert report == json.loads((out / "dedup_report.json").read_text())
    assert report["input_records"] == 400
    assert report["kept"] == len(kept)
    assert report["duplicates"] == len(pairs) == 400 - len(kept)
    assert report["duplicate_groups"] == len({k for _, k in pairs})
    sizes = {k: 1 + sum(1 for _, kk in pairs if kk == k) for _, k in pairs}
    assert report["largest_group"]["copies"] == max(sizes.values())
    assert sizes[report["largest_group"]["kept_id"]] == max(sizes.values())


def test_duplicates_after_normalisation(tmp_path, write_fasta):
    """Case, gaps, T/U and line wrapping do not hide a duplicate: ingest normalises before hashing."""
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nac-gt\n>c\nAC\nGT\n>d\nACGA\n")
    report = dedup(pool, tmp_path / "d")
    assert report["duplicates"] == 2
    assert _read_tsv(tmp_path / "d" / "duplicates.tsv") == [("b", "a"), ("c", "a")]


def test_no_duplicates(tmp_path, write_fasta):
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nGG\n")
    report = dedup(pool, tmp_path / "d")
    assert (report["kept"], report["duplicates"], report["largest_group"]) == (2, 0, None)
    assert _read_tsv(tmp_path / "d" / "duplicates.tsv") == []
    ingest([write_fasta("in.fa", ">a\nACGU\n>b\nGG\n")], tmp_path / "one", "rna", dedup=True)
    report = json.loads((tmp_path / "one" / "dedup_report.json").read_text())
    assert (report["kept"], report["duplicates"], report["largest_group"]) == (2, 0, None)
    assert _read_tsv(tmp_path / "one" / "duplicates.tsv") == []
    # Unchanged pool: same records out as in.
    src = [(r.id, r.seq) for r in read_fasta(pool / "sequences.fasta.gz")]
    assert [(r.id, r.seq) for r in read_fasta(tmp_path / "d" / "sequences.fasta.gz")] == src


def test_find_duplicates_compares_all_128_bits():
    hashes = np.array([[1, 5], [1, 6], [2, 5], [1, 5], [1, 6], [1, 5]], dtype=np.uint64)
    dup_rows, kept_rows = find_duplicates(hashes)
    assert dup_rows.tolist() == [3, 4, 5]
    assert kept_rows.tolist() == [0, 1, 0]
    empty = find_duplicates(np.empty((0, 2), np.uint64))
    assert [len(a) for a in empty] == [0, 0]


def test_find_duplicates_matches_a_dict_oracle():
    """First occurrence = smallest row, whatever order the (unstable) sort leaves a group in."""
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 4, (5000, 2)).astype(np.uint64)  # few distinct values: big groups
    hashes[::7, 0] = rng.integers(0, 2**63, len(hashes[::7, 0]), dtype=np.uint64)  # and singletons
    first: dict[tuple[int, int], int] = {}
    want = []
    for row, h in enumerate(map(tuple, hashes.tolist())):
        if h in first:
            want.append((row, first[h]))
        else:
            first[h] = row
    dup_rows, kept_rows = find_duplicates(hashes)
    assert list(zip(dup_rows.tolist(), kept_rows.tolist(), strict=True)) == want


@pytest.mark.parametrize("block", [None, 23])
def test_ingest_dedup_is_ingest_then_dedup(tmp_path, write_fasta, small_blocks, monkeypatch, block):
    """One pass (ingest --dedup) writes what the two steps write: the same records, table, duplicates.tsv
    and reports, with duplicates within a block, across blocks and files, hidden by normalisation, and
    among records the filters drop."""
    rng = random.Random(11)
    distinct = ["".join(rng.choice("ACGU") for _ in range(rng.randint(3, 14))) for _ in range(40)]
    texts = []
    for f in range(2):
        recs = [(f"f{f}r{i}", rng.choice(distinct)) for i in range(150)]
        recs += [(f"f{f}low{i}", s.lower().replace("U", "T")) for i, s in enumerate(distinct[:5])]
        recs += [(f"f{f}bad{i}", s + "X") for i, s in enumerate(distinct[:3])]  # invalid: dropped
        recs += [(f"f{f}short{i}", "AC") for i in range(3)]  # too short: dropped
        rng.shuffle(recs)
        texts.append("".join(f">{i} d {i}\n{s}\n" for i, s in recs))
    paths = [write_fasta(f"in{f}.fa", t) for f, t in enumerate(texts)]
    if block:
        small_blocks(block)
        monkeypatch.setattr("bioprune.pool.ingest.ROW_GROUP_ROWS", 9)
    ingest(paths, tmp_path / "plain", "rna", min_length=3)
    two_step = tmp_path / "two"
    dedup(tmp_path / "plain", two_step)
    one = tmp_path / "one"
    ingest(paths, one, "rna", min_length=3, dedup=True)

    def records(folder):
        return [(r.id, r.description, r.seq) for r in read_fasta(folder / "sequences.fasta.gz")]

    assert records(one) == records(two_step)
    assert pq.read_table(one / "sequences.parquet").equals(pq.read_table(two_step / "sequences.parquet"))
    assert (one / "duplicates.tsv").read_bytes() == (two_step / "duplicates.tsv").read_bytes()
    pairs = _read_tsv(one / "duplicates.tsv")
    assert any(d.startswith("f1") and k.startswith("f0") for d, k in pairs)  # across files
    assert any("low" in d for d, _ in pairs)  # equal once normalised
    reports = [json.loads((d / "dedup_report.json").read_text()) for d in (one, two_step)]
    assert reports[0]["input"] == f"{paths[0]}, {paths[1]}"
    assert reports[0] | {"input": None} == reports[1] | {"input": None}
    assert reports[0]["duplicates"] == len(pairs) > 0
    ingested = [json.loads((d / "ingest_report.json").read_text()) for d in (one, tmp_path / "plain")]
    assert ingested[0]["outputs"] == [*ingested[1]["outputs"], "duplicates.tsv", "dedup_report.json"]
    assert ingested[0]["settings"] == ingested[1]["settings"] | {"dedup": True}
    apart = {"outputs": None, "settings": None}  # (just compared)
    assert ingested[0] | apart == ingested[1] | apart
    assert ingested[0]["dropped"]["invalid_characters"] == ingested[0]["dropped"]["too_short"] == 6


def test_extra_table_columns_are_kept(tmp_path, write_fasta):
    """Later steps may add columns; dedup filters rows and keeps every column."""
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nACGU\n>c\nGG\n")
    table = pq.read_table(pool / "sequences.parquet")
    pq.write_table(table.append_column("score", pa.array([1.0, 2.0, 3.0])), pool / "sequences.parquet")
    dedup(pool, tmp_path / "d")
    out = pq.read_table(tmp_path / "d" / "sequences.parquet")
    assert out.column_names == [*table.column_names, "score"]
    assert out.column("score").to_pylist() == [1.0, 3.0]


def test_cli_and_one_line_errors(tmp_path, write_fasta, capsys):
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nACGU\n")
    assert cli.main(["dedup", "--out", str(tmp_path / "d"), str(pool)]) == 0
    assert json.loads((tmp_path / "d" / "dedup_report.json").read_text())["duplicates"] == 1
    capsys.readouterr()

    rc = cli.main(["dedup", "--out", str(tmp_path / "x"), str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not a bioprune pool folder" in err
    rc = cli.main(["dedup", "--out", str(pool), str(pool)])
    assert rc == 2 and "is the input folder" in capsys.readouterr().err


def _damage(pool, how):
    fasta = pool / "sequences.fasta.gz"
    if how == "fasta_short":
        lines = gzip.decompress(fasta.read_bytes()).splitlines(keepends=True)
        fasta.write_bytes(gzip.compress(b"".join(lines[:-2])))
    elif how == "fasta_long":
        fasta.write_bytes(gzip.compress(gzip.decompress(fasta.read_bytes()) + b">d\nAA\n"))
    elif how == "fasta_reordered":
        lines = gzip.decompress(fasta.read_bytes()).splitlines(keepends=True)
        fasta.write_bytes(gzip.compress(b"".join(lines[2:4] + lines[:2] + lines[4:])))
    elif how == "fasta_wrapped":
        fasta.write_bytes(gzip.compress(b">a\nAC\nGU\n>b\nACGU\n>c\nGG\n"))
    elif how == "bad_hash":
        table = pq.read_table(pool / "sequences.parquet")
        hashes = table.column("hash").to_pylist()
        hashes[1] = "not-a-hash"
        pq.write_table(table.set_column(4, "hash", pa.array(hashes)), pool / "sequences.parquet")
    elif how == "no_hash":
        pq.write_table(pq.read_table(pool / "sequences.parquet").drop(["hash"]), pool / "sequences.parquet")
    elif how == "table_missing":
        (pool / "sequences.parquet").unlink()
    elif how == "table_garbage":
        (pool / "sequences.parquet").write_bytes(b"PAR1 not really parquet")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("fasta_short", "records but the table has 3 rows"),
        ("fasta_long", "has more records than the 3 rows of the table"),
        ("fasta_reordered", "record 'b' is row 0 but the pool table has 'a' there"),
        ("fasta_wrapped", "not an unwrapped pool FASTA"),
        ("bad_hash", "row 1: hash is not 32 hex characters"),
        ("no_hash", "missing column(s) ['hash']"),
        ("table_missing", "sequences.parquet is missing"),
        ("table_garbage", "not a readable Parquet table"),
    ],
)
def test_damaged_pool_is_an_error_and_leaves_nothing(tmp_path, write_fasta, how, message):
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nACGU\n>c\nGG\n")
    _damage(pool, how)
    with pytest.raises(BiopruneError) as err:
        dedup(pool, tmp_path / "d")
    assert message in str(err.value)
    assert isinstance(err.value, InputError)
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize(
    ("fasta", "message"),
    [
        # Accepted, as the line-by-line check accepts them: other blanks after the id, a '>' in a
        # description (more '>' than headers), an id that ends its line.
        (b">a\tx\nACGU\n>b x > y\nACGU\n>c\nGG\n", None),
        # Refused: an id that only starts like the table's, or is shorter; a '>' in a sequence line.
        (b">a\nACGU\n>bb x\nACGU\n>c\nGG\n", "record 'bb' is row 1 but the pool table has 'b' there"),
        (b">a\nACGU\n>b\nACGU\n>\nGG\n", "record '' is row 2 but the pool table has 'c' there"),
        (b">a\nACGU\n>b\nAC>GU\n>c\nGG\n", "not an unwrapped pool FASTA"),
    ],
)
def test_pool_check_by_block_agrees_with_the_line_by_line_one(tmp_path, write_fasta, fasta, message):
    """Lines and ids of a pool FASTA are checked by numpy a block at a time; the edge cases still give
    the answer (and message) of checking header by header."""
    pool = _pool(tmp_path, write_fasta, ">a\nACGU\n>b\nACGU\n>c\nGG\n")
    (pool / "sequences.fasta.gz").write_bytes(gzip.compress(fasta))
    if message is None:
        assert dedup(pool, tmp_path / "d")["kept"] == 2
        assert [r.id for r in read_fasta(tmp_path / "d" / "sequences.fasta.gz")] == ["a", "c"]
    else:
        with pytest.raises(InputError, match=re.escape(message)):
            dedup(pool, tmp_path / "d")


@pytest.mark.realdata
def test_rfam_seeds_duplicates(shared_data, tmp_path):
    path = shared_data / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
    ingest([path], tmp_path / "ingest", "rna")
    report = dedup(tmp_path / "ingest", tmp_path / "dedup")
    ingest([path], tmp_path / "one_pass", "rna", dedup=True)
    assert (tmp_path / "one_pass" / "duplicates.tsv").read_bytes() == (
        tmp_path / "dedup" / "duplicates.tsv"
    ).read_bytes()
    # Oracle: distinct sequence lines of the (already normalised, unwrapped) file.
    lines = gzip.decompress(path.read_bytes()).splitlines()
    records = [(h[1:].split()[0].decode(), s) for h, s in zip(lines[0::2], lines[1::2], strict=True)]
    kept, pairs = _oracle(records)
    assert report["input_records"] == len(records) == 72262
    assert report["kept"] == len(kept)
    assert report["duplicates"] == len(pairs)
    assert _read_tsv(tmp_path / "dedup" / "duplicates.tsv") == pairs


def test_ingest_and_dedup_do_not_import_pandas(tmp_path, write_fasta):
    """pa.array()/pa.scalar() import pandas (~0.5 s of start-up per step); the pool steps avoid them."""
    path = write_fasta("p.fa", ">a\nACGU\n>b\nACGU\n>c\nGX\n")
    code = (
        "import sys; from bioprune import cli; "
        f"cli.main(['ingest', '--alphabet', 'rna', '--out', {str(tmp_path / 'i')!r}, {str(path)!r}]); "
        f"cli.main(['dedup', '--out', {str(tmp_path / 'd')!r}, {str(tmp_path / 'i')!r}]); "
        f"cli.main(['ingest', '--dedup', '--alphabet', 'rna', '--out', {str(tmp_path / 'o')!r}, "
        f"{str(path)!r}]); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for folder in ("d", "o"):
        assert json.loads((tmp_path / folder / "dedup_report.json").read_text())["duplicates"] == 1
