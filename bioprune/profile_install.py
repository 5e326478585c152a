"""``bioprune install-profile slurm``: copy a shipped cluster profile to where Snakemake looks up a bare
``--profile NAME`` (the user's Snakemake config folder, ``~/.config/snakemake`` on Linux).

Only the cluster half travels: what each step asks for is the workflow profile ``profiles/default``,
which Snakemake applies by itself from the checkout. An existing profile of that name is never
overwritten without ``--force``: it may be the lab's own.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from bioprune.errors import BiopruneError

log = logging.getLogger(__name__)

# The repository's profiles folder (the package sits at the repository root).
SHIPPED = Path(__file__).resolve().parents[1] / "profiles"
INSTALLABLE = ("slurm", "local")


def user_profile_dir() -> Path:
    """The folder Snakemake searches for bare profile names (the same lookup Snakemake makes)."""
    from platformdirs import AppDirs  # a Snakemake dependency; imported late to keep the CLI light

    return Path(AppDirs("snakemake", "snakemake").user_config_dir)


def install_profile(name: str, dest: Path | None = None, force: bool = False) -> Path:
    """Copy ``profiles/<name>`` to ``<dest or user profile dir>/<name>``; return the new folder."""
    source = SHIPPED / name
    if name not in INSTALLABLE or not (source / "config.yaml").is_file():
        raise BiopruneError(
            f"no shipped profile {name!r} at {source} (installable: {', '.join(INSTALLABLE)}); "
            "run this from a bioprune checkout"
        )
    target = (dest or user_profile_dir()) / name
    if target.exists() and not force:
        raise BiopruneError(
            f"{target} exists (maybe your own {name} profile); keep it (bioprune's per-step resources "
            "come from the workflow profile profiles/default either way) or pass --force to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy beside the target, then swap, so an interrupted install leaves the old profile or none.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging / name)
        if target.exists():
            shutil.rmtree(target)
        (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=INSTALLABLE, help="the shipped profile to install")
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="folder to install into (default: Snakemake's user config folder, e.g. ~/.config/snakemake)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing profile of that name")


def run(args: argparse.Namespace) -> int:
    target = install_profile(args.name, args.dest, args.force)
    print(f"installed {target}; from a bioprune checkout run: snakemake --profile {args.name}")
    return 0
