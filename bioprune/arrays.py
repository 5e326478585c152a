"""Array helpers that numpy has, but slowly in the version the project runs on."""

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
