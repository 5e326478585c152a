"""The diagonal empirical Fisher over D_sub, as exact map-reduce partial sums.

F_j = (1/|D_sub|) sum_{z in D_sub} g_j(z)^2 is a sum, so each shard stores the sum of g_j^2 over its
D_sub members and their count (a *partial*), and :func:`reduce_fisher` adds partials into the *total*.
Sums are float64, so the result does not depend (beyond float64 rounding) on how D_sub was sharded.

File format (``torch.save`` of plain types, read with ``weights_only=True``)::

    {"format": "bioprune.fisher", "version": 1, "kind": "partial" | "total",
     "provenance": {"model_sha256": ..., "block": ..., "loss_mode": ..., "max_length": ...,
                    "long_sequences": ..., ["mask_seed": ..., "mask_prob": ...]},
     "n": int, "sums": {param name: float64 tensor},
     "ids": [D_sub ids counted], "ids_file": {"sha256": ..., "n": ...}, "sources": [shard file names]}

The score step refuses a Fisher whose provenance differs from its own model and settings.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bioprune.atomic import save_torch
from bioprune.errors import InputError
from bioprune.influence.grads import GradientEngine
from bioprune.influence.passes import file_sha256, iter_gradients, shard_records
from bioprune.influence.settings import InfluenceSettings
from bioprune.models.base import MaskedLM

log = logging.getLogger(__name__)

FORMAT = "bioprune.fisher"
VERSION = 1


@dataclass
class Fisher:
    kind: str  # "partial" (one shard) or "total" (reduced)
    provenance: dict
    n: int
    sums: dict[str, torch.Tensor]  # float64 sum over counted sequences of g^2, per block parameter
    ids: list[str] = field(default_factory=list)
    ids_file: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def diagonal(self) -> dict[str, torch.Tensor]:
        """F = sums / n."""
        if self.n < 1:
            raise ValueError("a Fisher over zero sequences has no diagonal")
        return {k: v / self.n for k, v in self.sums.items()}

    def to_payload(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "provenance": dict(self.provenance),
            "n": int(self.n),
            "sums": {k: v.detach().cpu().to(torch.float64).contiguous() for k, v in self.sums.items()},
            "ids": list(self.ids),
            "ids_file": dict(self.ids_file),
            "sources": list(self.sources),
        }


def provenance(model_sha256: str, settings: InfluenceSettings) -> dict:
    return {"model_sha256": model_sha256, **settings.loss_definition()}


def read_ids(path: os.PathLike | str) -> list[str]:
    """D_sub ids, one per line (blank lines ignored). Duplicate ids are an error."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(p, "no such ids file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, f"cannot read ids file ({exc})") from exc
    ids, seen = [], set()
    for i, line in enumerate(lines, 1):
        rid = line.strip()
        if not rid:
            continue
        if rid in seen:
            raise InputError(p, f"duplicate id {rid!r}", line=i)
        seen.add(rid)
        ids.append(rid)
    if not ids:
        raise InputError(p, "no ids (empty file)")
    return ids


def squared_gradient_sum(
    model: MaskedLM,
    engine: GradientEngine,
    records,
    source,
    settings: InfluenceSettings,
    *,
    progress: bool = True,
) -> torch.Tensor:
    """Sum over ``records`` of each one's squared gradient (float64, flat, on the engine's device): the
    diagonal Fisher before dividing by the count."""
    total = torch.zeros(engine.n_params, dtype=torch.float64, device=engine.device)
    grads = iter_gradients(model, engine, records, source, settings, progress=progress)
    for _items, _losses, chunks in grads:
        for _idx, g in chunks:
            total += g.square().sum(0, dtype=torch.float64)
    return total


def compute_partial(
    model: MaskedLM,
    model_sha256: str,
    shard: os.PathLike | str,
    ids_path: os.PathLike | str,
    settings: InfluenceSettings,
    *,
    progress: bool = True,
) -> Fisher:
    """Sum of squared per-sample gradients over the D_sub members of one shard."""
    ids = read_ids(ids_path)
    wanted = set(ids)
    device = next(model.parameters()).device
    engine = GradientEngine(model, settings, device)
    found: list[str] = []
    seen: set[str] = set()

    def members():
        for rec in shard_records(shard):
            if rec.id in wanted:
                if rec.id in seen:
                    raise InputError(shard, f"D_sub id {rec.id!r} occurs twice", line=rec.line)
                seen.add(rec.id)
                found.append(rec.id)
                yield rec

    total = squared_gradient_sum(model, engine, members(), shard, settings, progress=progress)
    log.info("fisher: %d of %d D_sub sequences are in %s", len(found), len(ids), shard)
    return Fisher(
        kind="partial",
        provenance=provenance(model_sha256, settings),
        n=len(found),
        sums=_split(total.cpu(), engine.param_shapes),
        ids=found,
        ids_file={"sha256": file_sha256(ids_path), "n": len(ids)},
        sources=[Path(shard).name],
    )


def _split(flat: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    out, a = {}, 0
    for name, shape in shapes.items():
        k = int(torch.Size(shape).numel())
        out[name] = flat[a : a + k].reshape(shape).clone()
        a += k
    return out


def save_fisher(fisher: Fisher, path: os.PathLike | str) -> Path:
    return save_torch(fisher.to_payload(), path)


def load_fisher(path: os.PathLike | str) -> Fisher:
    from bioprune.models.checkpoint import safe_load

    p = Path(path)
    data = safe_load(p)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(p, "not a bioprune Fisher file (written by `bioprune fisher` / `fisher-reduce`)")
    if data.get("version") != VERSION:
        raise InputError(
            p, f"Fisher file version {data.get('version')!r} is not supported (expected {VERSION})"
        )
    try:
        fisher = Fisher(
            kind=str(data["kind"]),
            provenance=dict(data["provenance"]),
            n=int(data["n"]),
            sums={str(k): v for k, v in data["sums"].items()},
            ids=list(data["ids"]),
            ids_file=dict(data["ids_file"]),
            sources=list(data["sources"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(p, f"malformed Fisher file ({exc!r})") from exc
    if fisher.kind not in ("partial", "total"):
        raise InputError(p, f"unknown Fisher kind {fisher.kind!r}")
    for k, v in fisher.sums.items():
        if not isinstance(v, torch.Tensor) or v.dtype != torch.float64:
            raise InputError(p, f"Fisher sum {k!r} is not a float64 tensor")
    return fisher


def _differences(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))


def reduce_fisher(paths: list[os.PathLike | str]) -> Fisher:
    """Add partial Fisher sums (exact). Refuses partials of different provenance, D_sub lists or parameter
    shapes, an id counted twice, and a sum that misses D_sub ids."""
    if not paths:
        raise InputError("fisher-reduce", "no partial Fisher files given")
    first_path = Path(paths[0])
    first = load_fisher(first_path)
    total = {k: v.clone() for k, v in first.sums.items()}
    n = 0
    ids: list[str] = []
    owner: dict[str, Path] = {}
    sources: list[str] = []
    for raw in paths:
        p = Path(raw)
        f = first if p == first_path else load_fisher(p)
        if f.kind != "partial":
            raise InputError(p, "is a reduced Fisher, not a partial")
        if f.provenance != first.provenance:
            raise InputError(
                p,
                f"provenance differs from {first_path.name}: {_differences(f.provenance, first.provenance)}",
            )
        if f.ids_file != first.ids_file:
            raise InputError(p, f"was computed from a different D_sub ids file than {first_path.name}")
        shapes = {k: tuple(v.shape) for k, v in f.sums.items()}
        if shapes != {k: tuple(v.shape) for k, v in first.sums.items()}:
            raise InputError(p, f"parameter names or shapes differ from {first_path.name}")
        for rid in f.ids:
            if rid in owner:
                raise InputError(p, f"D_sub id {rid!r} is also counted in {owner[rid].name}")
            owner[rid] = p
        if p != first_path:
            for k, v in f.sums.items():
                total[k] += v
        repeated = set(sources) & set(f.sources)
        if repeated:
            raise InputError(p, f"shard {sorted(repeated)[0]} is already counted by another partial")
        n += f.n
        ids.extend(f.ids)
        sources.extend(f.sources)
    expected = int(first.ids_file.get("n", n))
    if n != expected:
        raise InputError(
            first_path,
            f"the partials count {n} D_sub sequences but the ids file lists {expected}: "
            f"{expected - n} ids are in none of the {len(paths)} shards given",
        )
    return Fisher("total", first.provenance, n, total, ids, first.ids_file, sources)
