"""The pool folder every pool step reads and writes.

A pool folder holds ``sequences.fasta.gz`` (normalised, unwrapped) and ``sequences.parquet``, one
row per sequence in the same order, with at least the columns of :data:`TABLE_COLUMNS`. Later steps
may add columns (``cluster``...). Each step also writes its own ``<step>_report.json``.

:func:`iter_pool` streams a pool's records checked against its table; :func:`write_pool` copies a pool,
filtered and with new columns, holding one batch of table rows at a time. Both stream the FASTA through
one checked reader (:func:`_checked_blocks`): every record's id is compared with the table's ``id`` at
its row, whichever step reads the pool, so a FASTA and table that do not belong together fail loudly
(file and line named) instead of shifting every later row. :func:`copy_records` is the streaming filter
("keep these rows") that the pool steps, select's coreset and the reference's D_sub share.

The hash and Arrow helpers of the pool table (:func:`sequence_hash`, :func:`hash_array`, arrays built
from buffers) live here too: ingest writes the table with them, dedup and decontaminate read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from bioprune.errors import InputError
from bioprune.fasta import FastaWriter, Record, iter_blocks, iter_chunks
from bioprune.read_ahead import read_ahead

log = logging.getLogger(__name__)

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
# Bytes of each record in the pool FASTA (header line and sequence line, newlines included). Ingest
# writes it and every step that copies records copies it (the records are copied byte for byte): a
# reader of a few records (select's coreset, the reference's D_sub) cuts them out of the decompressed
# stream at their offsets instead of finding every line (:func:`copy_rows`). Optional: a table without
# it is read by the checked pass.
RECORD_BYTES = "fasta_bytes"
POOL_SCHEMA = TABLE_SCHEMA.append(pa.field(RECORD_BYTES, pa.int32()))
BATCH_ROWS = 1 << 16  # table rows streamed at a time
PROGRESS_EVERY = 1_000_000
PROGRESS_BYTES = 1 << 30  # decompressed FASTA bytes between progress lines of copy_rows


def fasta_path(pool_dir: os.PathLike | str) -> Path:
    return _existing(Path(pool_dir) / FASTA_NAME)


def table_path(pool_dir: os.PathLike | str) -> Path:
    return _existing(Path(pool_dir) / TABLE_NAME)


def read_table(pool_dir: os.PathLike | str, columns: list[str] | None = None) -> pa.Table:
    path = table_path(pool_dir)
    try:
        return pq.ParquetFile(path).read(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet table ({exc})") from exc


def _existing(path: Path) -> Path:
    if not path.exists():
        raise InputError(path.parent, f"not a bioprune pool folder: {path.name} is missing")
    return path


def refuse_empty(pool_dir: os.PathLike | str, n_rows: int, step: str) -> None:
    """A step never passes on an empty pool: the run would only fail later, far from the cause."""
    if n_rows == 0:
        raise InputError(
            pool_dir,
            f"the pool is empty (0 sequences), nothing to {step}; see the report of the step that wrote it",
        )


def write_report(path: os.PathLike | str, report: dict) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class PoolFiles:
    """A pool folder opened for reading: its two files and its table opened for streaming."""

    dir: Path
    fasta: Path
    table: Path
    parquet: pq.ParquetFile

    @property
    def n_rows(self) -> int:
        return self.parquet.metadata.num_rows


def open_pool(pool_dir: os.PathLike | str | PoolFiles) -> PoolFiles:
    """Open a pool folder; a missing file or an unreadable table is an InputError naming it."""
    if isinstance(pool_dir, PoolFiles):
        return pool_dir
    fasta, table = fasta_path(pool_dir), table_path(pool_dir)
    return PoolFiles(Path(pool_dir), fasta, table, parquet_file(table))


def parquet_file(path: Path, what: str = "Parquet table") -> pq.ParquetFile:
    """A Parquet table opened for streaming; a missing or unreadable file is an InputError naming it
    (``what``: what the file should be, for the message)."""
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(path, f"no such {what}") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"not a readable {what} ({exc})") from exc


def read_column(pool_dir: Path, name: str) -> pa.ChunkedArray:
    """One column of the pool table (e.g. ``length``), without reading the others."""
    path = table_path(pool_dir)
    pf = parquet_file(path)
    if name not in pf.schema_arrow.names:
        raise InputError(path, f"has no {name!r} column; not a bioprune pool table?")
    return pf.read(columns=[name]).column(0)


def take_ids(pool_dir: Path, rows: np.ndarray) -> list[str]:
    """Ids of the given rows (sorted ascending), streaming the id column instead of holding it."""
    out: list[str] = []
    if len(rows) == 0:
        return out
    start = 0
    with contextlib.closing(id_batches(table_path(pool_dir))) as batches:
        for batch in batches:
            out += ids_at(batch, rows, start)
            start += len(batch)
    return out


def id_batches(path: Path) -> Iterator[pa.Array]:
    """The id column of a Parquet table, BATCH_ROWS at a time, decoded ahead on a helper thread (close
    the iterator when stopping early)."""
    batches = parquet_file(path).iter_batches(columns=["id"], batch_size=BATCH_ROWS, use_threads=False)
    return read_ahead((b.column(0) for b in batches), depth=2, name="ids")


def ids_at(batch: pa.Array, rows: np.ndarray, start: int) -> list[str]:
    """The ids of those of ``rows`` (sorted table rows) in ``batch``, whose first row is ``start``."""
    lo, hi = np.searchsorted(rows, [start, start + len(batch)])
    return batch.take(int_array(rows[lo:hi] - start, np.int64)).to_pylist() if hi > lo else []


# -- the pool table's hash and Arrow helpers --------------------------------------------------------


def sequence_hash(seq: bytes) -> str:
    """The content hash stored in the pool table: hex xxh3-128 of the normalised sequence."""
    return xxhash.xxh3_128_hexdigest(seq)


class IdsDigest:
    """hex xxh3-128 of a column of ids, fed a chunk at a time: a table computed from a pool names the pool
    it was computed on, and a reader checks it while it streams the pool's ids. The same for any chunking:
    the ids' lengths and their bytes are hashed as two streams, then the two hashes together."""

    VERSION = 2  # 1 hashed each chunk's lengths and bytes in turn, so it depended on the chunking

    def __init__(self):
        self._lengths, self._bytes = xxhash.xxh3_128(), xxhash.xxh3_128()

    def update(self, chunk: pa.Array) -> None:
        if chunk.type != pa.string():
            chunk = chunk.cast(pa.string())
        offsets, data = string_parts(chunk)
        self._lengths.update(np.diff(offsets).astype("<i4").tobytes())
        self._bytes.update(data[offsets[0] : offsets[-1]])

    def hexdigest(self) -> str:
        return xxhash.xxh3_128_hexdigest(self._lengths.digest() + self._bytes.digest())


def ids_digest(ids: pa.Array | pa.ChunkedArray) -> str:
    """:class:`IdsDigest` of a whole column of ids."""
    digest = IdsDigest()
    for chunk in ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]:
        digest.update(chunk)
    return digest.hexdigest()


def column_fingerprint(path: Path, name: str) -> str:
    """hex xxh3-128 of a Parquet column as stored (each row group's encoded, compressed chunk, with its
    row count, codec and types): the same fingerprint means the same values, without decoding them
    (~0.04 s at 20M rows). The same values written again (by another Arrow version, say) may differ: a
    reader then decodes them."""
    pf = parquet_file(path)
    j = pf.schema_arrow.get_field_index(name)
    kind = pf.schema_arrow.field(j).type
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        for i in range(pf.metadata.num_row_groups):
            group = pf.metadata.row_group(i)
            chunk = group.column(j)
            fh.seek(chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset)
            how = f"{group.num_rows} {chunk.physical_type} {chunk.compression} {kind}\0"
            h.update(how.encode() + fh.read(chunk.total_compressed_size))
    return h.hexdigest()


# Arrow arrays are built from buffers: pa.array() and pa.scalar() import pandas on first use, which
# costs each step ~0.5 s of start-up for nothing.


def string_array(values: list[bytes]) -> pa.Array:
    """A UTF-8 string array from bytes (raises pa.ArrowInvalid on invalid UTF-8)."""
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
    arr = _from_buffers(pa.string(), len(values), offsets.astype(np.int32), b"".join(values))
    arr.validate(full=True)
    return arr


def repeated_string(value: str, n: int) -> pa.Array:
    data = value.encode()
    return _from_buffers(pa.string(), n, np.arange(n + 1, dtype=np.int32) * len(data), data * n)


def to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric or boolean column without nulls as one numpy array, read from its buffers (a read-only
    view for numbers in one chunk). Arrow's own ``to_numpy`` gives the same but imports pandas on first
    use: ~0.4 s of a selection's run."""
    if isinstance(col, pa.Array):
        return _values(col)
    if col.num_chunks == 1:
        return _values(col.chunk(0))
    if not col.num_chunks:
        return np.empty(0, col.type.to_pandas_dtype())
    return np.concatenate([_values(c) for c in col.chunks])


def _values(arr: pa.Array) -> np.ndarray:
    kind = arr.type
    if arr.null_count or not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    ):
        return arr.to_numpy(zero_copy_only=False)
    if not len(arr):
        return np.empty(0, kind.to_pandas_dtype())
    data = arr.buffers()[1]
    if pa.types.is_boolean(kind):  # one bit a value
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=arr.offset + len(arr), bitorder="little")
        return bits[arr.offset :].view(bool)
    dtype = np.dtype(kind.to_pandas_dtype())
    return np.frombuffer(data, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def int_array(values, dtype=np.int32) -> pa.Array:
    a = np.ascontiguousarray(values, dtype)
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), len(a), [None, pa.py_buffer(a)])


def bool_array(mask: np.ndarray) -> pa.Array:
    bits = np.packbits(np.asarray(mask, bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (int32, ``len + 1``) and data bytes (uint8), as numpy views."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    data = arr.buffers()[2]
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)


def _from_buffers(kind: pa.DataType, n: int, offsets: np.ndarray, data: bytes) -> pa.Array:
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def hash_array(seqs: list[bytes], digests: bytes | None = None) -> pa.Array:
    """The ``hash`` column: hex xxh3-128 of each sequence (same text as ``xxh3_128_hexdigest``);
    ``digests``: their ``xxh3_128_digest`` joined, when the caller has them already (then ``seqs`` is
    not read)."""
    hexes = (b"".join(map(xxhash.xxh3_128_digest, seqs)) if digests is None else digests).hex().encode()
    n = len(hexes) // 32
    return _from_buffers(pa.string(), n, np.arange(n + 1, dtype=np.int32) * 32, hexes)


# -- streaming a pool folder, checked against its table ---------------------------------------------


@dataclass(slots=True)
class _Block:
    """Records ``row .. row + n - 1`` of a pool FASTA: ``data`` is their lines, each newline-ended, and
    ``starts`` the offset of every line in it (header, sequence, header, ...)."""

    row: int
    first_line: int  # 1-based line of the first header
    data: bytes
    starts: np.ndarray

    @property
    def n(self) -> int:
        return len(self.starts) // 2

    def lines(self) -> tuple[list[bytes], list[bytes]]:
        """(header lines ``>id description``, sequence lines), without their newlines."""
        lines = self.data[:-1].split(b"\n")
        return lines[0::2], lines[1::2]


# What may follow an id in its header line: ``bytes.split()``'s whitespace (the newline included).
_ID_END = np.zeros(256, bool)
_ID_END[list(b" \t\n\r\x0b\x0c")] = True


def _ids_match(a: np.ndarray, heads: np.ndarray, want: pa.Array) -> bool:
    """Whether header line k of a block (``a``: its bytes, every line newline-ended; ``heads``: where the
    header lines start) is ``>`` + ``want[k]`` followed by whitespace or its end, i.e. whether
    ``head.split(None, 1)[0][1:]`` is ``want[k]``, for every k. Only the id bytes are compared (gathered by
    numpy), never the whole block; False is always safe (the caller then checks line by line)."""
    if len(want) != len(heads):
        return False
    try:
        want.validate(full=True)  # the table's ids are UTF-8, as the check line by line requires
    except pa.ArrowInvalid:
        return False
    offsets, data = string_parts(want)
    # want is a slice of a whole batch: view only its own bytes (no copy of the batch's buffer).
    text = data[offsets[0] : offsets[-1]]
    # Whitespace is at most 32: one compare clears the usual block (a lookup by every byte of the ids
    # cost ~0.13 s a million records, more than the rest of this check).
    if (text <= 32).any() and _ID_END[text].any():
        return False
    lens = np.diff(offsets)
    if lens.min() <= 0:
        return False
    ends = heads + 1 + lens  # where each id must end
    if ends.max() >= len(a) or not _ID_END[a[ends]].all():
        return False
    where = np.repeat(heads + 1 - (offsets[:-1] - offsets[0]), lens)
    where += np.arange(len(text))
    return bool(np.array_equal(a[where], text))


class _TableIds:
    """The table's ``id`` column, handed out in runs of consecutive rows (one batch held at a time).

    ``columns``: the id column in consecutive pieces, from a caller that reads the table anyway (dedup
    copies it row group by row group); by default the column is read here, on its own."""

    def __init__(self, pool: PoolFiles, columns: Iterator[pa.Array] | None = None):
        if columns is None:
            batches = pool.parquet.iter_batches(columns=["id"], batch_size=BATCH_ROWS)
            columns = (batch.column(0) for batch in batches)
        self._columns = columns
        self._held: list[pa.Array] = []
        self._n_held = 0

    def next(self, n: int) -> pa.Array:
        """The ids of the next ``n`` rows (fewer at the end of the table)."""
        while self._n_held < n:
            col = next(self._columns, None)
            if col is None:
                break
            if col.type != pa.string():
                col = col.cast(pa.string())
            self._held.append(col)
            self._n_held += len(col)
        if not self._held:
            return string_array([])
        held = self._held[0] if len(self._held) == 1 else pa.concat_arrays(self._held)
        out, rest = held.slice(0, n), held.slice(n)
        self._held, self._n_held = ([rest] if len(rest) else []), len(rest)
        return out


def _checked_blocks(pool: PoolFiles, id_columns: Iterator[pa.Array] | None = None) -> Iterator[_Block]:
    """The records of a pool's FASTA in blocks, in table order, each id checked against the table.

    This is the pool's one integrity check, shared by every reader of a pool: the FASTA must be unwrapped
    (one header and one sequence line per record, as :class:`~bioprune.fasta.FastaWriter` writes it), hold
    exactly the table's rows, and every record's id must be the table's ``id`` at its row. Lines are found
    and ids compared by numpy a block at a time (:func:`_ids_match`), so checking all of them costs about
    as much as checking none; only a block that fails is looked at again line by line, for the message.
    ``id_columns``: the table's ids from the caller (see :class:`_TableIds`).
    """
    fasta, n = pool.fasta, pool.n_rows
    if n == 0:
        return
    table_ids = _TableIds(pool, id_columns)
    row = 0
    for first_line, block in iter_blocks(fasta):
        body = block.rstrip(b"\n")
        data = body + b"\n"
        a = np.frombuffer(data, np.uint8)
        newlines = np.flatnonzero(a == 10)
        starts = np.empty(len(newlines), np.int64)  # where each line starts
        starts[0] = 0
        starts[1:] = newlines[:-1] + 1
        m = len(starts) // 2
        heads = starts[0::2]
        if len(starts) % 2 or not _header_lines(a, newlines, heads):
            raise InputError(
                fasta, "not an unwrapped pool FASTA (header/sequence line pairs)", line=first_line
            )
        want = table_ids.next(m)
        if not _ids_match(a, heads, want):
            _explain_block(fasta, body, first_line, row, want, n)
        yield _Block(row, first_line, data, starts)
        row += m
    if row != n:
        raise InputError(fasta, f"has {row} records but the table has {n} rows")


def raise_bad_header(path: Path, heads: list[bytes], line_of: Callable[[int], int]) -> None:
    """After Arrow refused a column of header fields as UTF-8: raise the error naming the first header
    line that is not UTF-8 (``line_of(k)``: the line of header ``k``)."""
    for k, h in enumerate(heads):
        try:
            h.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, f"header is not valid UTF-8 ({exc.reason})", line=line_of(k)) from exc


def _explain_block(fasta: Path, body: bytes, first_line: int, row: int, want: pa.Array, n: int) -> None:
    """Raise the error of a block whose ids do not match the table (a Python pass, on this path only)."""
    heads = body.split(b"\n")[0::2]
    m = len(heads)
    ids = [h.split(None, 1)[0][1:] for h in heads]
    try:
        got = string_array(ids)
    except pa.ArrowInvalid:
        raise_bad_header(fasta, heads, lambda k: first_line + 2 * k)
        raise
    if not got.slice(0, len(want)).equals(want):
        for k, (g, w) in enumerate(zip(got.to_pylist(), want.to_pylist(), strict=False)):
            if g != w:
                msg = f"record {g!r} is row {row + k} but the pool table has {w!r} there"
                raise InputError(fasta, msg, line=first_line + 2 * k)
    if len(want) < m:
        line = first_line + 2 * len(want)
        raise InputError(fasta, f"has more records than the {n} rows of the table", line=line)


def iter_pool(pool_dir: os.PathLike | str | PoolFiles) -> Iterator[tuple[int, Record]]:
    """Yield ``(row, record)`` for every sequence of a pool folder, in table order, each record's id
    checked against the table (see :func:`_checked_blocks`)."""
    for block in _checked_blocks(open_pool(pool_dir)):
        heads, seqs = block.lines()
        for k, (head, seq) in enumerate(zip(heads, seqs, strict=True)):
            parts = head[1:].split(None, 1)  # the id ends at the first whitespace, as ingest cut it
            desc = parts[1].strip().decode("utf-8") if len(parts) > 1 else ""
            yield block.row + k, Record(parts[0].decode("utf-8"), desc, seq, block.first_line + 2 * k)


def copy_records(
    pool_dir: os.PathLike | str | PoolFiles,
    keep: np.ndarray | None,
    out: Path,
    id_columns: Iterator[pa.Array] | None = None,
) -> int:
    """Stream the pool's FASTA into ``out``, only the records whose row is true in ``keep`` (a boolean mask
    over the table's rows; None keeps all), checked against the table as :func:`iter_pool` does. Writes
    the same bytes as :meth:`FastaWriter.write` record by record. Returns the records written.
    ``id_columns``: the table's id column in consecutive pieces, from a caller that reads it anyway."""
    pool = open_pool(pool_dir)
    n = pool.n_rows
    if keep is not None and len(keep) != n:
        raise ValueError(f"keep has {len(keep)} entries for {n} rows")
    next_log = PROGRESS_EVERY
    start_time = time.perf_counter()
    with FastaWriter(out) as writer:
        for block in _checked_blocks(pool, id_columns):
            stop = block.row + block.n
            # Each record as bytes of the block: its header line and sequence line, newlines included.
            data = block.data
            ends = np.append(block.starts[2::2], len(data))
            mask = None if keep is None else keep[block.row : stop]
            if mask is not None and not mask.all():
                data, ends = kept_bytes(data, ends, mask)
            writer.write_records(data, ends)
            if stop >= next_log:
                rate = stop / max(time.perf_counter() - start_time, 1e-9)
                log.info("%s: %d of %d records streamed (%.0f/s)", pool.fasta, stop, n, rate)
                next_log += PROGRESS_EVERY
        return writer.n


def copy_rows(pool_dir: os.PathLike | str | PoolFiles, rows: np.ndarray, ids: list[str], out: Path) -> int:
    """Write the records of table rows ``rows`` (ascending) to ``out``: the same bytes as
    :func:`copy_records` with those rows kept. ``ids``: the table's ids at ``rows`` (the caller has read
    them, e.g. for ids.txt). Returns the records written.

    With the table's :data:`RECORD_BYTES` column each record is cut out of the decompressed stream at
    its offset, and only the records written are checked: each must be exactly a header line ``>id``
    (the table's id at its row, then whitespace or the end) and one sequence line, and the stream must
    end where the sizes say. A FASTA that does not agree with its table shifts the records, so it fails
    these checks; it is then read by the checked pass of :func:`copy_records`, whose error names the file
    and line (and which writes the file if only the column was wrong, with a warning).
    """
    pool = open_pool(pool_dir)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(ids):
        raise ValueError(f"{len(rows)} rows but {len(ids)} ids")
    if len(rows) and ((np.diff(rows) <= 0).any() or rows[0] < 0 or rows[-1] >= pool.n_rows):
        raise ValueError("rows must be ascending, distinct and within the table")
    if RECORD_BYTES in pool.parquet.schema_arrow.names:
        try:
            return _copy_at_offsets(pool, rows, _id_array(ids), out)
        except _Disagrees as exc:
            log.warning("%s: %s; reading it with the full check instead", pool.table, exc)
    keep = np.zeros(pool.n_rows, dtype=bool)
    keep[rows] = True
    written = copy_records(pool, keep, out)
    if RECORD_BYTES in pool.parquet.schema_arrow.names:
        log.warning(
            "%s: its %s column does not match the FASTA (the records are right)", pool.table, RECORD_BYTES
        )
    return written


def _id_array(ids: list[str]) -> pa.Array:
    """``string_array`` of ids built from one joined buffer instead of one bytes object an id (~90 MB
    less at 2M ids). Pool ids hold no whitespace; a list that does takes ``string_array``."""
    data = "\n".join(ids).encode()
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if not ids or len(newlines) != len(ids) - 1:
        return string_array([i.encode() for i in ids])
    offsets = np.empty(len(ids) + 1, np.int64)  # in the text without its newlines
    offsets[0], offsets[-1] = 0, len(data) - len(newlines)
    offsets[1:-1] = newlines + 1 - np.arange(1, len(ids))
    return _from_buffers(pa.string(), len(ids), offsets.astype(np.int32), data.replace(b"\n", b""))


class _Disagrees(Exception):
    """The FASTA is not where the table's record sizes put it."""


def _offsets(pool: PoolFiles, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Where the records of ``rows`` start and stop in the decompressed FASTA, and its size by the
    table, from the :data:`RECORD_BYTES` column streamed a batch at a time (not 12 bytes a pool row)."""
    starts, stops = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    total, first = 0, 0  # bytes and rows before the batch
    for batch in pool.parquet.iter_batches(columns=[RECORD_BYTES], batch_size=BATCH_ROWS):
        sizes = to_numpy(batch.column(0))
        if batch.column(0).null_count or (len(sizes) and sizes.min() < 4):  # '>' id '\n' residue '\n'
            raise _Disagrees(f"bad {RECORD_BYTES} column")
        lo, hi = np.searchsorted(rows, [first, first + len(sizes)])
        local = rows[lo:hi] - first
        stops[lo:hi] = total + np.cumsum(sizes, dtype=np.int64)[local]
        starts[lo:hi] = stops[lo:hi] - sizes[local]
        total += int(sizes.sum(dtype=np.int64))
        first += len(sizes)
    return starts, stops, total


def _copy_at_offsets(pool: PoolFiles, rows: np.ndarray, ids: pa.Array, out: Path) -> int:
    starts, stops, total = _offsets(pool, rows)
    done, n = 0, len(rows)
    window, at = b"", 0  # decompressed bytes not yet passed, and their offset in the stream
    next_log = PROGRESS_BYTES
    with FastaWriter(out) as writer:
        for chunk in iter_chunks(pool.fasta):
            window = window + chunk if window else chunk
            end = at + len(window)
            upto = int(np.searchsorted(stops, end, side="right"))  # records whole in the window
            if upto > done:
                bounds = np.empty(2 * (upto - done), np.int64)
                bounds[0::2], bounds[1::2] = starts[done:upto] - at, stops[done:upto] - at
                b = bounds.tolist()
                data = b"".join([window[x:y] for x, y in zip(b[0::2], b[1::2], strict=True)])
                record_ends = np.cumsum(stops[done:upto] - starts[done:upto])
                _check_records(data, record_ends, ids.slice(done, upto - done))
                writer.write_records(data, record_ends)
                done = upto
            # keep the window from the next record's start (if it has begun), else nothing
            cut = min(int(starts[done]) - at, len(window)) if done < n else len(window)
            window, at = window[cut:], at + cut
            if at >= next_log:
                log.info(
                    "%s: %.1f of %.1f GB read, %d of %d records written",
                    pool.fasta,
                    at / 1e9,
                    total / 1e9,
                    done,
                    n,
                )
                next_log += PROGRESS_BYTES
        size = at + len(window)
        if size != total or done != n:
            raise _Disagrees(f"the FASTA holds {size} bytes, its {RECORD_BYTES} column sums to {total}")
        return writer.n


def _header_lines(a: np.ndarray, newlines: np.ndarray, heads: np.ndarray) -> bool:
    """Whether every even line (starting at ``heads``; ``newlines``: where the lines end) is a header and
    no odd line holds a '>': as many '>' as headers (the usual case), else each '>' on a header line."""
    if (a[heads] != 62).any():
        return False
    return (
        np.count_nonzero(a == 62) == len(heads)
        or not (np.searchsorted(newlines, np.flatnonzero(a == 62)) % 2).any()
    )


def _check_records(data: bytes, ends: np.ndarray, ids: pa.Array) -> None:
    """Each record of ``data`` (ending at ``ends``) is a header line ``>`` + its id (then whitespace or
    the line's end) and one sequence line without ``>``."""
    a = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(a == 10)
    heads = np.empty(len(ends), np.int64)
    heads[0], heads[1:] = 0, ends[:-1]
    if (
        len(newlines) != 2 * len(ends)
        or not np.array_equal(newlines[1::2], ends - 1)
        or not _header_lines(a, newlines, heads)
        or not _ids_match(a, heads, ids)
    ):
        raise _Disagrees("a record is not at the offset its table row gives")


MAX_SLICED_RUNS = 512  # runs of kept records joined as slices; above, one boolean gather over the block


def kept_bytes(data: bytes, ends: np.ndarray, mask: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The bytes of the records of ``data`` (ending at ``ends``) where ``mask`` is true, and their ends.
    A selection keeps a few scattered records per block: joining the runs of kept records as slices
    costs a fraction of building and applying a byte mask over the whole block."""
    sizes = np.diff(ends, prepend=0)
    edges = np.flatnonzero(np.diff(mask.astype(np.int8), prepend=0, append=0))  # run starts and stops
    if len(edges) // 2 <= MAX_SLICED_RUNS:
        bounds = np.append(0, ends)[edges].tolist()
        kept = b"".join([data[a:b] for a, b in zip(bounds[0::2], bounds[1::2], strict=True)])
    else:
        kept = np.frombuffer(data, np.uint8)[np.repeat(mask, sizes)].tobytes()
    return kept, np.cumsum(sizes[mask])


def write_pool(
    src: os.PathLike | str | PoolFiles,
    stage: Path,
    keep: np.ndarray | None = None,
    new_columns: list[pa.Field] | None = None,
    columns_for: Callable[[int, int], list[pa.Array]] | None = None,
) -> int:
    """Copy the pool in ``src`` to ``stage`` (FASTA + table), only rows where ``keep`` is true.

    ``columns_for(start, stop)`` gives the values of ``new_columns`` for table rows ``start:stop`` (before
    filtering); a column of the same name already in the table is replaced. Returns the rows written.
    """
    pool = open_pool(src)
    new_columns = new_columns or []
    pf = pool.parquet
    n_rows = pool.n_rows
    if keep is not None and len(keep) != n_rows:
        raise ValueError(f"keep has {len(keep)} entries for {n_rows} rows")
    written_fasta = copy_records(pool, keep, stage / FASTA_NAME)
    replaced = {f.name for f in new_columns}
    base = [f for f in pf.schema_arrow if f.name not in replaced]
    schema = pa.schema(base + new_columns)
    written = 0
    with pq.ParquetWriter(stage / TABLE_NAME, schema, compression="zstd") as writer:
        start = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            stop = start + batch.num_rows
            arrays = [batch.column(f.name) for f in base]
            if new_columns:
                arrays += columns_for(start, stop)
            out = pa.RecordBatch.from_arrays(arrays, schema=schema)
            if keep is not None:
                out = out.filter(bool_array(keep[start:stop]))
            writer.write_batch(out)
            written += out.num_rows
            start = stop
    if written != written_fasta:  # cannot happen: both follow the same mask over the same rows
        raise RuntimeError(f"{written_fasta} records but {written} table rows written")
    return written
