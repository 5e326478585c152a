"""Influence scores and length on real RNA: every loss normalisation and the compat mode on Rfam seeds.

For a seeded sample of Rfam 14.2 seed sequences (default 20,000; exact duplicates and sequences under 10
nt dropped first, as the pool steps do), this script

1. trains a reference model from scratch on a D_sub of 5,000 of them with ``bioprune reference`` (the
   2 x 64 RNA-FM of config/rfam_full.yaml) and records its validation loss against D_sub's residue entropy;
2. for each ``influence.loss_norm`` (mean, token_sum, sqrt, window) and for ``loss_mode: compat``, runs
   ``bioprune fisher`` on D_sub and ``bioprune score`` on the whole sample (the commands the workflow runs);
3. reports, per mode: Spearman's rho of the score against length and against the mean per-token loss, the
   log-log slope, the median length of the top 1% and top 10%, the Rfam families covered by Top-I at 90%
   pruning (and by topi_strata, topi_resid and random at the same budget), and rho between modes.

Run from the repository root (about 15-25 min on 2 CPU cores):

    python benchmarks/loss_norm_rfam.py --n 20000 --out benchmarks/results/loss_norm_rfam.md

Needs ../shared/data/rfam14.2_seed (``--rfam`` points elsewhere); exits with a message when it is absent.
Intermediate files go to benchmarks/work/loss_norm_rfam (git-ignored); a rerun reuses finished steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioprune.evaluate.metrics import spearman  # noqa: E402
from bioprune.fasta import FastaWriter, read_fasta  # noqa: E402
from bioprune.influence.length import length_diagnostics  # noqa: E402
from bioprune.select import strategies as st  # noqa: E402

RFAM = ROOT.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
MODEL = ["--backend", "rnafm", "--size", "tiny"] + [
    "--layers",
    "2",
    "--hidden",
    "64",
    "--heads",
    "4",
    "--ffn",
    "256",
]
MODES = {  # name -> influence flags
    "mlm/mean": ["--loss-mode", "mlm", "--loss-norm", "mean"],
    "mlm/token_sum": ["--loss-mode", "mlm", "--loss-norm", "token_sum"],
    "mlm/sqrt": ["--loss-mode", "mlm", "--loss-norm", "sqrt"],
    "mlm/window": ["--loss-mode", "mlm", "--loss-norm", "window"],
    "compat": ["--loss-mode", "compat"],
}


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    print("$", shlex.join(cmd), flush=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stderr=fh, stdout=fh)
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return time.perf_counter() - t0


def build_pool(rfam: Path, n: int, seed: int, folder: Path) -> None:
    """A pool folder (sequences.fasta.gz + sequences.parquet) of n unique Rfam seed sequences >= 10 nt."""
    if (folder / "sequences.parquet").exists():
        return
    seen, recs = set(), []
    for rec in read_fasta(rfam):
        if len(rec.seq) >= 10 and rec.seq not in seen:
            seen.add(rec.seq)
            recs.append(rec)
    pick = np.sort(np.random.default_rng(seed).choice(len(recs), size=min(n, len(recs)), replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    with FastaWriter(folder / "sequences.fasta.gz") as w:
        for i in pick:
            w.write(recs[i].id, recs[i].seq, recs[i].description)
    table = pa.table(
        {
            "id": [recs[i].id for i in pick],
            "description": [recs[i].description for i in pick],
            "length": pa.array([len(recs[i].seq) for i in pick], pa.int32()),
        }
    )
    pq.write_table(table, folder / "sequences.parquet")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rfam", type=Path, default=RFAM)
    ap.add_argument("--n", type=int, default=20000, help="sequences sampled from the Rfam seeds")
    ap.add_argument("--dsub", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=30, help="reference epochs on D_sub")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "loss_norm_rfam")
    ap.add_argument("--note", default="", help="a line on the machine and its load, for the results file")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "loss_norm_rfam.md")
    args = ap.parse_args()
    if not args.rfam.exists():
        print(f"skipped: {args.rfam} is absent (the Rfam seeds; see ../shared/data/README.md)")
        return 0
    py = [sys.executable, "-m", "bioprune"]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    pool = work / "pool"
    build_pool(args.rfam, args.n, args.seed, pool)
    timings = work / "seconds.json"  # wall times of the steps run so far (a rerun reuses finished steps)
    seconds: dict[str, float] = json.loads(timings.read_text()) if timings.exists() else {}

    ref = work / "reference"
    if not (ref / "reference_report.json").exists():
        seconds["reference"] = run(
            [*py, "reference", str(pool), "--out", str(ref), "--dsub-size", str(args.dsub),
             "--dsub-seed", "0", *MODEL, "--epochs", str(args.epochs), "--lr", "2e-3",
             "--max-tokens-per-batch", "8192", "--val-fraction", "0.05", "--threads", str(args.threads)],
            work / "reference.log",
        )  # fmt: skip
        timings.write_text(json.dumps(seconds))
    reference = json.loads((ref / "reference_report.json").read_text())

    tables = {}
    for name, flags in MODES.items():
        tag = name.replace("/", "_")
        fisher, scores = work / f"fisher_{tag}.pt", work / f"scores_{tag}.parquet"
        if not scores.exists():
            common = [*flags, "--threads", str(args.threads), "--no-progress"]
            partial = work / f"fisher_{tag}_partial.pt"
            t = run(
                [*py, "fisher", "--model", str(ref / "model.pt"), "--ids", str(ref / "dsub_ids.txt"),
                 "--out", str(partial), *common, str(ref / "dsub.fasta.gz")],
                work / f"fisher_{tag}.log",
            )  # fmt: skip
            t += run([*py, "fisher-reduce", "--out", str(fisher), str(partial)], work / f"reduce_{tag}.log")
            t += run(
                [*py, "score", "--model", str(ref / "model.pt"), "--fisher", str(fisher),
                 "--out", str(scores), *common, str(pool / "sequences.fasta.gz")],
                work / f"score_{tag}.log",
            )  # fmt: skip
            seconds[name] = t
            timings.write_text(json.dumps(seconds))
        tables[name] = pq.read_table(scores).to_pandas()

    pool_table = pq.read_table(pool / "sequences.parquet").to_pandas().set_index("id")
    families = pool_table["description"].str.split().str[0]
    report = analyse(tables, families, reference)
    report["command"] = "python benchmarks/loss_norm_rfam.py " + shlex.join(sys.argv[1:])
    report["seconds"] = seconds
    (work / "analysis.json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.write_text(markdown(report, args))
    print(args.out.read_text())
    return 0


def analyse(tables: dict, families, reference: dict) -> dict:
    ids = tables["compat"]["id"].to_numpy()
    fam = families.loc[ids].to_numpy()
    n = len(ids)
    k = round(n * 0.1)  # Top-I at 90% pruning
    rows, scores = {}, {}
    for name, t in tables.items():
        assert (t["id"].to_numpy() == ids).all(), name  # every table is in pool order
        s, length, loss = (t[c].to_numpy(np.float64) for c in ("self_influence", "length", "loss"))
        scores[name] = s
        diag = length_diagnostics(s, length, loss, what=name)
        order = np.argsort(-s, kind="stable")
        picks = {
            "topi": st.select_topk(s, k, "self_influence").rows,
            "topi_strata": st.select_topi_strata(s, length, k, 10).rows,
            "topi_resid": st.select_topi_resid(s, length, k).rows,
        }
        rows[name] = {
            "spearman_length": diag["spearman_length"],
            "spearman_loss": diag["spearman_loss"],
            "loglog_slope": diag["loglog_slope"],
            "loglog_r2": diag["loglog_r2"],
            "median_len_top1": float(np.median(length[order[: max(1, n // 100)]])),
            "median_len_top10": float(np.median(length[order[:k]])),
            **{f"families_{p}": int(len(np.unique(fam[r]))) for p, r in picks.items()},
        }
    length = tables["compat"]["length"].to_numpy()
    rng = np.random.default_rng(0)
    random_fams = [len(np.unique(fam[rng.choice(n, k, replace=False)])) for _ in range(5)]
    names = list(tables)
    between = {a: {b: spearman(scores[a], scores[b]) for b in names} for a in names}
    top = {name: set(np.argsort(-scores[name], kind="stable")[:k].tolist()) for name in names}
    overlap = {a: {b: len(top[a] & top[b]) / k for b in names} for a in names}
    return {
        "n": n,
        "k_90": k,
        "pool_median_length": float(np.median(length)),
        "pool_families": int(len(np.unique(fam))),
        "random_families_mean": float(np.mean(random_fams)),
        "reference": {key: reference.get(key) for key in ("dsub_records", "model", "train", "learned")},
        "modes": rows,
        "spearman_between": between,
        "top10_overlap": overlap,
    }


def markdown(r: dict, args) -> str:
    learned = r["reference"]["learned"] or {}
    train = r["reference"]["train"] or {}
    lines = [
        "# Influence scores and length: loss normalisations and compat mode on Rfam seeds",
        "",
        f"Command: `{r['command']}` (from the repository root; intermediate files in benchmarks/work/).",
        "",
        f"Pool: {r['n']:,} unique Rfam 14.2 seed sequences (>= 10 nt, seeded sample), median length "
        f"{r['pool_median_length']:.0f} nt, {r['pool_families']:,} families. Reference: RNA-FM 2 x 64 "
        f"(config/rfam_full.yaml) trained from scratch on D_sub = {r['reference']['dsub_records']:,} of them "
        f"for {train.get('epochs_completed', 0):g} epochs ({train.get('steps')} steps): validation loss "
        f"{learned.get('val_loss', float('nan')):.4f} against a residue entropy of "
        f"{learned.get('residue_entropy', float('nan')):.4f} nats "
        f"({learned.get('entropy_gain', float('nan')):.1%} below; uniform ln(V) = "
        f"{train.get('uniform_loss', float('nan')):.3f}).",
        "",
        f"Top-I at 90% pruning keeps k = {r['k_90']:,}. Families covered by a random 10% sample of the same "
        f"size: {r['random_families_mean']:.0f} (mean of 5 draws).",
        "",
        "| mode | rho(score, length) | rho(score, loss) | log-log slope (R^2) | median length top 1% | "
        "median length top 10% | families Top-I | families topi_strata | families topi_resid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in r["modes"].items():
        lines.append(
            f"| {name} | {m['spearman_length']:+.2f} | {m['spearman_loss']:+.2f} | "
            f"{m['loglog_slope']:+.2f} ({m['loglog_r2']:.2f}) | {m['median_len_top1']:.0f} | "
            f"{m['median_len_top10']:.0f} | {m['families_topi']:,} | {m['families_topi_strata']:,} | "
            f"{m['families_topi_resid']:,} |"
        )
    names = list(r["modes"])
    lines += [
        "",
        "Spearman's rho between modes (upper) and overlap of their Top-I sets at 90% pruning (lower):",
        "",
    ]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for i, a in enumerate(names):
        cells = []
        for j, b in enumerate(names):
            if i == j:
                cells.append("-")
            elif j > i:
                cells.append(f"{r['spearman_between'][a][b]:+.2f}")
            else:
                cells.append(f"{r['top10_overlap'][a][b]:.0%}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Wall time per step (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items())]
    lines += [f"({args.note})" if args.note else "", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
