"""Benchmark: influence scoring speed against a plain forward pass and against a per-sample-gradient
implementation in the style of the official code; and peak memory of ``bioprune score`` at 20k vs 200k
sequences.

Run from the repository root (about 30-40 minutes on 2 shared cores; results to
benchmarks/results/scoring.md, inputs under benchmarks/work/scoring, git-ignored):

    nice -n 10 python benchmarks/bench_scoring.py

Speed (torch threads fixed, default 2), on the first ``--n`` Rfam 14.2 seed sequences (5S rRNAs, ~117 nt),
random-init RNA-FM of the registry's ``tiny`` (4x128) and ``small`` (6x320) sizes, per size:

- ``forward``: plain ``model(tokens)`` under no_grad over the same sequences with the same batching
  (our length-bucketed batches, padded to the batch maximum) -- the floor;
- ``score``: ``bioprune.influence.score.score_records`` (default settings: mlm loss, W = head dense
  weight), from records to scores, with a Fisher over every 5th sequence;
- ``fisher``: the Fisher pass over that D_sub;
- ``score compat``: our ``compat`` mode (the official loss: every sequence padded to 1024);
- ``reference``: the official style -- ``vmap(jacrev(loss))`` over each batch of 20 sequences, every one
  padded to 1024 tokens, pads attended to, loss = mean cross-entropy over all 1024 positions, gradient of
  the head dense weight, s = sum g^2 / (F + eps) -- timed on the first ``--ref-n`` sequences.

Each timing is the best of ``--repeats`` runs, forward and score interleaved (the machine is shared).
Ratio (a) = our score speed / reference speed; ratio (b) = our score time / forward time. The reference's
scores are also compared with our compat scores (same Fisher): they must agree.

Memory: ``python -m bioprune score`` as a subprocess on 20k, 100k and 200k sequences (the first 20k
Rfam seeds, repeated with new ids: same content mix), a small model (1 layer, 64 wide: the pipeline's
memory, not the model's, is what must stay flat); peak RSS = VmHWM of the scoring process.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, installed or not

from bioprune.fasta import Record, read_fasta  # noqa: E402
from bioprune.influence.fisher import Fisher, _split, provenance, squared_gradient_sum  # noqa: E402
from bioprune.influence.grads import GradientEngine  # noqa: E402
from bioprune.influence.losses import make_batches, prepare  # noqa: E402
from bioprune.influence.score import inverse_fisher, score_records  # noqa: E402
from bioprune.influence.settings import InfluenceSettings  # noqa: E402
from bioprune.models.registry import build_model, param_count, save_model  # noqa: E402

RFAM = ROOT.parent / "shared" / "data" / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
WORK = ROOT / "benchmarks" / "work" / "scoring"
POINTER = (
    "At RNA-FM size (12 x 640) against the official-style code, with bf16 on CPU and its agreement with "
    "fp32: [scoring_rnafm_size.md](scoring_rnafm_size.md) (`benchmarks/bench_rnafm_size.py`)."
)
CPU = torch.device("cpu")


def rfam(n: int) -> list[Record]:
    return list(itertools.islice(read_fasta(RFAM), n))


# -- the passes ---------------------------------------------------------------------------------------
@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of all threads of this process: steadier than wall on a shared machine


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def run_forward(model, records, s: InfluenceSettings) -> Timing:
    """Plain no-grad forward over the same rows and batches the score pass uses."""
    t0 = Clock()
    items = [prepare(model, i, r.id, r.seq.decode(), s) for i, r in enumerate(records)]
    with torch.no_grad():
        for batch in make_batches(items, model.tokens.pad_idx, s.batch_tokens):
            model(batch.tokens, mask_pads=s.loss_mode != "compat")
    return t0.stop()


def run_fisher(model, records, s: InfluenceSettings) -> tuple[Timing, Fisher]:
    t0 = Clock()
    engine = GradientEngine(model, s, CPU)
    total = squared_gradient_sum(model, engine, records, "bench", s, progress=False)
    fisher = Fisher("total", provenance("bench", s), len(records), _split(total, engine.param_shapes))
    return t0.stop(), fisher


def run_score(model, records, s: InfluenceSettings, fisher: Fisher) -> tuple[Timing, dict[str, float]]:
    t0 = Clock()
    engine = GradientEngine(model, s, CPU)
    inv = inverse_fisher(fisher, s.eps, engine)
    out = {}
    for rb in score_records(model, engine, inv, records, "bench", s, progress=False):
        d = rb.to_pydict()
        out.update(zip(d["id"], d["self_influence"], strict=True))
    return t0.stop(), out


def run_reference(model, records, fisher: Fisher, eps: float, window: int = 1024, batch: int = 20):
    """The official style: vmap over jacrev of a per-sequence loss, every sequence padded to the window."""
    from torch.func import functional_call, jacrev, vmap

    name = next(k for k, p in model.named_parameters() if p is model.head_dense.weight)
    weight = model.head_dense.weight.detach()
    inv = 1.0 / (fisher.diagonal()["head_dense.weight"].float() + eps)

    def loss_fn(w, tokens):
        logits = functional_call(model, {name: w}, (tokens[None],), {"mask_pads": False})[0]
        return F.cross_entropy(logits, tokens)  # mean over the whole window, pads included

    per_sample = vmap(jacrev(loss_fn), in_dims=(None, 0))
    t0 = Clock()
    out = {}
    warnings.filterwarnings("ignore", message="There is a performance drop")  # SDPA: no vmap rule on CPU
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        tokens = torch.full((len(chunk), window), model.tokens.pad_idx)
        for i, r in enumerate(chunk):
            ids = model.encode(r.seq.decode()[: window - 2])
            tokens[i, : len(ids)] = torch.tensor(ids)
        g = per_sample(weight, tokens)
        s = (g.detach().square() * inv).sum(dim=(1, 2))
        out.update({r.id: float(v) for r, v in zip(chunk, s, strict=True)})
    return t0.stop(), out


def speed(args) -> list[str]:
    records = rfam(args.n)
    ref_records = records[: args.ref_n]
    d_sub = records[::5]
    mean_len = sum(len(r.seq) for r in records) / len(records)
    head = (
        "| model | params | W | clock | forward seq/s | score seq/s | fisher seq/s | compat score seq/s "
        "| reference seq/s | (a) score/reference speed | (a') compat/reference speed "
        "| (b) score/forward time |"
    )
    lines = [
        "## Speed",
        "",
        f"{len(records)} Rfam seed sequences (mean {mean_len:.0f} nt); D_sub = every 5th ({len(d_sub)}); "
        f"compat and reference on the first {len(ref_records)}; fisher, forward and score best of "
        f"{args.repeats} (interleaved); batch_tokens {args.batch_tokens}; "
        f"torch threads {torch.get_num_threads()}. "
        "`wall`: wall-clock; `cpu`: CPU seconds of all threads of the process (steadier on a shared "
        "machine; seq/s per CPU-second).",
        "",
        head,
        "|---" * 12 + "|",
    ]
    agreement = []
    for size in args.sizes:
        model = build_model("rnafm", size, seed=0).eval()
        s = InfluenceSettings(batch_tokens=args.batch_tokens)
        sc = InfluenceSettings(batch_tokens=args.batch_tokens, loss_mode="compat")
        run_forward(model, records[:50], s)  # warm-up
        t_fwd, t_score, t_fis = [], [], []
        for _ in range(args.repeats):
            t, fisher = run_fisher(model, d_sub, s)  # the same Fisher every time
            t_fis.append(t)
            t_fwd.append(run_forward(model, records, s))
            t_score.append(run_score(model, records, s, fisher)[0])
            print(f"{size}: fisher {t_fis[-1]} forward {t_fwd[-1]} score {t_score[-1]}", file=sys.stderr)
        _, fisher_c = run_fisher(model, ref_records, sc)
        t_compat, ours_c = run_score(model, ref_records, sc, fisher_c)
        run_reference(model, ref_records[:2], fisher_c, sc.eps)  # warm-up, fair to the reference
        t_ref, ref = run_reference(model, ref_records, fisher_c, sc.eps)
        print(f"{size}: compat {t_compat} reference {t_ref}", file=sys.stderr)
        agreement.append((size, max(abs(ours_c[k] - ref[k]) / abs(ref[k]) for k in ref)))
        n, nr = len(records), len(ref_records)
        for clock in ("wall", "cpu"):
            fwd = min(getattr(t, clock) for t in t_fwd)
            sco = min(getattr(t, clock) for t in t_score)
            fis = min(getattr(t, clock) for t in t_fis)
            com, rf = (getattr(t, clock) for t in (t_compat, t_ref))
            lines.append(
                f"| rnafm {size} | {param_count(model) / 1e6:.1f}M | {tuple(model.head_dense.weight.shape)} "
                f"| {clock} | {n / fwd:.1f} | {n / sco:.1f} | {len(d_sub) / fis:.1f} | {nr / com:.2f} "
                f"| {nr / rf:.2f} | {(n / sco) / (nr / rf):.1f} | {(nr / com) / (nr / rf):.2f} "
                f"| {sco / fwd:.2f} |"
            )
            print(lines[-1], file=sys.stderr)
    pairs = ", ".join(f"rnafm {size}: {diff:.1e}" for size, diff in agreement)
    lines += [
        "",
        f"Our compat scores against the reference's (same Fisher), max relative difference: {pairs}.",
    ]
    return lines


# -- memory -------------------------------------------------------------------------------------------
def write_repeated(path: Path, n: int, base: int) -> None:
    """n records: the first ``base`` Rfam records, repeated (copy k gets ids suffixed _k). Every file has
    the same content mix, so a larger file differs from a smaller one only in how long the run is."""
    if path.exists():
        return
    first = rfam(base)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=1) as out:
        for i in range(n):
            r = first[i % base]
            out.write(f">{r.id}_{i // base}\n{r.seq.decode()}\n")
    tmp.rename(path)


# Runs `bioprune` and reports the process's own peak RSS (VmHWM of its memory map). Not os.wait4's
# ru_maxrss: Linux carries the parent's high-water mark over fork+exec into it, so a child of this
# (large) benchmark process would report the parent's size.
_PEAK = (
    "import sys\n"
    "from bioprune.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "print('PEAK_KB', peak.split()[1], file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def run_measured(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``bioprune ARGS`` in its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PEAK, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bioprune {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    peak_kb = next(int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("PEAK_KB"))
    return wall, peak_kb / 1024


def memory(args) -> list[str]:
    WORK.mkdir(parents=True, exist_ok=True)
    model_path = WORK / "model_l1_h64.pt"
    save_model(build_model("rnafm", "tiny", layers=1, hidden=64, heads=2, ffn=128, seed=0), model_path)
    sizes = sorted(args.memory_n)
    fastas = {n: WORK / f"rfam_first{sizes[0]}_x{n}.fasta.gz" for n in sizes}
    for n, p in fastas.items():
        write_repeated(p, n, base=sizes[0])
    ids = WORK / "dsub_ids.txt"
    ids.write_text("".join(f"{r.id}_0\n" for r in rfam(min(2000, sizes[0]))))
    common = ["--threads", str(args.threads), "--batch-tokens", str(args.batch_tokens)]
    partial, fisher = WORK / "partial.pt", WORK / "fisher.pt"
    run_measured(["fisher", "--model", str(model_path), "--ids", str(ids), "--out", str(partial),
                  "--no-progress", *common, str(fastas[sizes[0]])])  # fmt: skip
    run_measured(["fisher-reduce", "--out", str(fisher), str(partial)])
    lines = [
        "## Memory",
        "",
        f"`python -m bioprune score` on the first {sizes[0]:,} Rfam seed sequences (longest "
        f"{max(len(r.seq) for r in rfam(sizes[0])):,} nt; inputs are cut at 1,022) repeated to each size "
        "with new ids, model rnafm 1 layer x 64, "
        f"batch_tokens {args.batch_tokens}, threads {args.threads}; peak RSS = VmHWM of the scoring process.",
        "",
        "| sequences | wall s | seq/s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for n in sizes:
        out = WORK / f"scores_{n}.parquet"
        wall, rss = run_measured(["score", "--model", str(model_path), "--fisher", str(fisher),
                                  "--out", str(out), "--no-progress", *common, str(fastas[n])])  # fmt: skip
        lines.append(f"| {n:,} | {wall:.0f} | {n / wall:.0f} | {rss:.0f} |")
        print(lines[-1], file=sys.stderr)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--ref-n", type=int, default=100)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-n", type=int, nargs="+", default=[20_000, 100_000, 200_000])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scoring.md")
    args = ap.parse_args()
    if not RFAM.exists():
        print(f"needs {RFAM} (../shared/data); not found", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t0 = time.time()
    lines = [
        "# Influence scoring benchmark",
        "",
        "Command: `nice -n 10 python benchmarks/bench_scoring.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs; load average at "
        f"start {load0[0]:.1f}), Python {platform.python_version()}, torch {torch.__version__}.",
        "",
    ]
    if not args.skip_speed:
        lines += speed(args) + [""]
    if not args.skip_memory:
        lines += memory(args) + [""]
    lines.append(f"Total {time.time() - t0:.0f} s; load average at end {os.getloadavg()[0]:.1f}.")
    lines += ["", POINTER]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
