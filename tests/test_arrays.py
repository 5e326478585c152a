"""bioprune.arrays.unique gives np.unique's answer, by a sort."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.arrays import unique


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 5000, 20_000),  # many repeats
        np.random.default_rng(1).integers(0, 2**63, 20_000, dtype=np.uint64),  # id hashes: all distinct
        np.arange(10, dtype=np.int32)[::-1],
        np.array([True, False, True]),
        np.array([7]),
        np.zeros(0, np.int64),
        np.random.default_rng(2).integers(-50, 50, (30, 40)),  # flattened, as np.unique does
    ],
)
def test_unique_equals_numpy(values):
    got, want = unique(values), np.unique(values)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_floats_keep_numpys_nan_handling():
    values = np.array([1.0, np.nan, 1.0, np.nan])
    np.testing.assert_array_equal(unique(values), np.unique(values))  # one NaN, as numpy gives
