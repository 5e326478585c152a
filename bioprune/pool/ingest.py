"""``bioprune ingest``: normalise, validate and filter FASTA inputs into one pool folder.

Normalisation (in this order, one ``bytes.translate`` per block of records, or per record where gaps or
blanks are removed): remove whitespace (CR of CRLF files, line breaks of multi-line records, stray
spaces) and alignment gaps (:data:`bioprune.alphabet.GAP_CHARS`), upper-case, and for RNA turn T into U.
The result is checked against the alphabet's residues (IUPAC codes included, as the model vocabulary
allows).

Every input record ends up either kept or dropped for exactly one reason, checked in this order:

- ``empty``: no residue left after normalisation (includes gap-only records);
- ``invalid_characters``: a character outside the alphabet (which ones, and how often, is reported);
- ``too_short``: fewer residues than ``--min-length``;
- ``too_long``: more residues than ``--max-length`` (0 = no limit).

An input file whose residues are over 90% A/C/G/T/U/N is refused under ``--alphabet protein`` (those are
amino-acid letters too, so nucleotides would otherwise pass as protein), and one under 50% under
``--alphabet rna``; the share is in the report (``inputs[].nucleotide_fraction``). A header ``> word``
(blank after ``>``) takes ``word`` as the id; the report counts such records (``ids_after_a_blank``).

``--strict`` turns the first dropped record into an error instead. Sequence ids (the header up to the
first whitespace) must be unique across all inputs, dropped records included: every table downstream
is keyed by id, so a repeated id is a fatal error naming both places; ids are never renamed or merged.
Only a 64-bit hash per id is held while reading (8 bytes a record); the rare collision is verified on
the actual ids in a second pass, so it cannot raise a false error.

Outputs, written atomically (nothing is left behind on failure): ``sequences.fasta.gz`` (unwrapped),
``sequences.parquet`` (:data:`bioprune.pool.io.POOL_SCHEMA`, same order) and ``ingest_report.json``.
Both are a hand-over that dedup reads once, so neither is compressed: the FASTA is gzip of stored
deflate blocks (:data:`bioprune.fasta.STORED`), the table has no zstd; compressing them cost over a
third of ingest's CPU time. Dedup's pool, the first one kept for later steps, is compressed as usual.

``--dedup`` (what the workflow runs) removes exact duplicates in the same pass instead
(:class:`bioprune.pool.dedup.StreamingDedup`): the folder is then what ``bioprune dedup`` makes of the
plain one, compressed, with ``duplicates.tsv`` and ``dedup_report.json`` beside ``ingest_report.json``,
whose counts are those of the records that pass the filters, duplicates included.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from bioprune import __version__
from bioprune.alphabet import ALPHABETS, GAP_CHARS, WHITESPACE, Alphabet, get_alphabet
from bioprune.arrays import unique
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError, InputError
from bioprune.fasta import GZIP_LEVEL, STORED, FastaWriter, iter_blocks
from bioprune.pool.dedup import DUPLICATES_NAME, StreamingDedup
from bioprune.pool.dedup import REPORT_NAME as DEDUP_REPORT_NAME
from bioprune.pool.io import (
    FASTA_NAME,
    POOL_SCHEMA,
    TABLE_NAME,
    bool_array,
    hash_array,
    int_array,
    kept_bytes,
    raise_bad_header,
    repeated_string,
    string_array,
    write_report,
)

log = logging.getLogger(__name__)

REASONS = ("empty", "invalid_characters", "too_short", "too_long")
REPORT_NAME = "ingest_report.json"
# Rows buffered before one Parquet row group is written: large enough for fast scans, small enough
# (a few MB) to keep memory flat; dedup reads the table one row group at a time.
ROW_GROUP_ROWS = 1 << 16
EXAMPLES_PER_REASON = 5
PROGRESS_EVERY = 1_000_000
# Header bytes that send a block to the general parser, because the fast path splits the id off at the
# first single space: other whitespace. (Two spaces in a row, a header ending in a space and an empty
# id, from ">" or "> id", are found by _header_fields.)
_ODD_HEADER = (b"\t", b"\v", b"\f")


def normalising_table(alphabet: Alphabet) -> bytes:
    """A ``bytes.translate`` table: upper-case, then the alphabet's own mapping (RNA: T -> U)."""
    to_alphabet = bytes.maketrans(alphabet.translate_from, alphabet.translate_to)
    return bytes(range(256)).upper().translate(to_alphabet)


def normalise(seq: bytes, alphabet: Alphabet) -> bytes:
    """One sequence as ingest normalises it (for tests and other steps; ingest itself works per block)."""
    return seq.translate(normalising_table(alphabet), GAP_CHARS + WHITESPACE)


def _show_char(byte: int) -> str:
    return chr(byte) if 33 <= byte < 127 else f"0x{byte:02X}"


def _line_of(recs: list[bytes], first_line: int, k: int) -> int:
    """1-based line of record ``k`` of a block split on ``\\n>`` (only needed on error paths)."""
    return first_line + sum(r.count(b"\n") + 1 for r in recs[:k])


class _TableWriter:
    """Buffers per-block Arrow batches and writes them as Parquet row groups of ROW_GROUP_ROWS."""

    def __init__(self, path: Path, compression: str):
        # The hash column is random hex: dictionary encoding would only cost time. No compression for a
        # hand-over that dedup reads once (zstd was ~0.4 of ingest's ~2.5 CPU-s a 1M records).
        self._writer = pq.ParquetWriter(path, POOL_SCHEMA, use_dictionary=["source"], compression=compression)
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        # Arrow encodes and compresses without the GIL: on a helper thread it overlaps parsing.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="table-write")
        self._pending: Future | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)
        self._rows += batch.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._batches:
            if self._pending is not None:  # one row group in flight at a time; errors surface here
                self._pending.result()
            table = pa.Table.from_batches(self._batches)
            self._pending = self._pool.submit(self._writer.write_table, table, row_group_size=self._rows)
            self._batches, self._rows = [], 0

    def close(self) -> None:
        try:
            self.flush()
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


NUCLEOTIDE_LETTERS = b"ACGTUN"
# Of all residues of an input file (after normalisation, dropped records included): above this share
# of A/C/G/T/U/N a "protein" file holds nucleotides (real proteomes have about 25%); below the other
# bound an "rna" file holds something else, usually protein.
PROTEIN_MAX_NUCLEOTIDES = 0.9
RNA_MIN_NUCLEOTIDES = 0.5


def check_alphabet_fits(path: Path, alphabet: str, nucleotide_fraction: float) -> None:
    """Refuse a file whose composition says it holds the other kind of sequence than ``alphabet``:
    A, C, G, T and U are amino-acid letters too, so nucleotides would pass as protein unnoticed (and a
    protein model be trained on them)."""
    share = f"{nucleotide_fraction:.0%} of its residues are A/C/G/T/U/N"
    if alphabet == "protein" and nucleotide_fraction > PROTEIN_MAX_NUCLEOTIDES:
        raise InputError(path, f"{share}: they look like nucleotides, not protein; set alphabet: rna")
    if alphabet == "rna" and nucleotide_fraction < RNA_MIN_NUCLEOTIDES:
        raise InputError(path, f"only {share}: these do not look like RNA/DNA; set alphabet: protein?")


@dataclass(slots=True)
class _Parsed:
    """The records of one block, as :meth:`_Ingester._parse` cut them."""

    heads: list[bytes]  # output header lines, ">id desc"
    ids: list[bytes]
    seqs: list[bytes]  # normalised
    line_of: Callable[[int], int]  # 1-based line of record k (error paths only)
    id_col: pa.Array | None = None  # the fast path's id and description columns, not validated yet
    desc_col: pa.Array | None = None
    out_block: bytes | None = None  # the block as the pool FASTA gets it, when the input already is
    descs: list[bytes] | None = None  # the general path's descriptions (when desc_col is None)
    joined_seqs: bytes | None = None  # the fast path's normalised sequences, joined by newlines
    # The normalised residues other than the ingester's `plain` letters (b"": none), when the fast path
    # found them: what the composition and alphabet checks need to look at, usually a few bytes.
    rest: bytes | None = None


def _header_fields(joined: bytes, n: int) -> tuple[list[bytes], pa.Array, pa.Array] | None:
    """Ids and descriptions of ``n`` header lines ``>id desc`` joined by newlines, cut by numpy.

    The id runs from after ``>`` to the first space (or the line end), the description from after that
    space to the line end, as ``partition(b" ")`` would cut them. Returns (ids, id column, description
    column; the columns not UTF-8 validated yet), or None for the general parser: a line that does not
    start with ``>``, an empty id, two spaces in a row or a space at the end of a line.
    """
    a = np.frombuffer(joined, np.uint8)
    size = len(a)
    if n == 0 or size == 0:
        return None
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = np.flatnonzero(a == 10) + 1
    ends = np.empty(n, np.int64)
    ends[:-1] = starts[1:] - 1
    ends[-1] = size
    if starts[-1] >= size or (a[starts] != 62).any():  # (an empty last line has no byte at its start)
        return None
    spaces = np.flatnonzero(a == 32)
    if (np.diff(spaces) == 1).any() or (a[ends - 1] == 32).any():
        return None
    cut = np.append(spaces, size)[np.searchsorted(spaces, starts)]
    np.minimum(cut, ends, out=cut)  # the first space of each line, or its end
    id_len = cut - starts - 1
    if id_len.min() <= 0:
        return None
    has_desc = cut < ends
    desc_len = np.where(has_desc, ends - cut - 1, 0)
    pieces = np.empty((n, 3), np.int64)
    # Ids with their terminator (space or newline): [start + 1, cut + 1); split() on it gives the ids.
    pieces[:, 0] = 1
    pieces[:, 1] = id_len + 1
    pieces[:, 2] = ends - cut
    with_sep = a[np.repeat(np.tile(_MIDDLE, n), pieces.ravel())[:size]].tobytes()
    ids = with_sep.split()
    if len(ids) != n:  # cannot happen (ids hold no whitespace here); the general path would tell
        return None
    # Descriptions: [cut + 1, end) where there is one.
    pieces[:, 0] = np.where(has_desc, cut + 1 - starts, ends - starts)
    pieces[:, 1] = desc_len
    pieces[:, 2] = 1
    desc_data = a[np.repeat(np.tile(_MIDDLE, n), pieces.ravel())[:size]].tobytes()
    return ids, _strings(b"".join(ids), id_len), _strings(desc_data, desc_len)


_MIDDLE = np.array([False, True, False])
# Bytes of a block's sequence lines looked at before the one-pass check of _parse_fast.
_SAMPLE = 4096


def _strings(data: bytes, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class _Ingester:
    def __init__(self, alphabet: Alphabet, min_length: int, max_length: int, strict: bool, dedup: bool):
        self.alphabet = alphabet
        self.dedup = StreamingDedup() if dedup else None
        self.min_length = min_length
        self.max_length = max_length
        self.strict = strict
        self.table = normalising_table(alphabet)
        self.delete = GAP_CHARS + WHITESPACE
        self.delete_in_line = self.delete.replace(b"\n", b"")  # the fast path keeps the line breaks
        self._source: tuple[str, pa.Array] | None = None
        self.valid = alphabet.residue_bytes
        self.invalid_nucleotides = bytes(c for c in NUCLEOTIDE_LETTERS if c not in self.valid)  # rna: T
        # Residues that are valid nucleotide letters and that normalisation leaves as they are (rna:
        # ACGUN): sequence lines made of these alone (and newlines) need no normalising, hold no invalid
        # character and are all nucleotides, which one translate tells (_parse_fast).
        self.plain = bytes(c for c in NUCLEOTIDE_LETTERS if c in self.valid and self.table[c] == c) + b"\n"
        # Any length below this is dropped (as empty or too_short): lets a block skip the per-record check.
        self.shortest_ok = max(1, min_length)
        self.id_hashes: list[np.ndarray] = []
        self.dropped = dict.fromkeys(REASONS, 0)
        self.invalid_chars: Counter[int] = Counter()
        self.examples: dict[str, list[str]] = {r: [] for r in REASONS}
        self.input_records = 0
        self.kept = 0
        self.residues = 0
        self.min_len: int | None = None
        self.max_len = 0
        self.per_file: list[dict] = []
        self.file_residues = self.file_nucleotides = 0
        self.blank_headers = 0  # "> desc" headers: the first word after the blank is taken as the id
        self.blank_header_examples: list[str] = []
        self.gap_chars = 0  # alignment gap characters removed, and the records that had any
        self.gapped_records = 0

    # -- one input file ------------------------------------------------------------------------
    def add_file(self, path: Path, fasta: FastaWriter, table: _TableWriter) -> None:
        stats = {"path": str(path), "records": 0, "kept": 0, "dropped": dict.fromkeys(REASONS, 0)}
        self.file_residues = self.file_nucleotides = 0
        source = str(path)
        next_log = PROGRESS_EVERY
        start = time.perf_counter()
        log.info("reading %s", path)
        for first_line, block in iter_blocks(path):
            n_in, n_kept = self._add_block(path, source, first_line, block, fasta, table, stats["dropped"])
            stats["records"] += n_in
            stats["kept"] += n_kept
            if stats["records"] >= next_log:
                rate = stats["records"] / max(time.perf_counter() - start, 1e-9)
                log.info("%s: %d records read (%.0f/s), %d kept", path, stats["records"], rate, stats["kept"])
                next_log += PROGRESS_EVERY
        log.info("%s: done, %d records, %d kept", path, stats["records"], stats["kept"])
        if self.file_residues:
            stats["nucleotide_fraction"] = round(self.file_nucleotides / self.file_residues, 4)
            check_alphabet_fits(path, self.alphabet.name, stats["nucleotide_fraction"])
        self.per_file.append(stats)

    def _parse(self, path: Path, first_line: int, block: bytes) -> _Parsed:
        """Cut a block into records (:class:`_Parsed`): header lines, ids, normalised sequences...

        The fast path covers the usual layout, one sequence line per record and plain ``>id desc``
        headers, with whole-block C and numpy calls; anything else (multi-line records, tabs, odd
        spacing, blank lines) takes the general path, which gives the same result.
        """
        if b"\r" in block:  # CRLF: a CR is never data
            if b"\n" not in block and b"\r" in block.rstrip(b"\r"):
                msg = "lines end in CR alone (classic Mac text); convert the file to LF or CRLF line ends"
                raise InputError(path, msg, line=first_line)
            block = block.replace(b"\r", b"")
        fast = self._parse_fast(first_line, block)
        if fast is not None:
            return fast

        recs = block.split(b"\n>")
        recs[0] = recs[0][1:]  # the block's own leading '>'
        parts = [r.partition(b"\n") for r in recs]
        fields = [x[0].split(None, 1) for x in parts]
        if not all(fields):
            k = fields.index([])
            raise InputError(path, "header has no sequence id", line=_line_of(recs, first_line, k))
        ids = [f[0] for f in fields]
        for k, x in enumerate(parts):
            if x[0][:1].isspace():  # "> desc": the first word after the blank becomes the id
                self.blank_headers += 1
                if len(self.blank_header_examples) < EXAMPLES_PER_REASON:
                    where = f"{path}:{_line_of(recs, first_line, k)}"
                    self.blank_header_examples.append(f"{where} id {ids[k].decode('utf-8', 'replace')!r}")
                    log.warning("%s: header starts with a blank; %r is taken as the id", where, ids[k])
        descs = [f[1].strip() if len(f) > 1 else b"" for f in fields]
        heads = [b">" + i + b" " + d if d else b">" + i for i, d in zip(ids, descs, strict=True)]
        raw = [x[2] for x in parts]
        self._count_gaps(raw)
        table, delete = self.table, self.delete
        seqs = [x.translate(table, delete) for x in raw]
        return _Parsed(heads, ids, seqs, lambda k: _line_of(recs, first_line, k), descs=descs)

    def _parse_fast(self, first_line: int, block: bytes) -> _Parsed | None:
        """The fast path of :meth:`_parse`, or None when the block needs the general one.

        It takes blocks of ``>id desc`` / one-sequence-line pairs. Ids and descriptions are cut out by
        numpy; one ``translate`` normalises all sequence lines at once and, when it removed nothing (no
        gap, no blank: the usual case), is the result, else each line is normalised on its own.
        """
        body = block.rstrip(b"\n")
        lines = body.split(b"\n")
        n = len(lines) // 2
        if len(lines) != 2 * n:
            return None
        heads = lines[0::2]
        seq_lines = lines[1::2]
        joined = b"\n".join(heads)
        # Other blanks than single spaces: the general path (every line starting with '>', no double or
        # trailing space are checked with the ids, below).
        if any(x in joined for x in _ODD_HEADER):
            return None
        raw = b"\n".join(seq_lines)
        if b">" in raw:  # a header among the sequence lines
            return None
        fields = _header_fields(joined, n)
        if fields is None:  # an empty id (">" or "> id"): the general path reports it
            return None
        ids, id_col, desc_col = fields
        line_of = lambda k: first_line + 2 * k  # noqa: E731
        # The usual nucleotide block: one translate (~0.07 s a 100 MB) that keeps the residues other than
        # the plain letters (none, or a few IUPAC codes), instead of normalising the whole block,
        # comparing it and keeping its other letters (~0.26 s); those few residues then tell whether
        # normalisation changes anything. A sample first, so that other blocks (protein, DNA under rna)
        # skip it.
        if len(raw[:_SAMPLE].translate(None, self.plain)) <= _SAMPLE // 64:
            rest = raw.translate(None, self.plain)
            if rest.translate(self.table, self.delete_in_line) == rest:  # normalised already
                out = body + b"\n"
                return _Parsed(
                    heads, ids, seq_lines, line_of, id_col, desc_col, out, joined_seqs=raw, rest=rest
                )
        normalised = raw.translate(self.table, self.delete_in_line)
        if len(normalised) != len(raw):  # gaps or whitespace removed: count the gaps, record by record
            self._count_gaps(seq_lines)
            table, delete = self.table, self.delete
            seqs = [x.translate(table, delete) for x in seq_lines]
            return _Parsed(heads, ids, seqs, line_of, id_col, desc_col)
        if normalised == raw:  # already normalised: the output block is the input block
            out = body + b"\n"
            return _Parsed(heads, ids, seq_lines, line_of, id_col, desc_col, out, joined_seqs=raw)
        seqs = normalised.split(b"\n")
        return _Parsed(heads, ids, seqs, line_of, id_col, desc_col, joined_seqs=normalised)

    def _count_gaps(self, raw_seqs: list[bytes]) -> None:
        """Count the gap characters normalisation removes (one C pass a block; per record only if any)."""
        joined = b"".join(raw_seqs)
        gaps = len(joined) - len(joined.translate(None, GAP_CHARS))
        if gaps:
            self.gap_chars += gaps
            self.gapped_records += sum(len(x.translate(None, GAP_CHARS)) != len(x) for x in raw_seqs)

    def _add_block(self, path, source, first_line, block, fasta, table, file_dropped) -> tuple[int, int]:
        parsed = self._parse(path, first_line, block)
        heads, ids, seqs, line_of = parsed.heads, parsed.ids, parsed.seqs, parsed.line_of
        n = len(seqs)
        self.input_records += n
        self.id_hashes.append(np.fromiter(map(xxhash.xxh3_64_intdigest, ids), np.uint64, n))
        # Headers are decoded for every record, dropped ones included: a header that is not text is
        # a broken file, not a filtered record.
        id_col = self._utf8(parsed.id_col, ids, heads, path, line_of)
        desc_col = self._utf8(parsed.desc_col, parsed.descs, heads, path, line_of)
        lengths = np.fromiter(map(len, seqs), np.int32, n)

        # One C-level pass over the whole block decides whether any record needs a closer look: it
        # keeps the residues other than A/C/G/T/U/N (few), which are then checked against the alphabet.
        joined = b"\n".join(seqs) if parsed.joined_seqs is None else parsed.joined_seqs
        # Letters outside `plain` hold every invalid nucleotide (plain letters are all valid), so the
        # fast path's `rest` answers both questions without another pass over the block.
        rest = joined if parsed.rest is None else parsed.rest
        others = rest.translate(None, NUCLEOTIDE_LETTERS + b"\n")
        residues = len(joined) - (n - 1)
        self.file_residues += residues
        self.file_nucleotides += residues - len(others)
        has_invalid = bool(others.translate(None, self.valid)) or any(
            c in rest for c in self.invalid_nucleotides
        )
        out_block = parsed.out_block
        out_of_range = int(lengths.min()) < self.shortest_ok or (0 < self.max_length < int(lengths.max()))
        if has_invalid or out_of_range:
            keep = self._filter(path, line_of, ids, seqs, lengths.tolist(), file_dropped)
            if not keep:
                return n, 0
            if len(keep) < n:
                heads = [heads[i] for i in keep]
                seqs = [seqs[i] for i in keep]
                keep_idx = int_array(keep, np.int64)
                lengths = lengths[keep]
                id_col, desc_col = id_col.take(keep_idx), desc_col.take(keep_idx)
                out_block = None
        k = len(seqs)
        # The ingest report counts the records that pass the filters, duplicates included.
        self.kept += k
        self.residues += int(lengths.sum(dtype=np.int64))
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min_len = lo if self.min_len is None else min(self.min_len, lo)
        self.max_len = max(self.max_len, hi)
        if out_block is None:
            out: list[bytes] = [b""] * (2 * k)
            out[0::2] = heads
            out[1::2] = seqs
            out.append(b"")  # the final newline
            out_block = b"\n".join(out)
        # each record as written: header line, sequence line, their newlines
        sizes = np.fromiter(map(len, heads), np.int32, k) + lengths + 2
        digests = None
        if self.dedup is not None:
            digests = b"".join(map(xxhash.xxh3_128_digest, seqs))
            fresh = self.dedup.keep(digests, id_col)
            if fresh is not None:
                if not fresh.any():
                    return n, k
                out_block, _ = kept_bytes(out_block, np.cumsum(sizes, dtype=np.int64), fresh)
                digests = np.frombuffer(digests, np.uint8).reshape(-1, 16)[fresh].tobytes()
                lengths, sizes = lengths[fresh], sizes[fresh]
                kept = bool_array(fresh)
                id_col, desc_col = id_col.filter(kept), desc_col.filter(kept)
        m = len(lengths)
        fasta.write_block(out_block, m)
        batch = pa.RecordBatch.from_arrays(
            [
                id_col,
                desc_col,
                self._source_column(source, m),
                int_array(lengths),
                hash_array(seqs, digests),
                int_array(sizes),
            ],
            schema=POOL_SCHEMA,
        )
        table.add(batch)
        return n, k

    def _source_column(self, source: str, k: int) -> pa.Array:
        """``source`` repeated ``k`` times: a zero-copy slice of one array built per file (and regrown)."""
        cached = self._source
        if cached is None or cached[0] != source or len(cached[1]) < k:
            cached = self._source = (source, repeated_string(source, max(k, 1 << 16)))
        return cached[1].slice(0, k)

    @staticmethod
    def _utf8(built: pa.Array | None, values: list[bytes] | None, heads, path: Path, line_of) -> pa.Array:
        """Header fields as a string array, decoded in C (Arrow validates UTF-8); find the culprit only
        when that fails. ``built`` is the array the fast path cut out (not validated yet)."""
        try:
            if built is None:
                return string_array(values)
            built.validate(full=True)
            return built
        except pa.ArrowInvalid:
            raise_bad_header(path, heads, line_of)
            raise

    def _filter(self, path, line_of, ids, seqs, lengths, file_dropped) -> list[int]:
        """Indices of the records of a block that are kept; counts (or, with --strict, raises on) the rest."""
        keep: list[int] = []
        valid = self.valid
        for i, (seq, length) in enumerate(zip(seqs, lengths, strict=True)):
            detail = ""
            if length == 0:
                reason = "empty"
            elif bad := seq.translate(None, valid):
                reason = "invalid_characters"
                counts = Counter(bad)
                self.invalid_chars.update(counts)
                shown = ", ".join(f"{_show_char(c)!r} x{m}" for c, m in counts.most_common())
                detail = f"characters not in the {self.alphabet.name} alphabet: {shown}"
            elif length < self.min_length:
                reason = "too_short"
                detail = f"{length} residues < --min-length {self.min_length}"
            elif 0 < self.max_length < length:
                reason = "too_long"
                detail = f"{length} residues > --max-length {self.max_length}"
            else:
                keep.append(i)
                continue
            record = ids[i].decode("utf-8", "replace")
            if self.strict:
                line = line_of(i)
                what = f"{reason}" + (f" ({detail})" if detail else "")
                raise InputError(
                    path, f"record would be dropped: {what}; --strict is set", line=line, record=record
                )
            self.dropped[reason] += 1
            file_dropped[reason] += 1
            if len(self.examples[reason]) < EXAMPLES_PER_REASON:
                line = line_of(i)
                self.examples[reason].append(f"{path}:{line} {record}" + (f" ({detail})" if detail else ""))
                log.warning("%s:%d: dropped record %r: %s %s", path, line, record, reason, detail)
        return keep

    # -- after all files -----------------------------------------------------------------------
    def check_unique_ids(self, inputs: list[Path]) -> None:
        hashes = np.sort(np.concatenate(self.id_hashes)) if self.id_hashes else np.empty(0, np.uint64)
        repeated = hashes[1:][hashes[1:] == hashes[:-1]]
        if repeated.size == 0:
            return
        suspects = {int(h) for h in unique(repeated)}
        seen: dict[bytes, tuple[Path, int]] = {}
        # Second pass, only on this rare path: find where the suspected ids are, compare the ids themselves.
        for path in inputs:
            for first_line, block in iter_blocks(path):
                line = first_line
                for k, rec in enumerate(block.split(b"\n>")):
                    rec_id = rec.partition(b"\n")[0][1 if k == 0 else 0 :].split(None, 1)[0]
                    if xxhash.xxh3_64_intdigest(rec_id) in suspects:
                        if rec_id in seen:
                            first_path, first_line_no = seen[rec_id]
                            msg = (
                                f"duplicate sequence id, first seen at {first_path}:{first_line_no}; ids must"
                                " be unique because every table downstream is keyed by id (rename one)"
                            )
                            raise InputError(path, msg, line=line, record=rec_id.decode("utf-8", "replace"))
                        seen[rec_id] = (path, line)
                    line += rec.count(b"\n") + 1
        # Only 64-bit hash collisions between distinct ids: nothing to report.

    def report(self, settings: dict) -> dict:
        return {
            "step": "ingest",
            "bioprune_version": __version__,
            "settings": settings,
            "input_records": self.input_records,
            "kept": self.kept,
            "dropped": self.dropped,
            "invalid_characters_found": {
                _show_char(c): m for c, m in sorted(self.invalid_chars.items(), key=lambda x: (-x[1], x[0]))
            },
            "dropped_examples": {r: ex for r, ex in self.examples.items() if ex},
            "ids_after_a_blank": {
                "note": "headers '> word ...': the first word after the blank was taken as the id",
                "records": self.blank_headers,
                "examples": self.blank_header_examples,
            },
            "alignment_gaps_removed": {
                "note": f"gap characters {GAP_CHARS.decode()!r} are not residues: removed before any check",
                "characters": self.gap_chars,
                "records": self.gapped_records,
            },
            "kept_residues": self.residues,
            "kept_length": {
                "min": self.min_len or 0,
                "max": self.max_len,
                "mean": round(self.residues / self.kept, 2) if self.kept else 0.0,
            },
            "inputs": self.per_file,
            "hash": "xxh3_128 (hex) of the normalised sequence bytes",
            "outputs": [FASTA_NAME, TABLE_NAME, REPORT_NAME],
        }


def ingest(
    inputs: list[os.PathLike | str],
    out_dir: os.PathLike | str,
    alphabet: str,
    min_length: int = 1,
    max_length: int = 0,
    strict: bool = False,
    dedup: bool = False,
) -> dict:
    """Build the pool folder ``out_dir`` from ``inputs``; returns the report (also written as JSON).

    ``dedup``: remove exact duplicates on the way (:class:`bioprune.pool.dedup.StreamingDedup`), so the
    folder is what ``bioprune dedup`` would write from the plain one (compressed, with duplicates.tsv and
    dedup_report.json beside ingest_report.json), in one pass and without the uncompressed hand-over."""
    try:
        alpha = get_alphabet(alphabet)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if min_length < 0:
        raise ConfigError(f"--min-length must be >= 0, got {min_length}")
    if max_length < 0:
        raise ConfigError(f"--max-length must be >= 0 (0 = no limit), got {max_length}")
    if 0 < max_length < min_length:
        raise ConfigError(f"--max-length {max_length} is below --min-length {min_length}")
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ConfigError("no input FASTA file given")
    seen: dict[Path, Path] = {}
    for p in paths:  # fail before any work, not after hours on the first file
        if not p.is_file():
            raise InputError(p, "no such file" if not p.exists() else "not a regular file")
        key = p.resolve()
        if key in seen:
            raise InputError(p, f"given twice (also as {seen[key]}); every record would be a duplicate id")
        seen[key] = p

    settings = {
        "alphabet": alpha.name,
        "min_length": min_length,
        "max_length": max_length,
        "strict": strict,
        "dedup": dedup,
    }
    log.info("ingest %d file(s) into %s (%s)", len(paths), out_dir, settings)
    worker = _Ingester(alpha, min_length, max_length, strict, dedup)
    with staged_dir(out_dir) as stage:
        table = _TableWriter(stage / TABLE_NAME, "zstd" if dedup else "none")
        try:
            with FastaWriter(stage / FASTA_NAME, level=GZIP_LEVEL if dedup else STORED) as fasta:
                for path in paths:
                    worker.add_file(path, fasta, table)
        finally:
            table.close()
        worker.check_unique_ids(paths)
        if worker.kept == 0:
            counts = ", ".join(f"{r} {n}" for r, n in worker.dropped.items() if n)
            raise InputError(paths[0], f"no record left after filtering ({counts}); nothing to write")
        report = worker.report(settings)
        if worker.dedup is not None:
            sources = ", ".join(map(str, paths))
            dedup_report = worker.dedup.finish(stage / TABLE_NAME, stage / DUPLICATES_NAME, sources)
            write_report(stage / DEDUP_REPORT_NAME, dedup_report)
            report["outputs"] += [DUPLICATES_NAME, DEDUP_REPORT_NAME]
        write_report(stage / REPORT_NAME, report)
    log.info("kept %d of %d records; dropped %s", report["kept"], report["input_records"], report["dropped"])
    if worker.dedup is not None:
        log.info("%d distinct sequences, %d duplicates removed", worker.dedup.n_kept, worker.dedup.n_dup)
    if report["alignment_gaps_removed"]["characters"]:
        gaps = report["alignment_gaps_removed"]
        log.info("removed %d alignment gap characters from %d records", gaps["characters"], gaps["records"])
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="FASTA", help="FASTA files, plain or gzip")
    parser.add_argument("--alphabet", required=True, choices=sorted(ALPHABETS), help="residue alphabet")
    parser.add_argument("--out", required=True, metavar="DIR", help="output pool folder")
    parser.add_argument(
        "--min-length", type=int, default=1, metavar="N", help="drop shorter sequences (too_short); default 1"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=0,
        metavar="N",
        help="drop longer sequences (too_long); 0 (default) = no limit",
    )
    parser.add_argument("--strict", action="store_true", help="any record that would be dropped is an error")
    parser.add_argument(
        "--dedup",
        action="store_true",
        help="also remove exact duplicate sequences (first occurrence kept) as they stream in: the folder"
        " is what bioprune dedup would make of the plain one, in one pass",
    )


def run(args: argparse.Namespace) -> int:
    ingest(args.inputs, args.out, args.alphabet, args.min_length, args.max_length, args.strict, args.dedup)
    return 0
