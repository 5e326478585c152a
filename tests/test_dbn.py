"""Dot-bracket reader: records, formats it tolerates, and errors that name file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bioprune.dbn import is_dbn_path, pairs, read_dbn
from bioprune.errors import InputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_reads_records_plain_and_gzip(tmp_path):
    text = ">r1 some description\nGGGAAACCC\n(((...)))\n>r2\nacguAC\n([)]..\n"
    for name in ("x.dbn", "x.dbn.gz"):
        recs = list(read_dbn(write(tmp_path / name, text)))
        assert [(r.id, r.sequence, r.structure, r.line) for r in recs] == [
            ("r1", "GGGAAACCC", "(((...)))", 1),
            ("r2", "acguAC", "([)]..", 4),
        ]


def test_tolerates_blank_lines_crlf_and_energy(tmp_path):
    path = tmp_path / "x.dbn"
    path.write_bytes(b"\r\n>a\r\nGGAAACC\r\n((...)) (-3.20)\r\n\r\n\r\n>b\nAAAA\n....\n")
    recs = list(read_dbn(path))
    assert [(r.id, r.structure, r.line) for r in recs] == [("a", "((...))", 2), ("b", "....", 7)]


def test_pairs_handles_pseudoknots_and_letters():
    assert pairs("((..[[..))..]]") == [(0, 9), (1, 8), (4, 13), (5, 12)]
    assert pairs("A(.)a") == [(0, 4), (1, 3)]
    assert pairs("....") == []


def test_is_dbn_path():
    assert is_dbn_path("a/TS0.dbn.gz") and is_dbn_path("x.DBN")
    assert not is_dbn_path("x.fasta") and not is_dbn_path("x.fa.gz")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("GGG\n(((\n", 1, "expected a '>id' header"),
        (">a\nGGAAACC\n((...))\n>b\nGGAAACC\n", 4, "record 'b' has no structure line"),
        (">a\n>b\nGG\n..\n", 1, "record 'a' has no sequence line"),
        (">a\nGGAAACC\n((...)\n", 3, "structure has 6 characters, sequence has 7"),
        (">a\nGGAAACC\n((.#.))\n", 3, "'#' at position 4 is not a structure symbol"),
        (">a\nGGAAACC\n((...)(\n", 3, "unmatched '('"),
        (">a\nGGAAACC\n)(...()\n", 3, "unmatched ')' at position 1"),
        (">a\n((...))\nGGAAACC\n", 2, "sequence line has '('"),
        (">\nGG\n..\n", 1, "header has no id"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path / "bad.dbn", text)
    with pytest.raises(InputError) as err:
        list(read_dbn(path))
    assert f"{path}:{line}" in str(err.value)
    assert fragment in str(err.value)


def test_fatal_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_dbn(tmp_path / "missing.dbn"))
    with pytest.raises(InputError, match="no dot-bracket records"):
        list(read_dbn(write(tmp_path / "empty.dbn", "\n\n")))
    truncated = tmp_path / "cut.dbn.gz"
    truncated.write_bytes(gzip.compress(b">a\nGGAAACC\n((...))\n" * 200)[:-20])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        list(read_dbn(truncated))
    binary = tmp_path / "bin.dbn"
    binary.write_bytes(b"\x00\x01\x02\xff\xfe")
    with pytest.raises(InputError, match=str(binary)):
        list(read_dbn(binary))


@pytest.mark.realdata
def test_bprna_ts0():
    path = DATA / "bprna_ss" / "TS0.dbn.gz"
    if not path.exists():
        pytest.skip(f"real data not found: {path} (../shared/data beside the checkout)")
    recs = list(read_dbn(path))
    assert len(recs) == 1305  # PROVENANCE.md
    assert len({r.id for r in recs}) == 1305
    assert max(len(r.sequence) for r in recs) == 499
    assert sum(1 for r in recs if "[" in r.structure) > 0
