"""Benchmark: coreset selection over 20M synthetic scores, per strategy, time and peak memory.

Run from the repository root (a few minutes on 2 cores, ~5 GB of RAM at the data-generation peak):

    nice -n 10 python benchmarks/bench_select.py

Three measurements, each strategy in its own process (peak RSS from ``os.wait4``, the kernel's maxrss
of that process; for the whole command also the summed PSS of it and the child that draws its figure):

- ``core``: the strategy function alone on in-memory numpy columns (20M float64 scores; clusters: 2M
  groups). ``rss_inputs`` is the process after loading its inputs, so ``peak - rss_inputs`` is what the
  selection itself adds.
- ``compute``: ``bioprune.select.select_cli.compute`` from the Parquet files: read the score table and
  the pool table (the score table in pool order as ``merge-scores --order`` writes it: its first ids are
  compared here, every id in the pass that reads the kept ids, which ``compute`` leaves to ``run``),
  family codes from descriptions (3,000 Rfam-style families), select, and every summary statistic. This
  is ``bioprune select`` minus the ids pass, ids.txt, the coreset FASTA and the figure. One more row
  (``topi:shuffled``) reads a score table in another order (merged by hand), which needs the sort join;
  ``join`` times that join against Arrow's hash join in its own process.
- ``cli``: the whole ``bioprune select`` command (ids.txt, the coreset FASTA cut out of the pool's, the
  figure) as the workflow runs it: with ``--families``, the table its families step writes once per run
  (timed once, its own row), by default on the same 20M pool (``--cli-n`` for a smaller one). The
  synthetic FASTA's sequences are prefixes of one sequence, so it is smaller than a real pool's (gzip
  finds the repeats); the pass decompresses every record, so its time grows with records and residues.

``--baseline DIR`` runs the whole-command rows of another checkout (``git worktree add DIR REV``) in the
same rounds, interleaved, and adds a table comparing the two: on a shared machine whose speed drifts by
20-30% over minutes, that ratio is the measure of a change, more than either absolute time.

Budget: pruning rate 0.99 (k = 200,000 of 20M; random10x: 2,000,000). Inputs go under
benchmarks/work/select (git-ignored); results to benchmarks/results/select.{json,md}, the new run on top of
the Markdown file; its ``## Earlier results`` section is kept (move the previous top section into it by
hand).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, installed or not
WORK = ROOT / "benchmarks" / "work" / "select"
RESULTS = ROOT / "benchmarks" / "results"
EARLIER = "## Earlier results"  # this heading and what follows it in select.md are kept on a new run
STRATEGIES = ["topi", "cci", "random1x", "random10x", "cluster", "loss"]
RATE = 0.99


def make_tables(folder: Path, n: int, n_families: int, n_clusters: int, fasta: bool, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if (folder / "done").exists():
        return
    rng = np.random.default_rng(seed)
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    ids = pc.binary_join_element_wise("s", pa.array(np.arange(n)).cast(pa.string()), "")
    fam_names = pa.array([f"RF{i:05d} family_{i}" for i in range(n_families)])
    fam = rng.zipf(1.5, n) % n_families  # a few big families, a long tail, as in Rfam
    description = pa.DictionaryArray.from_arrays(pa.array(fam.astype(np.int32)), fam_names).cast(pa.string())
    lengths = np.clip(rng.lognormal(4.6, 0.6, n), 20, 4000).astype(np.int32)
    reps = np.sort(rng.choice(n, n_clusters, replace=False))
    reps[0] = 0
    cluster = ids.take(pa.array(reps[np.searchsorted(reps, np.arange(n), side="right") - 1]))
    # each record as FastaWriter writes it below: ">s{i} {family name}\n" and the sequence line
    name_bytes = np.array([len(x.encode()) for x in fam_names.to_pylist()], np.int32)
    id_bytes = pc.utf8_length(ids).to_numpy().astype(np.int32)
    fasta_bytes = id_bytes + name_bytes[fam] + lengths + 4
    table = pa.table(
        {
            "id": ids,
            "description": description,
            "length": lengths,
            "cluster": cluster,
            "fasta_bytes": fasta_bytes,
        }
    )
    pq.write_table(table, folder / "pool" / "sequences.parquet")
    del description, cluster, table
    # as merge-scores writes it (pool order), and the same rows shuffled (a table merged by hand)
    scores = pa.table(
        {
            "id": ids,
            "self_influence": rng.lognormal(0, 1.5, n).astype(np.float32),
            "loss": rng.normal(3, 0.5, n).astype(np.float32),
            "length": lengths,
        }
    )
    # with the statistics merge-scores stores (the workflow's table), in the file's key-value metadata
    from bioprune.influence.length import subsample
    from bioprune.influence.score_stats import STATS_KEY, table_stats

    step = subsample(n).step
    columns = {c: scores.column(c).to_numpy().astype(np.float64) for c in ("self_influence", "loss")}
    stats = table_stats(columns, lengths[::step], what="benchmark")
    del columns
    with pq.ParquetWriter(folder / "scores.parquet", scores.schema) as writer:
        writer.write_table(scores)
        writer.add_key_value_metadata({STATS_KEY: json.dumps(stats)})
    pq.write_table(scores.take(pa.array(rng.permutation(n))), folder / "scores_shuffled.parquet")
    del scores
    if fasta:
        from bioprune.fasta import FastaWriter

        seq = bytes(rng.choice(list(b"ACGU"), int(lengths.max())))
        names = fam_names.to_pylist()
        with FastaWriter(folder / "pool" / "sequences.fasta.gz") as w:
            for i in range(n):
                w.write(f"s{i}", seq[: lengths[i]], names[fam[i]])
    np.save(folder / "self_influence.npy", rng.lognormal(0, 1.5, n))
    np.save(folder / "loss.npy", rng.normal(3, 0.5, n))
    np.save(folder / "clusters.npy", np.searchsorted(reps, np.arange(n), side="right") - 1)
    (folder / "done").touch()


def child_core(folder: Path, label: str) -> dict:
    from bioprune.select import strategies as st
    from bioprune.select.budget import Budget

    strategy, multiplier = st.parse_strategy(label)
    column = st.STRATEGIES[strategy]
    values = np.load(folder / f"{column}.npy") if column else None
    groups = np.load(folder / "clusters.npy") if strategy == "cluster" else None
    n = len(np.load(folder / "loss.npy", mmap_mode="r"))
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    k = Budget(rate=RATE).k(n, multiplier)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    if strategy in ("topi", "loss"):
        sel = st.select_topk(values, k, column)
    elif strategy == "cci":
        sel = st.select_cci(values, k, 0.1, 50, rng)
    elif strategy == "random":
        sel = st.select_random(n, k, rng)
    else:
        sel = st.select_cluster_balanced(groups, k, rng)
    seconds = time.perf_counter() - t
    assert len(sel.rows) == k
    return {"n": n, "k": k, "seconds": seconds, "rss_inputs": rss_inputs}


def child_compute(folder: Path, label: str) -> dict:
    from bioprune.select.select_cli import compute

    label, _, table = label.partition(":")  # "topi:shuffled": the table not in pool order
    args = argparse.Namespace(
        scores=folder / f"scores{'_' + table if table else ''}.parquet", pool=folder / "pool",
        strategy=label, multiplier=None,
        rate=RATE, count=None, budget=None, seed=0, beta=0.1, bins=50, family_regex=r"^(\S+)",
        families=None,
    )  # fmt: skip
    t = time.perf_counter()
    out = compute(args)
    s = out.summary
    return {"n": s["n_scored"], "k": s["n_selected"], "seconds": time.perf_counter() - t, **s["seconds"]}


def child_join(folder: Path, _label: str) -> dict:
    """The id join alone: the bulk of ``load`` in ``compute``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = time.perf_counter()
    ids = pq.read_table(folder / "scores_shuffled.parquet", columns=["id"]).column("id")
    pool_ids = (
        pq.read_table(folder / "pool" / "sequences.parquet", columns=["id"]).column("id").combine_chunks()
    )
    t_read = time.perf_counter()
    same_order = pc.all(pc.equal(ids, pool_ids)).as_py()
    t_check = time.perf_counter()
    rows = pc.index_in(ids, value_set=pool_ids)
    t_join = time.perf_counter()
    assert rows.null_count == 0 and not same_order
    from bioprune.select.join import match_rows

    t_sort = time.perf_counter()
    sort_rows = match_rows(ids, pool_ids)
    t_sorted = time.perf_counter()
    assert np.array_equal(sort_rows, rows.to_numpy())
    return {
        "read": t_read - t,
        "order_check": t_check - t_read,
        "index_in": t_join - t_check,
        "sort_join": t_sorted - t_sort,
    }


def run_child(*argv: str) -> dict:
    """Run this script as a child; its JSON result plus wall time and the kernel's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {argv} failed with status {status}")
    result = json.loads(out) if out.strip() else {}
    return {**result, "wall": time.perf_counter() - start, "peak_rss": usage.ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000_000)
    parser.add_argument("--cli-n", type=int, help="pool size of the whole-command rows (default: --n)")
    parser.add_argument(
        "--cli-runs", type=int, default=3, help="runs of each whole-command row, in rounds (median shown)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of an earlier commit (git worktree add DIR REV): its whole-command rows run in the"
        " same rounds, interleaved, and the results compare the two",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FOLDER", "STRATEGY"), help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--fasta", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cli_n = args.cli_n or args.n
    if args.make:
        n = int(args.make[1])
        make_tables(Path(args.make[0]), n, 3000, n // 10, fasta=args.fasta)
        return
    if args.child:
        mode, folder, label = args.child
        result = {"core": child_core, "compute": child_compute, "join": child_join}[mode](Path(folder), label)
        print(json.dumps(result))
        return

    big = WORK / f"n{args.n}"
    small = big if args.cli_n == args.n else WORK / f"cli{args.cli_n}"
    t = time.perf_counter()
    # In a child: the kernel carries a parent's peak RSS into the maxrss of children it starts, so
    # the parent must stay small.
    run_child("--make", str(big), str(args.n), *(["--fasta"] if small == big else []))
    if small != big:
        run_child("--make", str(small), str(args.cli_n), "--fasta")
    print(f"inputs ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    results = {"n": args.n, "cli_n": args.cli_n, "rate": RATE, "core": {}, "compute": {}, "cli": {}}
    load_before = os.getloadavg()[0]
    results["families"] = _run_families(small)
    print("families", results["families"], file=sys.stderr)
    results["join"] = run_child("--child", "join", str(big), "-")
    print("join", results["join"], file=sys.stderr)
    for label in STRATEGIES:
        for mode in ("core", "compute"):
            results[mode][label] = run_child("--child", mode, str(big), label)
            print(mode, label, results[mode][label], file=sys.stderr)
    # the whole command in rounds (every strategy once per round): the machine's speed drifts over
    # minutes, and a round spreads that drift over all strategies alike
    runs: dict[str, list[dict]] = {label: [] for label in STRATEGIES}
    base_runs: dict[str, list[dict]] = {label: [] for label in STRATEGIES}
    for i in range(args.cli_runs):
        for label in STRATEGIES:
            # with a baseline, each round alternates which of the two goes first
            for which in ("this", "base") if i % 2 == 0 else ("base", "this"):
                if which == "base" and args.baseline is None:
                    continue
                done = runs if which == "this" else base_runs
                cwd = ROOT if which == "this" else args.baseline.resolve()
                done[label].append(_run_cli(small, WORK / f"cli_out_{which}" / label, label, cwd))
                print("cli", which, label, done[label][-1], file=sys.stderr)
    for label, done in runs.items():
        median = sorted(done, key=lambda x: x["wall"])[len(done) // 2]
        results["cli"][label] = {
            **median,
            "walls": [round(x["wall"], 1) for x in done],
            # memory: the largest of the runs
            "peak_rss": max(x["peak_rss"] for x in done),
            "peak_tree_pss": max(x["peak_tree_pss"] for x in done),
        }
    if args.baseline is not None:
        results["baseline"] = {
            "dir": str(args.baseline),
            "commit": _commit(args.baseline),
            "this_commit": _commit(ROOT),
            "cli": {label: _median_walls(done) for label, done in base_runs.items()},
            "same_outputs": {label: _same_outputs(label) for label in STRATEGIES},
        }
    results["compute"]["topi:shuffled"] = run_child("--child", "compute", str(big), "topi:shuffled")

    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "select.json").write_text(json.dumps(results, indent=2) + "\n")
    md = RESULTS / "select.md"
    earlier = md.read_text().partition(EARLIER)[2] if md.exists() else ""  # kept below the new run
    md.write_text(markdown(results) + (f"\n{EARLIER}{earlier}" if earlier else ""))
    print(markdown(results))


def _run_families(small: Path) -> dict:
    """The workflow's families step on the whole-command pool, once: every selection then reads it."""
    cmd = [sys.executable, "-m", "bioprune", "families", "--family-regex", r"^(\S+)",
           "--out", str(small / "families.parquet"), str(small / "pool")]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd} failed with status {status}")
    return {"wall": time.perf_counter() - start, "peak_rss": usage.ru_maxrss * 1024}


def _commit(folder: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True)
    # (results files rewritten by an earlier run do not make the code differ from its commit)
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"]
    dirty = subprocess.run(status, cwd=folder, capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" + uncommitted changes" if dirty else "")


def _median_walls(done: list[dict]) -> dict:
    walls = sorted(x["wall"] for x in done)
    return {"wall": walls[len(walls) // 2], "walls": [round(x["wall"], 1) for x in done]}


def _same_outputs(label: str) -> bool:
    """Whether this checkout and the baseline wrote the same ids.txt and coreset FASTA (the last runs)."""
    a, b = WORK / "cli_out_this" / label, WORK / "cli_out_base" / label
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in ("ids.txt", "coreset.fasta.gz"))


def _run_cli(small: Path, out: Path, label: str, cwd: Path = ROOT) -> dict:
    cmd = [sys.executable, "-m", "bioprune", "select", "--scores", str(small / "scores.parquet"),
           "--pool", str(small / "pool"), "--strategy", label, "--rate", str(RATE),
           "--families", str(small / "families.parquet"), "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.DEVNULL)  # (python -m: cwd's bioprune)
    sampler = _TreePss(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    sampler.stop()
    if status != 0:
        raise SystemExit(f"{cmd} failed with status {status}")
    summary = json.loads((out / "summary.json").read_text())
    wall = time.perf_counter() - start
    return {
        "k": summary["n_selected"],
        "wall": wall,
        "peak_rss": usage.ru_maxrss * 1024,
        "peak_tree_pss": sampler.peak,
        **summary["seconds"],
    }


class _TreePss(threading.Thread):
    """Samples (every 20 ms; a read costs ~0.6 ms of kernel time) the summed proportional set size of a
    process and its children: select draws its figure in a forked child that shares the parent's
    arrays, so neither process's maxrss is the memory used, and the sum of the two would count the
    shared pages twice; PSS splits them."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, sum(_pss(p) for p in [self.pid, *_children(self.pid)]))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pss(pid: int) -> int:
    """Bytes; 0 once the process has gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def markdown(r: dict) -> str:
    gib = 1024**3
    m = r["machine"]
    lines = [
        "# Selection benchmark",
        "",
        "Command (repository root): `nice -n 10 python benchmarks/bench_select.py`"
        + (
            f" (here with `--baseline {r['baseline']['dir']}`, made by `git worktree add "
            f"{r['baseline']['dir']} {r['baseline']['commit'].split()[0]}`)"
            if "baseline" in r
            else ""
        ),
        "",
        f"Machine: {m['cpus']} CPUs, shared with other jobs while measured (1-minute load average "
        f"{m['load_average'][0]} at the start, {m['load_average'][1]} at the end), Python {m['python']}, "
        f"numpy {m['numpy']}, {m['platform']}. Pruning rate {r['rate']} (keeps 1%). Each row is its own "
        "process; peak RSS is the kernel's maxrss of that process. "
        + (
            "With the load average above the CPU count, CPU-bound times are inflated by up to load / CPUs "
            f"(here about {max(m['load_average']) / m['cpus']:.1f}x); memory is not affected."
            if max(m["load_average"]) > m["cpus"]
            else "The load average stayed below the CPU count (the benchmark's own process included)."
        ),
        "",
        f"## Strategy alone, {r['n']:,} scores in memory",
        "",
        "| strategy | k | select (s) | RSS with inputs loaded (GiB) | peak RSS (GiB) |",
        "|---|---|---|---|---|",
    ]
    for label, x in r["core"].items():
        rss = f"{x['rss_inputs'] / gib:.2f} | {x['peak_rss'] / gib:.2f}"
        lines.append(f"| {label} | {x['k']:,} | {x['seconds']:.2f} | {rss} |")
    lines += [
        "",
        f"## From Parquet files, {r['n']:,} scores and a {r['n']:,}-row pool table",
        "",
        "`select_cli.compute`: read (a table in pool order: its first 1,024 ids compared, the rest in "
        "the pass that reads the kept ids, not included here; else the join) + family and cluster codes "
        "(load), select, summary statistics. Not included: the ids pass, ids.txt, the coreset FASTA "
        "pass and the figure. `topi:shuffled` reads a score table that is not in pool order (the sort "
        "join runs).",
        "",
        "| strategy | k | load (s) | select (s) | total (s) | process wall (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, x in r["compute"].items():
        lines.append(
            f"| {label} | {x['k']:,} | {x['load']:.1f} | {x['select']:.2f} | {x['seconds']:.1f} | "
            f"{x['wall']:.1f} | {x['peak_rss'] / gib:.2f} |"
        )
    j = r["join"]
    lines += [
        "",
        f"The id join for a table not in pool order, in its own process: reading both id columns took "
        f"{j['read']:.1f} s, the pool-order check (`pc.equal`) {j['order_check']:.1f} s, the hash join "
        f"(`pyarrow.compute.index_in`, 20M strings into a 20M set) {j['index_in']:.1f} s and the sort join "
        f"`compute` uses (`bioprune.select.join`: 64-bit hashes from the Arrow buffers, packed (hash "
        f"prefix, row) keys sorted, every pairing compared id by id) {j['sort_join']:.1f} s (peak RSS "
        f"{j['peak_rss'] / gib:.2f} GiB, both joins). The workflow's score table is in pool order "
        "(`merge-scores --order`), so only the streamed comparison runs (`ids` below).",
    ]
    lines += [
        "",
        f"## Whole `bioprune select` command, {r['cli_n']:,}-sequence pool",
        "",
        "As the workflow runs it: families from the families step's table (`bioprune families`, once per "
        f"run: {r['families']['wall']:.1f} s, peak RSS {r['families']['peak_rss'] / gib:.2f} GiB). "
        "The score table carries the statistics `merge-scores` stores. Includes interpreter start-up "
        "and imports. `ids`: both id columns streamed side by side (decoded on two helper threads), "
        "every score id compared with the pool's, the kept rows' ids taken on the way; `FASTA`: the "
        "coreset (gzip level 1) cut out of the pool's decompressed stream at the offsets of its "
        "`fasta_bytes` column; `FASTA | figure`: the copy, then the wait for the figure, which a child "
        "process forked right after the selection draws (matplotlib's import and the drawing) beside the "
        "summary, the id pass and the copy. Peak RSS: the kernel's maxrss of the "
        "select process; peak PSS: the proportional set size of it and its child summed, sampled "
        "every 20 ms (the child shares the parent's arrays copy-on-write: PSS counts them once). "
        f"Each strategy ran {len(next(iter(r['cli'].values()))['walls'])} times, in rounds; the row is "
        "the run of median wall time (peak memory: the largest of all runs), `all walls` lists every run's.",
        "",
        "| strategy | k | load (s) | select (s) | ids (s) | FASTA (s) | FASTA \\| figure (s) | "
        "process wall (s) | all walls (s) | peak RSS (GiB) | peak PSS, both processes (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, x in r["cli"].items():
        lines.append(
            f"| {label} | {x['k']:,} | {x['load']:.2f} | {x['select']:.2f} | {x['ids']:.1f} | "
            f"{x['write']:.1f} | {x['write_and_figure']:.1f} | {x['wall']:.1f} | "
            f"{', '.join(map(str, x['walls']))} | {x['peak_rss'] / gib:.2f} | "
            f"{x['peak_tree_pss'] / 1e9:.2f} |"
        )
    if "baseline" in r:
        b = r["baseline"]
        lines += [
            "",
            f"## Against a baseline checkout: {b['commit']} (this run: {b['this_commit']})",
            "",
            "The same whole-command rows, run for both checkouts in the same rounds (each round alternates "
            "which goes first), so that the machine's drift over minutes hits both alike. Ratio = this "
            "checkout's median wall / the baseline's; `same outputs`: ids.txt and coreset.fasta.gz "
            "byte-identical.",
            "",
            "| strategy | baseline wall (s) | this wall (s) | ratio | baseline walls (s) | this walls (s) | "
            "same outputs |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, x in r["cli"].items():
            base = b["cli"][label]
            lines.append(
                f"| {label} | {base['wall']:.1f} | {x['wall']:.1f} | {x['wall'] / base['wall']:.2f} | "
                f"{', '.join(map(str, base['walls']))} | {', '.join(map(str, x['walls']))} | "
                f"{b['same_outputs'][label]} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
