"""bioprune.arrays gives np.unique's answers, by a sort (unique) or by marking codes (unique_codes)."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.arrays import unique, unique_codes


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


@pytest.mark.parametrize(
    "codes",
    [
        np.random.default_rng(3).integers(0, 500, 5_000),  # clusters: many rows each
        np.random.default_rng(4).integers(0, 50_000, 2_000, dtype=np.int32),  # sparse codes
        np.array([10**12, 5, 10**12]),  # a range far above the count: np.unique's own way
        np.array([0]),
        np.zeros(0, np.int64),
        np.array([3, -1, 3]),  # negative: np.unique's own way
    ],
)
def test_unique_codes_equals_numpy(codes):
    used, inverse = unique_codes(codes)
    want_used, want_inverse = np.unique(codes, return_inverse=True)
    assert used.dtype == want_used.dtype
    np.testing.assert_array_equal(used, want_used)
    np.testing.assert_array_equal(inverse, want_inverse)
    np.testing.assert_array_equal(used[inverse], codes)
