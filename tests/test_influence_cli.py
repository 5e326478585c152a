"""The four CLI steps end to end on a tiny saved RNA-FM: fisher per shard, fisher-reduce, score per shard,
merge-scores; and the refusals (mismatched provenance, partial Fisher, duplicate ids) with one-line
errors and no output left behind."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_influence import random_seqs, write_fasta

from bioprune.cli import main
from bioprune.influence.length import length_diagnostics
from bioprune.influence.score_stats import STATS_KEY
from bioprune.influence.score_table import META_KEY, SCHEMA
from bioprune.models.registry import build_model, save_model

SETTINGS = ["--max-length", "40", "--batch-tokens", "400", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("influence_cli")
    save_model(build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=0), d / "model.pt")
    seqs = random_seqs(30, 5, 70, seed=3)  # some longer than max_length - 2 = 38: truncated
    for k in range(2):
        write_fasta(d / f"shard_{k:03d}.fasta.gz", seqs[k::2])
    (d / "dsub.txt").write_text("\n".join(sid for sid, _ in seqs[::3]) + "\n")  # in both shards
    for k in range(2):
        rc = main(
            [
                "fisher",
                "--model",
                str(d / "model.pt"),
                "--ids",
                str(d / "dsub.txt"),
                "--out",
                str(d / f"p{k}.pt"),
            ]
            + SETTINGS
            + ["--no-progress", str(d / f"shard_{k:03d}.fasta.gz")]
        )
        assert rc == 0
    assert main(["fisher-reduce", "--out", str(d / "fisher.pt"), str(d / "p0.pt"), str(d / "p1.pt")]) == 0
    for k in range(2):
        rc = main(
            ["score", "--model", str(d / "model.pt"), "--fisher", str(d / "fisher.pt")]
            + ["--out", str(d / f"s{k}.parquet"), "--report", str(d / f"s{k}.json")]
            + SETTINGS
            + [str(d / f"shard_{k:03d}.fasta.gz")]
        )
        assert rc == 0
    rc = main(
        ["merge-scores", "--out", str(d / "scores.parquet"), str(d / "s0.parquet"), str(d / "s1.parquet")]
    )
    assert rc == 0
    return d, seqs


def test_score_tables(run_dir):
    d, seqs = run_dir
    shard0 = pq.read_table(d / "s0.parquet")
    assert shard0.schema.names == SCHEMA.names
    assert shard0.column("id").to_pylist() == [sid for sid, _ in seqs[0::2]]  # the shard's order
    merged = pq.read_table(d / "scores.parquet").to_pandas()
    assert sorted(merged.id) == sorted(sid for sid, _ in seqs)
    assert np.isfinite(merged.self_influence).all() and (merged.self_influence > 0).all()
    assert (merged.loss > 0).all()
    lengths = dict(seqs)
    assert all(merged.length[i] == len(lengths[merged.id[i]]) for i in range(len(merged)))
    # mlm: at least one and at most max_length - 2 masked residues per sequence
    assert merged.n_tokens.between(1, 38).all()
    meta = json.loads(pq.read_schema(d / "scores.parquet").metadata[META_KEY])
    assert meta["provenance"]["loss_mode"] == "mlm" and meta["provenance"]["max_length"] == 40
    assert meta["shards"] == ["s0.parquet", "s1.parquet"] and "-s" in meta["sign"]


def test_score_report_counts_truncation(run_dir):
    d, seqs = run_dir
    report = json.loads((d / "s0.json").read_text())
    assert report["n_sequences"] == len(seqs[0::2])
    assert report["n_truncated"] == sum(len(s) > 38 for _, s in seqs[0::2]) > 0
    assert report["n_windowed"] == 0


def test_fisher_file_provenance(run_dir):
    from bioprune.influence.fisher import load_fisher
    from bioprune.influence.passes import file_sha256

    d, seqs = run_dir
    fisher = load_fisher(d / "fisher.pt")
    assert fisher.kind == "total" and fisher.n == len(seqs[::3])
    assert fisher.provenance["model_sha256"] == file_sha256(d / "model.pt")
    assert fisher.provenance["block"] == "head_dense"
    assert sorted(fisher.sources) == ["shard_000.fasta.gz", "shard_001.fasta.gz"]


def _refused(capsys, argv, out, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()


def test_score_refuses_other_settings_or_partial(run_dir, capsys, tmp_path):
    d, _ = run_dir
    base = ["score", "--model", str(d / "model.pt"), "--out", str(tmp_path / "x.parquet")]
    shard = str(d / "shard_000.fasta.gz")
    _refused(
        capsys,
        base + ["--fisher", str(d / "fisher.pt")] + SETTINGS + ["--block", "last_block", shard],
        tmp_path / "x.parquet",
        "block: Fisher 'head_dense' vs score 'last_block'",
    )
    _refused(
        capsys,
        base + ["--fisher", str(d / "fisher.pt"), "--max-length", "50", shard],
        tmp_path / "x.parquet",
        "max_length",
    )
    _refused(
        capsys,
        base + ["--fisher", str(d / "p0.pt")] + SETTINGS + [shard],
        tmp_path / "x.parquet",
        "partial Fisher",
    )
    other = tmp_path / "other.pt"
    save_model(build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=1), other)
    argv = [
        "score",
        "--model",
        str(other),
        "--out",
        str(tmp_path / "x.parquet"),
        "--fisher",
        str(d / "fisher.pt"),
    ]
    _refused(capsys, argv + SETTINGS + [shard], tmp_path / "x.parquet", "model_sha256")


def test_merge_refuses_duplicates(run_dir, capsys, tmp_path):
    d, _ = run_dir
    out = tmp_path / "m.parquet"
    argv = [
        "merge-scores",
        "--out",
        str(out),
        str(d / "s0.parquet"),
        str(d / "s1.parquet"),
        str(d / "s0.parquet"),
    ]
    _refused(capsys, argv, out, "occurs twice")


def test_fisher_reduce_refuses_missing_shard(run_dir, capsys, tmp_path):
    d, _ = run_dir
    out = tmp_path / "f.pt"
    _refused(capsys, ["fisher-reduce", "--out", str(out), str(d / "p0.pt")], out, "in none of the 1 shards")


def test_not_a_fisher_file(run_dir, capsys, tmp_path):
    d, _ = run_dir
    out = tmp_path / "x.parquet"
    argv = ["score", "--model", str(d / "model.pt"), "--fisher", str(d / "model.pt"), "--out", str(out)]
    _refused(capsys, argv + [str(d / "shard_000.fasta.gz")], out, "not a bioprune Fisher file")


def test_empty_shard_gives_empty_partial_and_table(run_dir, tmp_path):
    import gzip

    import pyarrow.parquet as pq

    d, seqs = run_dir
    empty = tmp_path / "shard_002.fasta.gz"
    with gzip.open(empty, "wb"):
        pass  # the shard step writes empty gzip files when there are fewer sequences than shards
    model = ["--model", str(d / "model.pt")]
    assert (
        main(
            [
                "fisher",
                *model,
                "--ids",
                str(d / "dsub.txt"),
                "--out",
                str(tmp_path / "p.pt"),
                *SETTINGS,
                str(empty),
            ]
        )
        == 0
    )
    from bioprune.influence.fisher import load_fisher

    part = load_fisher(tmp_path / "p.pt")
    assert part.n == 0 and part.ids == [] and all(float(v.abs().sum()) == 0 for v in part.sums.values())
    # it reduces with the others without changing the sum
    out = tmp_path / "f.pt"
    assert (
        main(["fisher-reduce", "--out", str(out), str(d / "p0.pt"), str(d / "p1.pt"), str(tmp_path / "p.pt")])
        == 0
    )
    a, b = load_fisher(out), load_fisher(d / "fisher.pt")
    assert a.n == b.n and all(torch.equal(a.sums[k], b.sums[k]) for k in a.sums)
    table = tmp_path / "s.parquet"
    argv = ["score", *model, "--fisher", str(d / "fisher.pt"), "--out", str(table), *SETTINGS, str(empty)]
    assert main(argv) == 0
    assert pq.read_table(table).num_rows == 0
    merged = tmp_path / "m.parquet"
    assert (
        main(["merge-scores", "--out", str(merged), str(d / "s0.parquet"), str(table), str(d / "s1.parquet")])
        == 0
    )
    assert pq.read_table(merged).num_rows == len(seqs)


def test_corrupt_shard_is_an_input_error(run_dir, capsys, tmp_path):
    d, _ = run_dir
    bad = tmp_path / "bad.fasta.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = tmp_path / "x.parquet"
    argv = ["score", "--model", str(d / "model.pt"), "--fisher", str(d / "fisher.pt"), "--out", str(out)]
    _refused(capsys, argv + SETTINGS + ["--no-progress", str(bad)], out, "corrupt gzip")


def _shard_table(path, seqs, shard_of):
    """A shard step's shards.parquet for a pool in the order of ``seqs``."""
    import pyarrow as pa

    pq.write_table(
        pa.table(
            {
                "id": [sid for sid, _ in seqs],
                "shard": pa.array([shard_of(i) for i in range(len(seqs))], pa.int32()),
                "length": pa.array([len(s) for _, s in seqs], pa.int32()),
            }
        ),
        path,
    )
    return path


def test_merge_in_pool_order(run_dir, tmp_path):
    """--order: the rows follow the pool (the shards were dealt every other sequence), with the same values
    per id as the plain concatenation; the report says which order it wrote."""
    d, seqs = run_dir
    order = _shard_table(tmp_path / "shards.parquet", seqs, lambda i: i % 2)
    out, report = tmp_path / "m.parquet", tmp_path / "m.json"
    argv = ["merge-scores", "--order", str(order), "--out", str(out), "--report", str(report)]
    assert main(argv + [str(d / "s0.parquet"), str(d / "s1.parquet")]) == 0
    merged = pq.read_table(out)
    assert merged.column("id").to_pylist() == [sid for sid, _ in seqs]
    assert merged.schema.metadata == pq.read_schema(d / "scores.parquet").metadata
    plain = pq.read_table(d / "scores.parquet").to_pandas().set_index("id")
    assert merged.to_pandas().set_index("id").equals(plain.loc[[sid for sid, _ in seqs]])
    assert json.loads(report.read_text())["row_order"] == "pool"


def stored_stats(path) -> dict:
    return json.loads(pq.read_metadata(path).metadata[STATS_KEY])


def test_merged_tables_store_the_statistics_of_their_rows(run_dir, tmp_path):
    """merge-scores stores, beside the provenance, what every selection reports of the whole table: the
    distribution of both score columns and the length diagnostics, the same numbers as computed on the
    table's own columns; in either row order (the mean and the diagnostics depend on it)."""
    from bioprune.select.summary import distribution

    d, seqs = run_dir
    order = _shard_table(tmp_path / "shards.parquet", seqs, lambda i: i % 2)
    pool_order = tmp_path / "m.parquet"
    assert main(["merge-scores", "--order", str(order), "--out", str(pool_order), *_tables(d)]) == 0
    for path in (d / "scores.parquet", pool_order):
        table = pq.read_table(path)
        cols = {c: table.column(c).to_numpy() for c in ("self_influence", "loss", "length")}
        stats = stored_stats(path)
        assert stats["n"] == len(seqs) and "merge-scores" in stats["about"]
        assert stats["distribution"] == {c: distribution(cols[c]) for c in ("self_influence", "loss")}
        assert stats["length_diagnostics"] == length_diagnostics(
            cols["self_influence"], cols["length"], cols["loss"]
        )
        assert list(stats["distribution"]["loss"]) == list(distribution(cols["loss"]))  # key order kept
        meta = json.loads(pq.read_metadata(path).metadata[META_KEY])
        assert set(meta) == {"provenance", "eps", "fisher_sha256", "fisher_n", "sign", "shards"}


def _tables(d) -> list[str]:
    return [str(d / "s0.parquet"), str(d / "s1.parquet")]


def test_merge_in_pool_order_refusals(run_dir, capsys, tmp_path):
    d, seqs = run_dir
    out = tmp_path / "m.parquet"
    tables = [str(d / "s0.parquet"), str(d / "s1.parquet")]
    order = str(_shard_table(tmp_path / "shards.parquet", seqs, lambda i: i % 2))
    # tables out of shard order: both have 15 rows, so the first id tells
    _refused(capsys, ["merge-scores", "--order", order, "--out", str(out), *tables[::-1]], out, "pool row 0")
    # another pool: one id differs
    other = [(sid if i != 7 else "stranger", s) for i, (sid, s) in enumerate(seqs)]
    moved = str(_shard_table(tmp_path / "other.parquet", other, lambda i: i % 2))
    _refused(capsys, ["merge-scores", "--order", moved, "--out", str(out), *tables], out, "'stranger'")
    # three shards listed, two tables; and a table of the wrong size
    three = str(_shard_table(tmp_path / "three.parquet", seqs, lambda i: i % 3))
    _refused(capsys, ["merge-scores", "--order", three, "--out", str(out), *tables], out, "lists 3 shards")
    uneven = str(_shard_table(tmp_path / "uneven.parquet", seqs, lambda i: int(i < 10)))
    _refused(capsys, ["merge-scores", "--order", uneven, "--out", str(out), *tables], out, "has 15 rows")
    _refused(
        capsys, ["merge-scores", "--order", str(d / "s0.parquet"), "--out", str(out), *tables], out, "shard"
    )
