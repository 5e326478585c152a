"""``bioprune holdout``: whole families (clusters where a sequence has none) leave the pool, a seeded
fraction of them, deterministically, with every sequence accounted for."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune.cli import main
from bioprune.errors import BiopruneError, ConfigError
from bioprune.evaluate.tasks import spec_from_config
from bioprune.fasta import read_fasta
from bioprune.plan.evaluate import evaluation_plan
from bioprune.pool.holdout import choose_groups, holdout
from bioprune.pool.ingest import ingest
from bioprune.pool.io import read_column, write_pool

FAMILY = r"^(\S+)"


def _records(seed=1):
    """30 families of 1-6 sequences, then 8 sequences without a family (empty description)."""
    rng = random.Random(seed)
    recs = []
    for f in range(30):
        for k in range(rng.randint(1, 6)):
            recs.append((f"f{f}_s{k}", f"FAM{f:02d}", "".join(rng.choice("ACGU") for _ in range(30))))
    for k in range(8):
        recs.append((f"nofam{k}", "", "".join(rng.choice("ACGU") for _ in range(30))))
    return recs


def _pool(tmp_path, write_fasta, recs, name="pool", clusters=True):
    text = "".join(f">{i} {d}\n{s}\n" if d else f">{i}\n{s}\n" for i, d, s in recs)
    ingested = tmp_path / f"{name}_ingest"
    ingest([write_fasta(f"{name}.fa", text)], ingested, "rna")
    if not clusters:
        return ingested
    # the family-less sequences fall into 3 "clusters" (a representative id, as the cluster step writes)
    ids = read_column(ingested, "id").to_pylist()
    rep = [f"nofam{int(i[5:]) % 3}" if i.startswith("nofam") else i for i in ids]
    out = tmp_path / name
    out.mkdir()
    write_pool(
        ingested,
        out,
        new_columns=[pa.field("cluster", pa.string())],
        columns_for=lambda s, e: [pa.array(rep[s:e], pa.string())],
    )
    return out


def _ids(path):
    return [r.id for r in read_fasta(path)]


def _group(rec_id):
    return rec_id.split("_")[0] if not rec_id.startswith("nofam") else f"c{int(rec_id[5:]) % 3}"


def test_whole_families_leave_the_pool_and_counts_add_up(tmp_path, write_fasta):
    recs = _records()
    src = _pool(tmp_path, write_fasta, recs)
    report = holdout(src, tmp_path / "out", fraction=0.2, seed=0, family_regex=FAMILY)
    kept = _ids(tmp_path / "out" / "sequences.fasta.gz")
    held = _ids(tmp_path / "out" / "heldout" / "sequences.fasta.gz")
    every = [r[0] for r in recs]
    # nothing lost, nothing twice, pool order kept on both sides
    assert sorted(kept + held) == sorted(every) and not set(kept) & set(held)
    assert kept == [i for i in every if i in set(kept)] and held == [i for i in every if i in set(held)]
    # groups are held out whole: 30 families + 3 clusters of the family-less sequences
    held_groups = {_group(i) for i in held}
    assert not held_groups & {_group(i) for i in kept}
    assert report["groups"] == 33 and report["groups_held_out"] == round(0.2 * 33) == len(held_groups)
    assert report["input_records"] == len(every) == report["kept"] + report["held_out"]
    assert report["held_out"] == len(held)
    kinds = report["by_kind"]
    assert kinds["family"]["groups"] == 30 and kinds["cluster"]["groups"] == 3
    assert kinds["family"]["sequences"] + kinds["cluster"]["sequences"] == len(every)
    assert sum(k["sequences_held_out"] for k in kinds.values()) == len(held)
    assert sum(k["groups_held_out"] for k in kinds.values()) == len(held_groups)
    # the tables match their FASTA, and the group list names every held-out group with its size
    assert read_column(tmp_path / "out", "id").to_pylist() == kept
    assert pq.read_table(tmp_path / "out" / "heldout" / "sequences.parquet").column("id").to_pylist() == held
    rows = [ln.split("\t") for ln in (tmp_path / "out" / "heldout_groups.tsv").read_text().splitlines()[1:]]
    assert sum(int(r[2]) for r in rows) == len(held) and len(rows) == len(held_groups)
    assert "cluster" in pq.read_schema(tmp_path / "out" / "sequences.parquet").names


def test_the_draw_is_seeded_and_ignores_pool_order(tmp_path, write_fasta):
    recs = _records()
    src = _pool(tmp_path, write_fasta, recs)
    shuffled = recs[:]
    random.Random(5).shuffle(shuffled)
    src2 = _pool(tmp_path, write_fasta, shuffled, name="shuffled")
    holdout(src, tmp_path / "a", fraction=0.3, seed=7, family_regex=FAMILY)
    holdout(src2, tmp_path / "b", fraction=0.3, seed=7, family_regex=FAMILY)
    holdout(src, tmp_path / "c", fraction=0.3, seed=8, family_regex=FAMILY)

    def held(d):
        return set(_ids(tmp_path / d / "heldout" / "sequences.fasta.gz"))

    assert held("a") == held("b")
    assert (tmp_path / "a" / "heldout_groups.tsv").read_bytes() == (
        tmp_path / "b" / "heldout_groups.tsv"
    ).read_bytes()
    assert held("c") != held("a")


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5, 0.9])
def test_fraction_of_groups(fraction):
    for n in (2, 7, 40):
        chosen = choose_groups(n, fraction, seed=3)
        assert len(chosen) == min(max(1, round(fraction * n)), n - 1)
        assert len(set(chosen.tolist())) == len(chosen) and chosen.max() < n
    assert choose_groups(40, fraction, seed=3).tolist() == choose_groups(40, fraction, seed=3).tolist()


def test_kept_families_are_never_drawn(tmp_path, write_fasta):
    src = _pool(tmp_path, write_fasta, _records())
    keep = [f"FAM{f:02d}" for f in range(0, 30, 2)]
    for seed in range(5):
        out = tmp_path / f"k{seed}"
        report = holdout(src, out, fraction=0.2, seed=seed, family_regex=FAMILY, keep_families=keep)
        assert not {_group(i) for i in _ids(out / "heldout" / "sequences.fasta.gz")} & {
            f"f{f}" for f in range(0, 30, 2)
        }
        assert report["kept_families"] == sorted(keep)
    with pytest.raises(ConfigError, match="only 3 may be"):
        holdout(
            src,
            tmp_path / "too_many",
            fraction=0.5,
            seed=0,
            family_regex=FAMILY,
            keep_families=[f"FAM{f:02d}" for f in range(30)],
        )


def test_without_clusters_a_sequence_without_family_is_its_own_group(tmp_path, write_fasta):
    src = _pool(tmp_path, write_fasta, _records(), clusters=False)
    report = holdout(src, tmp_path / "out", fraction=0.2, seed=0, family_regex=FAMILY)
    assert report["by_kind"]["sequence"]["groups"] == 8 and report["groups"] == 38
    # with no family regex, the clusters are the groups
    src = _pool(tmp_path, write_fasta, _records(), name="clustered")
    report = holdout(src, tmp_path / "out2", fraction=0.2, seed=0, family_regex=None)
    assert set(report["by_kind"]) == {"cluster"}


def test_cli_and_its_errors(tmp_path, write_fasta, capsys):
    src = _pool(tmp_path, write_fasta, _records())
    out = tmp_path / "cli"
    assert main(["holdout", str(src), "--out", str(out), "--fraction", "0.1", "--family-regex", FAMILY]) == 0
    assert json.loads((out / "holdout_report.json").read_text())["groups_held_out"] == 3
    for bad, msg in (
        (["--fraction", "0"], "--fraction must be in (0, 1)"),
        (["--fraction", "0.1", "--family-regex", "(x"], "not a valid regular expression"),
    ):
        assert main(["holdout", str(src), "--out", str(tmp_path / "bad"), *bad]) != 0
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    one = _pool(tmp_path, write_fasta, [("a", "FAM", "ACGUACGU"), ("b", "FAM", "GGGGACGU")], name="one")
    with pytest.raises(BiopruneError, match="nothing to hold out"):
        holdout(one, tmp_path / "one_out", fraction=0.5, seed=0, family_regex=FAMILY)


def test_heldout_families_tasks_need_the_holdout_step():
    with pytest.raises(ConfigError, match="is for kind mlm_perplexity only"):
        spec_from_config("t", {"kind": "seq_class", "source": "heldout_families"})
    config = {
        "alphabet": "rna",
        "holdout": {"enabled": False},
        "pretrain": {"strategies": None, "compute": "same_epochs", "untrained_baseline": True},
        "evaluate": {"tasks": {"h": {"kind": "mlm_perplexity", "source": "heldout_families"}}},
    }
    with pytest.raises(ConfigError, match="set holdout.enabled true"):
        evaluation_plan(config, ["topi/rate0.9/seed0"], "res")
    config["holdout"]["enabled"] = True
    plan = evaluation_plan(config, ["topi/rate0.9/seed0"], "res")
    # the untrained model is scored on the held-out families too (no budget needed)
    assert "res/evaluate/untrained/none/seed0/h/metrics.json" in plan.evaluate_targets()
