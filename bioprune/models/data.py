"""Training data: tokenised once to disk, split by id, length-bucketed batches, BERT masking.

Memory stays bounded by the number of sequences, not residues: a FASTA file (or a pool folder) is
tokenised once into a flat ``uint8`` file of residue ids plus an offsets array, and batches read it
through a memory map.

Determinism: every random choice (validation split, batch composition and order, crop windows, masks)
comes from a numpy generator seeded by ``(seed, epoch, batch number)`` or by a hash of the sequence id,
never from global RNG state. So a run resumed from a checkpoint sees exactly the batches and masks the
uninterrupted run would have, and a split does not depend on file order.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from bioprune.errors import InputError
from bioprune.fasta import read_fasta
from bioprune.models.base import TokenSpec
from bioprune.models.tokenizer import CharTokenizer

log = logging.getLogger(__name__)

STORE_VERSION = 1
VAL_EPOCH = 2**31 - 1  # epoch code of the validation set's fixed masks
_U64 = np.uint64


def sequences_file(path: os.PathLike | str) -> Path:
    """A FASTA file as given, or the ``sequences.fasta.gz`` of a pool folder."""
    p = Path(path)
    if p.is_dir():
        from bioprune.pool.io import fasta_path

        return fasta_path(p)
    if not p.exists():
        raise InputError(p, "no such file")
    return p


def file_digest(path: os.PathLike | str) -> str:
    """Content hash of a file (xxh3-64 of its bytes): identifies training data across runs."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- tokenised store ------------------------------------------------------------------------------------
@dataclass
class TokenStore:
    folder: Path
    tokens: np.ndarray  # uint8 memmap of all residue ids, concatenated
    offsets: np.ndarray  # int64 [N + 1]
    id_hash: np.ndarray  # uint64 [N], xxh3-64 of each record id
    meta: dict

    @property
    def n(self) -> int:
        return len(self.id_hash)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def residues(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def build_store(fasta: os.PathLike | str, tokenizer: CharTokenizer, folder: os.PathLike | str) -> TokenStore:
    """Tokenise ``fasta`` into ``folder`` (reused when it already holds the same file and vocabulary).

    Empty records are skipped and counted; a character outside the alphabet is an InputError naming
    the file, record, character and position."""
    fasta = Path(fasta)
    folder = Path(folder)
    want = {
        "version": STORE_VERSION,
        "source": str(fasta.resolve()),
        "digest": file_digest(fasta),
        "vocab": tokenizer.vocab,
    }
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if {k: meta.get(k) for k in want} == want:
                return open_store(folder)
        except (ValueError, OSError):
            pass
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        offsets = [0]
        hashes: list[int] = []
        n_empty = 0
        total = 0
        log.info("tokenising %s", fasta)
        with open(tmp / "tokens.u8", "wb") as out:
            for rec in read_fasta(fasta):
                if not rec.seq:
                    n_empty += 1
                    continue
                try:
                    ids = tokenizer.encode_residues(rec.seq)
                except ValueError as exc:
                    raise InputError(fasta, str(exc), line=rec.line, record=rec.id) from None
                out.write(ids.tobytes())
                total += len(ids)
                offsets.append(total)
                hashes.append(xxhash.xxh3_64_intdigest(rec.id.encode()))
        if not hashes:
            raise InputError(fasta, "no non-empty sequences to train on")
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "id_hash.npy", np.asarray(hashes, dtype=_U64))
        (tmp / "meta.json").write_text(
            json.dumps({**want, "n": len(hashes), "empty": n_empty, "residues": total})
        )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed or interrupted build leaves nothing behind
        raise
    return open_store(folder)


def open_store(folder: os.PathLike | str) -> TokenStore:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    size = (folder / "tokens.u8").stat().st_size
    # np.memmap refuses empty files; a store always has at least one residue
    tokens = np.memmap(folder / "tokens.u8", dtype=np.uint8, mode="r", shape=(size,))
    return TokenStore(folder, tokens, np.load(folder / "offsets.npy"), np.load(folder / "id_hash.npy"), meta)


# -- split -----------------------------------------------------------------------------------------------
def _mix(h: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (hash xor seed): a seeded, order-independent uniform 64-bit value per id."""
    with np.errstate(over="ignore"):
        z = h ^ _U64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = z + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def split(store: TokenStore, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) record indices. A record is held out when its seeded id hash falls below
    ``fraction``; at least one is held out when ``fraction > 0`` and there are two or more records."""
    if fraction <= 0 or store.n < 2:
        return np.arange(store.n), np.arange(0)
    u = _mix(store.id_hash, seed)
    val = u < _U64(min(int(fraction * 2.0**64), 2**64 - 1))
    if not val.any():
        val[np.argmin(u)] = True
    if val.all():
        val[np.argmax(u)] = False
    return np.flatnonzero(~val), np.flatnonzero(val)


# -- batches --------------------------------------------------------------------------------------------
def rng_for(seed: int, epoch: int, batch: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, batch]))


def make_batches(
    lengths: np.ndarray,
    indices: np.ndarray,
    max_tokens: int,
    max_batch_size: int | None,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Group ``indices`` into batches of similar length whose padded size (rows x longest) fits
    ``max_tokens``; batch order is shuffled. ``lengths`` are padded-token lengths per record."""
    if len(indices) == 0:
        return []
    perm = rng.permutation(indices)
    order = perm[np.argsort(lengths[perm], kind="stable")]  # ties in random order
    lens = lengths[order]
    if lens[-1] > max_tokens:
        raise ValueError(f"a sequence of {lens[-1]} tokens does not fit a batch of {max_tokens} tokens")
    cap = max_batch_size or len(order)
    batches = []
    start = 0
    n = len(order)
    while start < n:
        # lens is sorted, so cost(k) = k * lens[start + k - 1] grows with k: take the largest k that fits.
        hi = min(n - start, cap, max_tokens // int(lens[start]))
        k = np.arange(1, hi + 1)
        fits = k * lens[start : start + hi] <= max_tokens
        take = int(np.flatnonzero(fits)[-1]) + 1
        batches.append(order[start : start + take])
        start += take
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(
    store: TokenStore,
    idx: np.ndarray,
    spec: TokenSpec,
    max_tokens: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Token matrix [B, L] (int64) of records ``idx``: <cls> residues <eos>, padded to the batch's longest.
    Records longer than ``max_tokens - 2`` residues contribute a random window of that many residues."""
    room = max_tokens - 2
    lens = store.lengths[idx]
    width = int(min(lens.max(), room)) + 2
    out = np.full((len(idx), width), spec.pad_idx, dtype=np.int64)
    for row, (i, n) in enumerate(zip(idx, lens, strict=True)):
        start = int(rng.integers(0, n - room + 1)) if n > room else 0
        res = store.residues(int(i))[start : start + room]
        out[row, 0] = spec.cls_idx
        out[row, 1 : 1 + len(res)] = res
        out[row, 1 + len(res)] = spec.eos_idx
    return out


def padded_lengths(store: TokenStore, max_tokens: int) -> np.ndarray:
    return np.minimum(store.lengths, max_tokens - 2) + 2


# -- masking --------------------------------------------------------------------------------------------
def mask_tokens(
    tokens: np.ndarray,
    spec: TokenSpec,
    rng: np.random.Generator,
    mask_prob: float = 0.15,
    replace_prob: tuple[float, float] = (0.8, 0.1),
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking. Returns (inputs, labels); labels are -100 where no prediction is asked.

    Per sequence, ``floor(mask_prob * n + u)`` (u uniform in [0, 1), at least one) of its ``n`` residue
    positions are chosen uniformly; <cls>, <eos> and pads never are. Of the chosen, 80% become
    <mask>, 10% a random residue (``spec.residue_ids``), 10% stay unchanged."""
    special = (tokens == spec.pad_idx) | (tokens == spec.cls_idx) | (tokens == spec.eos_idx)
    n_res = (~special).sum(axis=1)
    n_mask = np.floor(mask_prob * n_res + rng.random(len(tokens))).astype(np.int64)
    n_mask = np.clip(n_mask, np.minimum(n_res, 1), n_res)
    scores = rng.random(tokens.shape)
    scores[special] = 2.0  # never chosen: real scores are < 1
    rank = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < n_mask[:, None]
    labels = np.where(chosen, tokens, -100)
    r = rng.random(tokens.shape)
    p_mask, p_random = replace_prob
    inputs = tokens.copy()
    inputs[chosen & (r < p_mask)] = spec.mask_idx
    to_random = chosen & (r >= p_mask) & (r < p_mask + p_random)
    residues = np.asarray(spec.residue_ids, dtype=np.int64)
    inputs[to_random] = residues[rng.integers(0, len(residues), size=int(to_random.sum()))]
    return inputs, labels


@dataclass
class Batch:
    inputs: np.ndarray
    labels: np.ndarray
    n_sequences: int
    n_tokens: int  # non-pad tokens

    @property
    def n_masked(self) -> int:
        return int((self.labels != -100).sum())


def make_batch(
    store: TokenStore,
    idx: np.ndarray,
    spec: TokenSpec,
    max_tokens: int,
    seed: int,
    epoch: int,
    batch_no: int,
    mask_prob: float,
) -> Batch:
    rng = rng_for(seed, epoch, batch_no)
    tokens = collate(store, idx, spec, max_tokens, rng)
    inputs, labels = mask_tokens(tokens, spec, rng, mask_prob)
    return Batch(inputs, labels, len(idx), int((tokens != spec.pad_idx).sum()))
