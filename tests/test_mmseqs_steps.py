"""``bioprune decontaminate`` and ``bioprune cluster`` on hand-made pools whose answers are known, the MMseqs2
runner, and a real-data check (bpRNA TS0 against a slice of Rfam)."""

from __future__ import annotations

import csv
import gzip
import json
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from bioprune.alphabet import get_alphabet
from bioprune.cli import main
from bioprune.errors import ToolError
from bioprune.fasta import FastaWriter, read_fasta
from bioprune.pool import mmseqs
from bioprune.pool.cluster import reverse_complement
from bioprune.pool.ingest import normalise
from bioprune.pool.io import TABLE_SCHEMA

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RNA = "ACGU"
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def make_pool(folder: Path, records: list[tuple[str, str]]) -> Path:
    """A pool folder written directly (as ingest would): FASTA + table in the same order."""
    folder.mkdir(parents=True, exist_ok=True)
    with FastaWriter(folder / "sequences.fasta.gz") as fasta:
        for rec_id, seq in records:
            fasta.write(rec_id, seq.encode())
    table = pa.table(
        {
            "id": [r for r, _ in records],
            "description": [""] * len(records),
            "source": ["test.fasta"] * len(records),
            "length": pa.array([len(s) for _, s in records], pa.int32()),
            "hash": [xxhash.xxh3_128(s.encode()).hexdigest() for _, s in records],
        },
        schema=TABLE_SCHEMA,
    )
    pq.write_table(table, folder / "sequences.parquet")
    return folder


def rand_seq(rng: random.Random, n: int, letters: str = RNA) -> str:
    return "".join(rng.choice(letters) for _ in range(n))


def mutate(rng: random.Random, seq: str, n_changes: int, letters: str = RNA) -> str:
    out = list(seq)
    for i in rng.sample(range(len(seq)), n_changes):
        out[i] = rng.choice([c for c in letters if c != out[i]])
    return "".join(out)


def read_tsv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def pool_ids(folder: Path) -> list[str]:
    fasta = [r.id for r in read_fasta(folder / "sequences.fasta.gz")]
    table = pq.read_table(folder / "sequences.parquet").column("id").to_pylist()
    assert fasta == table  # FASTA and table stay in step
    return table


# -- decontaminate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contamination(tmp_path_factory):
    """Evaluation sets and a pool holding: exact copies (written differently in the eval file), a 95% copy,
    a 95% copy of a 20-nt RNA, a reverse complement, a copy of a sequence of the second set, and
    unrelated sequences."""
    rng = random.Random(11)
    root = tmp_path_factory.mktemp("decontaminate")
    e1, e2, e3, e_short = (rand_seq(rng, n) for n in (150, 120, 130, 20))
    eval_fasta = root / "evalA.fasta"
    # Lower case, T for U, a line break and alignment gaps: all normalised away before comparing.
    e1_dna = e1.replace("U", "T").lower()
    eval_fasta.write_text(
        f">ea1 first\n{e1_dna[:70]}\n{e1_dna[70:100]}--{e1_dna[100:]}\n"
        f">ea2\n{e2}\n>eshort\n{e_short}\n>empty\n---\n"
    )
    eval_dbn = root / "evalB.dbn.gz"
    with gzip.open(eval_dbn, "wt") as fh:
        fh.write(f">eb1\n{e3}\n{'.' * len(e3)}\n")
    records = [
        ("exact_e1", e1),
        ("similar_e2", mutate(rng, e2, 6)),  # 95% identical over the full length
        ("short_similar", mutate(rng, e_short, 1)),  # 95% of a 20-nt RNA
        ("revcomp_e1", reverse_complement(e1.encode()).decode()),
        ("unrelated1", rand_seq(rng, 140)),
        ("exact_e3", e3),
        ("unrelated2", rand_seq(rng, 90)),
        ("similar_e1", mutate(rng, e1, 8)),  # 94.7%: matches ea1 (set A) only by search
    ]
    pool = make_pool(root / "pool", records)
    out = root / "out"
    code = main(
        [
            "decontaminate",
            "--alphabet",
            "rna",
            "--eval",
            f"A={eval_fasta}",
            "--eval",
            f"B={eval_dbn}",
            "--min-identity",
            "0.9",
            "--min-coverage",
            "0.8",
            "--threads",
            "1",
            "--out",
            str(out),
            str(pool),
        ]
    )
    return {"code": code, "out": out, "pool": pool, "records": records, "evals": (eval_fasta, eval_dbn)}


def test_decontaminate_removes_exact_and_similar(contamination):
    assert contamination["code"] == 0
    removed = {r["id"]: r for r in read_tsv(contamination["out"] / "removed.tsv")}
    assert set(removed) == {"exact_e1", "similar_e2", "short_similar", "exact_e3", "similar_e1"}
    assert (removed["exact_e1"]["eval_set"], removed["exact_e1"]["eval_id"]) == ("A", "ea1")
    assert removed["exact_e1"]["reason"] == "exact"
    assert (removed["exact_e3"]["eval_set"], removed["exact_e3"]["reason"]) == ("B", "exact")
    for rid, eval_id in (("similar_e2", "ea2"), ("short_similar", "eshort"), ("similar_e1", "ea1")):
        row = removed[rid]
        assert (row["eval_id"], row["reason"]) == (eval_id, "similar")
        assert 0.9 <= float(row["identity"]) < 1.0 and float(row["coverage"]) >= 0.8


def test_decontaminate_keeps_reverse_complement_and_unrelated(contamination):
    # The reverse complement of an eval RNA is a different molecule: only the forward strand is searched.
    assert pool_ids(contamination["out"]) == ["revcomp_e1", "unrelated1", "unrelated2"]


def test_decontaminate_report(contamination):
    report = json.loads((contamination["out"] / "decontaminate_report.json").read_text())
    assert report["input_sequences"] == 8 and report["kept"] == 3 and report["removed"] == 5
    assert report["removed_per_reason"] == {"exact": 2, "similar": 3}
    assert report["removed_per_eval_set"] == {"A": 4, "B": 1}
    assert report["eval_sets"]["A"]["records"] == 4
    assert report["eval_sets"]["A"]["empty_after_normalisation"] == 1  # '---' has no residue
    assert report["eval_sets"]["A"]["records_found_in_pool"] == 3
    assert report["eval_sets"]["B"]["records_found_in_pool"] == 1
    assert report["settings"]["min_identity"] == 0.9


def test_decontaminate_identity_threshold_is_applied(contamination, tmp_path):
    eval_fasta, eval_dbn = contamination["evals"]
    args = ["decontaminate", "--alphabet", "rna", "--eval", f"A={eval_fasta}", "--min-identity", "0.99"]
    assert main([*args, "--out", str(tmp_path / "strict"), str(contamination["pool"])]) == 0
    removed = {r["id"] for r in read_tsv(tmp_path / "strict" / "removed.tsv")}
    assert removed == {"exact_e1"}  # the 95% copies stay at 99% identity


def test_decontaminate_without_eval_passes_through(contamination, tmp_path):
    pool, out = contamination["pool"], tmp_path / "through"
    assert main(["decontaminate", "--alphabet", "rna", "--out", str(out), str(pool)]) == 0
    assert (out / "sequences.fasta.gz").read_bytes() == (pool / "sequences.fasta.gz").read_bytes()
    assert (out / "sequences.parquet").read_bytes() == (pool / "sequences.parquet").read_bytes()
    report = json.loads((out / "decontaminate_report.json").read_text())
    assert report["removed"] == 0 and "unchanged" in report["note"]
    assert read_tsv(out / "removed.tsv") == []


def test_decontamination_that_empties_the_pool_fails_naming_the_set(contamination, tmp_path, capsys):
    """An evaluation set that is the pool itself used to succeed with 0 sequences; the run then failed
    at `reference` with "no FASTA records found" (issue 12.8). The step that empties the pool fails."""
    pool, out = contamination["pool"], tmp_path / "out"
    args = ["decontaminate", "--alphabet", "rna", "--eval", f"itself={pool / 'sequences.fasta.gz'}"]
    assert main([*args, "--threads", "1", "--out", str(out), str(pool)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"bioprune decontaminate: error: {pool}: decontamination would remove all 8")
    assert "itself: 8" in err[-1]
    assert not out.exists() or not any(out.iterdir())
    # and the steps after it refuse an empty pool (one written by an older version, say)
    empty = make_pool(tmp_path / "empty", [])
    for step in ("decontaminate", "cluster"):
        argv = [step, "--alphabet", "rna", "--out", str(tmp_path / step), str(empty)]
        assert main(argv) == 2
        assert "the pool is empty (0 sequences)" in capsys.readouterr().err
        assert not (tmp_path / step).exists() or not any((tmp_path / step).iterdir())


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--eval", "noequals"], "expected NAME=PATH"),
        (["--eval", "bad name=x.fa"], "NAME may only hold"),
        (["--eval", "A=/nonexistent/e.fa"], "/nonexistent/e.fa: evaluation set 'A': no such file"),
        (["--min-identity", "1.5"], "--min-identity must be in (0, 1]"),
        (["--min-coverage", "0"], "--min-coverage must be in (0, 1]"),
    ],
)
def test_decontaminate_bad_arguments(contamination, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out"
    code = main(["decontaminate", "--alphabet", "rna", *extra, "--out", str(out), str(contamination["pool"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("bioprune decontaminate: error:") and fragment in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_decontaminate_duplicate_set_names_and_bad_eval_file(contamination, tmp_path, capsys):
    eval_fasta, _ = contamination["evals"]
    pool = str(contamination["pool"])
    base = ["decontaminate", "--alphabet", "rna", "--out", str(tmp_path / "o")]
    assert main([*base, "--eval", f"A={eval_fasta}", "--eval", f"A={eval_fasta}", pool]) == 2
    assert "given twice" in capsys.readouterr().err
    bad = tmp_path / "bad.dbn"
    bad.write_text(">x\nACGU\n((.\n")
    assert main([*base, "--eval", f"A={bad}", pool]) == 2
    assert f"{bad}:3" in capsys.readouterr().err
    assert not (tmp_path / "o" / "decontaminate_report.json").exists()


# -- cluster ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rna_pool(tmp_path_factory):
    rng = random.Random(5)
    a = rand_seq(rng, 150)
    records = [
        ("a", a),
        ("a95", mutate(rng, a, 7)),
        ("b", rand_seq(rng, 140)),
        ("a_copy", a),
        # 5 extra nt make it the longest, the member MMseqs2 likes as representative
        ("a_rc", reverse_complement(a.encode()).decode() + rand_seq(rng, 5)),
        ("c", rand_seq(rng, 100)),
    ]
    return make_pool(tmp_path_factory.mktemp("rna") / "pool", records)


def run_cluster(src: Path, out: Path, *extra: str, alphabet: str = "rna") -> int:
    base = ["cluster", "--alphabet", alphabet, "--min-identity", "0.9", "--min-coverage", "0.8"]
    return main([*base, *extra, "--out", str(out), str(src)])


def partition(out: Path) -> dict[frozenset, tuple[str, set]]:
    rows = read_tsv(out / "clusters.tsv")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["representative"], []).append(r)
    return {frozenset(r["member"] for r in g): (rep, {r["strand"] for r in g}) for rep, g in groups.items()}


def test_cluster_forward_splits_reverse_complements(rna_pool, tmp_path):
    out = tmp_path / "fwd"
    assert run_cluster(rna_pool, out, "--method", "linclust", "--threads", "2") == 0
    groups = partition(out)
    assert set(groups) == {
        frozenset({"a", "a95", "a_copy"}),
        frozenset({"a_rc"}),
        frozenset({"b"}),
        frozenset({"c"}),
    }
    rep, strands = groups[frozenset({"a", "a95", "a_copy"})]
    assert rep in {"a", "a95", "a_copy"} and strands == {"+"}
    table = pq.read_table(out / "sequences.parquet").to_pydict()
    assert table["id"] == ["a", "a95", "b", "a_copy", "a_rc", "c"]
    size = dict(zip(table["id"], table["cluster_size"], strict=True))
    assert size == {"a": 3, "a95": 3, "a_copy": 3, "a_rc": 1, "b": 1, "c": 1}
    assert dict(zip(table["id"], table["cluster"], strict=True))["a95"] == rep
    report = json.loads((out / "cluster_report.json").read_text())
    assert (report["n_sequences"], report["n_clusters"], report["singletons"]) == (6, 4, 3)
    assert report["largest_cluster"] == {"representative": rep, "size": 3}
    assert report["strand"]["reverse_members_in_output"] == 0
    assert report["strand"]["members_reverse_to_mmseqs_representative"] >= 1  # MMseqs2 did merge them


@pytest.mark.parametrize(("alphabet", "method"), [("rna", "cluster"), ("protein", "linclust")])
def test_default_method_is_the_one_that_repeats_exactly(tmp_path, alphabet, method):
    """RNA defaults to cascaded clustering (linclust's nucleotide k-mer matcher does not repeat across
    runs; benchmarks/results/cluster_repeatability.md), protein to linclust (repeats, and is fastest)."""
    rng = random.Random(3)
    letters = "ACGU" if alphabet == "rna" else AMINO
    src = make_pool(tmp_path / "pool", [(f"s{i}", rand_seq(rng, 80, letters)) for i in range(4)])
    assert run_cluster(src, tmp_path / "out", alphabet=alphabet) == 0
    report = json.loads((tmp_path / "out" / "cluster_report.json").read_text())
    assert report["settings"]["method"] == method


def test_cluster_both_keeps_merge_with_forward_representative(rna_pool, tmp_path):
    out = tmp_path / "both"
    # The cascaded workflow here (linclust in the other test): both merge reverse complements.
    args = ("--method", "cluster", "--strand", "both", "--keep", "representatives")
    assert run_cluster(rna_pool, out, *args) == 0
    groups = partition(out)
    big = frozenset({"a", "a95", "a_copy", "a_rc"})
    assert set(groups) == {big, frozenset({"b"}), frozenset({"c"})}
    rep, _ = groups[big]
    # The majority strand (a, a95, a_copy) holds the representative; only a_rc is marked reverse.
    assert rep in {"a", "a95", "a_copy"}
    rows = {r["member"]: r["strand"] for r in read_tsv(out / "clusters.tsv")}
    assert {m for m, s in rows.items() if s == "-"} == {"a_rc"}
    kept = pool_ids(out)
    assert sorted(kept) == sorted([rep, "b", "c"])
    report = json.loads((out / "cluster_report.json").read_text())
    assert report["kept"] == 3 and report["n_clusters"] == 3


def test_cluster_protein(tmp_path):
    rng = random.Random(9)
    p = rand_seq(rng, 200, AMINO)
    records = [
        ("p", p),
        ("q", rand_seq(rng, 180, AMINO)),
        ("p95", mutate(rng, p, 8, AMINO)),
        ("r", rand_seq(rng, 60, AMINO)),
    ]
    src = make_pool(tmp_path / "pool", records)
    out = tmp_path / "out"
    assert run_cluster(src, out, "--keep", "representatives", alphabet="protein") == 0
    assert set(partition(out)) == {frozenset({"p", "p95"}), frozenset({"q"}), frozenset({"r"})}
    table = pq.read_table(out / "sequences.parquet").to_pydict()
    assert len(table["id"]) == 3 and sorted(table["cluster_size"]) == [1, 1, 2]
    assert table["id"] == table["cluster"]  # only representatives are kept
    report = json.loads((out / "cluster_report.json").read_text())
    assert report["strand"] == {} and report["settings"]["strand"] == "n/a (protein)"


def test_cluster_cleans_its_temporary_folder(rna_pool, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert run_cluster(rna_pool, tmp_path / "out") == 0
    assert list(scratch.iterdir()) == []


def test_a_killed_runs_mmseqs_folder_is_removed_by_the_next_run(rna_pool, tmp_path, monkeypatch):
    """kill -9 of cluster/decontaminate skips the cleanup; the next run removes the dead process's
    databases (named pid@host like the staging folders) but not a live process's (issue 12.11)."""
    import os
    import socket

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    host = socket.gethostname()
    dead = scratch / f"bioprune-mmseqs-999999999@{host}.abc123"
    live = scratch / f"bioprune-mmseqs-{os.getppid()}@{host}.def456"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "db").write_bytes(b"x" * 1000)
    assert run_cluster(rna_pool, tmp_path / "out") == 0
    assert sorted(p.name for p in scratch.iterdir()) == [live.name]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--min-identity", "2"], "--min-identity must be in [0, 1]"),
        (["--threads", "0"], "--threads must be"),
    ],
)
def test_cluster_bad_arguments(rna_pool, tmp_path, capsys, extra, fragment):
    assert run_cluster(rna_pool, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bioprune cluster: error:") and fragment in err[-1]


def test_cluster_not_a_pool(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cluster(tmp_path / "empty", tmp_path / "out") == 2
    assert "not a bioprune pool folder: sequences.fasta.gz is missing" in capsys.readouterr().err


# -- the MMseqs2 runner ----------------------------------------------------------------------------


def test_mmseqs_failure_raises_tool_error_with_output(tmp_path):
    mm = mmseqs.MMseqs(threads=1)
    with pytest.raises(ToolError) as err:
        mm.run("createdb", tmp_path / "missing.fasta", tmp_path / "db", threads=False)
    message = str(err.value)
    assert message.startswith("mmseqs createdb failed (exit ")
    assert "missing.fasta" in message  # MMseqs2's own complaint is carried in the error
    # the cause comes first, not MMseqs2's echo of ~20 parameters (issue 12.12)
    assert message == f"mmseqs createdb failed (exit 1): Input {tmp_path / 'missing.fasta'} does not exist"


def test_mmseqs_binary_override(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEQS2_PATH", str(tmp_path / "no-such-mmseqs"))
    with pytest.raises(ToolError, match="MMSEQS2_PATH"):
        mmseqs.find_binary()
    monkeypatch.delenv("MMSEQS2_PATH")
    assert Path(mmseqs.find_binary()).name == "mmseqs"


# -- real data -------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_ts0_found_in_rfam_slice(tmp_path):
    rfam = DATA / "rfam14.2_seed" / "rfam14.2_seed.fasta.gz"
    ts0 = DATA / "bprna_ss" / "TS0.dbn.gz"
    if not (rfam.exists() and ts0.exists()):
        pytest.skip(f"real data not found under {DATA} (../shared/data beside the checkout)")
    records = []
    for rec in read_fasta(rfam):
        records.append((rec.id, rec.seq.decode()))
        if len(records) == 1000:
            break
    pool = make_pool(tmp_path / "pool", records)
    out = tmp_path / "out"
    args = ["decontaminate", "--alphabet", "rna", "--eval", f"TS0={ts0}", "--threads", "2"]
    assert main([*args, "--out", str(out), str(pool)]) == 0
    removed = read_tsv(out / "removed.tsv")
    # Independent check of the exact part: normalised TS0 sequences, compared as strings.
    from bioprune.dbn import read_dbn

    rna = get_alphabet("rna")
    ts0_seqs = {normalise(r.sequence.encode(), rna).decode() for r in read_dbn(ts0)}
    exact_expected = {rid for rid, seq in records if seq in ts0_seqs}
    assert len(exact_expected) > 0
    assert {r["id"] for r in removed if r["reason"] == "exact"} == exact_expected
    similar = [r for r in removed if r["reason"] == "similar"]
    assert len(similar) > 0  # bpRNA holds Rfam sequences that differ slightly from the seeds
    assert all(float(r["identity"]) >= 0.9 and float(r["coverage"]) >= 0.8 for r in similar)
    assert len(pool_ids(out)) == 1000 - len(removed)


def test_sequences_longer_than_mmseqs_default_limit(tmp_path):
    # Longer than MMseqs2's documented --max-seq-len default (65535): still clustered and found.
    rng = random.Random(3)
    long = rand_seq(rng, 70_000)
    records = [("long", long), ("long99", mutate(rng, long, 350)), ("other", rand_seq(rng, 200))]
    src = make_pool(tmp_path / "pool", records)
    assert run_cluster(src, tmp_path / "clu", "--method", "cluster") == 0
    assert set(partition(tmp_path / "clu")) == {frozenset({"long", "long99"}), frozenset({"other"})}
    (tmp_path / "eval.fa").write_text(f">e\n{long}\n")
    args = ["decontaminate", "--alphabet", "rna", "--eval", f"E={tmp_path / 'eval.fa'}"]
    assert main([*args, "--out", str(tmp_path / "dc"), str(src)]) == 0
    assert {r["id"] for r in read_tsv(tmp_path / "dc" / "removed.tsv")} == {"long", "long99"}


def test_table_lengths_must_match_fasta(rna_pool, tmp_path, capsys):
    broken = tmp_path / "pool"
    broken.mkdir()
    (broken / "sequences.fasta.gz").write_bytes((rna_pool / "sequences.fasta.gz").read_bytes())
    table = pq.read_table(rna_pool / "sequences.parquet")
    lengths = table.column("length").to_pylist()
    lengths[2] += 1
    table = table.set_column(3, "length", pa.array(lengths, pa.int32()))
    pq.write_table(table, broken / "sequences.parquet")
    assert run_cluster(broken, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "sequences.fasta.gz:5" in err and "record 'b' has 140 residues, the table says 141" in err
    assert not (tmp_path / "out" / "cluster_report.json").exists()
