"""``bioprune select`` / ``select-report`` end to end on small pools built here, and the workflow's
rerun behaviour (changing cci beta reruns only cci selections and what follows)."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from snakemake_plan import plan

from bioprune import cli
from bioprune.fasta import FastaWriter
from bioprune.pool.io import TABLE_SCHEMA
from bioprune.select import select_cli

ROOT = Path(__file__).resolve().parents[1]


def write_pool(folder: Path, n=300, n_families=12, cluster_size=5, seed=0):
    """A pool folder (FASTA + table with a cluster column) and a rows-shuffled score table for it."""
    rng = np.random.default_rng(seed)
    pool = folder / "pool"
    pool.mkdir(parents=True)
    ids = [f"seq{i}" for i in range(n)]
    fams = [f"RF{int(f):05d} fam{int(f)}" for f in rng.integers(0, n_families, n)]
    lengths = rng.integers(20, 400, n)
    with FastaWriter(pool / "sequences.fasta.gz") as w:
        for i in range(n):
            w.write(ids[i], bytes(rng.choice(list(b"ACGU"), int(lengths[i]))), fams[i])
    table = pa.table(
        {
            "id": ids,
            "description": fams,
            "source": ["in.fa"] * n,
            "length": pa.array(lengths, pa.int32()),
            "hash": [f"h{i}" for i in range(n)],
        },
        schema=TABLE_SCHEMA,
    ).append_column("cluster", pa.array([ids[(i // cluster_size) * cluster_size] for i in range(n)]))
    pq.write_table(table, pool / "sequences.parquet")
    perm = rng.permutation(n)
    scores = pa.table(
        {
            "id": [ids[i] for i in perm],
            "self_influence": rng.lognormal(0, 1, n)[perm],
            "loss": rng.normal(3, 0.5, n)[perm],
            "n_tokens": lengths[perm],
            "length": lengths[perm],
        }
    )
    pq.write_table(scores, folder / "scores.parquet")
    return pool, folder / "scores.parquet"


def select(pool, scores, out, *args):
    argv = ["select", "--scores", str(scores), "--pool", str(pool), "--out", str(out), *args]
    return cli.main(argv)


def fasta_ids(path):
    with gzip.open(path, "rt") as fh:
        return [line[1:].split()[0] for line in fh if line.startswith(">")]


@pytest.fixture
def data(tmp_path):
    return write_pool(tmp_path)


def test_cci_writes_ids_fasta_summary_and_figure(data, tmp_path):
    pool, scores = data
    out = tmp_path / "cci"
    assert select(pool, scores, out, "--strategy", "cci", "--rate", "0.9", "--seed", "3", "--bins", "10") == 0
    ids = (out / "ids.txt").read_text().split()
    assert len(ids) == 30
    assert fasta_ids(out / "coreset.fasta.gz") == ids  # same records, same (pool) order
    assert ids == sorted(ids, key=lambda s: int(s[3:]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_selected"] == summary["budget"]["k"] == 30
    assert summary["settings"] == {"beta": 0.1, "bins": 10, "family_regex": r"^(\S+)"}
    sel = summary["selection"]
    assert sum(sel["selected_per_bin"]) == 30 and sum(sel["bin_sizes"]) == 300 - 30
    # scores of the selected ids, from the table: none in the dropped top 10%
    table = pq.read_table(scores).to_pandas().set_index("id")
    assert table.loc[ids, "self_influence"].max() < sel["drop_threshold"]
    fams = summary["coverage"]["families"]
    pool_table = pq.read_table(pool / "sequences.parquet").to_pandas().set_index("id")
    assert fams["pool"] == pool_table["description"].str.split().str[0].nunique()
    assert fams["selected"] == pool_table.loc[ids, "description"].str.split().str[0].nunique()
    assert summary["length"]["selected"]["median"] == float(np.median(pool_table.loc[ids, "length"]))
    assert summary["coverage"]["clusters"]["pool"] == 60
    assert (out / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("column", ["self_influence", "loss"])
def test_topi_and_loss_keep_the_highest_scores(data, tmp_path, column):
    pool, scores = data
    strategy = "topi" if column == "self_influence" else "loss"
    out = tmp_path / strategy
    assert select(pool, scores, out, "--strategy", strategy, "--count", "25") == 0
    table = pq.read_table(scores).to_pandas()
    expected = set(table.nlargest(25, column)["id"])
    assert set((out / "ids.txt").read_text().split()) == expected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed_used"] is False


def test_same_seed_same_selection_other_seed_other_selection(data, tmp_path):
    pool, scores = data
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert (
            select(pool, scores, tmp_path / name, "--strategy", "random", "--rate", "0.8", "--seed", seed)
            == 0
        )
        runs[name] = (tmp_path / name / "ids.txt").read_text()
    assert runs["a"] == runs["b"] != runs["c"]


def test_random_multiplier_and_cluster_balanced(data, tmp_path):
    pool, scores = data
    assert select(pool, scores, tmp_path / "r", "--strategy", "random10x", "--rate", "0.95") == 0
    assert len((tmp_path / "r" / "ids.txt").read_text().split()) == 150
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["strategy"] == "random10x"
    assert select(pool, scores, tmp_path / "c", "--strategy", "cluster", "--count", "60") == 0
    ids = (tmp_path / "c" / "ids.txt").read_text().split()
    clusters = [int(s[3:]) // 5 for s in ids]
    assert sorted(clusters) == list(range(60))  # 60 clusters of 5: one from each


def test_budget_larger_than_the_pool_is_one_line_and_leaves_nothing(data, tmp_path):
    pool, scores = data
    out = tmp_path / "big"
    proc = subprocess.run(
        [sys.executable, "-m", "bioprune", "select", "--scores", str(scores), "--pool", str(pool),
         "--strategy", "random", "--count", "500", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("bioprune select: error:") and "Traceback" not in proc.stderr
    assert "budget of 500 sequences" in lines[-1] and "pool of 300" in lines[-1]
    assert not out.exists() or not any(out.iterdir())


def test_a_negative_seed_is_a_usage_error(data, tmp_path, capsys):
    """select --seed -1 gave numpy's ValueError traceback (issue 12.9)."""
    pool, scores = data
    with pytest.raises(SystemExit) as exc:
        select(pool, scores, tmp_path / "o", "--strategy", "cci", "--rate", "0.5", "--seed", "-1")
    assert exc.value.code == 2
    assert "a seed must be an integer >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cci_bins_are_bounded_and_many_bins_draw_as_one_outline(data, tmp_path, capsys, monkeypatch):
    """select.cci.bins had no practical limit: 100,000 bins took 197 s and 2.4 GB for 140 sequences
    (a bar per bin), 1e8 was killed for memory (issue 12.7)."""
    import matplotlib.figure

    pool, scores = data
    assert (
        select(pool, scores, tmp_path / "o", "--strategy", "cci", "--rate", "0.5", "--bins", "100000000") == 2
    )
    assert "--bins 100000000 must be between 1 and 10,000" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    drawn = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(select_cli, "_fork", lambda: None)  # the figure drawn in this process, to see it
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))
    )
    assert select(pool, scores, tmp_path / "o", "--strategy", "cci", "--rate", "0.5", "--bins", "10000") == 0
    (fig,) = drawn
    hist, per_bin, *_ = fig.axes  # then lengths, score against length
    assert len(per_bin.patches) == 2  # pool and selected, each one outline (was 2 x 10,000 bars)
    # the histogram in CCI's bins is one collection of rectangles (not a bar artist per bin), and no
    # 10,001 bin-edge lines over it
    (bars,) = hist.collections
    sizes = cci_bin_sizes(tmp_path / "o")
    assert len(sizes) == 10000 and len(bars.get_paths()) == sum(1 for size in sizes if size > 0)


def cci_bin_sizes(folder) -> list[int]:
    return json.loads((folder / "summary.json").read_text())["selection"]["bin_sizes"]


def rewrite_scores(scores, **changes):
    table = pq.read_table(scores)
    for name, values in changes.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    pq.write_table(table, scores)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ids, si: {"id": ["ghost"] + ids[1:]}, "1 scored ids are not in the pool"),
        (lambda ids, si: {"id": [ids[1]] + ids[1:]}, "1 ids are scored more than once"),
        (lambda ids, si: {"self_influence": [-1.0] + si[1:]}, "official code stores -s"),
        (lambda ids, si: {"self_influence": [float("nan")] + si[1:]}, "1 missing or non-finite values"),
    ],
)
def test_bad_score_tables_are_input_errors(data, tmp_path, capsys, change, message):
    pool, scores = data
    table = pq.read_table(scores)
    rewrite_scores(scores, **change(table["id"].to_pylist(), table["self_influence"].to_pylist()))
    assert select(pool, scores, tmp_path / "o", "--strategy", "cci", "--rate", "0.5") == 2
    err = capsys.readouterr().err
    assert message in err and str(scores) in err


def test_missing_columns_are_named(data, tmp_path, capsys):
    pool, scores = data
    pq.write_table(pq.read_table(scores).drop_columns(["loss"]), scores)
    assert select(pool, scores, tmp_path / "o", "--strategy", "loss", "--rate", "0.5") == 2
    assert "missing column(s) loss" in capsys.readouterr().err
    pq.write_table(
        pq.read_table(pool / "sequences.parquet").drop_columns(["cluster"]), pool / "sequences.parquet"
    )
    assert select(pool, scores, tmp_path / "o", "--strategy", "cluster", "--rate", "0.5") == 2
    assert "no 'cluster' column" in capsys.readouterr().err
    # the other strategies still work, without cluster coverage
    assert select(pool, scores, tmp_path / "o", "--strategy", "topi", "--rate", "0.5") == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["coverage"]["clusters"] is None


def test_unscored_pool_sequences_are_counted_and_never_selected(data, tmp_path):
    pool, scores = data
    table = pq.read_table(scores)
    pq.write_table(table.slice(0, 200), scores)
    unscored = set(table["id"].to_pylist()[200:])
    assert select(pool, scores, tmp_path / "o", "--strategy", "random", "--rate", "0.5") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["n_unscored"] == 100 and summary["n_scored"] == 200 and summary["n_selected"] == 100
    assert not unscored & set((tmp_path / "o" / "ids.txt").read_text().split())


def test_family_rule(data, tmp_path):
    pool, scores = data
    args = ["--strategy", "topi", "--rate", "0.5"]
    assert select(pool, scores, tmp_path / "none", *args, "--family-regex", "none") == 0
    assert json.loads((tmp_path / "none" / "summary.json").read_text())["coverage"]["families"] is None
    # second word of "RF00003 fam3": the name instead of the accession, same families
    assert select(pool, scores, tmp_path / "name", *args, "--family-regex", r"^\S+\s+(\S+)") == 0
    fams = json.loads((tmp_path / "name" / "summary.json").read_text())["coverage"]["families"]
    assert fams["pool"] == 12 and all(t["name"].startswith("fam") for t in fams["top"])


def test_families_once_per_run_select_the_same(data, tmp_path, capsys):
    """`bioprune families` computes each pool row's family once; a selection that reads it writes the
    same ids, coreset and coverage as one that takes families from the descriptions itself. A families
    table of another pool or another regex is refused."""
    pool, scores = data
    regex = r"^\S+\s+(\S+)"
    fam = tmp_path / "families.parquet"
    assert cli.main(["families", "--family-regex", regex, "--out", str(fam), str(pool)]) == 0
    args = ["--strategy", "cci", "--rate", "0.9", "--seed", "2", "--family-regex", regex]
    assert select(pool, scores, tmp_path / "own", *args) == 0
    assert select(pool, scores, tmp_path / "read", *args, "--families", str(fam)) == 0
    for name in ("ids.txt", "coreset.fasta.gz"):
        assert (tmp_path / "own" / name).read_bytes() == (tmp_path / "read" / name).read_bytes()
    own, read = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("own", "read"))
    assert own["coverage"] == read["coverage"] and own["coverage"]["families"]["pool"] == 12
    assert own["settings"] == read["settings"]
    # another regex than the table's
    out = tmp_path / "other_regex"
    assert select(pool, scores, out, *args[:-1], r"^(\S+)", "--families", str(fam)) == 2
    assert "computed with family regex" in capsys.readouterr().err and not out.exists()
    # another pool: same size, one id changed
    other_fam = families_of_another_pool(tmp_path, regex, row=5)
    out = tmp_path / "other_pool"
    assert select(pool, scores, out, *args, "--families", str(other_fam)) == 2
    err = capsys.readouterr().err
    assert "computed on another pool" in err and "other_families.parquet" in err and not out.exists()
    # not a families table; no families to compute
    assert select(pool, scores, out, *args, "--families", str(scores)) == 2
    assert "not a families table" in capsys.readouterr().err
    assert cli.main(["families", "--family-regex", "none", "--out", str(out), str(pool)]) != 0
    assert not out.exists()


def families_of_another_pool(tmp_path: Path, regex: str, row: int) -> Path:
    """The families table of a pool like the fixture's (same seed and size) with the id of ``row``
    changed: a table its digest check must refuse."""
    other = write_pool(tmp_path / "other", seed=0)[0]
    table = pq.read_table(other / "sequences.parquet")
    ids = table.column("id").to_pylist()
    ids[row] = f"seq{row}b"
    pq.write_table(table.set_column(0, "id", pa.array(ids)), other / "sequences.parquet")
    fam = tmp_path / "other_families.parquet"
    assert cli.main(["families", "--family-regex", regex, "--out", str(fam), str(other)]) == 0
    return fam


def test_fasta_out_of_step_with_its_table_is_an_error(data, tmp_path, capsys):
    pool, scores = data
    with FastaWriter(pool / "sequences.fasta.gz") as w:
        for i in range(300):
            w.write(f"other{i}", b"ACGU")
    assert select(pool, scores, tmp_path / "o", "--strategy", "topi", "--rate", "0.5") == 2
    assert "but the pool table has" in capsys.readouterr().err
    assert not (tmp_path / "o" / "ids.txt").exists()


@pytest.mark.slow
def test_select_report_compares_selections(data, tmp_path):
    pool, scores = data
    dirs = []
    for strategy in ("topi", "cci", "random1x"):
        for rate in ("0.9", "0.5"):
            out = tmp_path / "sel" / strategy / rate
            assert select(pool, scores, out, "--strategy", strategy, "--rate", rate) == 0
            dirs.append(str(out))
    assert cli.main(["select-report", "--out", str(tmp_path / "report"), *dirs]) == 0
    lines = (tmp_path / "report" / "coverage.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["strategy", "budget", "seed", "n_selected"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 6 and {(r[0], r[1]) for r in rows} == {
        (s, b) for s in ("topi", "cci", "random1x") for b in ("rate0.9", "rate0.5")
    }
    assert all(r[3] == ("30" if r[1] == "rate0.9" else "150") for r in rows)
    assert (tmp_path / "report" / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "coverage.md").read_text().count("\n") == 8


WORKFLOW = """
configfile: "config.yaml"


include: "{root}/rules/common.smk"
include: "{root}/rules/select.smk"


rule all:
    input:
        expand("train/{{d}}/done", d=PLAN.selection.dirs),
        rules.select_report.output,


rule train:  # stands in for coreset pretraining
    input:
        f"{{SELECT}}/{{{{strategy}}}}/{{{{budget}}}}/seed{{{{seed}}}}/coreset.fasta.gz",
    output:
        "train/{{strategy}}/{{budget}}/seed{{seed}}/done",
    shell:
        "touch {{output}}"
"""


def planned_jobs(workdir: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job ``snakemake -n`` would run (tests/snakemake_plan.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return plan(workdir, env=env).pairs()


@pytest.mark.slow
@pytest.mark.workflow
def test_changing_cci_beta_reruns_only_cci_selections_and_what_follows(tmp_path):
    pool, scores = write_pool(tmp_path / "data", n=200)
    results = tmp_path / "results"
    (results / "pool").mkdir(parents=True)
    pool.rename(results / "pool" / "cluster")  # the clustered pool the select rule reads
    (results / "influence").mkdir()
    scores.rename(results / "influence" / "scores.parquet")
    (tmp_path / "Snakefile").write_text(WORKFLOW.format(root=ROOT))
    base = "alphabet: rna\ninputs: [x.fa]\nselect:\n  rates: [0.8]\n  random_multipliers: [1, 2]\n"
    (tmp_path / "config.yaml").write_text(base)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((results / "select").glob("*/rate0.8/seed0/summary.json"))) == 9
    assert planned_jobs(tmp_path) == []

    # length strata: only the two strategies that use them (lenmatch-topi also reads Top-I's ids)
    (tmp_path / "config.yaml").write_text(base + "  length_strata: 3\n")
    assert sorted(planned_jobs(tmp_path)) == sorted(
        [
            *((r, f"strategy={s}, budget=rate0.8, seed=0") for s in ("topi_strata", "lenmatch-topi")
              for r in ("select", "train")),
            ("select_report", ""),
            ("all", ""),
        ]
    )  # fmt: skip

    (tmp_path / "config.yaml").write_text(base + "  cci: {beta: 0.2}\n")
    jobs = planned_jobs(tmp_path)
    assert sorted(jobs) == sorted(
        [
            ("select", "strategy=cci, budget=rate0.8, seed=0"),
            ("train", "strategy=cci, budget=rate0.8, seed=0"),
            ("select_report", ""),
            ("all", ""),
        ]
    )

    (tmp_path / "config.yaml").write_text(base.replace("[0.8]", "[0.8, 0.9]"))  # beta back, one more rate
    jobs = planned_jobs(tmp_path)
    selects = sorted(w for r, w in jobs if r == "select")
    assert selects == sorted(
        f"strategy={s}, budget=rate0.9, seed=0"
        for s in ("topi", "cci", "loss", "cluster", "random1x", "random2x", "topi_strata", "topi_resid")
        + ("lenmatch-topi",)
    )


def test_scores_in_pool_order_and_shuffled_select_the_same(data, tmp_path):
    pool, scores = data
    assert select(pool, scores, tmp_path / "shuffled", "--strategy", "topi", "--count", "40") == 0
    table = pq.read_table(scores).to_pandas()
    table["row"] = table["id"].str[3:].astype(int)
    pq.write_table(
        pa.Table.from_pandas(table.sort_values("row").drop(columns="row"), preserve_index=False), scores
    )
    assert select(pool, scores, tmp_path / "ordered", "--strategy", "topi", "--count", "40") == 0
    assert (tmp_path / "ordered" / "ids.txt").read_text() == (tmp_path / "shuffled" / "ids.txt").read_text()
    assert fasta_ids(tmp_path / "ordered" / "coreset.fasta.gz") == fasta_ids(
        tmp_path / "shuffled" / "coreset.fasta.gz"
    )


@pytest.mark.parametrize("max_runs", [0, 3, 512])
def test_kept_records_as_slices_or_a_byte_mask_are_the_same_bytes(monkeypatch, max_runs):
    """The coreset writer joins runs of kept records as slices when a block has few, else gathers a
    byte mask: both give the bytes and record ends of the mask over the block."""
    from bioprune.pool import io

    monkeypatch.setattr(io, "MAX_SLICED_RUNS", max_runs)
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes = rng.integers(1, 20, int(rng.integers(1, 60)))
        ends = np.cumsum(sizes)
        data = rng.integers(0, 256, int(ends[-1])).astype(np.uint8).tobytes()
        mask = rng.random(len(sizes)) < rng.random()
        kept, kept_ends = io.kept_bytes(data, ends, mask)
        assert kept == np.frombuffer(data, np.uint8)[np.repeat(mask, sizes)].tobytes()
        assert np.array_equal(kept_ends, np.cumsum(sizes[mask]))


def test_coverage_figure_takes_equal_values_over_seeds(tmp_path):
    """A deterministic strategy gives the same coverage for every seed; the mean of three equal floats
    can fall a rounding error below them (0.8444218515250481 does), which made the min-max whisker
    negative and the select_report step fail on the Rfam study's three seeds."""
    from bioprune.select import plots

    v = 0.8444218515250481
    assert np.mean([v] * 3) < v  # the case itself
    rows = [
        {"strategy": "topi", "budget": "rate0.99", "seed": s, "families": v, "families_pool": 1,
         "clusters": None, "clusters_pool": None, "median_length": 90.0, "median_length_pool": 96.0}
        for s in range(3)
    ]  # fmt: skip
    plots.coverage_comparison(tmp_path / "coverage.png", rows)
    assert (tmp_path / "coverage.png").read_bytes()[:4] == b"\x89PNG"


# --- statistics stored by merge-scores --------------------------------------------------------------


def merged_scores(folder: Path, scores: Path, order: bool = False, **changes) -> Path:
    """write_pool's score table as the workflow makes it: two shard tables with `bioprune score`'s schema
    and metadata, merged by merge-scores: concatenated (rows as they were), or with ``order`` in pool
    order (every other pool sequence in each shard, as the shard step deals them). ``changes``: columns
    replaced first."""
    from bioprune.influence.score_table import META_KEY, SCHEMA, SIGN_NOTE

    meta = {"provenance": {"model_sha256": "m"}, "eps": 1e-8, "fisher_sha256": "f", "sign": SIGN_NOTE}
    table = pq.read_table(scores)
    for name, values in changes.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    table = table.cast(SCHEMA).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    shards = [folder / "s0.parquet", folder / "s1.parquet"]
    argv = ["merge-scores", "--out", str(folder / "merged.parquet")]
    if order:
        row = np.array([int(i[3:]) for i in table.column("id").to_pylist()])  # pool row of seq<row>
        table = table.take(pa.array(np.argsort(row)))
        for k in range(2):
            pq.write_table(table.slice(k).take(pa.array(np.arange(0, len(table) - k, 2))), shards[k])
        ids = table.column("id")
        shard = pa.array(np.arange(len(table), dtype=np.int32) % 2)
        pq.write_table(pa.table({"id": ids, "shard": shard}), folder / "shards.parquet")
        argv += ["--order", str(folder / "shards.parquet")]
    else:
        half = len(table) // 2
        pq.write_table(table.slice(0, half), shards[0])
        pq.write_table(table.slice(half), shards[1])
    assert cli.main([*argv, *map(str, shards)]) == 0
    return folder / "merged.parquet"


def stored_stats(path: Path) -> dict | None:
    from bioprune.influence.score_stats import STATS_KEY

    raw = pq.read_metadata(path).metadata.get(STATS_KEY)
    return None if raw is None else json.loads(raw)


def copy_table(src: Path, dst: Path, rows=None, stats: dict | None = None, **changes) -> Path:
    """``src`` (its ``rows``, columns ``changes`` replaced) written again: the provenance is kept (the
    Arrow schema's metadata), stored statistics are not, unless ``stats`` are given to store."""
    from bioprune.influence.score_stats import STATS_KEY

    table = pq.read_table(src)
    if rows is not None:
        table = table.take(pa.array(rows))
    for name, values in changes.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    with pq.ParquetWriter(dst, table.schema) as writer:
        writer.write_table(table)
        if stats is not None:
            writer.add_key_value_metadata({STATS_KEY: json.dumps(stats).encode()})
    return dst


@pytest.fixture
def sampled(monkeypatch):
    """Length statistics on every 5th of 300 rows (as at 20M, where they use 1M rows) and merge-scores
    streaming 47 rows at a time: the rows it samples must be the ones select's diagnostics take."""
    from bioprune.influence import length, merge

    monkeypatch.setattr(length, "MAX_ROWS", 64)
    monkeypatch.setattr(merge, "ROW_GROUP", 47)  # batches start at rows 47, 94, ...: not multiples of 5


def count_calls(monkeypatch) -> list:
    """Count select's own calls of length_diagnostics (it makes them only without usable stored stats)."""
    from bioprune.select import select_cli

    calls = []
    real = select_cli.length_diagnostics

    def counted(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(select_cli, "length_diagnostics", counted)
    return calls


def length_dominated(scores: Path) -> list[float]:
    """Self-influence that grows with length (rho ~ 0.9): the length warning's case."""
    table = pq.read_table(scores)
    noise = np.random.default_rng(1).lognormal(0, 0.3, len(table))
    return (table.column("length").to_numpy() ** 1.5 * noise).tolist()


@pytest.mark.parametrize("order", [False, True])
def test_merged_table_stores_the_statistics_of_all_its_rows(data, tmp_path, sampled, order):
    from bioprune.influence.length import length_diagnostics
    from bioprune.select.summary import distribution

    _, scores = data
    merged = merged_scores(tmp_path, scores, order)
    if order:
        assert pq.read_table(merged).column("id").to_pylist() == [f"seq{i}" for i in range(300)]
    table = pq.read_table(merged)
    cols = {c: table.column(c).to_numpy() for c in ("self_influence", "loss", "length")}
    stats = stored_stats(merged)
    assert stats["n"] == 300 and stats["length_diagnostics"]["n_used"] == 60
    assert stats["distribution"] == {c: distribution(cols[c]) for c in ("self_influence", "loss")}
    assert stats["length_diagnostics"] == length_diagnostics(
        cols["self_influence"], cols["length"], cols["loss"]
    )
    assert stats["sampled_lengths"]["count"] == 60 and stats["sampled_lengths"]["step"] == 5
    # the merge report's length diagnostics are the stored ones
    report = tmp_path / "report.json"
    argv = ["merge-scores", "--out", str(tmp_path / "again.parquet"), "--report", str(report)]
    argv += ["--order", str(tmp_path / "shards.parquet")] if order else []
    assert cli.main([*argv, str(tmp_path / "s0.parquet"), str(tmp_path / "s1.parquet")]) == 0
    assert json.loads(report.read_text())["length"] == stats["length_diagnostics"]


def summary_of(folder: Path) -> dict:
    """summary.json less what differs between two runs of the same selection (times, the scores path)."""
    summary = json.loads((folder / "summary.json").read_text())
    del summary["seconds"], summary["inputs"]["scores"]
    return summary


@pytest.mark.parametrize(("dominated", "order"), [(False, False), (True, True)])
def test_select_reads_the_stored_statistics_and_writes_the_same_summary(
    data, tmp_path, sampled, monkeypatch, caplog, dominated, order
):
    """The stored statistics replace select's own computation (it makes none) and summary.json is the
    same, to the byte and key order (times and the scores path aside), as from the same table without
    them; the length warning is logged either way."""
    pool, scores = data
    changes = {"self_influence": length_dominated(scores)} if dominated else {}
    merged = merged_scores(tmp_path, scores, order, **changes)
    bare = copy_table(merged, tmp_path / "bare.parquet")
    assert stored_stats(merged) is not None and stored_stats(bare) is None
    calls = count_calls(monkeypatch)
    texts = {}
    for name, table in (("stored", merged), ("bare", bare)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert select(pool, table, tmp_path / name, "--strategy", "topi", "--rate", "0.7") == 0
        texts[name] = caplog.text
        assert len(calls) == (name == "bare")
    assert json.dumps(summary_of(tmp_path / "stored")) == json.dumps(summary_of(tmp_path / "bare"))
    for name, text in texts.items():
        assert ("mostly a length signal" in text) == dominated, name
        assert "stored score statistics not used" not in text
    bias = summary_of(tmp_path / "stored")["length_bias"]
    assert bias["length_dominated"] == dominated and bias["n"] == 300 and bias["n_used"] == 60


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("rows", "they are of 300 rows, the table has 299 candidates"),
        ("values", "loss: mean, min, max differ"),
        ("lengths", "the table's lengths differ from the pool's"),
        ("format", "format 0, this version reads 1"),
    ],
)
def test_stored_statistics_of_other_rows_are_computed_again(data, tmp_path, monkeypatch, caplog, case, why):
    """Statistics carried over to a table they do not describe (rows dropped, values changed, scored
    from a pool whose lengths differ, an unknown format) are not used: select says why, computes them
    and writes what it writes for the table without them. Not refused: the scores themselves pass every
    check, only the shortcut does not apply."""
    pool, scores = data
    lengths = pq.read_table(scores).column("length").to_numpy()
    # the lengths case: scored on sequences 1 longer than the pool's (merge stores their lengths)
    merged = merged_scores(
        tmp_path, scores, **({"length": (lengths + 1).tolist()} if case == "lengths" else {})
    )
    stats = stored_stats(merged)
    table = pq.read_table(merged)
    if case == "rows":
        stale = copy_table(merged, tmp_path / "stale.parquet", rows=np.arange(1, 300), stats=stats)
        bare = copy_table(merged, tmp_path / "bare.parquet", rows=np.arange(1, 300))
    elif case == "values":
        loss = (table.column("loss").to_numpy() * 2).tolist()
        stale = copy_table(merged, tmp_path / "stale.parquet", stats=stats, loss=loss)
        bare = copy_table(merged, tmp_path / "bare.parquet", loss=loss)
    else:
        if case == "format":
            stats["format"] = 0
        stale = copy_table(merged, tmp_path / "stale.parquet", stats=stats)
        bare = copy_table(merged, tmp_path / "bare.parquet")
    calls = count_calls(monkeypatch)
    with caplog.at_level("WARNING"):
        assert select(pool, stale, tmp_path / "stale", "--strategy", "topi", "--rate", "0.7") == 0
    assert (
        "stored score statistics not used" in caplog.text and why in caplog.text and str(stale) in caplog.text
    )
    assert len(calls) == 1
    assert select(pool, bare, tmp_path / "bare", "--strategy", "topi", "--rate", "0.7") == 0
    assert json.dumps(summary_of(tmp_path / "stale")) == json.dumps(summary_of(tmp_path / "bare"))


def _pool_order(scores: Path) -> pa.Table:
    """Rewrite the fixture's shuffled score table in pool order (seq0, seq1, ...); returns it."""
    table = pq.read_table(scores)
    order = np.argsort([int(i[3:]) for i in table.column("id").to_pylist()])
    table = table.take(pa.array(order))
    pq.write_table(table, scores)
    return table


@pytest.mark.parametrize(("swap", "found"), [((1, 2), "loading"), ((250, 270), "later"), (None, None)])
def test_a_table_in_pool_order_is_compared_id_by_id_before_anything_is_written(
    data, tmp_path, monkeypatch, caplog, swap, found
):
    """A score table with the pool's row count whose first ids are the pool's is taken to be in pool
    order; every id is compared later, in the pass that reads the kept ids. Two rows swapped beyond the
    first ids are found there, and the scores are then joined by id: every case selects what the
    shuffled table (joined from the start) selects. Row groups and batches of other sizes than the
    pool table's are lined up."""
    from bioprune.pool import io as pool_io
    from bioprune.select import inputs

    monkeypatch.setattr(inputs, "HEAD_ROWS", 8)
    monkeypatch.setattr(pool_io, "BATCH_ROWS", 16)
    pool, scores = data
    args = ["--strategy", "topi", "--count", "40"]
    assert select(pool, scores, tmp_path / "joined", *args) == 0
    table = _pool_order(scores)
    if swap is not None:
        rows = list(range(table.num_rows))
        rows[swap[0]], rows[swap[1]] = rows[swap[1]], rows[swap[0]]
        table = table.take(pa.array(rows))
    pq.write_table(table, scores, row_group_size=7)
    caplog.set_level("INFO", logger="bioprune")
    assert select(pool, scores, tmp_path / "out", *args) == 0
    for name in ("ids.txt", "coreset.fasta.gz"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "joined" / name).read_bytes()
    log = caplog.text
    assert ("not in the order of the pool after all" in log) == (found == "later")
    assert ("joining 300 scores" in log) == (found is not None)
    out, joined = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("out", "joined"))
    for key in ("coverage", "length", "selection", "n_scored"):  # the means differ in the last bits (order)
        assert out[key] == joined[key]


def test_families_of_another_pool_are_refused_when_the_order_is_checked_late(data, tmp_path, capsys):
    """With scores in pool order the families' digest is checked in the pass over the ids, after the
    selection and before any file: same refusal as when loading joins the ids."""
    pool, scores = data
    _pool_order(scores)
    fam = families_of_another_pool(tmp_path, r"^(\S+)", row=250)
    out = tmp_path / "out"
    assert select(pool, scores, out, "--strategy", "topi", "--count", "40", "--families", str(fam)) == 2
    err = capsys.readouterr().err
    assert "computed on another pool" in err and "other_families.parquet" in err and not out.exists()


def test_the_ids_digest_does_not_depend_on_chunking_and_old_families_tables_are_refused(
    data, tmp_path, capsys
):
    """The digest of the pool's ids is fed streamed batches now: any chunking gives the same digest. A
    families table from before (digest of another definition) is refused with what to do."""
    from bioprune.pool.io import ids_digest

    pool, scores = data
    ids = pq.read_table(pool / "sequences.parquet").column("id").combine_chunks()
    chunked = pa.chunked_array([ids.slice(0, 7), ids.slice(7, 100), ids.slice(107)])
    assert ids_digest(chunked) == ids_digest(ids)
    assert ids_digest(ids.slice(1)) != ids_digest(ids)
    fam = tmp_path / "families.parquet"
    assert cli.main(["families", "--family-regex", r"^(\S+)", "--out", str(fam), str(pool)]) == 0
    table = pq.read_table(fam)
    meta = json.loads(table.schema.metadata[b"bioprune"])
    del meta["ids_digest_version"]  # as written before the digest was made chunking-free
    pq.write_table(table.replace_schema_metadata({b"bioprune": json.dumps(meta).encode()}), fam)
    out = tmp_path / "out"
    assert select(pool, scores, out, "--strategy", "topi", "--count", "40", "--families", str(fam)) == 2
    assert "written by an older bioprune" in capsys.readouterr().err and not out.exists()


def test_cluster_codes_come_from_the_families_table_while_the_pool_column_is_unchanged(
    data, tmp_path, caplog
):
    """The families step codes a clustered pool's cluster column once; selections read the codes and
    select and report what coding the column themselves gives. A pool whose cluster column changed since
    (same ids, other clusters) is coded again, with a log line saying why."""
    pool, scores = data
    fam = tmp_path / "families.parquet"
    assert cli.main(["families", "--family-regex", r"^(\S+)", "--out", str(fam), str(pool)]) == 0
    assert pq.read_schema(fam).names == ["family", "cluster"]
    caplog.set_level("INFO", logger="bioprune")
    for strategy in ("cluster", "topi"):
        args = ["--strategy", strategy, "--count", "40", "--seed", "4"]
        assert select(pool, scores, tmp_path / f"{strategy}_own", *args) == 0
        assert select(pool, scores, tmp_path / f"{strategy}_read", *args, "--families", str(fam)) == 0
        own, read = (tmp_path / f"{strategy}_{how}" for how in ("own", "read"))
        assert (own / "ids.txt").read_bytes() == (read / "ids.txt").read_bytes()
        summaries = [json.loads((d / "summary.json").read_text()) for d in (own, read)]
        assert summaries[0]["coverage"] == summaries[1]["coverage"]
        assert summaries[0]["coverage"]["clusters"]["pool"] == 60
    assert "cluster codes are of another cluster column" not in caplog.text
    # re-clustered: clusters of 10 instead of 5, same ids
    table = pq.read_table(pool / "sequences.parquet")
    ids = table.column("id").to_pylist()
    reclustered = [ids[(i // 10) * 10] for i in range(len(ids))]
    table = table.set_column(table.schema.get_field_index("cluster"), "cluster", pa.array(reclustered))
    pq.write_table(table, pool / "sequences.parquet")
    out = tmp_path / "reclustered"
    assert select(pool, scores, out, "--strategy", "topi", "--count", "40", "--families", str(fam)) == 0
    assert "cluster codes are of another cluster column" in caplog.text
    assert json.loads((out / "summary.json").read_text())["coverage"]["clusters"]["pool"] == 30


@pytest.mark.parametrize("strategy", ["topi", "loss", "random"])
def test_the_figure_draws_the_top_i_region_on_a_self_influence_axis_only(
    data, tmp_path, monkeypatch, strategy
):
    """The Top-I region (the k highest self-influence scores) is drawn where the figure's score axis is
    self-influence; a loss selection's figure shows loss, so no self-influence threshold on it."""
    from bioprune.select import plots

    pool, scores = data
    seen = {}
    real = plots.diagnostics
    monkeypatch.setattr(select_cli, "_fork", lambda: None)  # the figure drawn in this process, to see it
    monkeypatch.setattr(plots, "diagnostics", lambda path, **kw: seen.update(kw) or real(path, **kw))
    assert select(pool, scores, tmp_path / "out", "--strategy", strategy, "--count", "40") == 0
    si = pq.read_table(scores).column("self_influence").to_numpy()
    if strategy == "loss":
        assert seen["column"] == "loss" and seen["topi_threshold"] is None
    else:
        assert seen["column"] == "self_influence"
        assert seen["topi_threshold"] == np.sort(si)[-40]


def test_the_figure_is_drawn_in_a_child_process_beside_the_coreset_copy(data, tmp_path, monkeypatch, caplog):
    """The figure is drawn by a forked child while the coreset is copied; a child that fails leaves the
    drawing to the select process, with a warning, and the outputs are the same."""
    import os

    from bioprune.select import plots

    pool, scores = data
    pids = []
    real = plots.diagnostics
    monkeypatch.setattr(plots, "diagnostics", lambda path, **kw: pids.append(os.getpid()) or real(path, **kw))
    assert select(pool, scores, tmp_path / "child", "--strategy", "topi", "--count", "40") == 0
    assert pids == []  # appended in the child only
    assert (tmp_path / "child" / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"

    def fails_in_a_child(path, **kw):
        if os.getpid() != parent:
            raise RuntimeError("no figure in the child")
        pids.append(os.getpid())
        return real(path, **kw)

    parent = os.getpid()
    monkeypatch.setattr(plots, "diagnostics", fails_in_a_child)
    caplog.set_level("WARNING", logger="bioprune")
    assert select(pool, scores, tmp_path / "here", "--strategy", "topi", "--count", "40") == 0
    assert pids == [parent] and "the figure's child process failed (exit code 1)" in caplog.text
    for name in ("ids.txt", "coreset.fasta.gz"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "child" / name).read_bytes()
    assert (tmp_path / "here" / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


def test_the_figure_child_leaves_nothing_behind(data, tmp_path, monkeypatch):
    """The child draws into a temporary folder: the figure lands with the mode of the other outputs, and
    after an error once the child has started, the child is stopped and nothing is left, here or there."""
    import tempfile

    from bioprune.errors import InputError
    from bioprune.pool import io as pool_io

    pool, scores = data
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert select(pool, scores, tmp_path / "ok", "--strategy", "topi", "--count", "40") == 0
    modes = {
        (tmp_path / "ok" / name).stat().st_mode for name in ("ids.txt", "diagnostics.png", "summary.json")
    }
    assert len(modes) == 1
    assert not list((tmp_path / "tmp").iterdir())

    def broken_copy(*args, **kwargs):
        raise InputError(pool / "sequences.fasta.gz", "damaged on purpose")

    monkeypatch.setattr(pool_io, "copy_rows", broken_copy)
    assert select(pool, scores, tmp_path / "broken", "--strategy", "topi", "--count", "40") == 2
    assert not list((tmp_path / "tmp").iterdir())
    assert not [p for p in (tmp_path / "broken").rglob("*") if p.is_file()]


def test_select_as_the_workflow_runs_it_does_not_import_pandas(data, tmp_path):
    """Arrow's to_numpy() imports pandas (~0.4 s of a 20M selection, and of its figure's child): select
    reads the buffers (pool.to_numpy). A score table in pool order with the families table, as the
    workflow hands them over."""
    pool, scores = data
    merged = merged_scores(tmp_path, scores, order=True)
    families = tmp_path / "families.parquet"
    assert cli.main(["families", str(pool), "--family-regex", r"^(\S+)", "--out", str(families)]) == 0
    argv = ["select", "--scores", str(merged), "--pool", str(pool), "--out", str(tmp_path / "sel")]
    argv += ["--strategy", "cluster", "--rate", "0.9", "--families", str(families)]
    code = f"import sys; from bioprune import cli; cli.main({argv!r}); print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
    # nor does the figure's child process, which imports the plots
    code = "import sys; import bioprune.select.plots; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
    assert len((tmp_path / "sel" / "ids.txt").read_text().split()) == 30
