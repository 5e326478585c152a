"""The sort join of score ids to pool rows (bioprune.select.join): exact rows, whatever the chunking,
and None (so the caller's exact join names the id) whenever an id cannot be paired."""

import numpy as np
import pyarrow as pa
import pytest

from bioprune.select import join


@pytest.fixture
def pool():
    ids = [f"id{i}" for i in range(3000)] + ["é", "", "x" * 41, "abcdefgh"]
    return pa.array(ids)


def shuffled(pool, rng, n=None):
    perm = rng.permutation(len(pool))[:n]
    ids = pool.take(pa.array(perm))
    return perm, pa.chunked_array([ids.slice(0, 100), ids.slice(100)])


def test_rows_of_shuffled_and_subset_ids(pool):
    rng = np.random.default_rng(0)
    perm, ids = shuffled(pool, rng)
    assert np.array_equal(join.match_rows(ids, pool), perm)
    perm, ids = shuffled(pool, rng, 1000)
    assert np.array_equal(join.match_rows(ids, pa.chunked_array([pool.slice(0, 7), pool.slice(7)])), perm)


def test_an_id_not_in_the_pool_is_not_paired(pool):
    _, ids = shuffled(pool, np.random.default_rng(1))
    ghost = pa.chunked_array([pa.array(["ghost"]), ids.combine_chunks().slice(1)])
    assert join.match_rows(ghost, pool) is None
    assert join.match_rows(ghost.slice(0, 500), pool) is None


def test_the_hash_depends_on_the_bytes_only(pool):
    values = pool.to_pylist()[-4:] + ["s643243", "a"]
    want = np.array([join.id_hashes(pa.array([v]))[0] for v in values], np.uint64)
    as_binary = pa.array([v.encode() for v in values], pa.binary())
    chunked = pa.chunked_array([pa.array(["z" * 30, *values[:2]]).slice(1), pa.array(values[2:])])
    for other in (pa.array(values), as_binary, chunked, pa.array(values, pa.large_string())):
        assert np.array_equal(join.id_hashes(other), want)
    assert len(set(want.tolist())) == len(values)


def test_hash_prefix_collisions_are_paired_by_their_strings(pool, monkeypatch):
    """With 3 bits of hash left almost every id collides: the strings decide."""
    real = join.id_hashes
    top3 = np.uint64(7 << 60)
    monkeypatch.setattr(
        join, "id_hashes", lambda a, bits=0: (real(a) & top3) | (real(a, bits) & np.uint64((1 << bits) - 1))
    )
    monkeypatch.setattr(join, "MAX_FIXUP", 10**9)
    rng = np.random.default_rng(2)
    perm, ids = shuffled(pool, rng)
    assert np.array_equal(join.match_rows(ids, pool), perm)
    perm, ids = shuffled(pool, rng, 700)
    assert np.array_equal(join.match_rows(ids, pool), perm)
    monkeypatch.setattr(join, "MAX_FIXUP", 10)  # too many to pair by string: the caller's exact join
    assert join.match_rows(ids, pool) is None
