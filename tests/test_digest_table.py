"""The numpy hash table behind ``ingest --dedup``: first occurrences and the rows they were seen at."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.pool import digest_table
from bioprune.pool.digest_table import DigestTable


def _oracle(blocks):
    """Per block: positions of digests not seen before, and the first row of each other one (a dict)."""
    first: dict[tuple[int, int], int] = {}
    out, row = [], 0
    for block in blocks:
        new, old = [], []
        for pos, key in enumerate(map(tuple, block.tolist())):
            if key in first:
                old.append(first[key])
            else:
                first[key] = row
                row += 1
                new.append(pos)
        out.append((new, old))
    return out


def _check(blocks, slots):
    table = DigestTable(slots)
    rows = 0
    for block, (new, old) in zip(blocks, _oracle(blocks), strict=True):
        got_new, got_old = table.add(block, rows)
        assert got_new.tolist() == new
        assert got_old.tolist() == old
        rows += len(new)
    assert table.size == rows
    assert 2 * table.size <= len(table.row)


@pytest.mark.parametrize("slots", [2, 1 << 16])
def test_matches_a_dict_oracle(slots):
    """Repeats across and within blocks; from two slots, the table grows many times over."""
    rng = np.random.default_rng(7)
    distinct = rng.integers(0, 2**64, (3000, 2), dtype=np.uint64)
    blocks = [distinct[rng.integers(0, len(distinct), rng.integers(1, 900))] for _ in range(12)]
    _check(blocks, slots)


def test_growing_a_chunk_at_a_time_keeps_every_digest(monkeypatch):
    """The table moves its digests into the doubled one a chunk at a time (bounded temporaries)."""
    monkeypatch.setattr(digest_table, "_GROW_CHUNK", 7)
    rng = np.random.default_rng(3)
    distinct = rng.integers(0, 2**64, (2000, 2), dtype=np.uint64)
    blocks = [distinct[rng.integers(0, len(distinct), rng.integers(1, 700))] for _ in range(10)]
    _check(blocks, 2)


def test_keys_that_share_a_slot_or_a_half():
    """Digests with the same slot bits, or the same first 64 bits, are told apart on all 128 bits, and
    probing passes over them in both directions."""
    rng = np.random.default_rng(1)
    same_slot = np.stack(
        [np.uint64(5) + (rng.integers(1, 2**40, 40, dtype=np.uint64) << np.uint64(20))] * 2, 1
    )
    same_slot[:, 1] = rng.integers(0, 2**64, 40, dtype=np.uint64)
    same_hi = np.stack([np.full(30, 99, np.uint64), rng.integers(0, 2**64, 30, dtype=np.uint64)], 1)
    keys = np.concatenate([same_slot, same_hi])
    blocks = [keys[rng.permutation(len(keys))[:50]] for _ in range(5)]
    blocks.append(np.concatenate([keys, keys[::-1]]))  # every key twice in one block, and again later
    _check(blocks, 4)


def test_within_a_block_the_first_copy_is_kept():
    table = DigestTable(4)
    a, b = [1, 2], [3, 4]
    new, old = table.add(np.array([b, a, b, b, a], np.uint64), 10)
    assert new.tolist() == [0, 1]
    assert old.tolist() == [10, 10, 11]  # b was row 10, a row 11
    new, old = table.add(np.array([a, [5, 6]], np.uint64), 12)
    assert new.tolist() == [1] and old.tolist() == [11]


def test_slots_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        DigestTable(6)
