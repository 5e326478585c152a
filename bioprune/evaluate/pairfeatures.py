"""Pair features of the 2-D structure heads (rna_ss tasks, see docs/evaluation.md, "Structure heads").

For a sequence of length L every feature is a [C, L, L] tensor indexed by position pairs (i, j):

- :func:`pair_onehot`: the 4 x 4 outer product of the nucleotide one-hots of i and j (16 channels, A C G U;
  T counts as U, any other letter is all-zero);
- :func:`distance_bins`: one-hot bins of |j - i| (edges :data:`DISTANCE_EDGES`), the relative distance;
- :func:`attention_features`: attention maps of a language model (one channel per layer and head, or per
  layer), symmetrised and APC-corrected as ESM's contact head does
  (``a + a^T``, then ``x - rowsum x colsum / total`` per channel);
- :func:`allowed_pairs`: the pairs a structure may contain: canonical Watson-Crick (AU, CG) and GU wobble
  pairs with ``j - i > min_loop`` (a hairpin loop of at least ``min_loop`` bases).
"""

from __future__ import annotations

import numpy as np
import torch

NUCLEOTIDES = "ACGU"
CANONICAL = frozenset({"AU", "UA", "CG", "GC", "GU", "UG"})
# upper edges of the |j - i| bins (the last bin takes every longer distance)
DISTANCE_EDGES = (1, 2, 3, 4, 5, 6, 8, 11, 16, 24, 32, 48, 64, 96, 128)
N_DISTANCE = len(DISTANCE_EDGES) + 1


def nucleotide_index(seq: str) -> np.ndarray:
    """0..3 for A C G U (T as U), -1 for any other letter."""
    table = np.full(256, -1, dtype=np.int64)
    for k, c in enumerate(NUCLEOTIDES):
        table[ord(c)] = table[ord(c.lower())] = k
    table[ord("T")] = table[ord("t")] = 3
    return table[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def residue_onehot(seq: str) -> torch.Tensor:
    """[L, 4] nucleotide one-hot (the floor's stand-in for per-residue embeddings)."""
    idx = nucleotide_index(seq)
    out = torch.zeros(len(seq), 4)
    ok = idx >= 0
    out[torch.from_numpy(np.flatnonzero(ok)), torch.from_numpy(idx[ok])] = 1.0
    return out


def pair_onehot(seq: str) -> torch.Tensor:
    """[16, L, L]: channel 4 a + b is 1 where residue i is nucleotide a and residue j is b."""
    x = residue_onehot(seq)  # [L, 4]
    return torch.einsum("ia,jb->abij", x, x).reshape(16, len(seq), len(seq))


def distance_bins(length: int) -> torch.Tensor:
    """[N_DISTANCE, L, L] one-hot bin of |j - i|."""
    i = torch.arange(length)
    d = (i[None, :] - i[:, None]).abs()
    b = torch.bucketize(d, torch.tensor(DISTANCE_EDGES))
    return torch.nn.functional.one_hot(b, N_DISTANCE).permute(2, 0, 1).float()


def allowed_pairs(seq: str, min_loop: int) -> np.ndarray:
    """[L, L] bool, upper triangle: canonical or GU pairs with ``j - i > min_loop``."""
    idx = nucleotide_index(seq)
    ok = np.zeros((4, 4), dtype=bool)
    for p in CANONICAL:
        ok[NUCLEOTIDES.index(p[0]), NUCLEOTIDES.index(p[1])] = True
    n = len(seq)
    valid = idx >= 0
    m = ok[np.where(valid, idx, 0)[:, None], np.where(valid, idx, 0)[None, :]]
    m &= valid[:, None] & valid[None, :]
    i = np.arange(n)
    return m & ((i[None, :] - i[:, None]) > min_loop)


def apc(x: torch.Tensor) -> torch.Tensor:
    """Average product correction per channel of [C, L, L] maps (as ESM's contact head)."""
    a1 = x.sum(-1, keepdim=True)
    a2 = x.sum(-2, keepdim=True)
    total = x.sum((-1, -2), keepdim=True).clamp_min(1e-12)
    return x - a1 * a2 / total


def attention_features(maps: torch.Tensor) -> torch.Tensor:
    """Symmetrised, APC-corrected attention maps: [C, L, L] -> [C, L, L] (residue positions only)."""
    maps = maps.float()
    return apc(maps + maps.transpose(-1, -2))


def onehot_pair_input(seq: str) -> torch.Tensor:
    """[16 + N_DISTANCE, L, L]: nucleotide-pair one-hot and distance bins (input of every floor)."""
    return torch.cat([pair_onehot(seq), distance_bins(len(seq))])
