"""Do RNA and protein clusters repeat across identical runs? MMseqs2 linclust vs cascaded cluster.

Run from the repository root (about 5 minutes on 2 cores):

    nice -n 10 python benchmarks/cluster_repeatability.py

Each dataset (../shared/data: Rfam 14.2 seeds, the UniProt proteins of the MMseqs2 example) is ingested
(every valid record kept) and deduplicated once, then clustered ``--runs`` times per method and identity
with ``bioprune cluster`` (coverage 0.8 of both; the last run with 1 thread, the others with 2). For each
setting the table gives the cluster counts of the runs, the largest number of sequences whose cluster
differs between the first run and any other, and the wall time of one run. Why linclust moves on RNA is
explained in ``bioprune/pool/cluster.py``. Results: benchmarks/results/cluster_repeatability.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "benchmarks" / "work" / "cluster_repeatability"
RESULT = REPO / "benchmarks" / "results" / "cluster_repeatability.md"
COMMAND = "nice -n 10 python benchmarks/cluster_repeatability.py"
DATASETS = {
    "Rfam 14.2 seeds": ("rna", DATA / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"),
    "UniProt (MMseqs2 example)": ("protein", DATA / "uniprot_mmseqs2_example" / "DB.fasta.gz"),
}


def bioprune(*args: str) -> float:
    """Run one ``bioprune`` step in its own process; its wall time in seconds."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bioprune", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bioprune {args[0]} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def clusters(pool: Path) -> list[str]:
    return pq.read_table(pool / "sequences.parquet", columns=["cluster"]).column(0).to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--identities", type=float, nargs="+", default=[0.9, 0.5])
    args = ap.parse_args()
    missing = [str(p) for _, p in DATASETS.values() if not p.is_file()]
    if missing:
        sys.exit(f"real data not found: {', '.join(missing)} (../shared/data beside the checkout)")
    start = time.time()
    load = os.getloadavg()[0]
    rows = []
    for name, (alphabet, fasta) in DATASETS.items():
        work = WORK / alphabet
        ingest = ["ingest", "--alphabet", alphabet, "--min-length", "1", "--max-length", "0"]
        bioprune(*ingest, "--out", str(work / "ingest"), str(fasta))
        bioprune("dedup", "--out", str(work / "dedup"), str(work / "ingest"))
        n = pq.ParquetFile(work / "dedup" / "sequences.parquet").metadata.num_rows
        for method in ("linclust", "cluster"):
            for identity in args.identities:
                runs, seconds = [], []
                for r in range(args.runs):
                    out = work / f"{method}_{identity}_{r}"
                    threads = "1" if r == args.runs - 1 else "2"
                    seconds.append(
                        bioprune(
                            *("cluster", "--alphabet", alphabet, "--method", method, "--threads", threads),
                            *("--min-identity", str(identity), "--min-coverage", "0.8", "--out", str(out)),
                            str(work / "dedup"),
                        )
                    )
                    runs.append(clusters(out))
                moved = max(sum(a != b for a, b in zip(runs[0], other, strict=True)) for other in runs[1:])
                counts = ", ".join(f"{len(set(r)):,}" for r in runs)
                row = (
                    f"| {name} | {n:,} | {method} | {identity} | {counts} | {moved:,} ({moved / n:.2%}) "
                    f"| {min(seconds[:-1]):.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
    lines = [
        "# Cluster repeatability",
        "",
        f"Command: `{COMMAND}` (runs: {args.runs}; the last on 1 thread, the others on 2)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average at start {load:.1f}; "
        f"Python {platform.python_version()}.",
        "",
        "| data | sequences | method | identity | clusters per run | most sequences moved vs run 1 "
        "| seconds per run (2 threads) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Total {time.time() - start:.0f} s.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
