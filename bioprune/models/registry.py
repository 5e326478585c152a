"""Building models, and the one model file format every step reads and writes. Named sizes and shape
checks live in :mod:`bioprune.models.specs` (torch-free, so the workflow plans without torch).

Model file format (``.pt``, written by :func:`save_model`): one ``torch.save`` dict::

    {"format": "bioprune.model", "version": 1,
     "spec": {"backend": "rnafm", "size": "tiny", "layers": 4, "hidden": 128, "heads": 4,
              "ffn": 512, "max_tokens": 1024},
     "state_dict": {...}}          # the MaskedLM's own state_dict

It holds only tensors, strings and numbers, so it loads with ``torch.load(weights_only=True)``.
:func:`load_model` also reads an official ``RNA-FM_pretrained.pth`` and a transformers ESM-C folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bioprune.atomic import save_torch
from bioprune.errors import ConfigError, InputError
from bioprune.models.base import MaskedLM
from bioprune.models.checkpoint import check_state_dict, load_checked, safe_load
from bioprune.models.specs import (  # noqa: F401 (re-exported: callers build and load through here)
    ARCH_FIELDS,
    BACKENDS,
    SIZES,
    ModelSpec,
    default_backend,
    resolve_spec,
    spec_problem,
)

FORMAT = "bioprune.model"
VERSION = 1


def build_from_spec(spec: ModelSpec, *, seed: int | None = None) -> MaskedLM:
    """A randomly initialised model; ``seed`` makes the initialisation reproducible."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if spec.backend == "rnafm":
            from bioprune.models.rnafm import RnaFM

            model = RnaFM(spec.layers, spec.hidden, spec.heads, spec.ffn, spec.max_tokens)
        elif spec.backend == "esmc":
            from bioprune.models.esmc import Esmc

            model = Esmc(spec.layers, spec.hidden, spec.heads, spec.ffn, spec.max_tokens)
        else:
            raise ConfigError(f"unknown model backend {spec.backend!r}")
    model.spec = spec
    return model


def build_model(backend: str, size: str = "tiny", *, seed: int | None = None, **overrides) -> MaskedLM:
    """``build_model("rnafm", "official")``; overrides: layers, hidden, heads, ffn, max_tokens."""
    return build_from_spec(resolve_spec(backend, size, **overrides), seed=seed)


def spec_of(model: MaskedLM) -> ModelSpec:
    spec = getattr(model, "spec", None)
    if spec is None:  # a model loaded from an official file: describe its shape
        backend = "rnafm" if model.alphabet == "rna" else "esmc"
        spec = ModelSpec(backend, **model.arch(), size="custom")
        model.spec = spec
    return spec


def save_model(model: MaskedLM, path: os.PathLike | str) -> Path:
    """Write ``model`` in the bioprune model format (see module doc), atomically."""
    spec = spec_of(model)
    payload = {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), "state_dict": model.state_dict()}
    return save_torch(payload, path)


def load_model(path: os.PathLike | str) -> MaskedLM:
    """Load a model from any supported source, on CPU, in eval mode.

    - a bioprune model file (``save_model``),
    - an official RNA-FM checkpoint (``RNA-FM_pretrained.pth``, fairseq layout),
    - a transformers ESM-C model folder (``config.json`` + safetensors).

    Raises InputError naming the file and, for a mismatch, the first missing/unexpected/mis-shaped key.
    """
    p = Path(path)
    if p.is_dir():
        from bioprune.models.esmc import is_hf_dir, load_hf_dir

        if not is_hf_dir(p):
            raise InputError(
                p, "is a folder without config.json; expected a model file or a transformers folder"
            )
        model = load_hf_dir(p)
        spec_of(model)
        return model.eval()
    data = safe_load(p, opaque=True)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        model = _load_own(p, data)
    else:
        from bioprune.models.rnafm import is_official, load_official

        if not is_official(data):
            keys = sorted(map(repr, data))[:8] if isinstance(data, dict) else type(data).__name__
            raise InputError(
                p,
                "not a recognised model file: expected a bioprune model (save_model), an official "
                f"RNA-FM checkpoint or a transformers ESM-C folder; top-level keys: {keys}",
            )
        try:
            model = load_official(p, data)
        except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as exc:
            raise InputError(p, f"malformed RNA-FM checkpoint ({type(exc).__name__}: {exc})") from exc
        spec_of(model)
    return model.eval()


def _load_own(path: Path, data: dict) -> MaskedLM:
    if data.get("version") != VERSION:
        raise InputError(
            path, f"model file version {data.get('version')!r} is not supported (expected {VERSION})"
        )
    try:
        spec = ModelSpec.from_dict(data["spec"])
    except (KeyError, TypeError) as exc:
        raise InputError(path, f"model file has an invalid 'spec' (missing or malformed: {exc})") from exc
    problem = spec_problem(spec)
    if problem:
        raise InputError(path, f"model file has an invalid 'spec': {problem}")
    state = data.get("state_dict")
    if not isinstance(state, dict):
        raise InputError(path, "model file has no 'state_dict'")
    # Compare the spec with the file's tensors before allocating anything: a 1 KB file may claim a
    # model of hundreds of GB. First a lower bound on the spec's weights against what the file holds,
    # then the exact shapes of a model built on the meta device (no memory).
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    if _min_weights(spec) > held:
        raise InputError(
            path,
            f"checkpoint does not fit its 'spec': the spec needs at least {_min_weights(spec):,} weights, "
            f"the file holds {held:,}",
        )
    with torch.device("meta"):
        shapes = build_from_spec(spec).state_dict()
    check_state_dict(path, state, shapes)
    model = build_from_spec(spec)
    load_checked(model, path, state)
    return model


def _min_weights(spec: ModelSpec) -> int:
    """A lower bound on the weights of any backend's model of ``spec``: per layer, the attention's four
    hidden x hidden projections and the feed-forward's two hidden x ffn ones."""
    return spec.layers * (4 * spec.hidden * spec.hidden + 2 * spec.hidden * spec.ffn)


def param_count(model: nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
