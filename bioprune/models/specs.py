"""Model shapes: named sizes, overrides, and the checks a shape must pass. Torch-free, so the workflow
plans (and refuses a bad ``model.size`` / ``model.overrides``) without importing torch.

Sizes (layers / hidden / heads / FFN / max tokens incl. ``<cls>``/``<eos>``):

=========  ==========  ===================================================================
backend    size        shape
=========  ==========  ===================================================================
rnafm      tiny        4 / 128 / 4 / 512 / 1024  (0.94M parameters; tests and CPU runs)
rnafm      small       6 / 320 / 8 / 1280 / 1024  (7.8M)
rnafm      official    12 / 640 / 20 / 5120 / 1024  (99.5M, RNA-FM as published)
esmc       tiny        4 / 128 / 4 / 512 / 1024  (1.1M)
esmc       small       6 / 384 / 6 / 1024 / 2048  (10.8M)
esmc       300m        30 / 960 / 15 / 2560 / 2048  (333M as counted here; ESM-C 300M)
esmc       600m        36 / 1152 / 18 / 3072 / 2048  (575M; ESM-C 600M)
=========  ==========  ===================================================================

Any field can be overridden (``build_model("rnafm", "tiny", layers=2)``; ``model.overrides`` in the
config); the spec then records ``size`` as e.g. ``"tiny+layers=2"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from bioprune.errors import ConfigError

BACKENDS = ("rnafm", "esmc")
ARCH_FIELDS = ("layers", "hidden", "heads", "ffn", "max_tokens")


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    max_tokens: int
    size: str = "custom"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**{k: d[k] for k in ("backend", *ARCH_FIELDS)}, size=str(d.get("size", "custom")))


def _spec(backend, size, layers, hidden, heads, ffn, max_tokens):
    return ModelSpec(backend, layers, hidden, heads, ffn, max_tokens, size)


SIZES: dict[str, dict[str, ModelSpec]] = {
    "rnafm": {
        "tiny": _spec("rnafm", "tiny", 4, 128, 4, 512, 1024),
        "small": _spec("rnafm", "small", 6, 320, 8, 1280, 1024),
        "official": _spec("rnafm", "official", 12, 640, 20, 5120, 1024),
    },
    "esmc": {
        "tiny": _spec("esmc", "tiny", 4, 128, 4, 512, 1024),
        "small": _spec("esmc", "small", 6, 384, 6, 1024, 2048),
        "300m": _spec("esmc", "300m", 30, 960, 15, 2560, 2048),
        "600m": _spec("esmc", "600m", 36, 1152, 18, 3072, 2048),
    },
}


def default_backend(alphabet: str) -> str:
    return {"rna": "rnafm", "protein": "esmc"}[alphabet]


def resolve_spec(backend: str, size: str, **overrides) -> ModelSpec:
    """A named size with field overrides applied (None values are ignored). ConfigError on bad names."""
    if backend not in SIZES:
        raise ConfigError(f"unknown model backend {backend!r}; choose one of {list(SIZES)}")
    if size not in SIZES[backend]:
        raise ConfigError(f"unknown {backend} size {size!r}; choose one of {list(SIZES[backend])}")
    extra = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(extra) - set(ARCH_FIELDS)
    if unknown:
        raise ConfigError(f"unknown model setting(s) {sorted(unknown)}; allowed: {list(ARCH_FIELDS)}")
    for k, v in extra.items():
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"model setting {k} must be a positive integer, got {v!r}")
    spec = SIZES[backend][size]
    changed = {k: v for k, v in extra.items() if getattr(spec, k) != v}
    if changed:
        label = size + "".join(f"+{k}={v}" for k, v in sorted(changed.items()))
        spec = replace(spec, **changed, size=label)
    problem = spec_problem(spec)
    if problem:
        raise ConfigError(problem)
    return spec


def spec_problem(spec: ModelSpec) -> str | None:
    """What is wrong with ``spec`` (a model file's or the config's), or None when a model can be built."""
    if spec.backend not in BACKENDS:
        return f"unknown backend {spec.backend!r}; expected one of {list(BACKENDS)}"
    for field in ARCH_FIELDS:
        value = getattr(spec, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{field} must be a positive integer, got {value!r}"
    if spec.hidden % spec.heads:
        return f"hidden size {spec.hidden} is not divisible by {spec.heads} attention heads"
    if spec.max_tokens < 3:
        return "max_tokens must leave room for <cls>, one residue and <eos> (>= 3)"
    return None
