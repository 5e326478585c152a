"""``bioprune ingest``: normalisation, filters with counted reasons, fatal inputs, duplicate ids, outputs."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import xxhash

from bioprune import cli
from bioprune.errors import InputError
from bioprune.fasta import read_fasta
from bioprune.pool.ingest import REASONS, ingest
from bioprune.pool.io import POOL_SCHEMA


def _run(argv, capsys):
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def _outputs(out):
    recs = [(r.id, r.description, r.seq) for r in read_fasta(out / "sequences.fasta.gz")]
    table = pq.read_table(out / "sequences.parquet")
    report = json.loads((out / "ingest_report.json").read_text())
    return recs, table, report


def _assert_nothing_written(out):
    """No output and no staging folder: a failed step leaves the folder as it was (absent or empty)."""
    assert not out.exists() or list(out.iterdir()) == []


# -- normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["in.fa", "in.fa.gz"])
def test_rna_normalisation(tmp_path, write_fasta, name):
    text = (
        ">lower a lower-case record\r\n"
        "acgt\r\n"
        "uuNn\r\n"
        ">gaps\n"
        "A-C.G~U_*T\n"
        ">spaced   desc after spaces  \n"
        "AC GU\tRY\n"
        "KMSWBDHVN\n"
    )
    out = tmp_path / "out"
    report = ingest([write_fasta(name, text)], out, "rna")
    recs, table, _ = _outputs(out)
    assert recs == [
        ("lower", "a lower-case record", b"ACGUUUNN"),  # upper-cased, T -> U, CRLF and line breaks gone
        ("gaps", "", b"ACGUU"),  # alignment gaps removed
        ("spaced", "desc after spaces", b"ACGURYKMSWBDHVN"),  # whitespace removed, IUPAC kept
    ]
    assert table.column("length").to_pylist() == [8, 5, 15]
    assert report["kept_residues"] == 28
    # the five gap characters of one record are counted, not silently dropped
    gaps = report["alignment_gaps_removed"]
    assert (gaps["characters"], gaps["records"]) == (5, 1)


def test_utf8_byte_order_mark_is_ignored(tmp_path, write_fasta):
    ingest([write_fasta("bom.fa", b"\xef\xbb\xbf>a x\nACGU\n")], tmp_path / "out", "rna")
    assert _outputs(tmp_path / "out")[0] == [("a", "x", b"ACGU")]


def test_protein_alphabet_keeps_t_and_rare_codes(tmp_path, write_fasta):
    path = write_fasta("p.fa", ">p1\nmktayiakqr\n>p2\nXBUZO-LAG*\n")
    ingest([path], tmp_path / "out", "protein")
    recs, _, _ = _outputs(tmp_path / "out")
    assert [r[2] for r in recs] == [b"MKTAYIAKQR", b"XBUZOLAG"]


@pytest.mark.parametrize(
    ("alphabet", "text", "fragment"),
    [
        ("protein", ">n1\nACGUACGGAUUAGC\n>n2\nTTGACNNACGT\n", "100% of its residues are A/C/G/T/U/N"),
        ("rna", ">p1\nMKTAYIAKQRQISFVKSHFSRQ\n>p2\nMEEPQSDPSV\n", "these do not look like RNA/DNA"),
    ],
)
def test_the_wrong_alphabet_is_refused(tmp_path, write_fasta, capsys, alphabet, text, fragment):
    """alphabet: protein on RNA input was accepted silently and ESM-C trained on nucleotides (issue 12.5);
    RNA mode on protein dropped most records as invalid and went on with the rest."""
    path = write_fasta("in.fa", text)
    out = tmp_path / "out"
    rc, err = _run(["ingest", "--alphabet", alphabet, "--out", str(out), str(path)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"bioprune ingest: error: {path}: ") and fragment in lines[-1]
    _assert_nothing_written(out)


def test_composition_is_reported(tmp_path, write_fasta):
    report = ingest([write_fasta("p.fa", ">p1\nMKTAYIAKQR\n")], tmp_path / "out", "protein")
    assert report["inputs"][0]["nucleotide_fraction"] == 0.3  # A, T, A, A of 10 (K, Q, R... are not)


def test_a_blank_after_the_marker_is_reported(tmp_path, write_fasta):
    """'> desc' silently took 'desc' as the id (issue 12.12): the report now says so."""
    path = write_fasta("b.fa", ">a\nACGU\n> tRNA-Ala from yeast\nGGCU\n")
    report = ingest([path], tmp_path / "out", "rna")
    assert [r[0] for r in _outputs(tmp_path / "out")[0]] == ["a", "tRNA-Ala"]
    assert report["ids_after_a_blank"]["records"] == 1
    assert report["ids_after_a_blank"]["examples"] == [f"{path}:3 id 'tRNA-Ala'"]
    clean = ingest([write_fasta("c.fa", ">a\nACGU\n")], tmp_path / "out2", "rna")
    assert clean["ids_after_a_blank"]["records"] == 0


def test_fast_and_general_parsers_agree(tmp_path, write_fasta, small_blocks):
    """The same records written plainly (fast path) or wrapped with odd spacing (general path)."""
    plain = "".join(f">s{i} desc {i}\n{'ACGU' * (i % 5 + 1)}\n" for i in range(40))
    odd = "".join(
        f">s{i}\tdesc {i}  \r\n" + "\n".join("acgu" for _ in range(i % 5 + 1)) + "\r\n" for i in range(40)
    )
    small_blocks(50)
    ingest([write_fasta("plain.fa", plain)], tmp_path / "a", "rna")
    ingest([write_fasta("odd.fa", odd)], tmp_path / "b", "rna")
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert a[0] == b[0]
    assert len(a[0]) == 40
    assert a[1].drop(["source"]).equals(b[1].drop(["source"]))


@pytest.mark.parametrize("alphabet", ["rna", "protein"])
def test_plain_nucleotide_blocks_agree_with_normalised_ones(tmp_path, write_fasta, small_blocks, alphabet):
    """A block of only ACGUN (rna; ACGTN protein) skips normalising and counting letters: same outputs
    and counts as the same records spelled so that they need normalising, with drops among them."""
    letters = "ACGUN" if alphabet == "rna" else "ACGTN"
    seqs = ["".join(letters[(i * 7 + k) % 5] for k in range(i % 9)) for i in range(60)]  # some empty
    seqs[5] = seqs[5][:1] + "X" + seqs[5][1:] if alphabet == "rna" else seqs[5]  # invalid for rna
    small_blocks(64)
    plain = "".join(f">s{i} d\n{s}\n" for i, s in enumerate(seqs))
    lower = "".join(f">s{i} d\n{s.lower()}\n" for i, s in enumerate(seqs))
    reports = []
    for name, text in (("plain", plain), ("lower", lower)):
        try:
            reports.append(ingest([write_fasta(f"{name}.fa", text)], tmp_path / name, alphabet))
        except InputError as exc:  # protein: a file of nucleotides is refused, either way
            reports.append(str(exc).split(": ", 1)[1])
    if alphabet == "protein":
        assert reports[0] == reports[1] and "look like nucleotides" in reports[0]
        return
    a, b = _outputs(tmp_path / "plain"), _outputs(tmp_path / "lower")
    assert a[0] == b[0]
    assert a[1].drop(["source"]).equals(b[1].drop(["source"]))
    for key in ("input_records", "kept", "dropped", "invalid_characters_found", "kept_residues"):
        assert a[2][key] == b[2][key]
    assert a[2]["inputs"][0]["nucleotide_fraction"] == b[2]["inputs"][0]["nucleotide_fraction"]
    assert a[2]["dropped"]["invalid_characters"] == 1 and a[2]["dropped"]["empty"] > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">a  two  spaces\nACGU\n>b\nGG\n", [("a", "two  spaces"), ("b", "")]),
        (">a trailing \nACGU\n>b x \nGG\n", [("a", "trailing"), ("b", "x")]),
        (">a\nACGU\n>b x>y > z\nGG\n", [("a", ""), ("b", "x>y > z")]),
        (">a\nAC GU\n>b x\nG-G\n", [("a", ""), ("b", "x")]),
    ],
)
def test_header_layouts_the_fast_path_hands_on(tmp_path, write_fasta, text, expected):
    """Headers the block parser (numpy) must not cut itself give what the general parser gives."""
    ingest([write_fasta("h.fa", text)], tmp_path / "out", "rna")
    recs, table, report = _outputs(tmp_path / "out")
    assert [(r[0], r[1]) for r in recs] == expected
    assert table.column("description").to_pylist() == [d for _, d in expected]
    assert [r[2] for r in recs] == [b"ACGU", b"GG"]
    assert report["alignment_gaps_removed"]["characters"] == text.count("-")


def test_table_matches_fasta(tmp_path, write_fasta):
    paths = [write_fasta("one.fa", ">a x y\nACGU\n>b\nGGG\n"), write_fasta("two.fa.gz", ">c z\nUUUU\n")]
    ingest(paths, tmp_path / "out", "rna")
    recs, table, report = _outputs(tmp_path / "out")
    assert table.schema.equals(POOL_SCHEMA)
    assert table.column("id").to_pylist() == [r[0] for r in recs] == ["a", "b", "c"]
    assert table.column("fasta_bytes").to_pylist() == [
        len(">a x y\nACGU\n"),
        len(">b\nGGG\n"),
        len(">c z\nUUUU\n"),
    ]
    assert table.column("description").to_pylist() == ["x y", "", "z"]
    assert table.column("source").to_pylist() == [str(paths[0]), str(paths[0]), str(paths[1])]
    assert table.column("hash").to_pylist() == [xxhash.xxh3_128_hexdigest(r[2]) for r in recs]
    assert [f["records"] for f in report["inputs"]] == [2, 1]
    settings = {"alphabet": "rna", "min_length": 1, "max_length": 0, "strict": False, "dedup": False}
    assert report["settings"] == settings


@pytest.mark.parametrize(
    "text",
    [
        ">a  two  spaces\nac-gu\n>b\tx\nGG.G\n>c\n" + "ACGU" * 300 + "\n",  # the general path: normalised
        ">a d\nACGU\n>x\nACGXU\n>b\nAC\nGU\n>c e f\nUUUU\n",  # a record dropped, one wrapped
    ],
)
def test_fasta_bytes_are_the_records_as_written(tmp_path, write_fasta, text):
    """fasta_bytes cuts the written FASTA into its records, whatever path ingest took."""
    ingest([write_fasta("in.fa", text)], tmp_path / "out", "rna")
    data = gzip.decompress((tmp_path / "out" / "sequences.fasta.gz").read_bytes())
    sizes = pq.read_table(tmp_path / "out" / "sequences.parquet").column("fasta_bytes").to_pylist()
    cuts = [0]
    for size in sizes:
        cuts.append(cuts[-1] + size)
    records = [data[a:b] for a, b in itertools.pairwise(cuts)]
    assert cuts[-1] == len(data)
    assert all(r.startswith(b">") and r.count(b"\n") == 2 and r.endswith(b"\n") for r in records)


# -- filters -----------------------------------------------------------------------------------------


FILTER_TEXT = (
    ">ok1\nACGUACGU\n"
    ">empty\n\n"
    ">gaponly\n---..\n"
    ">short\nACG\n"
    ">long\nACGUACGUACGUA\n"
    ">bad1\nACGXUJ\n"
    ">bad2 X but also short\nXX\n"
    ">ok2\nacgu-acgu\n"
)


@pytest.mark.parametrize("name", ["f.fa", "f.fa.gz"])
def test_dropped_records_are_counted_by_reason(tmp_path, write_fasta, small_blocks, name):
    small_blocks(16)  # reasons must be counted right across block boundaries too
    path = write_fasta(name, FILTER_TEXT)
    report = ingest([path], tmp_path / "out", "rna", min_length=4, max_length=12)
    recs, table, saved = _outputs(tmp_path / "out")
    assert [r[0] for r in recs] == ["ok1", "ok2"]
    assert table.num_rows == 2
    assert saved == json.loads(json.dumps(report))
    assert report["input_records"] == 8
    assert report["kept"] == 2
    # Every reason is present; invalid characters win over length.
    assert report["dropped"] == {"empty": 2, "invalid_characters": 2, "too_short": 1, "too_long": 1}
    assert set(report["dropped"]) == set(REASONS)
    assert report["invalid_characters_found"] == {"X": 3, "J": 1}
    assert report["inputs"][0]["dropped"] == report["dropped"]
    assert report["dropped_examples"]["too_long"] == [f"{path}:9 long (13 residues > --max-length 12)"]
    assert report["dropped_examples"]["empty"][1].startswith(f"{path}:5 gaponly")
    # gaps of dropped records count too (gaponly's five, ok2's one)
    assert report["alignment_gaps_removed"]["characters"] == 6
    assert report["alignment_gaps_removed"]["records"] == 2


def test_zero_counts_present_when_nothing_dropped(tmp_path, write_fasta):
    report = ingest([write_fasta("ok.fa", ">a\nACGU\n")], tmp_path / "out", "rna")
    assert report["dropped"] == dict.fromkeys(REASONS, 0)
    assert report["kept"] == report["input_records"] == 1


@pytest.mark.parametrize(
    ("record", "reason", "line"),
    [
        (">e\n\n", "empty", 3),
        (">x\nACXU\n", "invalid_characters", 3),
        (">s\nAC\n", "too_short", 3),
        (">l\nACGUACGUACGUACGU\n", "too_long", 3),
    ],
)
def test_strict_turns_a_drop_into_an_error(tmp_path, write_fasta, capsys, record, reason, line):
    path = write_fasta("s.fa", ">fine\nACGUA\n" + record)
    out = tmp_path / "out"
    argv = ["ingest", "--alphabet", "rna", "--out", str(out), "--min-length", "3", "--max-length", "10"]
    rc, err = _run([*argv, "--strict", str(path)], capsys)
    assert rc == 2
    assert err.count("\n") == 1
    record_id = record[1]
    assert f"{path}:{line} (record '{record_id}')" in err and reason in err and "--strict" in err
    _assert_nothing_written(out)
    # Without --strict the same file is fine.
    assert _run([*argv, str(path)], capsys)[0] == 0


def test_everything_dropped_is_an_error(tmp_path, write_fasta):
    with pytest.raises(Exception, match="no record left after filtering"):
        ingest([write_fasta("e.fa", ">a\n\n>b\nNNX\n")], tmp_path / "out", "rna")
    _assert_nothing_written(tmp_path / "out")


# -- duplicate ids -----------------------------------------------------------------------------------


def test_duplicate_id_within_a_file(tmp_path, write_fasta, capsys, small_blocks):
    small_blocks(8)
    path = write_fasta("d.fa", ">a\nACGU\n>b\nGG\n>c\nUU\n>b other\nGGA\n")
    out = tmp_path / "out"
    rc, err = _run(["ingest", "--alphabet", "rna", "--out", str(out), str(path)], capsys)
    assert rc == 2
    assert f"{path}:7 (record 'b'): duplicate sequence id, first seen at {path}:3" in err
    _assert_nothing_written(out)


def test_duplicate_id_across_files_even_when_dropped(tmp_path, write_fasta, capsys):
    one = write_fasta("one.fa", ">a\nACGU\n>x\nGG\n")
    two = write_fasta("two.fa.gz", ">y\nAC\n>x\n\n")  # the repeat is an empty record: still an error
    rc, err = _run(["ingest", "--alphabet", "rna", "--out", str(tmp_path / "o"), str(one), str(two)], capsys)
    assert rc == 2
    assert f"{two}:3 (record 'x')" in err and f"first seen at {one}:3" in err


def test_id_hash_collision_is_not_a_duplicate(tmp_path, write_fasta, monkeypatch):
    """Only 64-bit hashes of ids are kept; equal hashes of different ids must not raise."""
    monkeypatch.setattr("bioprune.pool.ingest.xxhash.xxh3_64_intdigest", lambda _b: 7)
    report = ingest([write_fasta("c.fa", ">a\nACGU\n>b\nACGU\n>c\nGG\n")], tmp_path / "out", "rna")
    assert report["kept"] == 3


def test_same_file_twice(tmp_path, write_fasta):
    path = write_fasta("a.fa", ">a\nACGU\n")
    with pytest.raises(Exception, match="given twice"):
        ingest([path, tmp_path / "." / "a.fa"], tmp_path / "out", "rna")


# -- fatal inputs ------------------------------------------------------------------------------------


def _truncated_gzip(tmp_path):
    path = tmp_path / "trunc.fa.gz"
    data = gzip.compress(b"".join(b">r%d\nACGUACGUAGGCU\n" % i for i in range(3000)))
    path.write_bytes(data[: len(data) // 2])
    return path


FATAL = {
    "missing": (lambda tmp, w: tmp / "missing.fa", "no such file"),
    "not_fasta": (lambda tmp, w: w("text.fa", "just some text\n>a\nACGU\n"), ":1: text before the first '>'"),
    "binary": (lambda tmp, w: w("bin.fa", b"\x00\x01\x02\x03"), ":1: binary data"),
    "no_records": (lambda tmp, w: w("empty.fa.gz", ""), "no FASTA records found"),
    "truncated_gzip": (lambda tmp, w: _truncated_gzip(tmp), "truncated or corrupt gzip"),
    "no_id": (lambda tmp, w: w("noid.fa", ">a\nAC\n>   \nGG\n"), ":3: header has no sequence id"),
    "bad_utf8": (lambda tmp, w: w("utf.fa", b">a\nAC\n>b \xff\nGG\n"), ":3: header is not valid UTF-8"),
    "cr_only": (lambda tmp, w: w("mac.fa", ">a\rACGU\r>b\rGG\r"), ":1: lines end in CR alone"),
}


@pytest.mark.parametrize("case", sorted(FATAL))
def test_fatal_input_one_line_nothing_left(tmp_path, write_fasta, capsys, case):
    make, message = FATAL[case]
    good = write_fasta("good.fa", ">g\nACGU\n")
    bad = make(tmp_path, write_fasta)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("from before")  # an earlier file in the folder must survive
    rc, err = _run(["ingest", "--alphabet", "rna", "--out", str(out), str(good), str(bad)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bioprune ingest: error: ")
    assert str(bad) in lines[0] and message in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_settings(tmp_path, write_fasta, capsys):
    path = write_fasta("a.fa", ">a\nACGU\n")
    argv = ["ingest", "--alphabet", "rna", "--out", str(tmp_path / "o"), str(path)]
    rc, err = _run([*argv, "--min-length", "10", "--max-length", "5"], capsys)
    assert rc == 2 and "--max-length 5 is below --min-length 10" in err
    rc, err = _run([*argv, "--min-length", "-1"], capsys)
    assert rc == 2 and "--min-length must be >= 0" in err


def test_cli_subprocess_success_and_failure(tmp_path, write_fasta):
    good = write_fasta("g.fa.gz", ">a d\nacgt\n>b\nGGNN\n")
    out = tmp_path / "out"
    base = [sys.executable, "-m", "bioprune", "ingest", "--alphabet", "rna", "--out", str(out)]
    proc = subprocess.run([*base, str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "ingest_report.json").read_text())["kept"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "ingest_report.json",
        "sequences.fasta.gz",
        "sequences.parquet",
    ]
    bad = write_fasta("b.fa", ">a\nAC\n>a\nGG\n")
    base[-1] = str(tmp_path / "out2")
    proc = subprocess.run([*base, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "duplicate sequence id" in errors[0]
    assert "Traceback" not in proc.stderr
    _assert_nothing_written(tmp_path / "out2")


# -- real data ---------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_rfam_seeds(shared_data, tmp_path):
    path = shared_data / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
    report = ingest([path], tmp_path / "out", "rna", min_length=10)
    # Independent count of the records and residues of the file.
    lines = gzip.decompress(path.read_bytes()).splitlines()
    seqs = [ln for ln in lines if not ln.startswith(b">")]
    assert report["input_records"] == sum(ln.startswith(b">") for ln in lines) == 72262  # PROVENANCE.md
    assert report["kept"] == 72262
    assert report["kept_residues"] == sum(map(len, seqs)) == 9847370
    table = pq.read_table(tmp_path / "out" / "sequences.parquet", columns=["hash"])
    assert table.column("hash").to_pylist()[:3] == [xxhash.xxh3_128_hexdigest(s) for s in seqs[:3]]


@pytest.mark.realdata
def test_uniprot_example_as_protein(shared_data, tmp_path):
    path = shared_data / "uniprot_mmseqs2_example" / "DB.fasta.gz"
    report = ingest([path], tmp_path / "out", "protein")
    n = sum(ln.startswith(b">") for ln in gzip.decompress(path.read_bytes()).splitlines())
    assert report["input_records"] == n
    assert report["kept"] + sum(report["dropped"].values()) == n
