"""``bioprune cluster``: cluster the pool with MMseqs2 (``linclust`` or cascaded ``cluster``).

Two sequences join a cluster when MMseqs2 aligns them at identity >= ``--min-identity`` over coverage >=
``--min-coverage`` of both (``--cov-mode 0``); the clustering is MMseqs2's greedy set cover. MMseqs2's
k-mer length and sensitivity stay at its defaults, except ``-k 0`` for RNA with ``cluster`` (see
:data:`CLUSTER_OPTIONS`).

Reverse complements (RNA). In nucleotide mode MMseqs2 matches k-mers on both strands and ``linclust`` /
``cluster`` have no strand option: a sequence and its reverse complement end up in one cluster, and the
representative MMseqs2 picks may be the reverse-strand member (checked on a hand-made pool: of ``a``, a 95%
copy of ``a`` and the reverse complement of ``a`` plus 5 nt, both workflows made one cluster, ``linclust``
with the reverse complement as representative). An RNA and its reverse complement are different
molecules, so bioprune finds each member's strand relative to its representative (see
:func:`member_strands`) and, by ``--strand``:

- ``forward`` (default): reverse-strand members are split off into a cluster of their own, so every cluster
  holds one orientation and its representative is on the same strand as all its members. The split-off
  cluster's representative is its longest member (ties: first in the pool), as MMseqs2 prefers long ones.
- ``both``: MMseqs2's merged clusters are kept; the representative is moved, when needed, to the
  orientation most members share (ties: the orientation of the member first in the pool), again its
  longest member. ``clusters.tsv`` marks opposite-strand members with ``-``. Hairpin RNAs that are nearly
  their own reverse complement (miRNA precursors) can align both ways at low identity; the better-scoring
  strand decides.

Checked against an independent Smith-Waterman alignment (Biopython) on Rfam seeds: at 0.9 identity all 28
pairs marked reverse and 200 random forward pairs agreed; at 0.5, 1,000 random forward pairs agreed (with
``--strand both`` 7 of 24 reverse marks there involved near-palindromic hairpins, as above).
Proteins have no strand: that check is skipped.

Reproducibility: MMseqs2's nucleotide k-mer matcher is not deterministic (same input, same version, even
one thread). Its k-mers are strand-canonical, and for a pair that matches on both strands it reports the
forward or the reverse diagonal at random (2 runs on Rfam seeds: 20 of 261,746 candidate pairs flipped,
nothing else differed); the alignment and greedy clustering that follow amplify this. No MMseqs2 option
turns it off. The cascaded ``cluster`` workflow (prefilter, not the k-mer matcher) repeats exactly, so it
is the RNA default (:data:`DEFAULT_METHOD`); proteins keep linclust, which repeats for them. Measured by
``benchmarks/cluster_repeatability.py`` on the 65,645 deduplicated Rfam seeds, 3 runs each: linclust moved
0.9% of sequences to another cluster at 0.9 identity and 4.3% at 0.5; cascaded ``cluster`` moved none, in
28 s and 12 s a run against linclust's 4.5 s.

Outputs: ``sequences.fasta.gz`` + ``sequences.parquet`` with every row (``--keep all``) or only the
representatives (``--keep representatives``); the table gains ``cluster`` (the representative's id) and
``cluster_size``. ``clusters.tsv``: ``representative``, ``member``, ``strand`` (header line; every pool
sequence once as member, clusters in pool order of their representative). ``cluster_report.json``.

Memory: besides MMseqs2 itself, a few integer arrays per sequence and the id column (Arrow strings); no
sequences.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from bioprune import __version__
from bioprune.arrays import unique
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError, ToolError
from bioprune.pool.io import open_pool, read_column, refuse_empty, to_numpy, write_pool, write_report
from bioprune.pool.mmseqs import MMseqs, thresholds, workdir, write_numbered_fasta

log = logging.getLogger(__name__)

REPORT_NAME = "cluster_report.json"
CLUSTERS_NAME = "clusters.tsv"
TSV_CHUNK = 1 << 20
# Without -k, MMseqs2's nucleotide `cluster` workflow uses k=15 and allocates an 8.4 GB k-mer index even for
# six sequences (25 s); an explicit -k 0 lets its prefilter choose: 18 MB, and on Rfam seeds the most
# sensitive of -k 0/9/11/13 (16,078 clusters at 0.5 identity against 18,815-20,000).
CLUSTER_OPTIONS = {
    ("cluster", "rna"): ["-k", "0"],
    ("cluster", "protein"): [],
    ("linclust", "rna"): [],
    ("linclust", "protein"): [],
}
# The method when none is given: linclust's nucleotide k-mer matcher does not repeat across runs (see
# Reproducibility above), MMseqs2's cascaded `cluster` does; for proteins linclust repeats and is fastest.
DEFAULT_METHOD = {"rna": "cluster", "protein": "linclust"}

# IUPAC complement (RNA letters; T kept for safety). Ambiguity codes map to their complement sets.
_COMPLEMENT = bytes.maketrans(b"ACGUTRYKMSWBDHVN", b"UGCAAYRMKSWVHDBN")


def reverse_complement(seq: bytes) -> bytes:
    return seq.translate(_COMPLEMENT)[::-1]


def run_mmseqs_clustering(
    src: Path,
    tmp: Path,
    mm: MMseqs,
    alphabet: str,
    method: str,
    identity: float,
    coverage: float,
    n_rows: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, dict]:
    """Cluster with MMseqs2. Returns (representative row of each row, reverse-strand flag per row relative
    to its representative, or None for proteins; lengths; counts for the report)."""
    pool_fasta = tmp / "pool.fasta"
    lengths = write_numbered_fasta(src, pool_fasta)
    db = tmp / "pooldb"
    mm.createdb(pool_fasta, db, alphabet)
    pool_fasta.unlink()
    _check_keys(db, n_rows)
    mm.run(
        method,
        db,
        tmp / "clu",
        tmp / "clu_tmp",
        *thresholds(identity, coverage),
        *CLUSTER_OPTIONS[(method, alphabet)],
    )
    mm.run("createtsv", db, db, tmp / "clu", tmp / "clu.tsv")
    pairs = _read_tsv(tmp / "clu.tsv", {"rep": pa.int64(), "member": pa.int64()})
    rep_of = np.full(n_rows, -1, dtype=np.int64)
    reps = to_numpy(pairs.column("rep"))
    members = to_numpy(pairs.column("member"))
    if len(members) and (
        members.min() < 0 or members.max() >= n_rows or reps.min() < 0 or reps.max() >= n_rows
    ):
        raise ToolError("mmseqs createtsv returned rows outside the pool; cannot map clusters back")
    rep_of[members] = reps
    counts = {"unassigned_by_mmseqs": int((rep_of < 0).sum())}
    if counts["unassigned_by_mmseqs"]:
        # Never silently lose a sequence: one MMseqs2 left out becomes its own cluster (and is reported).
        log.warning(
            "MMseqs2 assigned no cluster to %d sequences; each becomes a singleton",
            counts["unassigned_by_mmseqs"],
        )
        missing = np.flatnonzero(rep_of < 0)
        rep_of[missing] = missing
    if not np.array_equal(rep_of[rep_of], rep_of):
        raise ToolError("MMseqs2 clustering has a representative that is not its own representative")
    reverse = None
    if alphabet == "rna":
        reverse, strand_counts = member_strands(mm, db, tmp, rep_of, identity, coverage)
        counts.update(strand_counts)
    return rep_of, reverse, lengths, counts


def _check_keys(db: Path, n_rows: int) -> None:
    """MMseqs2 key of each entry must equal its row (its name): everything below maps keys back to rows."""
    lookup = _read_tsv(Path(f"{db}.lookup"), {"key": pa.int64(), "name": pa.int64(), "file": pa.int64()})
    keys, names = to_numpy(lookup.column("key")), to_numpy(lookup.column("name"))
    if len(keys) != n_rows or not np.array_equal(keys, names):
        raise ToolError(f"mmseqs createdb numbered {db.name} differently from the pool rows; cannot map back")


def member_strands(
    mm: MMseqs, db: Path, tmp: Path, rep_of: np.ndarray, identity: float, coverage: float
) -> tuple[np.ndarray, dict]:
    """Whether each member is the reverse complement of its representative (RNA only).

    1. ``mmseqs align`` over the clustering aligns each member to its representative on the forward strand
       only. Members that pass the clustering thresholds there are on the forward strand: done (the bulk).
    2. ``align`` assumes the alignment near diagonal 0 (it has no k-mer diagonal to start from), so it also
       fails forward members whose match is shifted. The members left over (and their representatives) are
       searched with ``mmseqs search --strand 2`` (both strands, proper k-mer diagonals); a member's best
       alignment to its own representative decides: reverse when its query coordinates run backwards.
       A member with no alignment to its representative in either run stays forward (counted).
    """
    n = len(rep_of)
    rows = np.arange(n)
    is_member = rep_of != rows
    reverse = np.zeros(n, dtype=bool)
    counts = {"strand_checked_by_search": 0, "strand_undetermined": 0}
    if not is_member.any():
        return reverse, counts
    aln = tmp / "aln_fwd"
    mm.run(
        "align",
        db,
        db,
        tmp / "clu",
        aln,
        "-e",
        "inf",
        "--alignment-mode",
        "3",
        *thresholds(identity, coverage),
    )
    mm.run("convertalis", db, db, aln, f"{aln}.tsv", "--format-output", "query,target")
    ok = _read_tsv(Path(f"{aln}.tsv"), {"rep": pa.int64(), "member": pa.int64()})
    forward = np.zeros(n, dtype=bool)
    r, m = to_numpy(ok.column("rep")), to_numpy(ok.column("member"))
    forward[m[rep_of[m] == r]] = True
    doubtful = np.flatnonzero(is_member & ~forward)
    counts["strand_checked_by_search"] = int(len(doubtful))
    log.info(
        "%d of %d members aligned forward to their representative; searching both strands for %d",
        int((is_member & forward).sum()),
        int(is_member.sum()),
        len(doubtful),
    )
    if not len(doubtful):
        return reverse, counts
    their_reps = unique(rep_of[doubtful])
    for name, keys in (("members", doubtful), ("reps", their_reps)):
        (tmp / f"{name}.keys").write_text("".join(f"{k}\n" for k in keys.tolist()))
        mm.run("createsubdb", tmp / f"{name}.keys", db, tmp / f"{name}db", "--subdb-mode", "1", threads=False)
    res = tmp / "strand_res"
    mm.run(
        "search",
        tmp / "membersdb",
        tmp / "repsdb",
        res,
        tmp / "strand_tmp",
        "--search-type",
        "3",
        "--strand",
        "2",
        "-e",
        "inf",
        "--alignment-mode",
        "3",
        "-k",
        "9",
        "--mask",
        "0",
        "--max-seqs",
        "1000",
    )
    mm.run(
        "convertalis",
        tmp / "membersdb",
        tmp / "repsdb",
        res,
        f"{res}.tsv",
        "--search-type",
        "3",
        "--format-output",
        "query,target,bits,qstart,qend,tstart,tend",
    )
    hits = _read_tsv(
        Path(f"{res}.tsv"),
        {
            "member": pa.int64(),
            "rep": pa.int64(),
            "bits": pa.float64(),
            "qstart": pa.int64(),
            "qend": pa.int64(),
            "tstart": pa.int64(),
            "tend": pa.int64(),
        },
    )
    hm, hr = to_numpy(hits.column("member")), to_numpy(hits.column("rep"))
    own = rep_of[hm] == hr
    hm, bits = hm[own], to_numpy(hits.column("bits"))[own]
    flipped = (to_numpy(hits.column("qstart"))[own] > to_numpy(hits.column("qend"))[own]) != (
        to_numpy(hits.column("tstart"))[own] > to_numpy(hits.column("tend"))[own]
    )
    # The best-scoring alignment of each member to its representative decides its strand.
    order = np.lexsort((-bits, hm))
    first = np.r_[True, hm[order][1:] != hm[order][:-1]] if len(order) else np.zeros(0, dtype=bool)
    best = order[first]
    reverse[hm[best]] = flipped[best]
    counts["strand_undetermined"] = int(len(doubtful) - len(best))
    return reverse, counts


def _read_tsv(path: Path, types: dict) -> pa.Table:
    """A headerless tab-separated MMseqs2 table with the given column names and types."""
    names = list(types)
    opts = pacsv.ReadOptions(column_names=names, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter="\t")
    convert = pacsv.ConvertOptions(column_types=types)
    return pacsv.read_csv(path, read_options=opts, parse_options=parse, convert_options=convert)


def fix_strands(
    rep_of: np.ndarray, reverse: np.ndarray, lengths: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Apply ``--strand``: returns (new rep_of, reverse flag relative to the new representative, stats)."""
    n = len(rep_of)
    rows = np.arange(n)
    mixed_reps = unique(rep_of[reverse])
    stats = {
        # Relative to the representative MMseqs2 chose, before --strand is applied.
        "mmseqs_clusters_with_both_strands": int(len(mixed_reps)),
        "members_reverse_to_mmseqs_representative": int(reverse.sum()),
    }
    if not len(mixed_reps):
        return rep_of, reverse, stats
    new_rep = rep_of.copy()
    new_reverse = reverse.copy()
    in_mixed = np.isin(rep_of, mixed_reps)
    # Group members of mixed clusters by (cluster, strand) and pick each group's longest member,
    # ties by pool order: sort by cluster, strand, -length, row.
    idx = rows[in_mixed]
    order = idx[np.lexsort((idx, -lengths[idx], reverse[idx], rep_of[idx]))]
    key_cluster, key_strand = rep_of[order], reverse[order]
    starts = np.flatnonzero(
        np.r_[True, (key_cluster[1:] != key_cluster[:-1]) | (key_strand[1:] != key_strand[:-1])]
    )
    ends = np.r_[starts[1:], len(order)]
    if mode == "forward":
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if key_strand[s]:  # the reverse-strand group becomes a cluster of its own
                members = order[s:e]
                new_rep[members] = order[s]
                new_reverse[members] = False
        stats["reverse_members_split_off"] = stats["members_reverse_to_mmseqs_representative"]
        stats["representatives_moved"] = 0
    else:  # both: keep the merge, representative from the majority orientation
        # Every mixed cluster has exactly two groups, forward (strand False) first.
        moved = 0
        for f, r in zip(starts[0::2].tolist(), starts[1::2].tolist(), strict=True):
            fwd_members, rev_members = order[f:r], order[r : ends[np.searchsorted(starts, r)]]
            n_fwd, n_rev = len(fwd_members), len(rev_members)
            if n_rev > n_fwd or (n_rev == n_fwd and rev_members.min() < fwd_members.min()):
                rep = order[r]
                new_rep[fwd_members] = rep
                new_rep[rev_members] = rep
                new_reverse[rev_members] = False
                new_reverse[fwd_members] = True
                moved += 1
        stats["reverse_members_split_off"] = 0
        stats["representatives_moved"] = moved
    stats["reverse_members_in_output"] = int(new_reverse.sum())
    return new_rep, new_reverse, stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alphabet", required=True, choices=["rna", "protein"], help="pool alphabet")
    parser.add_argument(
        "--method",
        choices=["linclust", "cluster"],
        help="MMseqs2 workflow (default: cluster for rna, whose linclust clusters do not repeat across runs; "
        "linclust for protein)",
    )
    parser.add_argument("--min-identity", type=float, default=0.5, help="identity to join a cluster")
    parser.add_argument("--min-coverage", type=float, default=0.8, help="coverage of both sequences")
    parser.add_argument(
        "--keep", default="all", choices=["all", "representatives"], help="rows written to the output pool"
    )
    parser.add_argument(
        "--strand",
        default="forward",
        choices=["forward", "both"],
        help="RNA: split reverse-complement members off (forward) or keep MMseqs2's merge (both)",
    )
    parser.add_argument("--threads", type=int, default=1, help="MMseqs2 threads")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("input", type=Path, help="pool folder (sequences.fasta.gz + sequences.parquet)")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.min_identity <= 1:
        raise ConfigError(f"--min-identity must be in [0, 1], got {args.min_identity}")
    if not 0 <= args.min_coverage <= 1:
        raise ConfigError(f"--min-coverage must be in [0, 1], got {args.min_coverage}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    args.method = args.method or DEFAULT_METHOD[args.alphabet]
    src: Path = args.input
    n_rows = open_pool(src).n_rows
    refuse_empty(src, n_rows, "cluster")
    start = time.perf_counter()
    mm = MMseqs(args.threads)
    settings = {
        "alphabet": args.alphabet,
        "method": args.method,
        "min_identity": args.min_identity,
        "min_coverage": args.min_coverage,
        "coverage_of": "both sequences (MMseqs2 --cov-mode 0)",
        "keep": args.keep,
        "strand": args.strand if args.alphabet == "rna" else "n/a (protein)",
        "mmseqs_version": mm.version(),
    }
    strand_stats: dict = {}
    mm_counts = {"unassigned_by_mmseqs": 0}
    if n_rows:
        with workdir() as tmp:
            rep_of, reverse, lengths, mm_counts = run_mmseqs_clustering(
                src, tmp, mm, args.alphabet, args.method, args.min_identity, args.min_coverage, n_rows
            )
        if reverse is not None:
            rep_of, reverse, strand_stats = fix_strands(rep_of, reverse, lengths, args.strand)
            strand_stats["strand_checked_by_search"] = mm_counts["strand_checked_by_search"]
            strand_stats["strand_undetermined"] = mm_counts["strand_undetermined"]
            log.info(
                "%d members are reverse complements of their representative (%d clusters): %s",
                strand_stats["members_reverse_to_mmseqs_representative"],
                strand_stats["mmseqs_clusters_with_both_strands"],
                "split off" if args.strand == "forward" else "kept, representative on the majority strand",
            )
        else:
            reverse = np.zeros(n_rows, dtype=bool)
    else:
        rep_of = np.zeros(0, dtype=np.int64)
        reverse = np.zeros(0, dtype=bool)

    sizes = np.bincount(rep_of, minlength=n_rows) if n_rows else np.zeros(0, dtype=np.int64)
    is_rep = rep_of == np.arange(n_rows)
    ids = read_column(src, "id").combine_chunks() if n_rows else pa.array([], pa.string())
    rep_ids = ids.take(pa.array(rep_of))
    member_size = sizes[rep_of].astype(np.int32)

    with staged_dir(args.out) as stage:
        kept = write_pool(
            src,
            stage,
            keep=is_rep if args.keep == "representatives" else None,
            new_columns=[pa.field("cluster", pa.string()), pa.field("cluster_size", pa.int32())],
            columns_for=lambda s, e: [rep_ids.slice(s, e - s), pa.array(member_size[s:e], pa.int32())],
        )
        _write_clusters(stage / "clusters.tsv", ids, rep_of, reverse)
        cluster_sizes = sizes[is_rep]
        largest = int(np.argmax(sizes)) if n_rows else None
        report = {
            "step": "cluster",
            "bioprune_version": __version__,
            "input": str(src),
            "n_sequences": n_rows,
            "n_clusters": int(is_rep.sum()),
            "singletons": int((cluster_sizes == 1).sum()),
            "largest_cluster": {"representative": ids[largest].as_py(), "size": int(sizes[largest])}
            if largest is not None
            else None,
            "mean_cluster_size": float(cluster_sizes.mean()) if n_rows else 0.0,
            "kept": kept,
            "unassigned_by_mmseqs": mm_counts["unassigned_by_mmseqs"],
            "strand": strand_stats,
            "settings": settings,
        }
        write_report(stage / REPORT_NAME, report)
    log.info(
        "%d sequences in %d clusters (%d singletons), %d rows written, in %.1f s",
        n_rows,
        report["n_clusters"],
        report["singletons"],
        kept,
        time.perf_counter() - start,
    )
    return 0


def _write_clusters(path: Path, ids: pa.Array, rep_of: np.ndarray, reverse: np.ndarray) -> None:
    """representative, member, strand; clusters by pool order of the representative, then members."""
    rows = np.arange(len(rep_of))
    order = np.lexsort((rows, rep_of))
    schema = pa.schema([("representative", pa.string()), ("member", pa.string()), ("strand", pa.string())])
    plus_minus = pa.array(["+", "-"])
    options = pacsv.WriteOptions(delimiter="\t", quoting_style="none", quoting_header="none")
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for s in range(0, len(order), TSV_CHUNK):
            chunk = order[s : s + TSV_CHUNK]
            writer.write_batch(
                pa.RecordBatch.from_arrays(
                    [
                        ids.take(pa.array(rep_of[chunk])),
                        ids.take(pa.array(chunk)),
                        plus_minus.take(pa.array(reverse[chunk].astype(np.int8))),
                    ],
                    schema=schema,
                )
            )
