"""Task settings and loaders: validation messages, split conventions, caps and drop accounting."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.errors import ConfigError, InputError
from bioprune.evaluate.tasks import (
    cap_splits,
    load_task,
    spec_from_config,
    structure_pairs,
    tasks_from_config,
)


def test_spec_validation_names_the_key():
    with pytest.raises(ConfigError, match=r"evaluate\.tasks\.t\.kind"):
        spec_from_config("t", {"kind": "nope"})
    with pytest.raises(ConfigError, match="unknown setting"):
        spec_from_config("t", {"kind": "seq_class", "train": "a", "test": "b", "epoch": 3})
    with pytest.raises(ConfigError, match="needs 'test'"):
        spec_from_config("t", {"kind": "seq_class", "train": "a"})
    with pytest.raises(ConfigError, match="capturing group"):
        spec_from_config("t", {"kind": "seq_class", "train": "a", "test": "b", "label_regex": r"\S+"})
    with pytest.raises(ConfigError, match="unselected_pool is for kind mlm_perplexity"):
        spec_from_config("t", {"kind": "seq_class", "source": "unselected_pool"})
    with pytest.raises(ConfigError, match=r"max_records: unknown split\(s\) \[.tests.\]"):
        spec_from_config("t", {"kind": "rna_ss", "train": "a", "test": "b", "max_records": {"tests": 3}})
    with pytest.raises(ConfigError, match="folders"):
        spec_from_config("a/b", {"kind": "rna_ss", "train": "a", "test": "b"})
    ok = spec_from_config("p", {"kind": "mlm_perplexity", "source": "unselected_pool"})
    assert ok.metrics == ("perplexity", "loss")
    assert ok.headline == "perplexity"
    assert (
        spec_from_config("c", {"kind": "seq_class", "train": "a", "test": "b", "metric": "macro_f1"}).headline
        == "macro_f1"
    )
    with pytest.raises(ConfigError, match="not a seq_class metric"):
        spec_from_config("c", {"kind": "seq_class", "train": "a", "test": "b", "metric": "f1"})


def test_disabled_tasks_are_skipped():
    cfg = {
        "evaluate": {
            "tasks": {
                "a": {"kind": "rna_ss", "train": "x", "test": "y"},
                "b": {"kind": "rna_ss", "train": "x", "test": "y", "enabled": False},
            }
        }
    }
    assert [t.name for t in tasks_from_config(cfg)] == ["a"]


def test_seq_class_fasta_carves_valid_and_marks_unseen_labels(write_fasta):
    train = write_fasta("train.fa", "".join(f">s{i} {'AB'[i % 2]}\nACGU\n" for i in range(20)))
    test = write_fasta("test.fa", ">t1 A\nACGU\n>t2 C\nACGU\n>t3 C\nAC\n")
    spec = spec_from_config(
        "c", {"kind": "seq_class", "train": str(train), "test": str(test), "valid_fraction": 0.25}
    )
    data = load_task(spec, seed=3)
    assert len(data.splits["valid"]) == 5 and len(data.splits["train"]) == 15
    assert data.counts["train"] == {"read": 20, "moved_to_valid": 5}
    assert data.classes == ["A", "B", "C"]  # C is only in test: a new index, counted
    assert [e.target for e in data.splits["test"]] == [0, 2, 2]
    assert data.counts["test"]["label_not_in_train"] == 2
    again = load_task(spec, seed=3)
    assert [e.id for e in again.splits["valid"]] == [e.id for e in data.splits["valid"]]


def test_label_regex_mismatch_is_an_input_error(write_fasta):
    train = write_fasta("train.fa", ">s1\nACGU\n")
    spec = spec_from_config("c", {"kind": "seq_class", "train": str(train), "test": str(train)})
    with pytest.raises(InputError, match=r"train\.fa:1 \(record 's1'\).*label_regex"):
        load_task(spec)


def test_flip_fasta_header_splits(write_fasta):
    text = (
        ">a SET=train VALIDATION=False\nMKV\n"
        ">b SET=train VALIDATION=True\nMKV\n"
        ">c SET=test VALIDATION=False\nMKV\n"
        ">d SET=train VALIDATION=False\nMKL\n"
    )
    labels = write_fasta("labels.fa", text.replace("MKV", "HEC").replace("MKL", "CCH"))
    seqs = write_fasta("seqs.fa.gz", ">a\nMKV\n>b\nMKV\n>c\nMKV\n>d\nMKL\n>unused\nMMMM\n")
    mask = write_fasta("mask.fa", ">a\n111\n>b\n110\n>c\n011\n>d\n111\n")
    spec = spec_from_config(
        "ss",
        {
            "kind": "per_residue_class",
            "source": "flip",
            "path": str(labels),
            "sequences": str(seqs),
            "mask": str(mask),
        },
    )
    data = load_task(spec)
    assert {s: [e.id for e in v] for s, v in data.splits.items()} == {
        "train": ["a", "d"],
        "valid": ["b"],
        "test": ["c"],
    }
    assert data.classes == ["C", "E", "H"]
    # masked residues (mask 0) get -1 and are not evaluated
    assert data.splits["valid"][0].target.tolist() == [2, 1, -1]
    assert data.splits["test"][0].target.tolist() == [-1, 1, 0]


def test_per_residue_length_mismatch(write_fasta):
    labels = write_fasta("l.fa", ">a\nHH\n")
    seqs = write_fasta("s.fa", ">a\nMKV\n")
    spec = spec_from_config(
        "ss", {"kind": "per_residue_class", "train": str(labels), "test": str(labels), "sequences": str(seqs)}
    )
    with pytest.raises(InputError, match="2 labels for a sequence of 3 residues"):
        load_task(spec)


def test_csv_regression_flip_columns_and_bad_target(write_fasta):
    rows = [
        "sequence,target,set,validation",
        "MKA,1.5,train,",
        "MKB,2.5,train,True",
        "MKC,0.5,test,",
        "MKD,3,train,",
    ]
    path = write_fasta("gb1.csv.gz", "\n".join(rows) + "\n")
    spec = spec_from_config("gb1", {"kind": "seq_regression", "source": "flip", "path": str(path)})
    data = load_task(spec)
    assert [e.seq for e in data.splits["train"]] == ["MKA", "MKD"]
    assert [e.target for e in data.splits["valid"]] == [2.5]
    assert [e.target for e in data.splits["test"]] == [0.5]
    bad = write_fasta("bad.csv", "sequence,target,set,validation\nMKA,high,train,\n")
    with pytest.raises(InputError, match=r"bad\.csv:2.*not a number"):
        load_task(spec_from_config("g", {"kind": "seq_regression", "source": "flip", "path": str(bad)}))


def test_max_length_and_caps_are_counted(write_fasta):
    dbn = "".join(f">r{i}\n{'G' * (4 + i)}\n{'.' * (4 + i)}\n" for i in range(30))
    path = write_fasta("s.dbn", dbn)
    spec = spec_from_config(
        "ss",
        {
            "kind": "rna_ss",
            "train": str(path),
            "valid": str(path),
            "test": str(path),
            "max_length": 23,
            "max_records": {"train": 7},
        },
    )
    data = load_task(spec)
    assert data.counts["train"] == {"read": 30, "too_long": 10}
    cap_splits(data, seed=0)
    assert len(data.splits["train"]) == 7 and data.counts["train"]["sampled_out"] == 13
    ids = [e.id for e in data.splits["train"]]
    assert ids == sorted(ids, key=lambda s: int(s[1:]))  # file order kept
    other = load_task(spec)
    cap_splits(other, seed=1)
    assert [e.id for e in other.splits["train"]] != ids  # the seed picks the sample
    assert len(data.splits["valid"]) == 20  # no cap on valid


def test_rna_ss_targets_are_pairs_with_pseudoknots(write_fasta):
    path = write_fasta("s.dbn", ">x\nGGGAAACCCAGGGAACCC\n(((...[[[.)))..]]]\n")
    spec = spec_from_config(
        "ss", {"kind": "rna_ss", "train": str(path), "valid": str(path), "test": str(path)}
    )
    data = load_task(spec)
    assert data.splits["test"][0].target == "(((...[[[.)))..]]]"  # pairs wait until the caps are applied
    structure_pairs(data)
    ex = data.splits["test"][0]
    assert ex.target == [(0, 12), (1, 11), (2, 10), (6, 17), (7, 16), (8, 15)]
    assert np.all([j - i > 3 for i, j in ex.target])
