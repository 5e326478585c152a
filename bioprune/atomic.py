"""Write outputs so that a failed step leaves nothing half-written behind.

Every file is first written under a staging folder beside its final place (same file system, so the
final rename is atomic) and only moved into place once the whole step has succeeded.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bioprune.errors import BiopruneError

_OS_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def os_error_message(exc: OSError, path: os.PathLike | str) -> str:
    """A one-line, user-facing description of an OS error on an output path."""
    hint = _OS_HINTS.get(exc.errno, exc.strerror or str(exc))
    return f"{path}: cannot write output: {hint}"


@contextlib.contextmanager
def output_errors(path: os.PathLike | str) -> Iterator[None]:
    """Report an OSError raised inside the block as a one-line error on the output ``path``.

    For outputs that cannot be staged (a training run's resumable work folder, say)."""
    try:
        yield
    except OSError as exc:
        raise BiopruneError(os_error_message(exc, path)) from exc


def _owner() -> str:
    """``pid@host``: written into every temporary name so a later run can tell whose it is."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Delete temporaries that a killed process (SIGKILL, out of memory) left in ``folder``.

    Only those made on this host by a process that no longer runs: another host's may still be in use
    on a shared file system."""
    here = socket.gethostname()
    pattern = re.compile(re.escape(prefix) + r"(\d+)@(.+)\.[^.]+" + re.escape(suffix) + "$")
    for path in folder.glob(glob.escape(prefix) + "*" + suffix):
        m = pattern.match(path.name)
        if m and m[2] == here and not _alive(int(m[1])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(out_dir: os.PathLike | str) -> Iterator[Path]:
    """Yield a staging folder; on success move every file in it into ``out_dir``.

    Files are moved in sorted order except ``*report*.json`` which is moved last, so a report's
    presence means the step finished. On any error the staging folder is removed and ``out_dir``
    keeps whatever it held before; one a killed run left behind is removed by the next run.
    """
    out = Path(out_dir)
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale(out, ".staging-", "")
        stage = Path(tempfile.mkdtemp(prefix=f".staging-{_owner()}.", dir=out))
    try:
        yield stage
        entries = sorted(stage.iterdir(), key=lambda p: ("report" in p.name, p.name))
        for entry in entries:
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    except OSError as exc:
        raise BiopruneError(os_error_message(exc, out)) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success, delete it on error.

    A temporary of ``path`` that a killed run left behind is removed by the next run."""
    final = Path(path)
    with output_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(final.parent, f".{final.name}.", ".tmp")
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{_owner()}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except OSError as exc:
        raise BiopruneError(os_error_message(exc, final)) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_torch(obj, path: os.PathLike | str) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, with disk errors reported like every other output.

    torch's own file writer turns a full disk into a bare RuntimeError; serialising to memory first and
    writing with Python's I/O keeps the OSError (and so the one-line message) intact.
    """
    import io

    import torch  # only steps that save tensors pay for the import

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)
