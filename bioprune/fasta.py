"""Streaming FASTA reading and writing (plain or gzip), with errors that name the file and line.

Sequences stay ``bytes`` end to end: normalising and hashing bytes with C-level methods
(``bytes.translate``, ``upper``) is several times faster than going through ``str``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bioprune.errors import InputError
from bioprune.read_ahead import read_ahead

try:  # ISA-L: the same gzip format, ~4x faster to write and ~2x faster to read than zlib.
    from isal import igzip as _gzip
    from isal.isal_zlib import crc32 as _crc32
    from isal.isal_zlib import error as _isal_error

    _GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile, zlib.error, _isal_error)
except ImportError:  # plain zlib still works, only slower
    _gzip = gzip  # type: ignore[misc]
    _crc32 = zlib.crc32
    _GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# Compressions we do not read: named in the error instead of "text before the first header".
_OTHER_COMPRESSION = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
# Bytes read at a time by iter_blocks: big enough that per-read overhead vanishes, small enough to stay
# far below the pool's size.
BLOCK_SIZE = 1 << 20
# Level 1: pool files are rewritten at every step; level 1 compresses ~4x faster than the
# default 9 for ~15% larger files. (ISA-L's levels are 0-3; its 1 is smaller than zlib's 1.)
GZIP_LEVEL = 1
# Level 0: "stored" deflate blocks, no compression (see _StoredGzipFile): for a hand-over file that the
# next step reads once, e.g. ingest's pool FASTA.
STORED = 0
# Records a FastaWriter buffers before one write to the (compressing) file.
RECORDS_PER_WRITE = 4096


@dataclass(slots=True)
class Record:
    id: str
    description: str  # header text after the id ("" when none)
    seq: bytes  # raw residue bytes, line breaks removed, otherwise as in the file
    line: int  # 1-based line number of the header


def open_maybe_gzip(path: os.PathLike | str) -> io.BufferedIOBase:
    """Open a file for binary reading, transparently decompressing gzip (detected by magic bytes)."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if p.is_dir():
        raise InputError(p, "is a directory, expected a FASTA file")
    try:
        fh = open(p, "rb")
    except OSError as exc:
        raise InputError(p, f"cannot open: {exc.strerror}") from exc
    magic = fh.peek(6)[:6]
    if magic[:2] == GZIP_MAGIC:
        fh.close()  # opened again by name: a GzipFile given fileobj= leaves that file open when closed
        try:
            return _gzip.GzipFile(p, mode="rb")  # type: ignore[return-value]
        except OSError as exc:
            raise InputError(p, f"cannot open: {exc.strerror}") from exc
    for other, name in _OTHER_COMPRESSION.items():
        if magic.startswith(other):
            fh.close()
            raise InputError(p, f"{name}-compressed; bioprune reads plain or gzip FASTA (use gzip)")
    return fh


def read_fasta(path: os.PathLike | str) -> Iterator[Record]:
    """Yield the records of a FASTA file one at a time.

    Raises :class:`InputError` (file and line named) for: a missing file, a file with no records,
    text before the first header, a header with no id, and a truncated or corrupt gzip stream.
    Empty records are yielded (with ``seq == b""``) so callers can count them.
    """
    p = Path(path)
    fh = open_maybe_gzip(p)
    line_no = 0
    header: bytes | None = None
    header_line = 0
    chunks: list[bytes] = []
    n_records = 0
    try:
        with fh:
            for raw in fh:
                line_no += 1
                if line_no == 1:
                    raw = raw.removeprefix(UTF8_BOM)
                if raw[:1] == b">":
                    if header is not None:
                        n_records += 1
                        yield _record(p, header, header_line, chunks)
                    header, header_line, chunks = raw, line_no, []
                    continue
                line = raw.rstrip(b"\r\n")
                if header is None:
                    if line.strip() == b"":
                        continue
                    if line_no == 1 and b"\x00" in line:
                        raise InputError(p, "binary data, not a FASTA file", line=line_no)
                    raise InputError(
                        p, f"text before the first '>' header: {_show(line)}; not a FASTA file?", line=line_no
                    )
                chunks.append(line)
    except _GZIP_ERRORS as exc:
        raise InputError(p, f"truncated or corrupt gzip stream after line {line_no} ({exc})") from exc
    if header is None:
        raise InputError(p, "no FASTA records found (empty file or no '>' header)")
    yield _record(p, header, header_line, chunks)


def iter_blocks(path: os.PathLike | str, block_size: int | None = None) -> Iterator[tuple[int, bytes]]:
    r"""Yield ``(first_line, block)``: runs of whole FASTA records, read ``block_size`` (default
    :data:`BLOCK_SIZE`) bytes at a time.

    Each block starts with the ``>`` of a header at the start of a line and ends just before the
    ``\n>`` of the next block's first record, so ``block.split(b"\n>")`` cuts it into records (the
    first keeps its ``>``). The last block may end with newlines. ``first_line`` is the 1-based line
    of the block's first header. This is the fast path for whole pools: per-record work is left to
    the caller's C-level bytes methods instead of a Python loop over lines. Fatal cases raise
    :class:`InputError` exactly as :func:`read_fasta` does.
    """
    p = Path(path)
    block_size = block_size or BLOCK_SIZE  # read at call time, so tests can shrink it
    fh = open_maybe_gzip(p)
    line = 1
    carry = b""
    started = False
    try:
        # closing() first: the read-ahead thread must be done before fh is closed.
        with fh, contextlib.closing(_read_ahead(fh, block_size)) as chunks:
            for chunk in chunks:
                buf = carry + chunk if carry else chunk
                if not started:
                    if len(buf) < len(UTF8_BOM) and UTF8_BOM.startswith(buf):
                        carry = buf  # a byte-order mark cut by the read: wait for the rest
                        continue
                    buf = buf.removeprefix(UTF8_BOM)  # Windows editors start text files with one
                    rest = buf.lstrip(b" \t\r\n\v\f")
                    if not rest:  # only blank lines so far
                        carry = buf
                        continue
                    blank = buf[: len(buf) - len(rest)]
                    start = blank.rfind(b"\n") + 1  # the first non-blank line starts here
                    line += blank.count(b"\n")
                    buf = buf[start:]
                    if buf[:1] != b">":
                        first = buf.split(b"\n", 1)[0].rstrip(b"\r")
                        if b"\x00" in first:
                            raise InputError(p, "binary data, not a FASTA file", line=line)
                        what = f"text before the first '>' header: {_show(first)}; not a FASTA file?"
                        raise InputError(p, what, line=line)
                    started = True
                    carry = b""
                # Search only the new bytes (and one before) so a record longer than a block costs
                # linear, not quadratic, time.
                cut = buf.rfind(b"\n>", max(0, len(carry) - 1))
                if cut <= 0:
                    carry = buf
                    continue
                block = buf[:cut]
                yield line, block
                line += _newlines(block) + 1
                carry = buf[cut + 1 :]
    except _GZIP_ERRORS as exc:
        raise InputError(p, f"truncated or corrupt gzip stream after line {line} ({exc})") from exc
    except OSError as exc:
        raise InputError(p, f"read error after line {line}: {exc.strerror or exc}") from exc
    if not started:
        raise InputError(p, "no FASTA records found (empty file or no '>' header)")
    if carry:
        yield line, carry


def iter_chunks(path: os.PathLike | str, size: int | None = None) -> Iterator[bytes]:
    """The file's bytes (gunzipped), ``size`` (default :data:`BLOCK_SIZE`) at a time, read ahead by a
    helper thread. For a reader that knows where its records are (no line is looked for here); a corrupt
    or unreadable file is an :class:`InputError` as in :func:`iter_blocks`."""
    p = Path(path)
    fh = open_maybe_gzip(p)
    offset = 0  # for the message
    try:
        with fh, contextlib.closing(_read_ahead(fh, size or BLOCK_SIZE)) as chunks:
            for chunk in chunks:
                yield chunk
                offset += len(chunk)
    except _GZIP_ERRORS as exc:
        raise InputError(p, f"truncated or corrupt gzip stream after byte {offset} ({exc})") from exc
    except OSError as exc:
        raise InputError(p, f"read error after byte {offset}: {exc.strerror or exc}") from exc


def _newlines(data: bytes) -> int:
    """``data.count(b"\\n")``, several times faster (numpy compares 16 or 32 bytes at a time)."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def _read_ahead(fh: io.BufferedIOBase, size: int) -> Iterator[bytes]:
    """``fh.read(size)`` chunks, read (and gunzipped, without the GIL) by a helper thread ahead of use."""
    return read_ahead(iter(lambda: fh.read(size), b""), name="fasta-read")


def _record(path: Path, header: bytes, line: int, chunks: list[bytes]) -> Record:
    # The id ends at the first whitespace (space or tab), as in seqkit and ingest's fast path.
    try:
        parts = header[1:].decode("utf-8").split(None, 1)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"header is not valid UTF-8 ({exc.reason})", line=line) from exc
    if not parts:
        raise InputError(path, "header has no sequence id", line=line)
    desc = parts[1].strip() if len(parts) > 1 else ""
    return Record(parts[0], desc, b"".join(chunks), line)


def _show(line: bytes, limit: int = 40) -> str:
    text = line.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


_write_pool: ThreadPoolExecutor | None = None
_write_pool_lock = threading.Lock()


def _writer_thread() -> ThreadPoolExecutor:
    """One helper thread, shared by every FastaWriter of the process (shard opens hundreds at once)."""
    global _write_pool
    with _write_pool_lock:
        if _write_pool is None:
            _write_pool = ThreadPoolExecutor(1, thread_name_prefix="fasta-write")
        return _write_pool


def _forget_writer_thread() -> None:  # a forked child has no copy of the thread
    global _write_pool
    _write_pool = None


os.register_at_fork(after_in_child=_forget_writer_thread)


class _StoredGzipFile:
    """A gzip file whose deflate stream is made of stored (uncompressed) blocks: valid gzip that every
    reader takes, written at the speed of a copy plus a CRC-32 (ISA-L's: ~10 GB/s), and read back by
    ISA-L ~3x faster than level 1. Header as ``GzipFile(mtime=0)`` writes it, so the bytes depend only
    on the data and on how it is cut into writes."""

    _HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, unknown OS
    _MAX = 0xFFFF  # bytes of a stored block

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._crc = 0
        self._size = 0
        try:
            self._fh.write(self._HEADER)
        except BaseException:
            self._fh.close()
            raise

    def write(self, data: bytes) -> int:
        n = len(data)
        if not n:
            return 0
        self._crc = _crc32(data, self._crc)
        self._size += n
        view = memoryview(data)
        parts: list[bytes | memoryview] = []
        full = self._MAX.to_bytes(2, "little") + (self._MAX ^ 0xFFFF).to_bytes(2, "little")
        for pos in range(0, n, self._MAX):
            piece = view[pos : pos + self._MAX]
            size = len(piece)
            # BFINAL=0, BTYPE=00 (stored), then LEN and its one's complement NLEN.
            head = (
                full
                if size == self._MAX
                else size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little")
            )
            parts.append(b"\x00" + head)
            parts.append(piece)
        self._fh.write(b"".join(parts))
        return n

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            # An empty final stored block, then the trailer: CRC-32 and size mod 2**32, little-endian.
            trailer = b"\x01\x00\x00\xff\xff" + self._crc.to_bytes(4, "little")
            self._fh.write(trailer + (self._size & 0xFFFFFFFF).to_bytes(4, "little"))
        finally:
            self._fh.close()


class FastaWriter:
    """Write unwrapped FASTA (one sequence line per record, like ``seqkit -w 0``), gzip when the name ends
    in ``.gz``. Use inside :func:`bioprune.atomic.staged_dir` so a failed step leaves nothing behind."""

    def __init__(self, path: os.PathLike | str, background: bool = True, level: int = GZIP_LEVEL):
        """``level``: gzip level of a ``.gz`` file (:data:`GZIP_LEVEL` by default; :data:`STORED` writes
        gzip without compression, several times faster to write and to read, ~4x larger)."""
        self.path = Path(path)
        # Compression runs on a helper thread (it drops the GIL), overlapping the caller's parsing.
        self._pool = _writer_thread() if background else None
        self._pending: deque[Future] = deque()
        if self.path.suffix == ".gz":
            # mtime=0: the same records give the same bytes, run after run.
            if level == STORED:
                self._fh = _StoredGzipFile(self.path)
            else:
                self._fh = _gzip.GzipFile(self.path, "wb", compresslevel=level, mtime=0)
        else:
            self._fh = open(self.path, "wb")
        self._buf: list[bytes] = []
        self._buffered = 0  # records in _buf
        self.n = 0

    def write(self, rec_id: str, seq: bytes, description: str = "") -> None:
        head = f">{rec_id} {description}\n" if description else f">{rec_id}\n"
        self._buf.append(head.encode())
        self._buf.append(seq + b"\n")
        self.n += 1
        self._buffered += 1
        if self._buffered >= RECORDS_PER_WRITE:
            self.flush()

    def write_pairs(self, heads: list[bytes], seqs: list[bytes]) -> None:
        """Write records given as their header lines (``>id description``) and sequence lines, without
        newlines. The file gets the same bytes, compressed in the same pieces, as :meth:`write` record by
        record would give it (gzip output depends on how the input is cut into writes)."""
        done, n = 0, len(heads)
        while done < n:
            take = min(RECORDS_PER_WRITE - self._buffered, n - done)
            lines: list[bytes] = [b""] * (2 * take + 1)  # the last one: the final newline
            lines[0:-1:2] = heads[done : done + take]
            lines[1:-1:2] = seqs[done : done + take]
            self._buf.append(b"\n".join(lines))
            done += take
            self.n += take
            self._buffered += take
            if self._buffered >= RECORDS_PER_WRITE:
                self.flush()

    def write_records(self, data: bytes, ends) -> None:
        """Write records already formatted as unwrapped FASTA: ``data`` holds them end to end and ``ends``
        (ascending, numpy or list) where each ends. Same bytes, compressed in the same pieces, as
        :meth:`write_pairs` (and :meth:`write`) would give the file, without one object per record."""
        done, n, pos = 0, len(ends), 0
        while done < n:
            take = min(RECORDS_PER_WRITE - self._buffered, n - done)
            stop = int(ends[done + take - 1])
            self._buf.append(data[pos:stop] if pos or stop < len(data) else data)
            pos = stop
            done += take
            self.n += take
            self._buffered += take
            if self._buffered >= RECORDS_PER_WRITE:
                self.flush()

    def write_block(self, data: bytes, n_records: int) -> None:
        """Write ``n_records`` records already formatted as unwrapped FASTA, every line newline-ended."""
        self.flush()
        self._write(data)
        self.n += n_records

    def _write(self, data: bytes) -> None:
        if self._pool is None:
            self._fh.write(data)
            return
        self._pending.append(self._pool.submit(self._fh.write, data))
        while len(self._pending) > 4:  # bounded: a few blocks in flight, and write errors surface here
            self._pending.popleft().result()

    def flush(self) -> None:
        if self._buf:
            self._write(b"".join(self._buf))
            self._buf.clear()
            self._buffered = 0

    def close(self) -> None:
        try:
            self.flush()
            while self._pending:
                self._pending.popleft().result()
        finally:
            for fut in self._pending:  # after an error: let queued writes finish before closing
                fut.exception()
            self._pending.clear()
            self._fh.close()

    def __enter__(self) -> FastaWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
