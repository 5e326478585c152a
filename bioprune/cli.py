"""``bioprune <step> ...``: every step a workflow rule runs, usable on its own.

Each step lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their step is called, so ``bioprune ingest`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from bioprune import __version__
from bioprune.errors import BiopruneError

# step name -> (module, one-line help). The order is the pipeline's order.
STEPS: dict[str, tuple[str, str]] = {
    "download": ("bioprune.download", "fetch a real data set from its canonical URL, sha256-verified"),
    "ingest": ("bioprune.pool.ingest", "normalise, validate and filter FASTA inputs into one pool"),
    "dedup": ("bioprune.pool.dedup", "remove exact duplicate sequences (keeps the first)"),
    "decontaminate": ("bioprune.pool.decontaminate", "remove pool sequences found in evaluation sets"),
    "cluster": ("bioprune.pool.cluster", "cluster the pool with MMseqs2"),
    "holdout": ("bioprune.pool.holdout", "set aside a seeded fraction of whole families as a held-out set"),
    "shard": ("bioprune.pool.shard", "split the pool into residue-balanced shards"),
    "train": ("bioprune.models.train_cli", "train or fine-tune a masked language model"),
    "reference": ("bioprune.reference", "draw D_sub and build the reference model"),
    "fisher": ("bioprune.influence.fisher_cli", "partial diagonal Fisher over D_sub (map step)"),
    "fisher-reduce": ("bioprune.influence.fisher_cli", "add partial Fisher sums (reduce step)"),
    "score": ("bioprune.influence.score_cli", "self-influence score of every sequence of a shard"),
    "merge-scores": ("bioprune.influence.merge", "collect per-shard score tables, in pool order"),
    "families": ("bioprune.select.families", "the family of every pool sequence, once for every selection"),
    "select": ("bioprune.select.select_cli", "pick a coreset (topi, cci, random, cluster, loss) at a budget"),
    "select-report": ("bioprune.select.select_cli", "compare family/cluster coverage across selections"),
    "pretrain": ("bioprune.pretrain", "train the architecture from scratch on a coreset"),
    "perplexity-set": ("bioprune.evaluate.evaluate_cli", "pool sequences no selection picked (held-out set)"),
    "evaluate": ("bioprune.evaluate.evaluate_cli", "score a model on a downstream task (frozen probes)"),
    "floor": ("bioprune.evaluate.floors", "a task's score without a language model (one-hot / k-mer floor)"),
    "report": ("bioprune.report.report_cli", "comparison tables and figures of a finished run"),
    "install-profile": (
        "bioprune.profile_install",
        "copy a shipped profile to where snakemake --profile NAME finds it",
    ),
}


def seed(text: str) -> int:
    """argparse type of every ``--*seed`` option: numpy's generators refuse negative seeds (a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be an integer >= 0, got {value}")
    return value


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only``, just that step's sub-parser is built (and its module imported)."""
    # The docstring's reST literals (``x``) read as plain text on a terminal.
    parser = argparse.ArgumentParser(prog="bioprune", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"bioprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for name, (module_name, help_text) in STEPS.items():
        if only is not None and name != only:
            continue
        if not _module_exists(module_name):  # a stage not built in this install
            continue
        module = importlib.import_module(module_name)
        step_parser = sub.add_parser(name, help=help_text, description=help_text)
        # A module serving two steps (fisher / fisher-reduce) names its functions per step.
        suffix = name.replace("-", "_")
        adder = getattr(module, f"add_{suffix}_arguments", None) or module.add_arguments
        runner = getattr(module, f"run_{suffix}", None) or module.run
        adder(step_parser)
        step_parser.set_defaults(_run=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in STEPS else None).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except BiopruneError as exc:
        print(f"bioprune {args.step}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"bioprune {args.step}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
