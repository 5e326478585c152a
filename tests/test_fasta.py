"""Streaming FASTA reading (record by record and block by block) and writing."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import subprocess
import threading
import zlib
from pathlib import Path

import pytest

from bioprune.errors import InputError
from bioprune.fasta import STORED, FastaWriter, iter_blocks, open_maybe_gzip, read_fasta

TEXT = ">a first one\nACGU\nAC\n>b\n\n>c\tdesc with tab\r\nGG\r\nUU\r\n"


def _records_from_blocks(path, block_size=None):
    """(id, raw sequence lines joined, header line) from iter_blocks, for comparison with read_fasta."""
    out = []
    for first_line, block in iter_blocks(path, block_size):
        line = first_line
        for k, rec in enumerate(block.split(b"\n>")):
            head, _, body = rec.partition(b"\n")
            head = head[1:] if k == 0 else head
            seq = body.replace(b"\r", b"").replace(b"\n", b"")
            out.append((head.split(None, 1)[0].decode(), seq, line))
            line += rec.count(b"\n") + 1
    return out


@pytest.mark.parametrize("name", ["x.fa", "x.fa.gz"])
def test_read_fasta_multiline_crlf_empty_and_tab_header(write_fasta, name):
    recs = list(read_fasta(write_fasta(name, TEXT)))
    assert [(r.id, r.seq, r.line) for r in recs] == [("a", b"ACGUAC", 1), ("b", b"", 4), ("c", b"GGUU", 6)]
    assert recs[0].description == "first one"
    assert recs[2].description == "desc with tab"  # the id ends at a tab too


@pytest.mark.parametrize("block_size", [1, 3, 7, 64, None])
@pytest.mark.parametrize("name", ["x.fa", "x.fa.gz"])
def test_iter_blocks_agrees_with_read_fasta(write_fasta, name, block_size):
    text = "\n\n" + TEXT + ">d\n" + "ACGU" * 50 + "\n>e\nA\n"  # leading blank lines, one long record
    path = write_fasta(name, text)
    expected = [(r.id, r.seq, r.line) for r in read_fasta(path)]
    assert _records_from_blocks(path, block_size) == expected
    blocks = [b for _, b in iter_blocks(path, block_size)]
    assert all(b.startswith(b">") for b in blocks)


def test_iter_blocks_stops_cleanly_when_abandoned(write_fasta):
    path = write_fasta("big.fa.gz", "".join(f">r{i}\nACGU\n" for i in range(2000)))
    before = threading.active_count()
    gen = iter_blocks(path, 16)
    next(gen)
    gen.close()  # the read-ahead thread must finish, not hang or leak
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "no FASTA records", None),
        ("\n  \n\n", "no FASTA records", None),
        ("\n\nACGU\n>a\nACGU\n", "text before the first '>' header", 3),
        ("\x00\x01binary\n", "binary data", 1),
        ("hello world\n", "not a FASTA file", 1),
    ],
)
@pytest.mark.parametrize("reader", ["records", "blocks"])
def test_fatal_input(write_fasta, text, message, line, reader):
    path = write_fasta("bad.fa", text)
    with pytest.raises(InputError, match=message) as err:
        list(read_fasta(path)) if reader == "records" else list(iter_blocks(path, 4))
    assert err.value.path == path
    assert err.value.line == line


@pytest.mark.parametrize("reader", [read_fasta, iter_blocks])
def test_truncated_gzip(tmp_path, reader):
    path = tmp_path / "t.fa.gz"
    full = gzip.compress(b"".join(b">r%d\nACGUACGUACGU\n" % i for i in range(5000)))
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        list(reader(path))


@pytest.mark.parametrize(("compress", "name"), [(bz2.compress, "bzip2"), (lzma.compress, "xz")])
def test_other_compression_is_named(tmp_path, compress, name):
    path = tmp_path / "x.fa.other"
    path.write_bytes(compress(b">a\nACGU\n"))
    with pytest.raises(InputError, match=f"{name}-compressed"):
        list(iter_blocks(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_fasta(tmp_path / "nope.fa"))
    with pytest.raises(InputError, match="is a directory"):
        list(iter_blocks(tmp_path))


def test_header_problems_name_the_line(write_fasta):
    with pytest.raises(InputError, match="no sequence id") as err:
        list(read_fasta(write_fasta("noid.fa", ">a\nAC\n>\nGG\n")))
    assert err.value.line == 3
    # The last record's header too (it is read after the loop).
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        list(read_fasta(write_fasta("utf.fa", b">a\nAC\n>b\xff\xfe\nGG\n")))
    assert err.value.line == 3


@pytest.mark.parametrize("name", ["out.fa", "out.fa.gz"])
def test_writer_round_trip_and_order(tmp_path, name):
    path = tmp_path / name
    with FastaWriter(path) as w:
        w.write("a", b"ACGU", "desc a")
        w.write_block(b">b\nGG\n>c x\nUU\n", 2)
        w.write("d", b"A")
    assert w.n == 4
    assert [(r.id, r.description, r.seq) for r in read_fasta(path)] == [
        ("a", "desc a", b"ACGU"),
        ("b", "", b"GG"),
        ("c", "x", b"UU"),
        ("d", "", b"A"),
    ]


def test_gzip_output_is_reproducible(tmp_path):
    """Same records, same bytes (gzip mtime fixed): reruns do not change files needlessly."""
    outputs = []
    for i in range(2):
        path = tmp_path / str(i) / "s.fa.gz"
        path.parent.mkdir()
        with FastaWriter(path) as w:
            for k in range(100):
                w.write(f"r{k}", b"ACGU" * k)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("sizes", [[], [0], [1, 0, 2], [65535], [65536], [3 * 65535 + 7, 10, 200_000]])
def test_stored_gzip_is_valid_gzip(tmp_path, sizes):
    """Level STORED (ingest's hand-over FASTA): uncompressed deflate blocks that zlib, ISA-L and gzip(1)
    all read back, with its CRC and size checked, and the same bytes run after run."""
    data = bytes(i * 7 % 251 for i in range(sum(sizes)))
    files = []
    for run in range(2):
        path = tmp_path / f"{run}.fa.gz"
        with FastaWriter(path, level=STORED) as w:
            pos = 0
            for n in sizes:
                w.write_block(data[pos : pos + n], 0)
                pos += n
        files.append(path.read_bytes())
        assert gzip.decompress(files[-1]) == data
        with open_maybe_gzip(path) as fh:  # ISA-L when installed
            assert fh.read() == data
        assert subprocess.run(["gzip", "-t", str(path)], check=False).returncode == 0
    assert files[0] == files[1]
    assert len(files[0]) < len(data) + 64 + 5 * (len(data) // 65535 + 1)
    if data:
        with pytest.raises(gzip.BadGzipFile):  # a damaged CRC is noticed
            gzip.decompress(files[0][:-8] + bytes(8))


def test_writer_error_surfaces(tmp_path):
    path = tmp_path / "s.fa"
    w = FastaWriter(path)
    w._fh.close()  # a write that fails on the helper thread must reach the caller
    w.write_block(b">a\nA\n", 1)
    with pytest.raises(ValueError):
        w.close()


@pytest.fixture(params=["default", "zlib"])
def gzip_impl(request, monkeypatch):
    """Run with the fast ISA-L gzip (when installed) and with the plain-zlib fallback."""
    if request.param == "zlib":
        monkeypatch.setattr("bioprune.fasta._gzip", gzip)
        monkeypatch.setattr("bioprune.fasta._GZIP_ERRORS", (EOFError, gzip.BadGzipFile, zlib.error))
    return request.param


def test_both_gzip_implementations(tmp_path, gzip_impl):
    path = tmp_path / "s.fa.gz"
    records = [(f"r{k}", b"ACGU" * (k % 7 + 1)) for k in range(3000)]
    with FastaWriter(path) as w:
        for rec_id, seq in records:
            w.write(rec_id, seq)
    assert gzip.decompress(path.read_bytes()).count(b">") == 3000  # a standard gzip stream
    assert [(r.id, r.seq) for r in read_fasta(path)] == records
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        list(iter_blocks(path))
    path.write_bytes(data[:200] + bytes(100) + data[300:])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        list(iter_blocks(path))


@pytest.mark.parametrize("name", ["bom.fa", "bom.fa.gz"])
def test_utf8_bom_is_skipped(write_fasta, name):
    path = write_fasta(name, b"\xef\xbb\xbf>a\nACGU\n>b\nGG\n")
    assert [(r.id, r.seq) for r in read_fasta(path)] == [("a", b"ACGU"), ("b", b"GG")]
    assert [(i, s) for i, s, _ in _records_from_blocks(path, 2)] == [("a", b"ACGU"), ("b", b"GG")]


def test_many_writers_share_one_helper_thread(tmp_path):
    """shard keeps hundreds of writers open: they must not each start a thread, and must not mix data."""
    writers = [FastaWriter(tmp_path / f"s{i}.fa.gz") for i in range(50)]
    threads = threading.active_count()
    for k in range(400):
        writers[k % 50].write(f"r{k}", b"ACGU" * (k % 9 + 1))
        writers[k % 50].flush()
    assert threading.active_count() <= threads + 1
    for w in writers:
        w.close()
    for i in range(50):
        expected = [(f"r{k}", b"ACGU" * (k % 9 + 1)) for k in range(i, 400, 50)]
        assert [(r.id, r.seq) for r in read_fasta(tmp_path / f"s{i}.fa.gz")] == expected


def test_write_records_gives_the_bytes_of_write_pairs(tmp_path, monkeypatch):
    """Record runs written as one buffer are cut into the same compressed pieces as header/sequence lists."""
    monkeypatch.setattr("bioprune.fasta.RECORDS_PER_WRITE", 3)
    heads = [b">r%d d" % i for i in range(10)]
    seqs = [b"ACGU" * (i % 4) for i in range(10)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with FastaWriter(tmp_path / "a" / "x.fa.gz") as w:  # same name: gzip headers hold it
        w.write_pairs(heads[:4], seqs[:4])
        w.write_pairs(heads[4:], seqs[4:])
    with FastaWriter(tmp_path / "b" / "x.fa.gz") as w:
        for part in (slice(0, 4), slice(4, 10)):
            recs = [h + b"\n" + s + b"\n" for h, s in zip(heads[part], seqs[part], strict=True)]
            ends = [sum(map(len, recs[: k + 1])) for k in range(len(recs))]
            w.write_records(b"".join(recs), ends)
    assert (tmp_path / "a" / "x.fa.gz").read_bytes() == (tmp_path / "b" / "x.fa.gz").read_bytes()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc/self/fd (Linux)")
def test_closing_a_gzip_reader_closes_its_file(tmp_path):
    """A GzipFile given fileobj= leaves that file open when closed: every gzip read held a file open
    until it was garbage collected (a ResourceWarning under -W error)."""
    path = tmp_path / "a.fa.gz"
    path.write_bytes(gzip.compress(b">a\nACGU\n"))
    before = len(os.listdir("/proc/self/fd"))
    fh = open_maybe_gzip(path)
    assert fh.read() == b">a\nACGU\n"
    fh.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert [r.id for r in read_fasta(path)] == ["a"] and len(os.listdir("/proc/self/fd")) == before
