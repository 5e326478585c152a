"""Real-data numbers for the pool stage: ingest, exact dedup, decontamination, clustering and sharding.

Run from the repository root (a few minutes on 2 busy cores):

    nice -n 10 python benchmarks/pool_stats.py

Datasets (../shared/data, see each PROVENANCE.md): the Rfam 14.2 seed sequences (RNA, 72,262 records)
and the UniProt proteins of the MMseqs2 example (20,000 records). For each: records in, kept by ingest,
exact duplicates removed by dedup, clusters of the deduplicated pool at 0.9 and 0.5 identity (MMseqs2
linclust, coverage 0.8 of both), and residue-balanced shards. Rfam is also decontaminated against the
bpRNA TS0 and VL0 structure sets (identity 0.9, coverage 0.8); that pool is clustered again at 0.9.

Every step is the ``bioprune`` command the workflow runs, in its own process; wall time and peak RSS
(the kernel's maxrss of the step, MMseqs2 children included) come from ``os.wait4``. Intermediate pools
go under benchmarks/work/pool_stats (git-ignored); results to benchmarks/results/pool_stats.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "benchmarks" / "work" / "pool_stats"
RESULTS = REPO / "benchmarks" / "results"
COMMAND = "nice -n 10 python benchmarks/pool_stats.py"

DATASETS = {
    "rfam": {
        "alphabet": "rna",
        "fasta": DATA / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz",
        "evals": {"TS0": DATA / "bprna_ss" / "TS0.dbn.gz", "VL0": DATA / "bprna_ss" / "VL0.dbn.gz"},
    },
    "uniprot": {
        "alphabet": "protein",
        "fasta": DATA / "uniprot_mmseqs2_example" / "DB.fasta.gz",
        "evals": {},
    },
}
IDENTITIES = (0.9, 0.5)
N_SHARDS = 8


def linclust_args(alphabet: str, identity: float, threads: int, src: Path, out: Path) -> list[str]:
    """``bioprune cluster`` with linclust named: RNA's default is the cascaded workflow, and these numbers
    are linclust's."""
    return [
        *("cluster", "--alphabet", alphabet, "--method", "linclust"),
        *("--min-identity", str(identity), "--min-coverage", "0.8"),
        *("--threads", str(threads), "--out", str(out), str(src)),
    ]


def step(name: str, args: list[str], log_dir: Path, threads: int) -> dict:
    """Run ``bioprune <args>`` in a child process; its stderr goes to a log file."""
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "bioprune", *args]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log_path.read_text().splitlines()[-5:]
        raise SystemExit(f"step {name} failed (exit {code}): {' | '.join(tail)}")
    print(f"  {name}: {wall:.1f} s, {usage.ru_maxrss / 1024:.0f} MiB", file=sys.stderr)
    return {
        "command": "bioprune " + " ".join(args),
        "wall_s": round(wall, 2),
        "peak_mib": round(usage.ru_maxrss / 1024),
    }


def report(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def run_dataset(name: str, spec: dict, threads: int) -> dict:
    root = WORK / name
    root.mkdir(parents=True, exist_ok=True)
    alphabet = spec["alphabet"]
    out: dict = {"input": str(spec["fasta"].relative_to(REPO.parent)), "alphabet": alphabet, "steps": {}}
    steps = out["steps"]
    print(f"{name}:", file=sys.stderr)

    # min-length 1 / no max: count every record that is a valid sequence; the workflow default (10) differs.
    steps["ingest"] = step(
        "ingest",
        [
            "ingest",
            "--alphabet",
            alphabet,
            "--min-length",
            "1",
            "--max-length",
            "0",
            "--out",
            str(root / "ingest"),
            str(spec["fasta"]),
        ],
        root,
        threads,
    )
    ing = report(root / "ingest", "ingest_report.json")
    out["records_in"] = ing["input_records"]
    out["kept_by_ingest"] = ing["kept"]
    out["dropped_by_ingest"] = {k: v for k, v in ing["dropped"].items() if v}

    steps["dedup"] = step(
        "dedup", ["dedup", "--out", str(root / "dedup"), str(root / "ingest")], root, threads
    )
    dd = report(root / "dedup", "dedup_report.json")
    out["exact_duplicates"] = dd["duplicates"]
    out["distinct"] = dd["kept"]

    out["clusters"] = {}
    for ident in IDENTITIES:
        key = f"cluster_{ident}"
        folder = root / key
        steps[key] = step(key, linclust_args(alphabet, ident, threads, root / "dedup", folder), root, threads)
        cr = report(folder, "cluster_report.json")
        out["clusters"][str(ident)] = {
            k: cr[k]
            for k in ("n_sequences", "n_clusters", "singletons", "largest_cluster", "mean_cluster_size")
        } | {"strand": cr["strand"]}

    pool_for_shards = root / "dedup"
    if spec["evals"]:
        evals = [a for n, p in spec["evals"].items() for a in ("--eval", f"{n}={p}")]
        steps["decontaminate"] = step(
            "decontaminate",
            [
                "decontaminate",
                "--alphabet",
                alphabet,
                *evals,
                "--min-identity",
                "0.9",
                "--min-coverage",
                "0.8",
                "--threads",
                str(threads),
                "--out",
                str(root / "decontaminate"),
                str(root / "dedup"),
            ],
            root,
            threads,
        )
        dc = report(root / "decontaminate", "decontaminate_report.json")
        out["decontamination"] = {
            k: dc[k]
            for k in ("input_sequences", "kept", "removed", "removed_per_reason", "removed_per_eval_set")
        } | {
            "eval_records_found_in_pool": {n: s["records_found_in_pool"] for n, s in dc["eval_sets"].items()},
            "eval_records": {n: s["records"] for n, s in dc["eval_sets"].items()},
        }
        folder = root / "decontaminated_cluster_0.9"
        steps["cluster_decontaminated_0.9"] = step(
            "cluster_decontaminated_0.9",
            linclust_args(alphabet, 0.9, threads, root / "decontaminate", folder),
            root,
            threads,
        )
        cr = report(folder, "cluster_report.json")
        out["decontaminated_clusters_0.9"] = {k: cr[k] for k in ("n_sequences", "n_clusters", "singletons")}
        pool_for_shards = root / "decontaminate"

    steps["shard"] = step(
        "shard",
        ["shard", "--n-shards", str(N_SHARDS), "--out", str(root / "shards"), str(pool_for_shards)],
        root,
        threads,
    )
    sr = report(root / "shards", "shard_report.json")
    out["shards"] = {
        "pool": pool_for_shards.name,
        "n_shards": N_SHARDS,
        "imbalance": sr["imbalance"],
        "residues_per_shard": [s["residues"] for s in sr["shards"]],
    }
    return out


def markdown(results: dict, meta: dict) -> str:
    lines = [
        "# Pool stage on real data",
        "",
        f"Command (repository root): `{COMMAND}`",
        "",
        f"Machine: {meta['machine']}; MMseqs2 {meta['mmseqs']}; {meta['threads']} MMseqs2 threads; "
        f"run {meta['date']}. Steps are the `bioprune` commands listed at the end, each in its own process.",
        "",
        "| | Rfam 14.2 seeds (RNA) | UniProt, MMseqs2 example (protein) |",
        "|---|---:|---:|",
    ]
    r, u = results["rfam"], results["uniprot"]

    def row(label, a, b):
        cells = [str(c).replace("|", "\\|") for c in (label, a, b)]  # UniProt ids hold '|'
        lines.append(f"| {cells[0]} | {cells[1]} | {cells[2]} |")

    row("records in", f"{r['records_in']:,}", f"{u['records_in']:,}")
    row("kept by ingest", f"{r['kept_by_ingest']:,}", f"{u['kept_by_ingest']:,}")
    row("exact duplicates (dedup)", f"{r['exact_duplicates']:,}", f"{u['exact_duplicates']:,}")
    row("distinct sequences", f"{r['distinct']:,}", f"{u['distinct']:,}")
    for ident in IDENTITIES:
        rc, uc = r["clusters"][str(ident)], u["clusters"][str(ident)]
        row(
            f"clusters at {ident} identity (singletons)",
            f"{rc['n_clusters']:,} ({rc['singletons']:,})",
            f"{uc['n_clusters']:,} ({uc['singletons']:,})",
        )
        row(
            f"largest cluster at {ident}",
            f"{rc['largest_cluster']['size']} (`{rc['largest_cluster']['representative']}`)",
            f"{uc['largest_cluster']['size']} (`{uc['largest_cluster']['representative']}`)",
        )
    dc = r["decontamination"]
    row("removed by decontamination vs bpRNA TS0 + VL0", f"{dc['removed']:,}", "n/a (no protein eval set)")
    for name in dc["removed_per_eval_set"]:
        row(
            f"&nbsp;&nbsp;{name}: pool sequences removed / {name} records found in the pool",
            f"{dc['removed_per_eval_set'][name]:,} / {dc['eval_records_found_in_pool'][name]:,} of "
            f"{dc['eval_records'][name]:,}",
            "",
        )
    row(
        "&nbsp;&nbsp;exact / similar (>= 0.9 identity, >= 0.8 coverage)",
        f"{dc['removed_per_reason']['exact']:,} / {dc['removed_per_reason']['similar']:,}",
        "",
    )
    row("kept after decontamination", f"{dc['kept']:,}", "")
    row("clusters at 0.9 after decontamination", f"{r['decontaminated_clusters_0.9']['n_clusters']:,}", "")
    row(
        f"shard imbalance, {N_SHARDS} shards (max / mean residues - 1)",
        f"{r['shards']['imbalance']:.2e}",
        f"{u['shards']['imbalance']:.2e}",
    )
    lines += ["", "Reverse complements (RNA, linclust; `--strand forward` splits them off):", ""]
    for ident in IDENTITIES:
        s = r["clusters"][str(ident)]["strand"]
        lines.append(
            f"- {ident}: {s['members_reverse_to_mmseqs_representative']} members in "
            f"{s['mmseqs_clusters_with_both_strands']} MMseqs2 clusters were the reverse complement of their "
            f"representative; {s['strand_checked_by_search']} members needed the both-strand search, "
            f"{s['strand_undetermined']} stayed undetermined (kept forward)."
        )
    lines += [
        "",
        "Time and peak memory per step:",
        "",
        "| dataset | step | wall s | peak MiB |",
        "|---|---|---:|---:|",
    ]
    for ds, res in results.items():
        for name, st in res["steps"].items():
            lines.append(f"| {ds} | {name} | {st['wall_s']} | {st['peak_mib']} |")
    lines += ["", "Commands:", ""]
    for res in results.values():
        for st in res["steps"].values():
            cmd = st["command"].replace(str(DATA), "../shared/data").replace(str(REPO) + "/", "")
            lines.append(f"    {cmd}")
    lines += [
        "",
        "Notes: ingest ran with `--min-length 1 --max-length 0` so that every valid record counts (the "
        "workflow default drops sequences under 10 residues). MMseqs2's nucleotide k-mer matcher is not "
        "deterministic, so RNA cluster counts move by up to ~0.1% between runs; protein clustering "
        "repeats exactly.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    missing = [str(s["fasta"]) for s in DATASETS.values() if not s["fasta"].exists()]
    missing += [str(p) for s in DATASETS.values() for p in s["evals"].values() if not p.exists()]
    if missing:
        print(f"real data not found, nothing measured: {', '.join(missing)}", file=sys.stderr)
        return 0
    if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(REPO))
    from bioprune.pool.mmseqs import MMseqs

    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "mmseqs": MMseqs(1).version(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"),
    }
    results = {name: run_dataset(name, spec, args.threads) for name, spec in DATASETS.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pool_stats.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / "pool_stats.md").write_text(markdown(results, meta))
    print((RESULTS / "pool_stats.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
