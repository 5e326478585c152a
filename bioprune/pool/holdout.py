"""``bioprune holdout``: set aside a seeded fraction of whole families as a held-out evaluation set.

Perplexity on pool sequences that no selection kept (``source: unselected_pool``) rewards a coreset that
covers the pool's families, which random sampling does best. A family the pretraining never saw is a
neutral test: this step, run after clustering and before scoring, moves every sequence of a seeded
fraction of families out of the pool, so they are neither scored nor selected nor trained on, and writes
them as their own pool folder that ``mlm_perplexity`` tasks with ``source: heldout_families`` read.

A sequence's family is the first group of ``--family-regex`` in its description (the workflow's
``select.family_regex``). A sequence without one belongs to its MMseqs2 cluster (the ``cluster`` column of
the cluster step); in a pool that was not clustered, it is a group of its own. Groups are sorted by name
(``family:<name>``, ``cluster:<representative id>``, ``sequence:<id>``) and ``round(fraction x groups)`` of
them, at least one and never all, are drawn uniformly with the seed from the groups not named by
``--keep-family`` (families a downstream task is about, say): the same pool, fraction and seed always hold
out the same families, whatever the order of the pool. A very large family may be drawn: the report gives
the share of sequences held out.

Outputs (atomically, ``--out``): ``sequences.fasta.gz`` + ``sequences.parquet`` (the pool without the
held-out families, order and columns kept), ``heldout/sequences.fasta.gz`` + ``heldout/sequences.parquet``
(the held-out sequences), ``heldout_groups.tsv`` (group, kind, sequences, residues of each held-out group)
and ``holdout_report.json`` (kept + held out = input, per kind of group).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from pathlib import Path

import numpy as np

from bioprune import __version__
from bioprune.arrays import unique_codes
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError, InputError
from bioprune.pool.io import (
    parquet_file,
    read_column,
    table_path,
    take_ids,
    to_numpy,
    write_pool,
    write_report,
)
from bioprune.select.inputs import column_codes, family_codes

log = logging.getLogger(__name__)

REPORT_NAME = "holdout_report.json"
GROUPS_NAME = "heldout_groups.tsv"
HELDOUT_DIR = "heldout"
KINDS = ("family", "cluster", "sequence")


def groups_of(pool_dir: Path, family_regex: str | None) -> tuple[np.ndarray, list[str], list[str]]:
    """Group code per pool row, the group names sorted, and each group's kind (family, cluster,
    sequence). Rows are held as integer codes: only the distinct names are Python strings."""
    table = table_path(pool_dir)
    n = len(read_column(pool_dir, "length"))
    family = np.full(n, -1, dtype=np.int64)
    family_names: list[str] = []
    if family_regex is not None:
        row_family, family_names = family_codes(table, family_regex)
        family = row_family.astype(np.int64)
    key = family.copy()  # families: 0..F-1; the others: F + cluster code (or F + row)
    names = [f"family:{f}" for f in family_names]
    rest = np.flatnonzero(family < 0)
    if len(rest):
        if "cluster" in parquet_file(table).schema_arrow.names:
            codes, clusters = column_codes(table, "cluster")
            if (codes[rest] < 0).any():
                raise InputError(table, f"{int((codes[rest] < 0).sum())} rows have no cluster; rerun cluster")
            used, local = unique_codes(codes[rest])
            names += [f"cluster:{clusters[c]}" for c in used]
        else:  # a pool that was not clustered: each such sequence is a group of its own
            local = np.arange(len(rest))
            names += [f"sequence:{i}" for i in take_ids(pool_dir, rest)]
        key[rest] = len(family_names) + local
    # codes in name order, so the draw does not depend on the order of the pool
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    sorted_names = [names[i] for i in order]
    return rank[key] if n else key, sorted_names, [s.split(":", 1)[0] for s in sorted_names]


def choose_groups(
    n_groups: int, fraction: float, seed: int, eligible: np.ndarray | None = None
) -> np.ndarray:
    """Sorted codes of the held-out groups: round(fraction x n_groups) (at least 1, at most n_groups - 1),
    drawn uniformly from the ``eligible`` codes (default: all)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--fraction must be in (0, 1), got {fraction}")
    if n_groups < 2:
        raise ConfigError(
            f"the pool has {n_groups} famil{'y' if n_groups == 1 else 'ies'}: nothing to hold out"
        )
    eligible = np.arange(n_groups) if eligible is None else np.asarray(eligible, dtype=np.int64)
    k = min(max(1, round(fraction * n_groups)), n_groups - 1)
    if k > len(eligible):
        raise ConfigError(
            f"{k} of {n_groups} families should be held out but only {len(eligible)} may be "
            "(the others are kept by --keep-family): lower the fraction or keep fewer families"
        )
    rng = np.random.default_rng([seed, 27182])
    return np.sort(rng.choice(eligible, size=k, replace=False))


def holdout(
    src: Path,
    out: Path,
    *,
    fraction: float,
    seed: int,
    family_regex: str | None,
    keep_families: list[str] | tuple[str, ...] = (),
) -> dict:
    """Write the pool without a seeded fraction of its families, and those families, into ``out``.
    ``keep_families``: family names never held out (e.g. those the downstream tasks are about)."""
    if src.resolve() == out.resolve():
        raise ConfigError(f"--out {out} is the input folder; write the pool elsewhere")
    code, names, kinds = groups_of(src, family_regex)
    keep = {f"family:{f}" for f in keep_families}
    unknown = sorted(keep - set(names))
    if unknown:
        log.warning("--keep-family names no family of this pool: %s", ", ".join(u[7:] for u in unknown))
    eligible = np.array([i for i, name in enumerate(names) if name not in keep], dtype=np.int64)
    chosen = choose_groups(len(names), fraction, seed, eligible)
    held = np.isin(code, chosen)
    lengths = to_numpy(read_column(src, "length")).astype(np.int64)
    sizes = np.bincount(code, minlength=len(names))
    residues = np.bincount(code, weights=lengths, minlength=len(names)).astype(np.int64)
    kind_arr = np.array(kinds)
    with staged_dir(out) as stage:
        kept = write_pool(src, stage, keep=~held)
        (stage / HELDOUT_DIR).mkdir()
        n_held = write_pool(src, stage / HELDOUT_DIR, keep=held)
        with open(stage / GROUPS_NAME, "w", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(["group", "kind", "sequences", "residues"])
            for c in chosen:
                w.writerow([names[c].split(":", 1)[1], kinds[c], int(sizes[c]), int(residues[c])])
        by_kind = {}
        for kind in KINDS:
            mine = kind_arr == kind
            if not mine.any():
                continue
            in_kind = mine[code]
            by_kind[kind] = {
                "groups": int(mine.sum()),
                "groups_held_out": int(np.isin(chosen, np.flatnonzero(mine)).sum()),
                "sequences": int(in_kind.sum()),
                "sequences_held_out": int((in_kind & held).sum()),
            }
        report = {
            "step": "holdout",
            "bioprune_version": __version__,
            "input": str(src),
            "input_records": len(code),
            "kept": kept,
            "held_out": n_held,
            "groups": len(names),
            "groups_held_out": len(chosen),
            "fraction": fraction,
            "seed": seed,
            "family_regex": family_regex,
            "kept_families": sorted(keep_families),
            "held_out_sequence_share": n_held / len(code),
            "by_kind": by_kind,
            "outputs": [
                "sequences.fasta.gz",
                "sequences.parquet",
                f"{HELDOUT_DIR}/sequences.fasta.gz",
                f"{HELDOUT_DIR}/sequences.parquet",
                GROUPS_NAME,
                REPORT_NAME,
            ],
        }
        if kept + n_held != len(code):  # write_pool wrote what the masks say, or the pool is damaged
            raise InputError(src, f"{kept} kept + {n_held} held out != {len(code)} rows")
        write_report(stage / REPORT_NAME, report)
    log.info(
        "held out %d of %d groups (%d of %d sequences, %.1f%%); %d kept",
        len(chosen),
        len(names),
        n_held,
        len(code),
        100 * n_held / len(code),
        kept,
    )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="pool folder (after decontaminate / cluster)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--fraction", type=float, required=True, help="fraction of families held out, in (0, 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    parser.add_argument(
        "--keep-family",
        action="append",
        default=[],
        metavar="NAME",
        help="a family never held out (repeatable), e.g. the family of a downstream task",
    )
    parser.add_argument(
        "--family-regex",
        default="none",
        help="family of a sequence: first group of this regex in its description ('none': clusters only)",
    )


def run(args: argparse.Namespace) -> int:
    regex = None if args.family_regex.strip().lower() in ("", "none", "null") else args.family_regex
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"--family-regex {regex!r} is not a valid regular expression ({exc})") from None
    holdout(
        args.input,
        args.out,
        fraction=args.fraction,
        seed=args.seed,
        family_regex=regex,
        keep_families=args.keep_family,
    )
    return 0
