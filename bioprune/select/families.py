"""``bioprune families``: the family of every pool sequence, computed once per run for every selection.

A sequence's family is the first group of ``--family-regex`` in its description (the workflow's
``select.family_regex``). Selections report family coverage, so each one needed the family of every
pool row; computed in each selection job, that cost ~1 s at 20M sequences with a few thousand distinct
descriptions, and ~17 s and 2.5 GiB with millions (RNAcentral-like descriptions): the description column
is coded and the regex runs once per distinct description. This step does it once, and the selections
read one int32 column (``select --families``).

Output: ``families.parquet``, one row per pool row in pool order, column ``family`` (int32 code into the
sorted family names, -1 = no family). Its schema metadata (key ``bioprune``) holds the regex, the family
names, the row count and the digest of the pool's ids (:func:`bioprune.pool.io.ids_digest`), which
``select`` checks against the pool it is given.

A clustered pool's table also gets a ``cluster`` column: each row's cluster as an int32 code, which every
selection reports coverage of (and cluster-balanced selection draws by). Coding the pool's cluster column
(~2M distinct representatives at 20M rows) cost each selection ~1.5 s; the metadata holds the
fingerprint of that column as stored (:func:`bioprune.pool.io.column_fingerprint`), and a selection uses
the codes only while the pool's column has that fingerprint (else it codes the column itself).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune.atomic import atomic_path
from bioprune.errors import ConfigError, InputError
from bioprune.pool import io as pool
from bioprune.select.inputs import column_codes, family_codes, parse_family_regex

log = logging.getLogger(__name__)

META_KEY = b"bioprune"


@dataclass
class Families:
    """The family code of every pool row (-1: none), the sorted names, and what they were computed from."""

    codes: np.ndarray
    names: list[str]
    regex: str
    ids_digest: str
    path: Path | None = None  # the file it was read from
    clusters: np.ndarray | None = None  # cluster code of every pool row (a clustered pool), else None
    clusters_of: str | None = None  # fingerprint of the pool table's cluster column they were coded from


def compute_families(pool_dir: os.PathLike | str, regex: str) -> Families:
    """Families of every row of the pool table in ``pool_dir`` by ``regex`` (see the module docstring)."""
    table = pool.table_path(pool_dir)
    if "description" not in pq.read_schema(table).names:
        raise InputError(table, "no 'description' column to take families from (use --family-regex none)")
    codes, names = family_codes(table, regex)
    digest = pool.ids_digest(pool.read_table(pool_dir, ["id"]).column("id"))
    families = Families(codes, names, regex, digest)
    if "cluster" in pq.read_schema(table).names:
        families.clusters = column_codes(table, "cluster", values=False)[0]
        families.clusters_of = pool.column_fingerprint(table, "cluster")
    return families


def write_families(families: Families, out: os.PathLike | str) -> None:
    meta = {
        "family_regex": families.regex,
        "names": families.names,
        "n_rows": int(len(families.codes)),
        "ids_digest": families.ids_digest,
        "ids_digest_version": pool.IdsDigest.VERSION,
        "clusters_of": families.clusters_of,
    }
    columns = {"family": families.codes.astype(np.int32)}
    if families.clusters is not None:
        columns["cluster"] = families.clusters.astype(np.int32)
    schema = pa.schema(
        [(name, pa.int32()) for name in columns], metadata={META_KEY: json.dumps(meta).encode()}
    )
    with atomic_path(out) as tmp:
        pq.write_table(pa.table(columns, schema=schema), tmp)


def read_families(path: os.PathLike | str) -> Families:
    """A ``families.parquet`` as written by this step; InputError naming the file otherwise."""
    path = Path(path)
    pf = pool.parquet_file(path, "families table (bioprune families)")
    raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
    if pf.schema_arrow.names not in (["family"], ["family", "cluster"]) or raw is None:
        raise InputError(path, "not a families table written by `bioprune families`")
    meta = json.loads(raw)
    if meta.get("ids_digest_version", 1) != pool.IdsDigest.VERSION:
        raise InputError(
            path,
            "written by an older bioprune, whose digest of the pool's ids differs: rerun bioprune families",
        )
    table = pf.read()
    codes = pool.to_numpy(table.column("family"))
    if len(codes) != meta["n_rows"]:
        raise InputError(path, f"holds {len(codes)} rows but its metadata says {meta['n_rows']}")
    families = Families(codes, meta["names"], meta["family_regex"], meta["ids_digest"], path)
    if "cluster" in table.column_names:
        families.clusters, families.clusters_of = (
            pool.to_numpy(table.column("cluster")),
            meta.get("clusters_of"),
        )
    return families


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool", type=Path, help="pool folder (sequences.parquet with a description column)")
    parser.add_argument("--out", type=Path, required=True, help="families table to write (.parquet)")
    parser.add_argument(
        "--family-regex",
        required=True,
        help="family of a sequence: first group of this regex in its description",
    )


def run(args: argparse.Namespace) -> int:
    regex = parse_family_regex(args.family_regex)
    if regex is None:
        raise ConfigError("--family-regex none: there are no families to compute")
    families = compute_families(args.pool, regex)
    write_families(families, args.out)
    with_family = int(np.count_nonzero(families.codes >= 0))
    log.info(
        "%d of %d pool sequences have a family (%d families) -> %s",
        with_family,
        len(families.codes),
        len(families.names),
        args.out,
    )
    return 0
