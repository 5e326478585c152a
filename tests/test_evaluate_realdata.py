"""The probes on small slices of the real downstream sets in ../shared/data (skipped when absent).

Each test runs the whole evaluation of one task kind on a tiny random model with a few records per
split, and checks the file formats are read as their PROVENANCE.md says (counts, classes, splits).
"""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import update_config

from bioprune.evaluate.runner import evaluate_task
from bioprune.evaluate.tasks import load_task, spec_from_config, structure_pairs
from bioprune.models.registry import build_model

pytestmark = pytest.mark.realdata


def tiny(backend: str):
    return build_model(backend, "tiny", layers=1, hidden=32, heads=2, ffn=64, max_tokens=402, seed=0)


def _spec(name: str, settings: dict):
    return spec_from_config(name, settings)


def test_bprna_secondary_structure(shared_data):
    d = shared_data / "bprna_ss"
    spec = _spec(
        "bprna",
        {
            "kind": "rna_ss",
            "train": str(d / "TR0.dbn.gz"),
            "valid": str(d / "VL0.dbn.gz"),
            "test": str(d / "TS0.dbn.gz"),
            "max_length": 100,
            "max_records": {"train": 24, "valid": 8, "test": 8},
            "epochs": 1,
            "hidden": 16,
        },
    )
    out = evaluate_task(spec, tiny("rnafm"), seed=0)
    c = out["counts"]
    assert c["train"]["read"] == 10814 and c["valid"]["read"] == 1300 and c["test"]["read"] == 1305
    assert c["test"]["used"] == 8
    # every record read is used or dropped for a counted reason
    for split in ("train", "valid", "test"):
        dropped = sum(v for k, v in c[split].items() if k not in ("read", "used"))
        assert c[split]["used"] + dropped == c[split]["read"]
    assert 0 <= out["metrics"]["f1"] <= 1 and -1 <= out["metrics"]["mcc"] <= 1


def test_bprna_pseudoknots_are_parsed(shared_data):
    d = shared_data / "bprna_ss"
    spec = _spec("bprna", {"kind": "rna_ss", "train": str(d / "TS0.dbn.gz"), "test": str(d / "TS0.dbn.gz")})
    data = load_task(spec)
    structure_pairs(data)
    crossing = 0
    for e in data.splits["train"] + data.splits["valid"]:
        pairs = e.target
        crossing += any(a < c < b < d_ for a, b in pairs for c, d_ in pairs)
    assert crossing >= 100  # PROVENANCE: 129 TS0 records have a pseudoknot


def _nrc_spec(shared_data, **settings):
    """The nRC task as config/rfam_full.yaml reads it (13 classes, the header is the class)."""
    d = shared_data / "nrc_ncrna_classes"
    base = {
        "kind": "seq_class",
        "train": str(d / "dataset_nRC_train.fasta"),
        "test": str(d / "dataset_nRC_test.fasta"),
        "label_regex": r"^(\S+)",
    }
    return _spec("nrc", {**base, **settings})


def test_nrc_classification(shared_data):
    spec = _nrc_spec(shared_data, max_records={"train": 130, "valid": 40, "test": 65}, epochs=3)
    out = evaluate_task(spec, tiny("rnafm"), seed=0)
    assert len(out["classes"]) == 13 and "IRES" in out["classes"]
    assert out["counts"]["train"]["read"] == 6160 and out["counts"]["test"]["read"] == 2529
    assert 0 <= out["metrics"]["accuracy"] <= 1


@pytest.mark.slow
def test_nrc_kmer_floor_beats_chance(shared_data):
    """The k-mer + length floor on a slice of nRC: far above the 1/13 of guessing, on the evaluate splits."""
    from bioprune.evaluate.floors import compute_floor
    from bioprune.evaluate.runner import prepare_data

    spec = _nrc_spec(shared_data, max_records={"train": 600, "valid": 100, "test": 200}, kmer_max=3)
    out = compute_floor(spec, prepare_data(spec, tiny("rnafm"), 0), 0)
    assert out["counts"]["test"]["used"] == 200 and out["floor"] == "kmer"
    assert out["metrics"]["accuracy"] > 0.35


def test_flip_secondary_structure(shared_data):
    d = shared_data / "flip_secondary_structure"
    spec = _spec(
        "flip_ss",
        {
            "kind": "per_residue_class",
            "source": "flip",
            "path": str(d / "sampled.fasta.gz"),
            "sequences": str(d / "sequences.fasta.gz"),
            "mask": str(d / "mask.fasta.gz"),
            "max_length": 300,
            "max_records": {"train": 12, "valid": 4, "test": 4},
            "epochs": 2,
            "batch_size": 256,
        },
    )
    out = evaluate_task(spec, tiny("esmc"), seed=0)
    assert out["classes"] == ["C", "E", "H"]
    assert out["counts"]["train"]["read"] == 9712 and out["counts"]["valid"]["read"] == 1080
    assert out["counts"]["test"]["read"] == 364
    assert out["evaluated_residues"]["test"] > 0
    assert 0 <= out["metrics"]["accuracy"] <= 1


def test_gb1_regression(shared_data):
    d = shared_data / "flip_gb1"
    spec = _spec(
        "gb1",
        {
            "kind": "seq_regression",
            "source": "flip",
            "path": str(d / "two_vs_rest.csv.gz"),
            "max_records": {"train": 60, "valid": 20, "test": 40},
            "epochs": 3,
        },
    )
    out = evaluate_task(spec, tiny("esmc"), seed=0)
    assert out["counts"]["train"]["read"] == 381 and out["counts"]["valid"]["read"] == 43
    assert out["counts"]["test"]["read"] == 8309
    assert set(out["metrics"]) == {"spearman", "pearson", "mse"}
    assert -1 <= out["metrics"]["spearman"] <= 1


def test_deeploc_classification(shared_data):
    d = shared_data / "deeploc_subset"
    spec = _spec(
        "deeploc",
        {
            "kind": "seq_class",
            "train": str(d / "deeploc_test_set.fasta"),
            "valid": str(d / "deeploc_our_val_set.fasta"),
            "test": str(d / "setHARD.fasta"),
            "label_regex": r"^\S+\s+(\S+)-[MSU]\b",
            "max_length": 400,
            "max_records": {"train": 80, "valid": 20, "test": 20},
            "epochs": 2,
        },
    )
    data = load_task(spec)
    assert data.counts["test"]["read"] == 490
    assert "Cell.membrane" in data.classes and "Lysosome/Vacuole" in data.classes
    out = evaluate_task(spec, tiny("esmc"), seed=0)
    assert out["counts"]["test"]["used"] == 20


def test_real_data_config_tasks_parse(shared_data):
    from pathlib import Path

    from bioprune.config import expand_data_dir, validate_config
    from bioprune.evaluate.tasks import task_files, tasks_from_config

    root = Path(__file__).resolve().parents[1]
    for name in ("rfam_full.yaml", "uniprot_full.yaml"):
        # merged as snakemake merges --configfile into the defaults (recursively)
        cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
        update_config(cfg, yaml.safe_load((root / "config" / name).read_text()))
        cfg["data_dir"] = str(shared_data)  # the configs name '{data_dir}/...'; the copy beside the checkout
        validate_config(cfg)
        expand_data_dir(cfg)
        tasks = tasks_from_config(cfg)
        assert tasks and all(not t.name.startswith("trna") for t in tasks)
        for t in tasks:
            for f in task_files(t):
                assert (root / f).resolve().is_file(), f"{name}: {t.name}: {f} missing"
