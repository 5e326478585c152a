"""Benchmark: family codes for a 20M-sequence pool with millions of distinct descriptions, computed in
every selection job against once per run (``bioprune families``, read by ``select --families``).

Run from the repository root after ``benchmarks/bench_select.py`` has built its 20M inputs (a few
minutes on 2 cores, ~3 GB of RAM):

    nice -n 10 python benchmarks/bench_families.py

The pool is bench_select's 20M pool with its description column replaced by one of ``--distinct``
distinct descriptions (``<Genus> sapiens microRNA mir-<k>``, 6 genera: RNAcentral-like text, where the
RNAcentral sample has 313 distinct descriptions in 1,400 records). Each measurement is its own process
(peak RSS from ``os.wait4``): the ``families`` step, and ``select_cli.compute`` for Top-I at rate 0.99
with and without the families table, alternately, twice each. Results to
benchmarks/results/families.{json,md}.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SELECT_WORK = ROOT / "benchmarks" / "work" / "select" / "n20000000"
WORK = ROOT / "benchmarks" / "work" / "families"
RESULTS = ROOT / "benchmarks" / "results"
REGEX = r"^(\S+)"


def make_pool(distinct: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pool = WORK / f"distinct{distinct}" / "pool"
    if (pool / "sequences.parquet").exists():
        return pool
    pool.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(SELECT_WORK / "pool" / "sequences.parquet")
    rng = np.random.default_rng(seed)
    genera = np.array(["Homo", "Mus", "Danio", "Arabidopsis", "Escherichia", "Drosophila"])
    texts = pc.binary_join_element_wise(
        pa.array(genera[rng.integers(0, len(genera), distinct)]),
        pa.array(np.arange(distinct)).cast(pa.string()),
        " sapiens microRNA mir-",
    )
    codes = pa.array(rng.integers(0, distinct, len(table)).astype(np.int32))
    description = pa.DictionaryArray.from_arrays(codes, texts).cast(pa.string())
    table = table.set_column(table.schema.get_field_index("description"), "description", description)
    pq.write_table(table, pool / "sequences.parquet")
    (pool / "sequences.fasta.gz").symlink_to(SELECT_WORK / "pool" / "sequences.fasta.gz")
    return pool


def run(argv: list[str]) -> dict:
    """A child process: its JSON line on stdout (if any), wall time and the kernel's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    result = json.loads(out.splitlines()[-1]) if out.strip() else {}
    return {**result, "wall": time.perf_counter() - start, "peak_rss": usage.ru_maxrss * 1024}


def child_compute(pool: Path, families: str) -> None:
    import argparse

    from bioprune.select.select_cli import compute

    args = argparse.Namespace(
        scores=SELECT_WORK / "scores.parquet", pool=pool, strategy="topi", multiplier=None, rate=0.99,
        count=None, budget=None, seed=0, beta=0.1, bins=50, family_regex=REGEX,
        families=Path(families) if families != "-" else None,
    )  # fmt: skip
    t = time.perf_counter()
    out = compute(args)
    s = out.summary
    print(
        json.dumps(
            {"seconds": time.perf_counter() - t, **s["seconds"], "families": s["coverage"]["families"]}
        )
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distinct", type=int, default=5_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_compute(Path(args.child[0]), args.child[1])
        return
    if args.make:
        make_pool(args.distinct)
        return
    if not (SELECT_WORK / "done").exists():
        raise SystemExit(f"{SELECT_WORK} is missing: run benchmarks/bench_select.py first")
    # in a child: the kernel carries a parent's peak RSS into the maxrss of the children it starts
    run([__file__, "--make", "--distinct", str(args.distinct)])
    pool = WORK / f"distinct{args.distinct}" / "pool"
    fam = pool.parent / "families.parquet"
    load = [os.getloadavg()[0]]
    step = run(["-m", "bioprune", "families", "--family-regex", REGEX, "--out", str(fam), str(pool)])
    rows = []
    for families in ("-", str(fam), "-", str(fam)):
        r = run([__file__, "--child", str(pool), families])
        rows.append({"with_table": families != "-", **r})
        print(rows[-1]["with_table"], round(r["seconds"], 2), file=sys.stderr)
    same = all(r["families"] == rows[0]["families"] for r in rows)
    load.append(os.getloadavg()[0])
    results = {
        "n": 20_000_000,
        "distinct": args.distinct,
        "families_step": step,
        "compute": rows,
        "same_coverage": same,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": load},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "families.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "families.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    gib = 1024**3
    m = r["machine"]
    step = r["families_step"]
    lines = [
        "# Family codes at 20M sequences with millions of distinct descriptions",
        "",
        "Command (repository root, after `benchmarks/bench_select.py`): "
        "`nice -n 10 python benchmarks/bench_families.py`",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, 1-minute load average {m['load_average'][0]:.1f} "
        f"at the start and {m['load_average'][1]:.1f} at the end. Pool: bench_select's {r['n']:,} sequences "
        f"with {r['distinct']:,} distinct descriptions; family regex `{REGEX}`. Each row is its own process.",
        "",
        f"- `bioprune families` (once per run; this pool is clustered, so it codes the clusters too): "
        f"{step['wall']:.1f} s, peak RSS {step['peak_rss'] / gib:.2f} GiB.",
        "",
        "`select_cli.compute` for Top-I at rate 0.99 (read, the first ids compared (every id is compared "
        "by select's id pass, not timed here), family and cluster codes, select, summary), in every "
        "selection job:",
        "",
        "| families | compute (s) | load (s) | process wall (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|",
    ]
    for row in r["compute"]:
        how = "read from the families table" if row["with_table"] else "from the descriptions, in the job"
        lines.append(
            f"| {how} | {row['seconds']:.1f} | {row['load']:.1f} | {row['wall']:.1f} | "
            f"{row['peak_rss'] / gib:.2f} |"
        )
    lines += ["", f"Family coverage identical in every row: {r['same_coverage']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
