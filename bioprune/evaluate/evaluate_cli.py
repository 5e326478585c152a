"""``bioprune evaluate``: score one model on one downstream task; ``bioprune perplexity-set``: the pool
sequences no selection picked (the held-out set of the ``mlm_perplexity`` tasks).

Examples::

    bioprune evaluate --model results/pretrain/topi/rate0.99/seed0/model.pt \\
        --config config/config.yaml --task trna_ss --out results/evaluate/topi/rate0.99/seed0/trna_ss
    bioprune evaluate --model model.pt --task-json '{"name": "nrc", "kind": "seq_class", ...}' --out out/
    bioprune perplexity-set --pool results/pool/cluster --out results/evaluate/heldout/rate0.99 \\
        results/select/*/rate0.99/seed*/ids.txt

``evaluate`` writes ``metrics.json``: the task, its settings, every metric of its kind, the counts of
records read, used and dropped (by reason) per split, and the probe's model selection.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from bioprune import __version__
from bioprune.atomic import staged_dir
from bioprune.cli import seed
from bioprune.errors import ConfigError, InputError
from bioprune.evaluate.perplexity import write_unselected_set
from bioprune.evaluate.runner import evaluate_task
from bioprune.evaluate.tasks import WORKFLOW_SOURCES, spec_from_config
from bioprune.models.registry import load_model, spec_of

log = logging.getLogger("bioprune.evaluate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (bioprune model.pt or an official checkpoint)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task-json", help="the task's settings as JSON (name, kind, files, ...)")
    src.add_argument("--config", help="a workflow config file; the task is evaluate.tasks.<--task>")
    p.add_argument("--task", help="with --config: the task name")
    p.add_argument(
        "--test",
        help="use this FASTA as the test split (the workflow's unselected pool or held-out families)",
    )
    p.add_argument("--out", required=True, help="output folder (metrics.json)")
    p.add_argument("--seed", type=seed, default=0, help="probe seed: initialisation, batches, sampling")
    p.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per embedding batch")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    g = p.add_argument_group("labels recorded in metrics.json (the report groups by them)")
    g.add_argument("--strategy", help="selection strategy of the model (topi, random1x, untrained, ...)")
    g.add_argument("--budget", help="budget token of the model (rate0.99, n500, none)")
    g.add_argument("--model-seed", type=int, help="selection / pretraining seed of the model")


def _task_spec(args):
    if args.task_json:
        try:
            settings = json.loads(args.task_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--task-json is not valid JSON ({exc})") from None
        if not isinstance(settings, dict) or "name" not in settings:
            raise ConfigError("--task-json must be an object with a 'name'")
        return spec_from_config(str(settings["name"]), settings)
    if not args.task:
        raise ConfigError("--config needs --task NAME")
    path = Path(args.config)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot read config ({exc})") from None
    tasks = (config.get("evaluate") or {}).get("tasks") or {}
    if args.task not in tasks:
        raise ConfigError(f"{path}: no task {args.task!r} in evaluate.tasks (tasks: {sorted(tasks)})")
    return spec_from_config(args.task, tasks[args.task])


def run(args: argparse.Namespace) -> int:
    spec = _task_spec(args)
    test_source = spec.source  # recorded: the report names what a perplexity set measures
    if args.test:
        spec = replace(spec, test=args.test, source="files")
    elif spec.source in WORKFLOW_SOURCES:
        raise ConfigError(
            f"task {spec.name} reads the workflow's {spec.source} set: give its FASTA with --test"
        )
    if args.batch_tokens < 3:
        raise ConfigError(f"--batch-tokens must be >= 3, got {args.batch_tokens}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.model)
    log.info("task %s (%s) on %s", spec.name, spec.kind, args.model)
    result = evaluate_task(spec, model, seed=args.seed, batch_tokens=args.batch_tokens, device=device)
    payload = {
        "task": spec.name,
        "kind": spec.kind,
        "headline": spec.headline,
        "model": {"path": str(args.model), "spec": spec_of(model).to_dict()},
        "strategy": args.strategy,
        "budget": args.budget,
        "seed": args.model_seed,
        "probe_seed": args.seed,
        "settings": spec.to_dict(),
        "test_source": test_source,
        **result,
        "bioprune_version": __version__,
    }
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if v is not None) or "n/a"
    log.info("task %s: %s", spec.name, shown)
    with staged_dir(args.out) as stage:
        (stage / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def add_perplexity_set_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", help="ids.txt of every selection whose sequences are excluded")
    p.add_argument("--pool", required=True, help="pool folder (sequences.fasta.gz) or a FASTA file")
    p.add_argument(
        "--out", required=True, help="output folder (sequences.fasta.gz, perplexity_set_report.json)"
    )
    p.add_argument("--max-sequences", type=int, default=1000, help="sample at most this many (seeded)")
    p.add_argument("--seed", type=seed, default=0, help="sampling seed")


def run_perplexity_set(args: argparse.Namespace) -> int:
    from bioprune.models.data import sequences_file

    if args.max_sequences < 1:
        raise ConfigError(f"--max-sequences must be >= 1, got {args.max_sequences}")
    pool = sequences_file(args.pool)
    with staged_dir(args.out) as stage:
        report = write_unselected_set(pool, args.ids, stage, max_sequences=args.max_sequences, seed=args.seed)
        (stage / "perplexity_set_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info(
        "%d of %d pool sequences were never selected; kept %d",
        report["never_selected"],
        report["pool_records"],
        report["sampled"],
    )
    if report["never_selected"] == 0:
        log.warning("every pool sequence is in some selection: the perplexity set is empty")
    return 0
