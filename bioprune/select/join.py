"""Line the ids of a score table up with the pool table's: the pool row of every scored id.

A hash join of 20M strings into a 20M set (``pyarrow.compute.index_in``) takes ~9 s and 2 GiB. Here each
id is hashed to 64 bits from the Arrow buffers (numpy, no Python strings), both sides are sorted as one
uint64 key each (hash prefix | row, a vectorised sort), and matching keys pair a score row with a pool
row. The pairing is then checked exactly: every scored id is compared byte for byte with the pool id at
its row. Ids that share a hash prefix (a few hundred in 20M) may pair wrongly; those groups are matched
again by their strings. :func:`match_rows` returns None whenever it cannot pair every id (an id that is
not in the pool, or scored twice): the caller then runs the exact join, which finds and names it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bioprune.arrays import unique
from bioprune.pool.io import string_parts, to_numpy

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
MAX_FIXUP = 100_000  # hash-prefix collisions re-matched by string before giving up on the fast path
VERIFY_ROWS = 1 << 20  # scored ids compared with the pool's at a time (bounds the copy)
HASH_ROWS = 1 << 17  # ids hashed at a time (bounds the temporaries, keeps them in cache)


def _mix(h: np.ndarray, word: np.ndarray, active: np.ndarray | None) -> np.ndarray:
    mixed = (h ^ word) * _M1
    mixed ^= mixed >> np.uint64(29)
    return mixed if active is None else np.where(active, mixed, h)


def _finish(h: np.ndarray, out: np.ndarray) -> None:
    h ^= h >> np.uint64(33)
    h *= _M2
    h ^= h >> np.uint64(33)
    out[:] = h


def _hash_chunk(arr: pa.Array, out: np.ndarray) -> None:
    """64-bit hash of each string of ``arr`` (string or binary, 32-bit offsets) into ``out``: the bytes
    taken 8 at a time (the last word zero-filled), mixed into the length. Strings are padded to one
    width by Arrow when it can, so that the words are the columns of a matrix; otherwise each word is
    gathered from the data buffer (same hash)."""
    n = len(arr)
    if n == 0:
        return
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets).astype(np.int64)
    longest = int(lengths.max())
    h = lengths.astype(np.uint64) * _GOLDEN
    width = max(8, -(-longest // 8) * 8)
    if pa.types.is_string(arr.type) and not arr.null_count:
        padded = pc.ascii_rpad(arr, width, padding="\0")  # pads bytes (not characters) with zeros
        p_off = string_parts(padded)[0]
        if int(p_off[-1] - p_off[0]) == n * width:  # every string exactly `width` bytes
            words = np.frombuffer(padded.buffers()[2], np.uint64, n * width // 8, int(p_off[0]))
            words = words.reshape(n, width // 8)
            for w in range(0, longest, 8):
                h = _mix(h, words[:, w // 8], None if lengths.min() > w else lengths > w)
            _finish(h, out)
            return
    lo, hi = int(offsets[0]), int(offsets[-1])
    start = (offsets[:-1] - lo).astype(np.int64)
    # the used bytes, zero-padded so that a word read past the last string is zeros
    buf = np.zeros((hi - lo + longest) // 8 + 2, np.uint64)
    if hi > lo:
        buf.view(np.uint8)[: hi - lo] = data[lo:hi]
    for w in range(0, longest, 8):
        p = start + w
        q, shift = p >> 3, (p & 7).astype(np.uint64) * np.uint64(8)
        word = buf[q] >> shift
        word |= np.where(shift > 0, buf[q + 1] << (np.uint64(64) - shift), np.uint64(0))
        rest = np.clip(lengths - w, 0, 8).astype(np.uint64)
        word &= np.where(rest >= 8, _ALL, (np.uint64(1) << (rest * np.uint64(8))) - np.uint64(1))
        h = _mix(h, word, None if lengths.min() > w else lengths > w)
    _finish(h, out)


def id_hashes(ids: pa.ChunkedArray | pa.Array, row_bits: int = 0) -> np.ndarray:
    """uint64 hash of every id (depends on the bytes only, not on the chunking or the type string/
    binary); large (64-bit offset) types are cast down first. With ``row_bits``, the low bits of each
    hash are replaced by the id's row (a key that still says where it came from)."""
    low = np.uint64((1 << row_bits) - 1)
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    out = np.empty(len(ids), np.uint64)
    at = 0
    for c in (whole.slice(i, HASH_ROWS) for whole in chunks for i in range(0, len(whole), HASH_ROWS)):
        if pa.types.is_large_string(c.type) or pa.types.is_large_binary(c.type):
            c = c.cast(pa.string() if pa.types.is_large_string(c.type) else pa.binary())
        elif not (pa.types.is_string(c.type) or pa.types.is_binary(c.type)):
            c = c.cast(pa.string())
        part = out[at : at + len(c)]
        _hash_chunk(c, part)
        if row_bits:
            part &= ~low
            part |= np.arange(at, at + len(c), dtype=np.uint64)
        at += len(c)
    return out


def _sorted_keys(ids: pa.ChunkedArray | pa.Array, bits: int) -> np.ndarray:
    """Sorted ``hash prefix << bits | row``: one uint64 per id, so a plain (vectorised) sort orders the
    ids by hash and still says which row each came from."""
    keys = id_hashes(ids, bits)
    keys.sort()
    return keys


def match_rows(ids: pa.ChunkedArray, pool_ids: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Pool row (int64) of every id in ``ids``, each checked to be the same string; None when some id
    cannot be matched (not in the pool, or twice in ``ids``: the caller's exact join names it).
    A duplicate id may still be matched twice to the same row: the caller checks rows are distinct."""
    n, n_pool = len(ids), len(pool_ids)
    if n == 0:
        return np.empty(0, np.int64)
    if n > n_pool:
        return None
    bits = max(1, (n_pool - 1).bit_length())
    if bits > 40:  # keep at least 24 bits of hash in the key
        return None
    low = np.uint64((1 << bits) - 1)
    pool_keys = _sorted_keys(pool_ids, bits)
    keys = _sorted_keys(ids, bits)
    if n == n_pool:
        for at in range(0, n, VERIFY_ROWS):  # some hash prefix differs: an id is not in the pool
            if ((pool_keys[at : at + VERIFY_ROWS] ^ keys[at : at + VERIFY_ROWS]) > low).any():
                return None
        paired = pool_keys
    else:
        prefix = pool_keys >> np.uint64(bits)
        want = keys >> np.uint64(bits)
        at = np.searchsorted(prefix, want)
        if (at >= n_pool).any() or not np.array_equal(prefix[at], want):
            return None
        paired = pool_keys[at]
        del prefix, want, at
    rows = np.empty(n, np.int64)
    for at in range(0, n, VERIFY_ROWS):  # in slices: the unpacked rows are never all held at once
        part = slice(at, at + VERIFY_ROWS)
        rows[(keys[part] & low).view(np.int64)] = (paired[part] & low).view(np.int64)
    del paired
    bad = _mismatches(ids, pool_ids, rows)
    if len(bad) and not _rematch(ids, pool_ids, rows, bad, keys, pool_keys, bits):
        return None
    return rows


def _mismatches(ids: pa.ChunkedArray, pool_ids, rows: np.ndarray) -> np.ndarray:
    """Rows of ``ids`` whose string differs from the pool id it was paired with."""
    bad = []
    at = 0
    for c in ids.chunks:
        for start in range(0, len(c), VERIFY_ROWS):
            part = c.slice(start, VERIFY_ROWS)
            got = pool_ids.take(pa.array(rows[at : at + len(part)]))
            same = pc.fill_null(pc.equal(part, got), False)
            if not pc.all(same).as_py():
                bad.append(at + np.flatnonzero(~to_numpy(same)))
            at += len(part)
    return np.concatenate(bad) if bad else np.empty(0, np.int64)


def _rematch(ids, pool_ids, rows, bad, keys, pool_keys, bits) -> bool:
    """Pair again, by their strings, the ids of every hash prefix that a mismatched id has; False when
    there are too many or some id has no equal in the pool."""
    if len(bad) > MAX_FIXUP:
        return False
    low = np.uint64((1 << bits) - 1)
    prefixes = unique(id_hashes(_take(ids, bad)) >> np.uint64(bits))
    first, last = prefixes << np.uint64(bits), (prefixes << np.uint64(bits)) | low
    mine, theirs = (_in_spans(k, first, last, low) for k in (keys, pool_keys))
    by_id = dict(zip(pool_ids.take(pa.array(theirs)).to_pylist(), theirs.tolist(), strict=True))
    for row, rid in zip(mine.tolist(), _take(ids, mine).to_pylist(), strict=True):
        if rid not in by_id:
            return False
        rows[row] = by_id[rid]
    return True


def _in_spans(keys: np.ndarray, first: np.ndarray, last: np.ndarray, low: np.uint64) -> np.ndarray:
    """Rows of the sorted keys that fall in [first, last] (each span one hash prefix)."""
    spans = zip(keys.searchsorted(first), keys.searchsorted(last, "right"), strict=True)
    return (np.concatenate([keys[a:b] for a, b in spans]) & low).astype(np.int64)


def _take(ids: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``ids.take(rows)`` for a few rows, chunk by chunk: Arrow's take on a chunked array first joins
    its chunks into one copy (250 MB at 20M ids)."""
    bounds = np.cumsum([0] + [len(c) for c in ids.chunks])
    which = np.searchsorted(bounds, rows, side="right") - 1
    parts = [ids.chunk(int(c)).take(pa.array(rows[which == c] - bounds[c])) for c in unique(which)]
    got = pa.concat_arrays(parts) if parts else pa.array([], ids.type)
    order = np.argsort(np.argsort(which, kind="stable"), kind="stable")  # back to the order of rows
    return got.take(pa.array(order))
