"""``bioprune score``: self-influence of every sequence of one shard, to Parquet. See
:mod:`bioprune.influence.score`; ``bioprune merge-scores`` is :mod:`bioprune.influence.merge`.

Scores are positive, s = sum_j g_j^2 / (F_j + eps), higher = more influential; the official code
stores -s."""

from __future__ import annotations

import argparse
import logging

import torch

from bioprune.atomic import write_json
from bioprune.influence.fisher import load_fisher
from bioprune.influence.passes import file_sha256, load_scoring_model
from bioprune.influence.score import score_shard
from bioprune.influence.settings import add_settings_arguments, settings_from_args

log = logging.getLogger(__name__)


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes id, self_influence, loss, n_tokens, length in the shard's order. self_influence is "
        "s = sum_j g_j^2 / (F_j + eps), positive, higher = more influential (the official code stores -s)."
    )
    parser.add_argument("shard", help="shard FASTA (plain or gzip)")
    parser.add_argument("--model", required=True, help="reference model checkpoint (as given to fisher)")
    parser.add_argument("--fisher", required=True, help="reduced Fisher file (bioprune fisher-reduce)")
    parser.add_argument("--out", required=True, help="score table to write (.parquet)")
    parser.add_argument("--report", help="JSON report to write (counts, speed, provenance)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, score=True)


def run_score(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    fisher = load_fisher(args.fisher)  # before the model: a wrong file fails fast
    model, digest = load_scoring_model(args.model, settings.torch_device())
    report = score_shard(
        model,
        digest,
        fisher,
        args.fisher,
        file_sha256(args.fisher),
        args.shard,
        args.out,
        settings,
        progress=not args.no_progress,
    )
    if args.report:
        write_json(args.report, report, sort_keys=True)
    log.info(
        "score: %d sequences of %s in %.1f s (%s seq/s), %d truncated, %d split into windows -> %s",
        report["n_sequences"],
        args.shard,
        report["seconds"],
        report["sequences_per_s"],
        report["n_truncated"],
        report["n_windowed"],
        args.out,
    )
    return 0
