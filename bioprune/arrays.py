"""np.unique for the arrays of this project (many distinct integers; codes of a bounded range), faster."""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` (the sorted distinct values, flattened) of an integer or boolean array, by
    one sort. numpy 2.4 finds the distinct values of a plain ``np.unique`` call with a hash table, which
    is 25-50x slower than sorting when most values differ: 0.35 s against 0.009 s for 442,071 int64 row
    numbers, 4.9 s against 0.09 s for 4M (ingest --dedup's duplicates, held-out id hashes, MMseqs2
    representatives). Other dtypes (NaN handling) go to ``np.unique``."""
    values = np.asarray(values)
    if values.dtype.kind not in "biu":
        return np.unique(values)
    ordered = np.sort(values, axis=None)
    if ordered.size < 2:
        return ordered
    first = np.empty(ordered.size, bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def unique_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` of a 1-D array of non-negative integer codes (cluster or
    family numbers), by marking the codes in use instead of sorting: 0.28 s against 4.0 s for 20M codes
    of 2M clusters. Codes whose range is far above their count, or other arrays, go to ``np.unique``."""
    codes = np.asarray(codes)
    if codes.ndim != 1 or codes.dtype.kind not in "iu" or not codes.size:
        return np.unique(codes, return_inverse=True)
    top = int(codes.max())
    if codes.min() < 0 or top > 4 * codes.size + 1024:  # (the marks would outweigh the codes)
        return np.unique(codes, return_inverse=True)
    in_use = np.zeros(top + 1, bool)
    in_use[codes] = True
    position = np.cumsum(in_use, dtype=np.intp) - 1
    return np.flatnonzero(in_use).astype(codes.dtype), position[codes]
