"""Floors of the real-data tasks of config/rfam_full.yaml: what each scores without a language model.

- bpRNA secondary structure (task ``bprna_ss``: 1,000 TR0 train, 200 VL0 valid, 500 TS0 test records of
  <= 200 nt, seeded samples): the ``cnn`` structure head on one-hot pair features and distance bins,
  threshold tuned on VL0, canonical-only greedy decoding (``--heads`` adds others, e.g. ``attention``);
- nRC ncRNA classes (task ``nrc``): the k-mer (k = 1..4) + length logistic regression floor, with every
  k's test accuracy.

Both go through the code of ``bioprune floor`` (:func:`bioprune.evaluate.floors.compute_floor`) on the
splits ``bioprune evaluate`` uses with the tiny RNA-FM architecture. Writes
``benchmarks/results/floors.md`` and ``floors.json``::

    nice -n 5 python benchmarks/floors.py [--threads 2] [--epochs 4] [--heads cnn attention]

Needs ../shared/data (skips a dataset that is absent).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioprune.evaluate.floors import compute_floor  # noqa: E402
from bioprune.evaluate.runner import prepare_data  # noqa: E402
from bioprune.evaluate.tasks import spec_from_config  # noqa: E402
from bioprune.models.registry import build_model  # noqa: E402

CONFIG = ROOT / "config" / "rfam_full.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def task(name: str):
    settings = yaml.safe_load(CONFIG.read_text())["evaluate"]["tasks"][name]
    # task paths in the config are relative to the repository root
    for key in ("train", "valid", "test"):
        if settings.get(key):
            settings[key] = str((ROOT / settings[key]).resolve())
    return spec_from_config(name, settings)


def present(spec) -> bool:
    files = [getattr(spec, k) for k in ("train", "valid", "test") if getattr(spec, k)]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        print(f"skipping {spec.name}: {missing[0]} is absent", file=sys.stderr)
    return not missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4, help="CNN epochs")
    ap.add_argument(
        "--heads", nargs="+", default=["cnn"], help="structure heads to floor (cnn, attention, pair)"
    )
    ap.add_argument("--lr", type=float, default=2e-3, help="CNN learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-nrc", action="store_true", help="skip the nRC k-mer floor")
    args = ap.parse_args()
    command = (
        f"nice -n 5 python benchmarks/floors.py --threads {args.threads} --epochs {args.epochs}"
        f" --lr {args.lr:g} --heads {' '.join(args.heads)}" + (" --no-nrc" if args.no_nrc else "")
    )
    torch.set_num_threads(args.threads)
    model = build_model("rnafm", "tiny", seed=0)  # the filters only (alphabet, 1,022-residue window)
    rows = []

    def timed_floor(spec, name: str) -> None:
        started = time.time()
        out = compute_floor(spec, prepare_data(spec, model, args.seed), args.seed)
        out["wall_s"] = round(time.time() - started, 1)
        out["command"] = command
        rows.append(out)
        print(f"{name}: {out['metrics']} in {out['wall_s']} s", file=sys.stderr)

    ss = task("bprna_ss")
    if present(ss):
        for head in args.heads:
            lr = args.lr if head == "cnn" else ss.lr
            timed_floor(replace(ss, structure_head=head, epochs=args.epochs, lr=lr), f"bprna_ss {head}")
    nrc = task("nrc")
    if not args.no_nrc and present(nrc):
        timed_floor(nrc, "nrc")
    if not rows:
        print("no data set present; nothing written", file=sys.stderr)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    # rows of an earlier run that this one did not redo are kept (a partial rerun updates its rows only)
    path = RESULTS / "floors.json"
    done = {(r["task"], r["floor"]) for r in rows}
    old = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in old if (r["task"], r["floor"]) not in done] + rows
    rows.sort(key=lambda r: (r["task"], r["floor"]))
    path.write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "floors.md").write_text(markdown(rows, args))
    return 0


def markdown(rows: list[dict], args) -> str:
    commands = "; ".join(sorted({"`" + r.get("command", "?") + "`" for r in rows}))
    machine = platform.processor() or platform.machine()
    lines = [
        "# Floors of the real-data tasks (no language model)",
        "",
        f"Made by (each row's `command` in floors.json): {commands}"
        f" ({machine}, torch {torch.__version__}, probe seed {args.seed}).",
        "",
        "Splits as `bioprune evaluate` builds them for config/rfam_full.yaml (tiny RNA-FM filters).",
        "Reference points (issue 16): a 6-block, 24-channel CNN on one-hot pair features and distance",
        "bins, 4 epochs on the same 1,000 TR0 records, F1 0.51 on these 500 TS0 records; predicting every",
        "canonical pair with j - i > 3 scores F1 0.024 there; nRC k-mer + length logistic regression 0.737",
        "(3-mers), 0.796 (4-mers). Wall times depend on the machine's load.",
        "",
        "| task | floor | head | headline | test metrics | used train/valid/test | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        used = "/".join(str(r["counts"][s]["used"]) for s in ("train", "valid", "test"))
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        head = r["metrics"][r["headline"]]
        lines.append(
            f"| {r['task']} | {r['floor']} | {r['head']} | {r['headline']} {head:.4f} | {metrics} | {used}"
            f" | {r['wall_s']} |"
        )
    for r in rows:
        d = r["details"]
        if r["floor"] == "kmer":
            lines += ["", f"## {r['task']}: k-mer + length, per k (best L2 on valid)", ""]
            lines += ["| k | features | L2 | valid accuracy | test accuracy |", "|---|---|---|---|---|"]
            for k in sorted({g["k"] for g in d["grid"]}):
                best = max((g for g in d["grid"] if g["k"] == k), key=lambda g: g["valid"])
                first = next(iter(best["test"]))
                lines.append(
                    f"| {k} | {best['features']} | {best['l2']:g} | {best['valid']:.4f} |"
                    f" {best['test'][first]:.4f} |"
                )
            lines.append(f"\nChosen on valid: k = {d['k']}, L2 = {d['l2']:g}.")
        else:
            lines += [
                "",
                f"## {r['task']}: {r['floor']}",
                "",
                f"Threshold {d['threshold']} (tuned on valid, valid F1 {d['valid_score']:.4f});"
                + (
                    f" valid F1 per epoch {d['valid_curve']}, kept epoch {d['best_epoch']};"
                    if "valid_curve" in d
                    else ""
                )
                + (f" {d['parameters']} parameters." if "parameters" in d else ""),
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
