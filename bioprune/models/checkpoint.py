"""Reading checkpoint files safely and comparing their tensors with a model, with errors a user can act on.

Every checkpoint is read with ``torch.load(weights_only=True)``: no code from the file runs. Official
training checkpoints (fairseq's ``RNA-FM_pretrained.pth``) also pickle training-time Python objects
(an ``argparse.Namespace``, omegaconf configs, meters, ...). :func:`safe_load` allows the Namespace
and, for ``opaque=True``, turns every other foreign class into an inert :class:`Opaque` record instead
of importing it, so such a file loads without fairseq or omegaconf installed and without trusting it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from bioprune.errors import InputError

_GLOBAL_RE = re.compile(r"GLOBAL (\S+) was not an allowed global")
_MAX_FOREIGN = 256  # an honest checkpoint names a handful of classes; stop before looping forever


class Opaque:
    """Stand-in for a pickled object of a class we refuse to import; keeps its raw state for inspection."""

    _name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<opaque {self._name}>"


def _stub(name: str) -> type:
    return type(f"Opaque[{name}]", (Opaque,), {"_name": name})


def safe_load(path: os.PathLike | str, *, opaque: bool = False):
    """``torch.load(path, weights_only=True)`` on CPU, with file-naming errors.

    With ``opaque=True``, unknown classes in the pickle become :class:`Opaque` records (see module doc)."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such checkpoint file")
    if p.is_dir():
        raise InputError(p, "is a folder, expected a checkpoint file")
    allowed: list = [argparse.Namespace]
    for _ in range(_MAX_FOREIGN):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _GLOBAL_RE.search(str(exc))
            if not (opaque and match):
                if _looks_like_text(p):
                    raise InputError(p, "is a text file, not a PyTorch checkpoint") from exc
                cause = _unpickling_cause(exc)
                raise InputError(p, f"cannot be read safely as a checkpoint ({cause})") from exc
            name = match.group(1)
            allowed.append((_stub(name), name))
        except MemoryError as exc:
            raise InputError(p, "corrupt checkpoint: it asks for more memory than this machine has") from exc
        except Exception as exc:  # noqa: BLE001  (garbage bytes raise IndexError, KeyError, struct.error...)
            if _looks_like_text(p):
                raise InputError(p, "is a text file, not a PyTorch checkpoint") from exc
            cause = _first_line(exc)
            raise InputError(p, f"corrupt or truncated checkpoint, or not one at all ({cause})") from exc
    raise InputError(p, f"checkpoint pickles more than {_MAX_FOREIGN} foreign classes; refusing to read it")


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and b"\0" not in head


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# Sentences of torch's "Weights only load failed" message that are advice, not cause. One of them tells
# the user to retry with weights_only=False, which runs whatever code the file holds: never repeat it.
_ADVICE = ("weights_only", "Check the documentation", "Please file an issue", "You can use")


def _unpickling_cause(exc: BaseException) -> str:
    """What torch's safe unpickler refused (``Unsupported operand 48``, ``GLOBAL os.system ...``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if not any(a in line for a in _ADVICE)]
    cause = " ".join(causes) or "the file holds objects a safe load refuses"
    cause = re.split(r"\.? ?Please use `torch\.serialization", cause)[0]
    return cause[:200]


def check_state_dict(
    path: os.PathLike | str,
    found: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    *,
    optional: tuple[str, ...] = (),
) -> None:
    """Raise InputError naming the file and the first missing, unexpected or mis-shaped key.

    Keys are checked in the model's order, so "first" is stable. ``optional`` lists expected keys a file
    may lack."""
    for key, tensor in expected.items():
        if key not in found:
            if key in optional:
                continue
            raise InputError(path, f"checkpoint does not fit the model: missing key {key!r}")
        got = found[key]
        if not isinstance(got, torch.Tensor):
            raise InputError(path, f"checkpoint does not fit the model: {key!r} is not a tensor")
        if tuple(got.shape) != tuple(tensor.shape):
            raise InputError(
                path,
                f"checkpoint does not fit the model: key {key!r} has shape {list(got.shape)}, "
                f"the model expects {list(tensor.shape)}",
            )
    for key in found:
        if key not in expected:
            raise InputError(path, f"checkpoint does not fit the model: unexpected key {key!r}")


def load_checked(module: torch.nn.Module, path, state: Mapping[str, torch.Tensor], optional=()) -> None:
    """Check ``state`` against ``module`` (clear error) and copy it in."""
    check_state_dict(path, state, module.state_dict(), optional=tuple(optional))
    module.load_state_dict(dict(state), strict=not optional)
