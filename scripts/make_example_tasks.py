"""Rebuild the embedded downstream task (example/tasks/trna/) from Debian's infernal package. Run once.

    python scripts/make_example_tasks.py     # needs apt-get (Debian/Ubuntu) and network to the archive

Source: ``tRNA1415G.sto`` of Infernal's test suite, 1,415 tRNA genes from the Sprinzl tRNA compilation, each
with its own secondary structure (``#=GR <id> SS``). Ids are ``D`` + the amino-acid one-letter code +
a number (``DA0260`` is a tRNA-Ala gene), so one set of files serves two tasks:

- ``trna_ss``: per-sequence secondary structure (dot-bracket), the RNA secondary-structure task;
- ``trna_isotype``: the amino-acid class (the id's second letter), a sequence-classification task.

Exact duplicate sequences are kept once (first id), so no sequence is in two splits. Classes with fewer
than ``MIN_PER_CLASS`` unique sequences are left out. Per class, a seeded shuffle puts ``TEST`` sequences
in test, ``VALID`` in valid and up to ``TRAIN`` in train. See example/PROVENANCE.md.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from Bio import AlignIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_example import INFERNAL_TESTSUITE, fetch  # noqa: E402

OUT = ROOT / "example" / "tasks" / "trna"
SOURCE = "tRNA1415G.sto"
SEED = 0
MIN_PER_CLASS = 40
TRAIN, VALID, TEST = 20, 6, 12
GAPS = "-.~_"


def ungapped_structure(aligned_seq: str, aligned_ss: str, rec_id: str) -> tuple[str, str]:
    """The sequence without gaps and its dot-bracket structure: ``<``/``>`` pairs whose two columns
    both hold a residue of this sequence (a pair to a gap column is dropped as unpaired)."""
    stack, partner = [], {}
    for col, ch in enumerate(aligned_ss):
        if ch == "<":
            stack.append(col)
        elif ch == ">":
            if not stack:
                raise ValueError(f"{rec_id}: unbalanced '>' at column {col + 1}")
            i = stack.pop()
            partner[i], partner[col] = col, i
        elif ch != ".":
            raise ValueError(f"{rec_id}: unexpected structure character {ch!r}")
    if stack:
        raise ValueError(f"{rec_id}: unbalanced '<' at column {stack[-1] + 1}")
    seq, struct = [], []
    for col, res in enumerate(aligned_seq):
        if res in GAPS:
            continue
        seq.append(res.upper())
        j = partner.get(col)
        if j is None or aligned_seq[j] in GAPS:
            struct.append(".")
        else:
            struct.append("(" if j > col else ")")
    return "".join(seq), "".join(struct)


def write_dbn(path: Path, records: list[tuple[str, str, str]]) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        for rec_id, seq, struct in records:
            fh.write(f">{rec_id}\n{seq}\n{struct}\n".encode())


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fetch(["infernal"], Path(tmp))
        aln = AlignIO.read(str(Path(tmp) / "root" / INFERNAL_TESTSUITE / SOURCE), "stockholm")
        by_class: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        seen: set[str] = set()
        for rec in aln:
            seq, struct = ungapped_structure(
                str(rec.seq), rec.letter_annotations["secondary_structure"], rec.id
            )
            if seq in seen:
                continue
            seen.add(seq)
            by_class[rec.id[1]].append((rec.id, seq, struct))
    rng = random.Random(SEED)
    splits: dict[str, list] = {"train": [], "valid": [], "test": []}
    left_out = {}
    for cls in sorted(by_class):
        recs = by_class[cls]
        if len(recs) < MIN_PER_CLASS:
            left_out[cls] = len(recs)
            continue
        rng.shuffle(recs)
        splits["test"] += recs[:TEST]
        splits["valid"] += recs[TEST : TEST + VALID]
        splits["train"] += recs[TEST + VALID : TEST + VALID + TRAIN]
    for name, recs in splits.items():
        recs.sort()
        write_dbn(OUT / f"{name}.dbn.gz", recs)
    for f in sorted(OUT.glob("*.dbn.gz")):
        print(f"{f.relative_to(ROOT)}\t{hashlib.sha256(f.read_bytes()).hexdigest()}", file=sys.stderr)
    counts = {k: len(v) for k, v in splits.items()}
    print(f"unique sequences {len(seen)}, classes left out {left_out}, split sizes {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
