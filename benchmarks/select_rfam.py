"""Analysis: what each selection strategy keeps of the Rfam 14.2 seeds, at pruning rates 0.9 and 0.99.

For each strategy: Rfam families covered (of those in the scored pool), the effective number of
families (exp of the entropy of the family counts: low = concentrated on a few families), the share
of the selection in its 10 largest families, and median length against the pool's. Answers: does
Top-I concentrate on a few families, or on long sequences?

Run from the repository root once the influence step has scored the Rfam seeds:

    python benchmarks/select_rfam.py --scores results/influence/scores.parquet --pool results/pool/cluster

``--pool`` is the pool folder the scores were computed on (families come from its ``description``
column, e.g. "RF00001 5S_rRNA"; clusters from its ``cluster`` column when present). Without ``--pool``
the pool table is built from ../shared/data/rfam14.2_seed/rfam14.2_seed.fasta.gz in a temporary folder
(then every score id must be a seed id). ``--demo`` replaces the scores by random numbers so the script
can be checked before real scores exist; its output says nothing about influence.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, installed or not

from bioprune.errors import BiopruneError  # noqa: E402
from bioprune.select.select_cli import compute  # noqa: E402

RFAM_FASTA = ROOT.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
RFAM_FAMILIES = RFAM_FASTA.parent / "families.tsv"  # accession -> RNA type ("Gene; rRNA;")
RATES = (0.9, 0.99)


def build_pool(folder: Path) -> Path:
    """A pool table (id, description, length) from the Rfam seed FASTA; no sequences are kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioprune.fasta import read_fasta

    if not RFAM_FASTA.exists():
        raise SystemExit(
            f"{RFAM_FASTA} is missing: pass --pool (the pool folder the scores were computed on)"
        )
    ids, descriptions, lengths = [], [], []
    for rec in read_fasta(RFAM_FASTA):
        ids.append(rec.id)
        descriptions.append(rec.description)
        lengths.append(len(rec.seq))
    pool = folder / "pool"
    pool.mkdir()
    table = pa.table({"id": ids, "description": descriptions, "length": pa.array(lengths, pa.int32())})
    pq.write_table(table, pool / "sequences.parquet")
    with gzip.open(pool / "sequences.fasta.gz", "wb") as fh:  # compute() never reads it
        fh.write(b"")
    return pool


def demo_scores(pool: Path, out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pool / "sequences.parquet", columns=["id", "length"])
    rng = np.random.default_rng(0)
    n = table.num_rows
    scores = pa.table(
        {"id": table["id"], "self_influence": rng.lognormal(0, 1, n), "loss": rng.normal(3, 0.5, n)}
    )
    pq.write_table(scores, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, help="merged score table of the Rfam seed pool")
    parser.add_argument("--pool", type=Path, help="pool folder the scores were computed on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds for cci / random / cluster")
    parser.add_argument(
        "--strategies", nargs="+", default=["topi", "cci", "random1x", "random10x", "cluster", "loss"]
    )
    parser.add_argument("--demo", action="store_true", help="random placeholder scores (checks the script)")
    parser.add_argument("--top", type=int, default=5, help="largest families listed for topi")
    parser.add_argument("--types", type=Path, default=RFAM_FAMILIES, help="Rfam families.tsv (RNA types)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.demo and args.scores is None:
        parser.error("--scores is required (or --demo)")

    with tempfile.TemporaryDirectory() as tmp:
        pool = args.pool or build_pool(Path(tmp))
        scores = demo_scores(pool, Path(tmp) / "demo_scores.parquet") if args.demo else args.scores
        if args.demo:
            print("DEMO: random placeholder scores, not influence\n")
        rna_type = read_types(args.types)
        rows, tops, type_rows = [], [], []
        for rate in RATES:
            for strategy in args.strategies:
                seeds = [0] if strategy in ("topi", "loss") else args.seeds
                runs = []
                for seed in seeds:
                    ns = argparse.Namespace(
                        scores=scores, pool=pool, strategy=strategy, multiplier=None, rate=rate, count=None,
                        budget=None, seed=seed, beta=0.1, bins=50, family_regex=r"^(\S+)",
                    )  # fmt: skip
                    try:
                        out = compute(ns)
                    except BiopruneError as exc:
                        print(f"{strategy} at rate {rate}: skipped: {exc}", file=sys.stderr)
                        break
                    runs.append(out.summary)
                    if rna_type and seed == seeds[0]:
                        type_rows.append((rate, strategy, type_shares(out, rna_type)))
                if runs:
                    rows.append(row(rate, strategy, runs))
                    if strategy == "topi":
                        tops.append((rate, runs[0]["coverage"]["families"].get("top", [])[: args.top]))
        print(table(rows))
        if type_rows:
            print(types_table(type_rows))
        for rate, top in tops:
            listed = ", ".join(f"{t['name']} {t['selected']}/{t['pool']}" for t in top)
            print(f"\ntopi at rate {rate}: largest families (selected/pool): {listed}")
    return 0


def read_types(path: Path) -> dict[str, str]:
    """Rfam accession -> RNA type, the first two levels of its GF TP line ("Gene; snRNA")."""
    if not path or not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines()[1:]:
        fields = line.split("\t")
        out[fields[0]] = "; ".join([t.strip() for t in fields[3].split(";") if t.strip()][:2])
    return out


TYPES_SHOWN = 6


def type_shares(out, rna_type: dict[str, str]) -> dict[str, tuple[float, float]]:
    """RNA type -> (share of the pool, share of the selection)."""
    cand = out.cand
    names = np.array([rna_type.get(f, "other") for f in cand.family_names] + ["other"])
    fam = np.where(cand.families >= 0, cand.families, len(cand.family_names))
    types, codes = np.unique(names[fam], return_inverse=True)
    pool = np.bincount(codes, minlength=len(types)) / len(codes)
    sel = np.bincount(codes[out.mask], minlength=len(types)) / max(int(out.mask.sum()), 1)
    return {t: (float(p), float(s)) for t, p, s in zip(types, pool, sel, strict=True)}


def types_table(type_rows) -> str:
    """Share of the selection per RNA type (the pool's largest types), one row per rate x strategy."""
    pool = type_rows[0][2]
    shown = sorted(pool, key=lambda t: -pool[t][0])[:TYPES_SHOWN]
    lines = [
        "",
        "Share of each selection by RNA type (Rfam GF TP, first two levels; the pool's largest types):",
        "",
        "| rate | strategy | " + " | ".join(shown) + " |",
        "|---|---|" + "---|" * len(shown),
        "| - | pool | " + " | ".join(f"{pool[t][0]:.1%}" for t in shown) + " |",
    ]
    for rate, strategy, shares in type_rows:
        lines.append(f"| {rate} | {strategy} | " + " | ".join(f"{shares[t][1]:.1%}" for t in shown) + " |")
    return "\n".join(lines)


def row(rate: float, strategy: str, runs: list[dict]) -> dict:
    """Mean over seeds (one run for deterministic strategies)."""
    fam = [r["coverage"]["families"] for r in runs]
    return {
        "rate": rate,
        "strategy": strategy,
        "seeds": len(runs),
        "k": runs[0]["n_selected"],
        "families": np.mean([f["selected"] for f in fam]),
        "families_pool": fam[0]["pool"],
        "effective": np.mean([f["effective_selected"] for f in fam]),
        "top10_share": np.mean([f["top_share"] for f in fam]),
        "median_length": np.mean([r["length"]["selected"]["median"] for r in runs]),
        "median_length_pool": runs[0]["length"]["pool"]["median"],
        "q95_length": np.mean([r["length"]["selected"]["q95"] for r in runs]),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| rate | strategy | seeds | k | families covered | effective families | top-10 family share "
        "| median length (pool) | q95 length |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['rate']} | {r['strategy']} | {r['seeds']} | {r['k']:,} | "
            f"{r['families']:.0f} / {r['families_pool']} ({r['families'] / r['families_pool']:.1%}) | "
            f"{r['effective']:.0f} | {r['top10_share']:.1%} | {r['median_length']:.0f} "
            f"({r['median_length_pool']:.0f}) | {r['q95_length']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
