"""A hash table of 128-bit digests (uint64 pairs) in numpy arrays: which records of a block repeat a
digest seen before, and the row that first had it.

Open addressing with double hashing, a block of keys at a time: every pending key looks at its slot,
then those that found their digest are repeats, those that found an empty slot claim it (of several
keys reaching one empty slot in the same round, the earliest in the block wins, so the first copy of a
digest is the one kept even within a block), and the rest move on by their own stride. The digests
are xxh3-128 hashes, uniform, so the slot is the first half's low bits and the stride the second's.
The table holds its load under one half, growing by doubling: 24 bytes a slot, 48-96 bytes a
distinct digest, with no Python object per digest (a Python set of the same digests takes ~90 bytes
each, and more time).
"""

from __future__ import annotations

import numpy as np

# Slots hold row + 1, so that 0 is an empty slot and a new table is np.zeros, whose pages the system
# hands out when first written: 2^20 slots (24 MB) from the start save four doublings of a large pool
# and cost a small one only the pages its digests land on.
_EMPTY = 0
_START_SLOTS = 1 << 20
_GROW_CHUNK = 1 << 16


class DigestTable:
    """Digests (``(n, 2)`` uint64) and the row each was first seen at."""

    def __init__(self, slots: int = _START_SLOTS):
        if slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, got {slots}")
        self._alloc(slots)
        self.size = 0  # distinct digests held

    def _alloc(self, slots: int) -> None:
        # A slot's digest and row side by side (the digest's halves as int64, same bits): a lookup costs
        # one cache miss, not one in each of three arrays.
        self.cells = np.zeros((slots, 3), np.int64)
        self.row = self.cells[:, 2]

    def add(self, digests: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
        """Add a block of digests, the new ones getting rows ``first_row, first_row + 1, ...`` in block
        order. Returns (positions of the digests not seen before, in order; for each of the others, the
        row first seen with its digest)."""
        n = len(digests)
        while 2 * (self.size + n) > len(self.row):
            self._grow()
        # Claim with provisional values -(position + 1), made rows once the block's new digests are known.
        keys = np.ascontiguousarray(digests, np.uint64).view(np.int64)
        found, won, slot = self._probe(keys[:, 0], keys[:, 1], -(np.arange(n, dtype=np.int64) + 1))
        new = np.flatnonzero(won)
        rows = np.zeros(n, np.int64)
        rows[new] = first_row + np.arange(len(new))
        self.row[slot[new]] = rows[new] + 1
        self.size += len(new)
        old = found[~won]
        within = old < 0  # a digest first seen earlier in this block
        old[within] = rows[-old[within] - 1] + 1
        return new, old - 1

    def _grow(self) -> None:
        old = self.cells[self.row != _EMPTY]
        self._alloc(2 * len(self.row))
        # (a chunk at a time: the probe's temporaries, ~100 bytes a key, stay small beside the tables)
        for start in range(0, len(old), _GROW_CHUNK):
            part = old[start : start + _GROW_CHUNK]
            self._probe(part[:, 0], part[:, 1], part[:, 2])

    def _probe(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray):
        """Look up the keys ``(hi, lo)`` in order, inserting ``values`` for those not found. Returns
        (value found, for keys already there; whether the key was inserted; the slot it is in)."""
        n = len(hi)
        mask = len(self.row) - 1
        slot = hi & mask
        # Double hashing: each key steps by its own odd stride (from bits the slot does not use), which
        # keeps the runs of occupied slots short: on the 1M-record benchmark a block took up to 17 rounds
        # (mean 5.8), against 55 (8.6) with linear probing.
        step = (lo & mask) | 1
        found = np.full(n, _EMPTY, np.int64)
        won = np.zeros(n, bool)
        pending = np.arange(n)
        cells, row = self.cells, self.row
        while len(pending):
            s = slot[pending]
            there = cells.take(s, axis=0)  # (several times faster than cells[s])
            empty = there[:, 2] == _EMPTY
            match = ~empty & (there[:, 0] == hi[pending]) & (there[:, 1] == lo[pending])
            found[pending[match]] = there[match, 2]
            if empty.any():
                # Empty slots: the first pending key to reach each one takes it (pending is in block
                # order). Claims are tags below every stored value (those are row + 1 >= 1, or an add's
                # provisional -(position + 1) >= -n): the smallest, the earliest key's, stays.
                cand, at = pending[empty], s[empty]
                tags = cand - 2 * n - 1
                np.minimum.at(row, at, tags)
                first = row[at] == tags
                w, ws = cand[first], at[first]
                cells[ws, 0], cells[ws, 1], row[ws] = hi[w], lo[w], values[w]
                won[w] = True
            # Occupied by another key: the next slot of its sequence; beaten to an empty slot: look at it
            # again (the winner may hold the same digest).
            move = ~empty & ~match
            slot[pending[move]] = (s[move] + step[pending[move]]) & mask
            pending = pending[move | (empty & ~won[pending])]
        return found, won, slot
