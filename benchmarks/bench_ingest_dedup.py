"""Benchmark: ``bioprune ingest --dedup`` (one pass, as the workflow runs it) and ``bioprune ingest`` +
``bioprune dedup`` (two steps) against ``seqkit rmdup -s -P -w 0`` on the same file.

Run from the repository root (a few minutes on 2 busy cores):

    nice -n 10 python benchmarks/bench_ingest_dedup.py

The input is built from the Rfam 14.2 seeds (../shared/data, 72,262 RNAs) repeated 14 times, ~1.01M
records; every odd copy has 1-3 random substitutions per sequence (seeded), so half of the copies
are exact duplicates and most of the rest are new. The same recipe on the first 10% of the seeds
gives a ~100k-record file, to show that peak memory barely grows with the pool. Generated files go
under benchmarks/work/ (git-ignored); results to benchmarks/results/ingest_dedup.{json,md}.

Each command runs in its own process; wall time and peak RSS come from ``os.wait4`` (the kernel's
maxrss of that process). The tools run in rounds (one run of each, ``--repeats`` times), so that the
machine's drift hits them alike; the median of each tool's runs is reported. The one-pass and two-step
pools are checked to be the same (records, duplicates.tsv). seqkit writes gzip like we
do (``-o out.fasta.gz``); when seqkit is not installed the comparison is skipped with a message
(``apt-get install -y seqkit``) and the script still exits 0.

The Markdown file is rewritten with the new run on top; a section headed ``## Earlier results`` in the
existing file is kept below it, so earlier runs stay next to the new one (move the previous top section
there by hand, with its commit, before rerunning when it should be kept).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
WORK = REPO / "benchmarks" / "work"
RESULTS = REPO / "benchmarks" / "results"
COMMAND = "nice -n 10 python benchmarks/bench_ingest_dedup.py"
EARLIER = "## Earlier results"
BASES = np.frombuffer(b"ACGU", np.uint8)
BASE_INDEX = np.zeros(256, np.int64)  # A C G U -> 0..3; IUPAC codes (N, R, ...) count as A, so still change
BASE_INDEX[BASES] = np.arange(4)


def build_pool(path: Path, seeds: list[tuple[bytes, bytes]], copies: int, seed: int) -> int:
    """Write ``copies`` copies of ``seeds`` (copy-major); odd copies get 1-3 substitutions per sequence."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    n = 0
    with open(tmp, "wb") as fh:
        for c in range(copies):
            out = []
            for head, seq in seeds:
                rec_id, _, desc = head.partition(b" ")
                if c % 2:
                    arr = np.frombuffer(seq, np.uint8).copy()
                    pos = rng.integers(0, len(arr), rng.integers(1, 4))
                    # Shift each chosen base to another one, so every substitution changes the sequence.
                    idx = (BASE_INDEX[arr[pos]] + rng.integers(1, 4, len(pos))) % 4
                    arr[pos] = BASES[idx]
                    seq = arr.tobytes()
                out.append(b">%s_c%02d %s\n%s\n" % (rec_id, c, desc, seq))
            fh.write(b"".join(out))
            n += len(out)
    os.replace(tmp, path)
    return n


def read_seeds() -> list[tuple[bytes, bytes]]:
    lines = gzip.decompress(DATA.read_bytes()).split(b"\n")
    return [(h[1:], s) for h, s in zip(lines[0::2], lines[1::2], strict=False) if h.startswith(b">")]


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; return wall seconds, CPU seconds (user + system) and peak RSS (MiB) of that process."""
    with open(log, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def run_one_pass(fasta: Path, tag: str) -> dict:
    out = WORK / f"ours_{tag}_one_pass"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bioprune", "ingest", "--dedup", "--alphabet", "rna", "--out", str(out)]
    r = timed([*cmd, str(fasta)], WORK / f"ours_{tag}_one_pass.log")
    report = json.loads((out / "dedup_report.json").read_text())
    return {**r, "kept": report["kept"], "duplicates": report["duplicates"]}


def same_pool(tag: str) -> bool:
    """The one-pass pool holds the two-step one's records and duplicates.tsv."""
    one, two = WORK / f"ours_{tag}_one_pass", WORK / f"ours_{tag}_dedup"
    fasta = [gzip.decompress((d / "sequences.fasta.gz").read_bytes()) for d in (one, two)]
    tsv = [(d / "duplicates.tsv").read_bytes() for d in (one, two)]
    return fasta[0] == fasta[1] and tsv[0] == tsv[1]


def run_ours(fasta: Path, tag: str) -> dict:
    ing, ded = WORK / f"ours_{tag}_ingest", WORK / f"ours_{tag}_dedup"
    for d in (ing, ded):
        shutil.rmtree(d, ignore_errors=True)
    bp = [sys.executable, "-m", "bioprune"]
    a = timed(
        bp + ["ingest", "--alphabet", "rna", "--out", str(ing), str(fasta)], WORK / f"ours_{tag}_ingest.log"
    )
    b = timed(bp + ["dedup", "--out", str(ded), str(ing)], WORK / f"ours_{tag}_dedup.log")
    report = json.loads((ded / "dedup_report.json").read_text())
    return {
        "wall_s": a["wall_s"] + b["wall_s"],
        "cpu_s": a["cpu_s"] + b["cpu_s"],
        "peak_rss_mib": max(a["peak_rss_mib"], b["peak_rss_mib"]),
        "ingest": a,
        "dedup": b,
        "kept": report["kept"],
        "duplicates": report["duplicates"],
    }


def run_seqkit(fasta: Path, tag: str, seqkit: str, suffix: str = ".fasta.gz") -> dict:
    out = WORK / f"seqkit_{tag}{suffix}"
    log = WORK / f"seqkit_{tag}{suffix}.log"
    r = timed([seqkit, "rmdup", "-s", "-P", "-w", "0", "-o", str(out), str(fasta)], log)
    m = re.search(r"(\d+) duplicated records removed", log.read_text())
    r["duplicates"] = int(m.group(1)) if m else None
    return r


def median_runs(fns: dict, repeats: int) -> dict:
    """Each of ``fns`` run ``repeats`` times, a round at a time; per name, the run of median wall time
    with every run's wall time."""
    runs: dict[str, list[dict]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(fn())
    out = {}
    for name, rs in runs.items():
        median = sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]
        out[name] = {**median, "wall_s_all": [round(r["wall_s"], 2) for r in rs]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"benchmark skipped: {DATA} is absent (../shared/data must sit beside the checkout)")
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    seeds = read_seeds()
    files = {}
    for tag, subset in {"100k": seeds[: len(seeds) // 10], "1M": seeds}.items():
        path = WORK / f"rfam_x{args.copies}_{tag}_seed{args.seed}.fasta"
        if not path.exists():
            print(f"building {path.name} ...", flush=True)
            build_pool(path, subset, args.copies, args.seed)
        files[tag] = path
    seqkit = shutil.which("seqkit")
    if seqkit is None:
        print("seqkit is not installed (apt-get install -y seqkit): measuring bioprune only, no ratio")

    results: dict = {
        "command": COMMAND,
        "machine": {
            "commit": _commit(),
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "seqkit": _seqkit_version(seqkit),
            "gzip": _gzip_backend(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "input": f"Rfam 14.2 seeds x{args.copies}, odd copies with 1-3 substitutions (seed {args.seed})",
        "repeats": args.repeats,
        "sizes": {},
    }
    for tag, path in files.items():
        records = sum(1 for line in open(path, "rb") if line.startswith(b">"))
        entry: dict = {"file": path.name, "records": records, "mib": round(path.stat().st_size / 2**20, 1)}
        print(f"{tag}: {records:,} records, {entry['mib']} MiB", flush=True)
        fns = {
            "one_pass": lambda p=path, t=tag: run_one_pass(p, t),
            "bioprune": lambda p=path, t=tag: run_ours(p, t),
        }
        if seqkit:
            fns["seqkit"] = lambda p=path, t=tag: run_seqkit(p, t, seqkit)
            fns["seqkit_plain_out"] = lambda p=path, t=tag: run_seqkit(p, t, seqkit, ".fasta")
        entry.update(median_runs(fns, args.repeats))
        entry["one_pass_same_pool"] = same_pool(tag)
        if seqkit:
            theirs = entry["seqkit"]
            for key, name in (
                ("one_pass", "ratio_one_pass_over_seqkit"),
                ("bioprune", "ratio_ours_over_seqkit"),
            ):
                ours = entry[key]
                entry[name] = {
                    "wall": ours["wall_s"] / theirs["wall_s"],
                    "cpu": ours["cpu_s"] / theirs["cpu_s"],
                    "peak_rss": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
                }
            entry["same_duplicate_count"] = theirs["duplicates"] == entry["one_pass"]["duplicates"]
        results["sizes"][tag] = entry
        _print_entry(entry)

    small, big = results["sizes"]["100k"], results["sizes"]["1M"]
    extra = {
        step: big["bioprune"][step]["peak_rss_mib"] - small["bioprune"][step]["peak_rss_mib"]
        for step in ("ingest", "dedup")
    }
    extra["ingest --dedup"] = big["one_pass"]["peak_rss_mib"] - small["one_pass"]["peak_rss_mib"]
    extra_records = big["records"] - small["records"]
    results["memory_growth_100k_to_1M"] = {
        step: {"mib": round(mib, 1), "bytes_per_extra_record": round(mib * 2**20 / extra_records, 1)}
        for step, mib in extra.items()
    }
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    for step, g in results["memory_growth_100k_to_1M"].items():
        print(
            f"{step}: peak RSS 100k -> 1M records {g['mib']:+.1f} MiB, {g['bytes_per_extra_record']} B/record"
        )

    (RESULTS / "ingest_dedup.json").write_text(json.dumps(results, indent=2) + "\n")
    md = RESULTS / "ingest_dedup.md"
    earlier = md.read_text().partition(EARLIER)[2] if md.exists() else ""
    md.write_text(_markdown(results) + (f"\n{EARLIER}{earlier}" if earlier else ""))
    print(f"wrote {RESULTS / 'ingest_dedup.md'} and .json")
    return 0


def _print_entry(e: dict) -> None:
    o = e["one_pass"]
    print(
        f"  bioprune ingest --dedup: {o['wall_s']:.2f} s wall, {o['cpu_s']:.2f} s CPU, peak "
        f"{o['peak_rss_mib']:.0f} MiB, {o['duplicates']:,} duplicates; same pool as two steps: "
        f"{e['one_pass_same_pool']}"
    )
    o = e["bioprune"]
    print(
        f"  bioprune ingest+dedup: {o['wall_s']:.2f} s wall, {o['cpu_s']:.2f} s CPU (ingest "
        f"{o['ingest']['wall_s']:.2f}, dedup {o['dedup']['wall_s']:.2f}), peak {o['peak_rss_mib']:.0f} MiB, "
        f"{o['duplicates']:,} duplicates"
    )
    for key in ("seqkit", "seqkit_plain_out"):
        if key in e:
            s = e[key]
            print(
                f"  {key}: {s['wall_s']:.2f} s wall, {s['cpu_s']:.2f} s CPU, "
                f"peak {s['peak_rss_mib']:.0f} MiB, {s['duplicates']:,} duplicates"
            )
    for key in ("ratio_one_pass_over_seqkit", "ratio_ours_over_seqkit"):
        if key in e:
            r = e[key]
            print(f"  {key}: wall {r['wall']:.2f}x, CPU {r['cpu']:.2f}x, peak RSS {r['peak_rss']:.2f}x")


def _markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Ingest + exact dedup vs seqkit",
        "",
        f"Reproduce from the repository root: `{r['command']}` (the script's docstring gives the set-up).",
        "",
        f"- Code: commit {m.get('commit') or 'unknown'}.",
        f"- Machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, seqkit {m['seqkit'] or 'absent'}, "
        f"gzip via {m['gzip']}; load average {m['load_average_before']} before, {m['load_average_after']} "
        "after (the machine is shared: CPU seconds are steadier than wall time under load).",
        f"- Input: {r['input']}, plain FASTA.",
        "- one pass = `bioprune ingest --dedup --alphabet rna`, what the workflow runs. two steps =",
        "  `bioprune ingest --alphabet rna` then `bioprune dedup` (two processes; wall and CPU summed, peak",
        "  RSS the larger). seqkit = `seqkit rmdup -s -P -w 0 -o out.fasta.gz` (gzip output, as ours); the",
        "  `-o out.fasta` row shows seqkit without compression.",
        f"- Median of {r['repeats']} runs by wall time, run in rounds (one of each tool per round); all wall",
        "  times listed.",
        "",
        "| records | tool | wall s | CPU s | peak RSS MiB | duplicates removed | runs (wall s) |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]

    def row(records, name, x):
        return (
            f"| {records} | {name} | {x['wall_s']:.2f} | {x['cpu_s']:.2f} | {x['peak_rss_mib']:.0f} | "
            f"{'' if x.get('duplicates') is None else format(x['duplicates'], ',')} | "
            f"{x.get('wall_s_all', '')} |"
        )

    for e in r["sizes"].values():
        lines.append(row(f"{e['records']:,}", "**bioprune ingest --dedup** (one pass)", e["one_pass"]))
        o = e["bioprune"]
        lines.append(row("", "bioprune ingest + dedup (two steps)", o))
        lines.append(row("", "&nbsp;&nbsp;ingest", {**o["ingest"], "duplicates": None}))
        lines.append(row("", "&nbsp;&nbsp;dedup", {**o["dedup"], "duplicates": None}))
        if "seqkit" in e:
            lines.append(row("", "seqkit rmdup -s -P -w 0 (gz out)", e["seqkit"]))
            lines.append(row("", "seqkit rmdup -s -P -w 0 (plain out)", e["seqkit_plain_out"]))
    lines.append("")
    for tag, e in r["sizes"].items():
        if "ratio_ours_over_seqkit" in e:
            q, t = e["ratio_one_pass_over_seqkit"], e["ratio_ours_over_seqkit"]
            lines.append(
                f"- {tag}: one pass / seqkit **{q['wall']:.2f}x wall**, {q['cpu']:.2f}x CPU, "
                f"{q['peak_rss']:.2f}x peak memory (two steps: {t['wall']:.2f}x wall, {t['cpu']:.2f}x CPU, "
                f"{t['peak_rss']:.2f}x memory); same duplicate count as seqkit: {e['same_duplicate_count']}; "
                f"one pass and two steps give the same pool: {e['one_pass_same_pool']}."
            )
    for step, g in r["memory_growth_100k_to_1M"].items():
        lines.append(
            f"- Peak memory of `{step}` from 100k to 1M records: {g['mib']:+.1f} MiB "
            f"({g['bytes_per_extra_record']} bytes per extra record: hashes and ids, never sequences)."
        )
    lines.append("")
    return "\n".join(lines)


def _commit() -> str | None:
    """The measured code's commit (``+`` when the work tree has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "bioprune"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def _gzip_backend() -> str:
    try:
        import isal

        return f"ISA-L (isal {isal.__version__})"
    except ImportError:
        return "zlib"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _seqkit_version(seqkit: str | None) -> str | None:
    if not seqkit:
        return None
    out = subprocess.run([seqkit, "version"], capture_output=True, text=True).stdout.strip()
    return out.removeprefix("seqkit ").strip() or None


if __name__ == "__main__":
    raise SystemExit(main())
