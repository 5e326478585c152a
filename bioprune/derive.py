"""Make the files the workflow reads out of what the data sets' canonical sources publish.

Pure functions over local files, so the download step can be tested without a network: a member of a
zip or Debian archive, and the ungapped seed FASTA of Rfam Stockholm alignments.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from bioprune.errors import InputError

_AR_MAGIC = b"!<arch>\n"
_GAPS = str.maketrans("", "", ".-~_")


@contextmanager
def zip_member(archive: Path, member: str) -> Iterator[BinaryIO]:
    """An open binary stream of ``member`` of the zip file ``archive``."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
            yield fh
    except KeyError:
        raise InputError(archive, f"the zip archive has no member {member!r}") from None
    except zipfile.BadZipFile as exc:
        raise InputError(archive, f"not a zip archive ({exc})") from None


def _ar_members(fh: BinaryIO) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of an ar archive (a .deb), leaving ``fh`` at the member's data."""
    while True:
        header = fh.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ValueError("truncated or malformed ar member header")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = fh.tell()
        yield name, size
        fh.seek(start + size + size % 2)  # members are padded to even offsets


@contextmanager
def deb_member(archive: Path, member: str) -> Iterator[BinaryIO]:
    """An open binary stream of the file ``member`` (``./usr/...``) of a Debian package's data.tar.*."""
    with open(archive, "rb") as fh:
        if fh.read(8) != _AR_MAGIC:
            raise InputError(archive, "not a Debian package (no ar archive header)")
        try:
            for name, size in _ar_members(fh):
                if name.startswith("data.tar"):
                    data = io.BytesIO(fh.read(size))  # tarfile needs a seekable stream; packages are small
                    break
            else:
                raise InputError(archive, "the Debian package has no data.tar member")
        except ValueError as exc:
            raise InputError(archive, str(exc)) from None
    with tarfile.open(fileobj=data) as tar:
        try:
            stream = tar.extractfile(member)
        except KeyError:
            stream = None
        if stream is None:
            raise InputError(archive, f"the Debian package has no file {member!r}")
        with stream:
            yield stream


def stockholm_records(path: Path) -> Iterator[tuple[str, str]]:
    """(header, sequence) of every seed sequence of one Stockholm file, in alignment order.

    The header is ``NAME/START-END ACCESSION ID`` (from ``#=GF AC`` / ``#=GF ID``); the sequence is ungapped
    (``.-~_`` removed), upper-cased, T -> U. Interleaved (multi-block) alignments are joined per name."""
    accession = family = None
    rows: dict[str, list[str]] = {}
    # Rfam's author lines are not always UTF-8; sequence names and residues are ASCII.
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("#=GF AC"):
                accession = line.split()[2]
            elif line.startswith("#=GF ID"):
                family = line.split()[2]
            elif line.strip() and not line.startswith(("#", "//")):
                name, _, residues = line.strip().partition(" ")
                rows.setdefault(name, []).append(residues.strip())
    if accession is None or family is None:
        raise InputError(path, "no '#=GF AC' or '#=GF ID' line: not an Rfam Stockholm seed file")
    for name, parts in rows.items():
        sequence = "".join(parts).translate(_GAPS).upper().replace("T", "U")
        yield f"{name} {accession} {family}", sequence


def stockholm_to_fasta(paths: Iterable[Path], out: TextIO) -> int:
    """Write every seed sequence of the Stockholm files ``paths`` (in the order given) as one-line FASTA
    records; returns the number of records."""
    n = 0
    for path in paths:
        for header, sequence in stockholm_records(path):
            out.write(f">{header}\n{sequence}\n")
            n += 1
    return n
