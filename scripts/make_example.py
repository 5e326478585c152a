"""Rebuild the embedded example (example/) from Debian packages. Run once; its outputs are committed.

    python scripts/make_example.py            # needs apt-get (Debian/Ubuntu) and network to the archive

RNA: real Rfam/tRNAdb seed alignments from the test suite of Debian's `infernal` package, ungapped.
Protein: UniProtKB sequences from Debian's `mmseqs2-examples` package. See example/PROVENANCE.md.
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from Bio import AlignIO, SeqIO

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "example"
INFERNAL_TESTSUITE = "usr/share/doc/infernal/examples/testsuite"
MMSEQS_EXAMPLES = "usr/share/doc/mmseqs2/example-data"

# Alignments of real sequences (not the emitted/synthetic ones); tRNA1415G is a separate tRNA set used as
# the held-out evaluation set, so the pool and it overlap the way Rfam and bpRNA do.
RNA_POOL_FILES = [
    "4.sto",
    "3.4.12.rf.stk",
    "rnaseP-eubact.sto",
    "Vault.sto",
    "Plant_SRP.sto",
    "snR75.sto",
    "srp-euk.sto",
]
RNA_HELDOUT_FILE = "tRNA1415G.sto"
RNA_HELDOUT_N = 300
PROTEIN_POOL_N = 2000


def fetch(packages: list[str], into: Path) -> None:
    subprocess.run(["apt-get", "download", *packages], cwd=into, check=True)
    for deb in into.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into / "root")], check=True)


def ungapped_records(path: Path):
    """(id, family, sequence) of every sequence of every alignment in a Stockholm file."""
    # Biopython drops the per-alignment #=GF ID lines, so read them in file order.
    families = [line.split()[2] for line in path.read_text().splitlines() if line.startswith("#=GF ID")]
    for i, aln in enumerate(AlignIO.parse(str(path), "stockholm")):
        family = families[i] if i < len(families) else path.stem
        for rec in aln:
            seq = "".join(c for c in str(rec.seq) if c not in "-.~_")
            yield rec.id, family, seq


def unique_ids(records):
    """Ids must be unique (ingest refuses repeats): 3.4.12.rf.stk repeats records of other files, so
    its copies get a ``.copyN`` suffix. Their sequences stay identical: real work for exact dedup."""
    seen: dict[str, int] = {}
    for rec_id, desc, seq in records:
        seen[rec_id] = seen.get(rec_id, 0) + 1
        yield (rec_id if seen[rec_id] == 1 else f"{rec_id}.copy{seen[rec_id] - 1}"), desc, seq


def write_fasta(path: Path, records, compress: bool) -> int:
    n = 0
    opener = (lambda p: gzip.GzipFile(p, "wb", mtime=0)) if compress else (lambda p: open(p, "wb"))
    with opener(path) as fh:
        for rec_id, desc, seq in records:
            fh.write(f">{rec_id} {desc}\n{seq}\n".encode())
            n += 1
    return n


def main() -> int:
    OUT.joinpath("rna").mkdir(parents=True, exist_ok=True)
    OUT.joinpath("protein").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fetch(["infernal", "mmseqs2-examples"], work)
        suite = work / "root" / INFERNAL_TESTSUITE
        pool = unique_ids(r for f in RNA_POOL_FILES for r in ungapped_records(suite / f))
        heldout = list(ungapped_records(suite / RNA_HELDOUT_FILE))[:RNA_HELDOUT_N]
        n_pool = write_fasta(OUT / "rna" / "pool.fasta.gz", pool, compress=True)
        n_held = write_fasta(OUT / "rna" / "heldout.fasta", heldout, compress=False)

        data = work / "root" / MMSEQS_EXAMPLES
        db = list(SeqIO.parse(gzip.open(data / "DB.fasta.gz", "rt"), "fasta"))[:PROTEIN_POOL_N]
        query = list(SeqIO.parse(gzip.open(data / "QUERY.fasta.gz", "rt"), "fasta"))
        as_rows = lambda recs: ((r.id, r.description.partition(" ")[2], str(r.seq)) for r in recs)  # noqa: E731
        n_prot = write_fasta(OUT / "protein" / "pool.fasta.gz", as_rows(db), compress=True)
        n_query = write_fasta(OUT / "protein" / "heldout.fasta.gz", as_rows(query), compress=True)

    for f in sorted(OUT.rglob("*.fasta*")):
        print(f"{f.relative_to(ROOT)}\t{hashlib.sha256(f.read_bytes()).hexdigest()}", file=sys.stderr)
    print(f"rna pool {n_pool}, rna heldout {n_held}, protein pool {n_prot}, protein heldout {n_query}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
