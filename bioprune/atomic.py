"""Write outputs so that a failed step leaves nothing half-written behind.

Every file is first written under a staging folder beside its final place (same file system, so the
final rename is atomic) and only moved into place once the whole step has succeeded.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
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


def owner_tag() -> str:
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


def remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Delete temporaries that a killed process (SIGKILL, out of memory) left in ``folder``.

    Only those made on this host by a process that no longer runs: another host's may still be in use
    on a shared file system."""
    here = socket.gethostname()
    pattern = re.compile(re.escape(prefix) + r"(\d+)@(.+)\.[^.]+" + re.escape(suffix) + "$")
    try:
        candidates = list(folder.glob(glob.escape(prefix) + "*" + suffix))
    except OSError:  # an unreadable folder: nothing of ours to clean there
        return
    for path in candidates:
        m = pattern.match(path.name)
        if m and m[2] == here and not _alive(int(m[1])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask races with threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into(entry: Path, target: Path) -> None:
    """Move ``entry`` to ``target``; a folder is merged into an existing folder of that name.

    Only names the step wrote are replaced: a user's files beside them (``report/figures/notes.txt``)
    stay."""
    if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
        for child in sorted(entry.iterdir()):
            _move_into(child, target / child.name)
        entry.rmdir()
        return
    if target.is_dir() and not target.is_symlink():
        # A file replacing a folder of the same name would destroy whatever the folder holds.
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of an output file", str(target))
    os.replace(entry, target)


@contextlib.contextmanager
def staged_dir(out_dir: os.PathLike | str) -> Iterator[Path]:
    """Yield a staging folder; on success move every file in it into ``out_dir``.

    Files are moved in sorted order except ``*report*.json`` which is moved last, so a report's
    presence means the step finished. A staged sub-folder is merged into an existing one: files the
    step did not write are never deleted. On any error the staging folder is removed and ``out_dir``
    keeps whatever it held before; one a killed run left behind is removed by the next run.
    """
    out = Path(out_dir)
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        remove_stale(out, ".staging-", "")
        stage = Path(tempfile.mkdtemp(prefix=f".staging-{owner_tag()}.", dir=out))
    try:
        yield stage
        entries = sorted(stage.iterdir(), key=lambda p: ("report" in p.name, p.name))
        for entry in entries:
            _move_into(entry, out / entry.name)
    except OSError as exc:
        raise BiopruneError(os_error_message(exc, out)) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success, delete it on error.

    The file gets the mode an ordinary ``open`` would give it (0666 less the umask), so others in a
    shared results folder can read it when the umask allows. A temporary of ``path`` that a killed run
    left behind is removed by the next run. When the temporary cannot be removed (its folder became
    read-only), the original error is reported and the next run removes it."""
    final = Path(path)
    with output_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent, f".{final.name}.", ".tmp")
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{owner_tag()}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes it 0600
        os.replace(tmp_path, final)
    except OSError as exc:
        raise BiopruneError(os_error_message(exc, final)) from exc
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind a failed cleanup
            tmp_path.unlink(missing_ok=True)


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


def write_json(path: os.PathLike | str, obj, *, sort_keys: bool = False) -> Path:
    """``obj`` as indented JSON (and a final newline) at ``path``, written atomically: a report is there
    whole or not at all."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")
    return Path(path)
