"""``bioprune fisher`` (map: partial Fisher sums over the D_sub members of one shard) and
``bioprune fisher-reduce`` (reduce: add the partials). See :mod:`bioprune.influence.fisher`."""

from __future__ import annotations

import argparse
import logging

import torch

from bioprune.influence.fisher import compute_partial, reduce_fisher, save_fisher
from bioprune.influence.passes import load_scoring_model
from bioprune.influence.settings import add_settings_arguments, settings_from_args

log = logging.getLogger(__name__)


def add_fisher_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shard", help="shard FASTA (plain or gzip); only its D_sub members are used")
    parser.add_argument("--model", required=True, help="reference model checkpoint")
    parser.add_argument("--ids", required=True, help="D_sub ids, one per line")
    parser.add_argument("--out", required=True, help="partial Fisher file to write (.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, score=False)


def run_fisher(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, digest = load_scoring_model(args.model, settings.torch_device())
    fisher = compute_partial(model, digest, args.shard, args.ids, settings, progress=not args.no_progress)
    save_fisher(fisher, args.out)
    log.info("fisher: %d D_sub sequences of %s -> %s", fisher.n, args.shard, args.out)
    return 0


def add_fisher_reduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("partials", nargs="+", help="partial Fisher files, one per shard")
    parser.add_argument("--out", required=True, help="Fisher file to write (.pt)")


def run_fisher_reduce(args: argparse.Namespace) -> int:
    fisher = reduce_fisher(args.partials)
    save_fisher(fisher, args.out)
    log.info("fisher-reduce: %d partials, %d D_sub sequences -> %s", len(args.partials), fisher.n, args.out)
    return 0
