"""Training data: tokenised once to disk, split by id, length-bucketed batches, BERT masking.

Batching and masking themselves are :mod:`bioprune.models.batching` and :mod:`bioprune.models.masking`
(shared with influence scoring and evaluation); this module applies them to a tokenised store.

Memory stays bounded by the number of sequences, not residues: a FASTA file (or a pool folder) is
tokenised once into a flat ``uint8`` file of residue ids plus an offsets array, and batches read it
through a memory map.

Determinism: every random choice (validation split, batch composition and order, crop windows, masks)
comes from a numpy generator seeded by ``(seed, epoch, batch number)`` or by a hash of the sequence id,
never from global RNG state. So a run resumed from a checkpoint sees exactly the batches and masks the
uninterrupted run would have, and a split does not depend on file order. Validation batches are
masked by sequence id (:func:`bioprune.models.batching.mlm_batch`), as the evaluation's perplexity is.
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
from bioprune.models.batching import Batch, BatchConverter, bucket, mlm_batch
from bioprune.models.masking import mask_tokens
from bioprune.models.tokenizer import CharTokenizer

log = logging.getLogger(__name__)

STORE_VERSION = 2  # 2: record ids kept (validation masks are drawn from them)
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
    id_bytes: np.ndarray  # uint8 memmap of all record ids (UTF-8), concatenated
    id_offsets: np.ndarray  # int64 [N + 1]

    @property
    def n(self) -> int:
        return len(self.id_hash)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def residues(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def record_id(self, i: int) -> str:
        return self.id_bytes[self.id_offsets[i] : self.id_offsets[i + 1]].tobytes().decode("utf-8")


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
        id_offsets = [0]
        n_empty = 0
        total = 0
        log.info("tokenising %s", fasta)
        with open(tmp / "tokens.u8", "wb") as out, open(tmp / "ids.u8", "wb") as id_out:
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
                rid = rec.id.encode()
                hashes.append(xxhash.xxh3_64_intdigest(rid))
                id_out.write(rid)
                id_offsets.append(id_offsets[-1] + len(rid))
        if not hashes:
            raise InputError(fasta, "no non-empty sequences to train on")
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "id_hash.npy", np.asarray(hashes, dtype=_U64))
        np.save(tmp / "id_offsets.npy", np.asarray(id_offsets, dtype=np.int64))
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
    # np.memmap refuses empty files; a store always has at least one residue (and ids are non-empty)
    tokens = np.memmap(folder / "tokens.u8", dtype=np.uint8, mode="r", shape=(size,))
    id_size = (folder / "ids.u8").stat().st_size
    id_bytes = np.memmap(folder / "ids.u8", dtype=np.uint8, mode="r", shape=(id_size,))
    return TokenStore(
        folder,
        tokens,
        np.load(folder / "offsets.npy"),
        np.load(folder / "id_hash.npy"),
        meta,
        id_bytes,
        np.load(folder / "id_offsets.npy"),
    )


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
    """Training's batches: :func:`bioprune.models.batching.bucket` of ``indices`` with random ties and a
    shuffled batch order; ``lengths`` are padded-token lengths per record. ValueError when a record
    does not fit ``max_tokens`` (training never batches one alone over the budget)."""
    if len(indices) and lengths[indices].max() > max_tokens:
        raise ValueError(
            f"a sequence of {lengths[indices].max()} tokens does not fit a batch of {max_tokens} tokens"
        )
    return bucket(lengths, max_tokens, indices=indices, max_batch_size=max_batch_size, rng=rng)


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
    rows = []
    for i, n in zip(idx, store.lengths[idx], strict=True):
        start = int(rng.integers(0, n - room + 1)) if n > room else 0
        rows.append(store.residues(int(i))[start : start + room])
    return BatchConverter(spec)(rows)


def padded_lengths(store: TokenStore, max_tokens: int) -> np.ndarray:
    return np.minimum(store.lengths, max_tokens - 2) + 2


# -- batches of one step ----------------------------------------------------------------------------
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
    """A training batch: random crop windows and masks from the generator of (seed, epoch, batch)."""
    rng = rng_for(seed, epoch, batch_no)
    tokens = collate(store, idx, spec, max_tokens, rng)
    return Batch.from_labels(*mask_tokens(tokens, spec, rng, mask_prob))


def validation_batch(
    store: TokenStore, idx: np.ndarray, spec: TokenSpec, max_tokens: int, seed: int, mask_prob: float
) -> Batch:
    """A validation batch: each record's first ``max_tokens - 2`` residues, masked by its id and ``seed``
    (:func:`bioprune.models.batching.mlm_batch`, the mask the evaluation's perplexity uses)."""
    room = max_tokens - 2
    return mlm_batch(
        BatchConverter(spec),
        [store.record_id(int(i)) for i in idx],
        [store.residues(int(i))[:room].astype(np.int64) for i in idx],
        seed=seed,
        prob=mask_prob,
        residue_ids=spec.residue_ids,
        mask_idx=spec.mask_idx,
    )
