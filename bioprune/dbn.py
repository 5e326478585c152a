"""Read dot-bracket files: three lines per record, ``>id`` / sequence / structure (plain or gzip).

This is the format of the bpRNA TR0/VL0/TS0 splits (``{data_dir}/bprna_ss/*.dbn.gz``). Structures use
``.`` for unpaired and ``() [] {} <>`` (plus letter pairs ``Aa``, ``Bb``... for higher pseudoknot orders)
for pairs; a trailing free-energy annotation as RNAfold writes it (``((..)) (-3.20)``) is dropped. Blank
lines between records are allowed. Sequences are returned as written (case kept, no T->U): callers that
compare against a pool normalise them as the pool is normalised.

Every error names the file and line: a header not starting with ``>``, a missing sequence or structure
line, a structure whose length differs from the sequence's, a character that is not a structure symbol,
unbalanced brackets, or a file with no records.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bioprune.errors import InputError
from bioprune.fasta import open_maybe_gzip

OPENING = "([{<"
CLOSING = ")]}>"
_PARTNER = dict(zip(CLOSING, OPENING, strict=True))


@dataclass(frozen=True, slots=True)
class DbnRecord:
    id: str
    sequence: str
    structure: str
    line: int  # 1-based line of the header


def is_dbn_path(path: os.PathLike | str) -> bool:
    """Whether a file name says dot-bracket (``.dbn`` or ``.dbn.gz``)."""
    name = Path(path).name.lower()
    return name.endswith(".dbn") or name.endswith(".dbn.gz")


def read_dbn(path: os.PathLike | str) -> Iterator[DbnRecord]:
    """Yield the records of a dot-bracket file one at a time (streamed)."""
    p = Path(path)
    fh = open_maybe_gzip(p)
    n = 0
    try:
        with fh:
            lines = _numbered_lines(p, fh)
            for line_no, text in lines:
                if not text.startswith(">"):
                    raise InputError(p, f"expected a '>id' header, found {_show(text)}", line=line_no)
                rec_id = text[1:].split(None, 1)[0] if text[1:].strip() else ""
                if not rec_id:
                    raise InputError(p, "header has no id", line=line_no)
                seq_no, seq = next(lines, (line_no, None))
                if seq is None or seq.startswith(">"):
                    raise InputError(p, f"record {rec_id!r} has no sequence line", line=line_no)
                bad = next((c for c in seq if not c.isalpha()), None)
                if bad is not None:
                    what = f"record {rec_id!r}: sequence line has {bad!r}, expected residue letters"
                    raise InputError(p, what, line=seq_no)
                struct_no, struct = next(lines, (seq_no, None))
                if struct is None or struct.startswith(">"):
                    raise InputError(p, f"record {rec_id!r} has no structure line", line=line_no)
                struct = struct.split(None, 1)[0]  # drop an RNAfold energy annotation
                _check_structure(p, struct_no, rec_id, seq, struct)
                n += 1
                yield DbnRecord(rec_id, seq, struct, line_no)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(p, f"truncated or corrupt gzip stream ({exc})") from exc
    if n == 0:
        raise InputError(p, "no dot-bracket records found (empty file)")


def _numbered_lines(path: Path, fh) -> Iterator[tuple[int, str]]:
    """Non-blank lines, stripped, with their 1-based line numbers."""
    for line_no, raw in enumerate(fh, 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(
                path, f"not UTF-8 text ({exc.reason}); not a dot-bracket file?", line=line_no
            ) from exc
        if "\x00" in text:
            raise InputError(path, "binary data, not a dot-bracket file", line=line_no)
        if text:
            yield line_no, text


def _check_structure(path: Path, line: int, rec_id: str, seq: str, struct: str) -> None:
    where = f"record {rec_id!r}"
    if len(struct) != len(seq):
        raise InputError(
            path, f"{where}: structure has {len(struct)} characters, sequence has {len(seq)}", line=line
        )
    stacks: dict[str, list[int]] = {}
    for i, ch in enumerate(struct):
        if ch == ".":
            continue
        if ch in OPENING or (ch.isalpha() and ch.isupper()):
            stacks.setdefault(ch, []).append(i)
        elif ch in CLOSING or (ch.isalpha() and ch.islower()):
            opener = _PARTNER.get(ch, ch.upper())
            if not stacks.get(opener):
                raise InputError(path, f"{where}: unmatched {ch!r} at position {i + 1}", line=line)
            stacks[opener].pop()
        else:
            raise InputError(
                path, f"{where}: {ch!r} at position {i + 1} is not a structure symbol", line=line
            )
    open_left = [(ch, pos[-1]) for ch, pos in stacks.items() if pos]
    if open_left:
        ch, pos = min(open_left, key=lambda x: x[1])
        raise InputError(path, f"{where}: unmatched {ch!r} at position {pos + 1}", line=line)


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def pairs(structure: str) -> list[tuple[int, int]]:
    """0-based base pairs ``(i, j)``, ``i < j``, of a structure already checked by :func:`read_dbn`."""
    stacks: dict[str, list[int]] = {}
    out = []
    for i, ch in enumerate(structure):
        if ch in OPENING or (ch.isalpha() and ch.isupper()):
            stacks.setdefault(ch, []).append(i)
        elif ch in CLOSING or (ch.isalpha() and ch.islower()):
            out.append((stacks[_PARTNER.get(ch, ch.upper())].pop(), i))
    return sorted(out)
