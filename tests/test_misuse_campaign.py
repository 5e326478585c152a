"""A user's misuse and fault campaign, replayed: config, FASTA, checkpoints, faults, concurrency and
tampered tables (issue 12). Every case runs a real step on real (small) inputs and is classified:

- clean: a refused input gives a non-zero exit whose last line is ``bioprune <step>: error: ...`` (or a
  ConfigError at start-up) with no traceback; an accepted one exits 0;
- traceback: an exception escaped the CLI;
- partial output: a refused run left an output (or a temporary) that was not there before;
- data lost: a file the user had put in the output folder is gone or changed.

Every case must be clean. With ``BIOPRUNE_CAMPAIGN_RESULTS=path`` the counts are also written to that
JSON file (``benchmarks/results/misuse_campaign.json`` was made so).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from snakemake_plan import plan

from bioprune import atomic, cli
from bioprune.config import validate_config
from bioprune.errors import BiopruneError
from bioprune.models.registry import build_model, save_model
from bioprune.plan.models import reference_args
from bioprune.plan.select import selection_plan

ROOT = Path(__file__).resolve().parents[1]
INFLUENCE = ["--max-length", "64", "--batch-tokens", "512", "--threads", "1", "--no-progress"]
TINY = ["--backend", "rnafm", "--layers", "1", "--hidden", "32", "--heads", "2", "--ffn", "64"]
RESULTS: list[dict] = []


@dataclass
class Case:
    category: str
    name: str
    run: object  # ctx -> argv (a CLI step) or a callable run in-process (a start-up check)
    ok: bool = False  # the input is acceptable: the step must succeed
    outputs: list[str] = field(default_factory=list)  # under ctx.out: must not appear on failure
    fragment: str = ""  # expected in the error line
    user_file: str | None = None  # a user's file under ctx.out that must survive


@dataclass
class Ctx:
    d: Path  # shared inputs
    out: Path  # this case's output folder (empty unless the case prepares it)

    @property
    def pool(self) -> Path:
        return self.d / "pool"


# -- shared inputs: a small RNA pool, a tiny model, its Fisher and scores ------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("campaign")
    rng = random.Random(0)
    with open(d / "in.fasta", "w") as fh:
        for i in range(120):
            seq = "".join(rng.choice("ACGU") for _ in range(rng.randint(20, 70)))
            fh.write(f">s{i} RF{i % 6:05d} fam{i % 6}\n{seq}\n")
    assert cli.main(["ingest", "--alphabet", "rna", "--out", str(d / "ingest"), str(d / "in.fasta")]) == 0
    assert cli.main(["dedup", "--out", str(d / "pool"), str(d / "ingest")]) == 0
    model = build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=0)
    save_model(model, d / "model.pt")
    save_model(build_model("esmc", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=0), d / "esmc.pt")
    (d / "dsub.txt").write_text("".join(f"s{i}\n" for i in range(0, 120, 3)))
    fasta = str(d / "pool" / "sequences.fasta.gz")
    fisher = ["fisher", "--model", str(d / "model.pt"), "--ids", str(d / "dsub.txt"), *INFLUENCE]
    assert cli.main([*fisher, "--out", str(d / "partial.pt"), fasta]) == 0
    assert cli.main(["fisher-reduce", "--out", str(d / "fisher.pt"), str(d / "partial.pt")]) == 0
    score = ["score", "--model", str(d / "model.pt"), "--fisher", str(d / "fisher.pt"), *INFLUENCE]
    assert cli.main([*score, "--out", str(d / "shard.parquet"), fasta]) == 0
    assert cli.main(["merge-scores", "--out", str(d / "scores.parquet"), str(d / "shard.parquet")]) == 0
    return d


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _fasta(ctx: Ctx, name: str, data: bytes | str) -> str:
    return str(_write(ctx.out.parent / "inputs" / name, data))


def _truncated_gzip() -> bytes:
    data = gzip.compress(b"".join(b">r%d\nACGUACGGAUUAGC\n" % i for i in range(3000)))
    return data[: len(data) // 2]


def _ingest(alphabet: str, name: str, data: bytes | str):
    return lambda ctx: ["ingest", "--alphabet", alphabet, "--out", str(ctx.out), _fasta(ctx, name, data)]


def _score(model: str | None = None, fisher: str | None = None, fasta: str | None = None, out="s.parquet"):
    def argv(ctx: Ctx) -> list[str]:
        return [
            "score", "--model", model(ctx) if model else str(ctx.d / "model.pt"),
            "--fisher", fisher(ctx) if fisher else str(ctx.d / "fisher.pt"), *INFLUENCE,
            "--out", str(ctx.out / out), fasta(ctx) if fasta else str(ctx.pool / "sequences.fasta.gz"),
        ]  # fmt: skip

    return argv


def _bad_model(data: bytes | str | dict, name: str = "bad.pt"):
    def make(ctx: Ctx) -> str:
        path = ctx.out.parent / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, dict):
            torch.save(data, path)
        else:
            _write(path, data)
        return str(path)

    return make


def _own_model_with(ctx: Ctx, **changes) -> dict:
    raw = torch.load(ctx.d / "model.pt", weights_only=True)
    raw["spec"] = {**raw["spec"], **changes.pop("spec", {})}
    raw.update(changes)
    return raw


def _select(*extra: str, scores=None, pool=None):
    def argv(ctx: Ctx) -> list[str]:
        return [
            "select", "--scores", scores(ctx) if scores else str(ctx.d / "scores.parquet"),
            "--pool", pool(ctx) if pool else str(ctx.pool), "--out", str(ctx.out), *extra,
        ]  # fmt: skip

    return argv


def _tampered_scores(**columns):
    def make(ctx: Ctx) -> str:
        table = pq.read_table(ctx.d / "scores.parquet")
        for name, change in columns.items():
            values = change(table.column(name).to_pylist()) if callable(change) else change
            if name in table.column_names:
                table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
            else:
                table = table.append_column(name, pa.array(values))
        path = ctx.out.parent / "inputs" / "scores.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return str(path)

    return make


def _config_check(**changes):
    """A start-up check of the workflow: the config validated as the Snakefile does, then the
    selection plan and the reference rule's arguments built from it."""

    def check(ctx: Ctx) -> None:
        config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        for dotted, value in changes.items():
            *keys, last = dotted.split(".")
            node = config
            for k in keys:
                node = node.setdefault(k, {})
            node[last] = value
        validate_config(config)
        selection_plan(config, "results/select")
        reference_args(config)

    return check


_MALICIOUS_MARK = Path(tempfile.gettempdir()) / f"bioprune-campaign-pwned-{os.getpid()}"


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_MALICIOUS_MARK}",))


def _report(*extra: str, scores=None):
    def argv(ctx: Ctx) -> list[str]:
        metrics = ctx.out.parent / "inputs" / "metrics.json"
        _write(metrics, json.dumps({
            "task": "ss", "kind": "rna_ss", "headline": "f1", "strategy": "topi", "budget": "rate0.9",
            "seed": 0, "metrics": {"f1": 0.5}, "counts": {"test": {"read": 2, "used": 2, "too_long": 0}},
        }))  # fmt: skip
        sc = ["--scores", scores(ctx)] if scores else []
        return ["report", "--out", str(ctx.out), "--dpi", "30", *sc, "--metrics", str(metrics), *extra]

    return argv


def _prepared(prepare, argv):
    """Run ``prepare(ctx)`` (put a user's file in place, say) before building the command line."""

    def build(ctx: Ctx):
        prepare(ctx)
        return argv(ctx)

    return build


def _user_figures(ctx: Ctx) -> None:
    _write(ctx.out / "figures" / "poster.svg", "<svg/>")


def _empty_pool(ctx: Ctx) -> str:
    src = ctx.out.parent / "inputs" / "empty_pool"
    src.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(ctx.pool / "sequences.parquet").slice(0, 0)
    pq.write_table(table, src / "sequences.parquet")
    with gzip.open(src / "sequences.fasta.gz", "wb"):
        pass
    return str(src)


def _pool_copy_with(table_change) -> callable:
    def make(ctx: Ctx) -> str:
        src = ctx.out.parent / "inputs" / "pool"
        src.mkdir(parents=True, exist_ok=True)
        (src / "sequences.fasta.gz").write_bytes((ctx.pool / "sequences.fasta.gz").read_bytes())
        table_change(ctx.pool / "sequences.parquet", src / "sequences.parquet")
        return str(src)

    return make


def _garbage_table(src: Path, dst: Path) -> None:
    dst.write_bytes(b"PAR1 this is not parquet at all" * 10)


def _renamed_id(src: Path, dst: Path) -> None:
    table = pq.read_table(src).to_pydict()
    table["id"][3] = "intruder"
    pq.write_table(pa.table(table), dst)


CASES = [
    # -- config (start-up checks of the workflow) ------------------------------------------------------
    Case("config", "cci bins 1e8", _config_check(**{"select.cci.bins": 100_000_000}), fragment="bins"),
    Case("config", "bad family_regex", _config_check(**{"select.family_regex": "^(RF"}), fragment="regular"),
    Case(
        "config",
        "hidden % heads",
        _config_check(**{"model.overrides": {"hidden": 30, "heads": 4}}),
        fragment="not divisible",
    ),  # fmt: skip
    Case("config", "negative threads", _config_check(threads=-1), fragment="threads"),
    Case("config", "unknown key", _config_check(**{"select.strategy": ["topi"]}), fragment="strategy"),
    Case(
        "config", "esmc for rna", _config_check(**{"model.backend": "esmc"}), fragment="esmc is for protein"
    ),
    Case("config", "defaults", _config_check(), ok=True),
    # -- FASTA ------------------------------------------------------------------------------------------
    Case("fasta", "binary file", _ingest("rna", "bin.fa", b"\x00\x01\x02"), fragment="binary data"),
    Case("fasta", "empty file", _ingest("rna", "empty.fa", b""), fragment="no FASTA records"),
    Case("fasta", "text before >", _ingest("rna", "t.fa", "hello\n>a\nACGU\n"), fragment="before the first"),
    Case("fasta", "CR line ends", _ingest("rna", "cr.fa", ">a\rACGU\r"), fragment="CR alone"),
    Case("fasta", "duplicate ids", _ingest("rna", "dup.fa", ">a\nACGU\n>a\nGGCC\n"), fragment="duplicate"),
    Case(
        "fasta",
        "header without id",
        _ingest("rna", "noid.fa", ">a\nAC\n>  \nGG\n"),
        fragment="no sequence id",
    ),
    Case("fasta", "non-UTF-8 header", _ingest("rna", "u.fa", b">a \xff\nACGU\n"), fragment="UTF-8"),
    Case(
        "fasta",
        "truncated gzip",
        _ingest("rna", "t.fa.gz", _truncated_gzip()),
        fragment="gzip",
    ),  # fmt: skip
    Case(
        "fasta",
        "protein as rna",
        _ingest("rna", "p.fa", ">p\nMKTAYIAKQRQISFVKSHFSRQ\n"),
        fragment="do not look like RNA",
    ),  # fmt: skip
    Case(
        "fasta",
        "rna as protein",
        _ingest("protein", "r.fa", ">r\nACGUAGCUAGCUAGGA\n"),
        fragment="look like nucleotides",
    ),  # fmt: skip
    Case("fasta", "all dropped", _ingest("rna", "x.fa", ">a\nXXXXACGU\n"), fragment="no record left"),
    Case("fasta", "'> desc' header", _ingest("rna", "b.fa", ">a\nACGU\n> desc here\nGGCU\n"), ok=True),
    Case(
        "fasta",
        "folder as input",
        lambda ctx: ["ingest", "--alphabet", "rna", "--out", str(ctx.out), str(ctx.d)],
        fragment="not a regular file",
    ),  # fmt: skip
    # -- checkpoints --------------------------------------------------------------------------------------
    Case(
        "checkpoints",
        "text file",
        _score(model=_bad_model("not a model\n")),
        outputs=["s.parquet"],
        fragment="is a text file",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "random bytes",
        _score(model=_bad_model(random.Random(1).randbytes(300))),
        outputs=["s.parquet"],
    ),  # fmt: skip
    Case(
        "checkpoints",
        "malicious pickle",
        _score(model=_bad_model({"format": "bioprune.model", "x": _Payload()})),
        outputs=["s.parquet"],
        fragment="system",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "mixed key types",
        _score(model=_bad_model({1: torch.zeros(1), "a": torch.zeros(1)})),
        outputs=["s.parquet"],
        fragment="not a recognised model file",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "string layers",
        _score(model=lambda c: _bad_model(_own_model_with(c, spec={"layers": "1"}))(c)),
        outputs=["s.parquet"],
        fragment="layers must be a positive integer",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "hidden % heads",
        _score(model=lambda c: _bad_model(_own_model_with(c, spec={"heads": 3}))(c)),
        outputs=["s.parquet"],
        fragment="not divisible",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "negative ffn",
        _score(model=lambda c: _bad_model(_own_model_with(c, spec={"ffn": -5}))(c)),
        outputs=["s.parquet"],
        fragment="ffn must be",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "huge spec",
        _score(
            model=lambda c: _bad_model(
                _own_model_with(
                    c, spec={"layers": 200, "hidden": 20000, "heads": 100, "ffn": 80000}, state_dict={}
                )
            )(c)
        ),
        outputs=["s.parquet"],
        fragment="the spec needs at least",
    ),  # fmt: skip
    Case(
        "checkpoints",
        "truncated model",
        _score(model=lambda c: _bad_model((c.d / "model.pt").read_bytes()[:3000])(c)),
        outputs=["s.parquet"],
    ),  # fmt: skip
    Case(
        "checkpoints",
        "model other than the Fisher's",
        _score(model=lambda c: str(c.d / "esmc.pt")),
        outputs=["s.parquet"],
    ),
    Case(
        "checkpoints",
        "text file as Fisher",
        _score(fisher=_bad_model("fisher\n", "f.pt")),
        outputs=["s.parquet"],
    ),
    Case(
        "checkpoints",
        "reference --init text",
        lambda ctx: [
            "reference",
            str(ctx.pool),
            "--out",
            str(ctx.out),
            "--dsub-size",
            "10",
            "--init",
            _bad_model("x\n")(ctx),
        ],
        outputs=["model.pt", "dsub_ids.txt", "dsub.fasta.gz", "reference_report.json"],
    ),  # fmt: skip
    # -- faults ---------------------------------------------------------------------------------------
    Case(
        "faults",
        "report over a user's figures",
        _prepared(_user_figures, _report()),
        ok=True,
        user_file="figures/poster.svg",
    ),  # fmt: skip
    Case(
        "faults",
        "decontaminate removes all",
        lambda ctx: [
            "decontaminate",
            "--alphabet",
            "rna",
            "--threads",
            "1",
            "--eval",
            f"self={ctx.pool / 'sequences.fasta.gz'}",
            "--out",
            str(ctx.out),
            str(ctx.pool),
        ],
        outputs=["sequences.fasta.gz", "decontaminate_report.json"],
        fragment="would remove all",
    ),  # fmt: skip
    Case(
        "faults",
        "cluster 0 sequences",
        lambda ctx: ["cluster", "--alphabet", "rna", "--out", str(ctx.out), _empty_pool(ctx)],
        outputs=["cluster_report.json"],
        fragment="pool is empty",
    ),  # fmt: skip
    Case(
        "faults",
        "shard 0 sequences",
        lambda ctx: ["shard", "--n-shards", "2", "--out", str(ctx.out), _empty_pool(ctx)],
        outputs=["shard_report.json"],
        fragment="pool is empty",
    ),  # fmt: skip
    Case(
        "faults",
        "output under a file",
        lambda ctx: [
            "shard",
            "--n-shards",
            "2",
            "--out",
            str(_write(ctx.out / "blocker", "x") / "out"),
            str(ctx.pool),
        ],
        user_file="blocker",
    ),  # fmt: skip
    Case(
        "faults",
        "select --seed -1",
        _select("--strategy", "cci", "--rate", "0.5", "--seed", "-1"),
        outputs=["ids.txt"],
        fragment="seed",
    ),  # fmt: skip
    Case(
        "faults",
        "select --bins 1e8",
        _select("--strategy", "cci", "--rate", "0.5", "--bins", "100000000"),
        outputs=["ids.txt"],
        fragment="--bins",
    ),  # fmt: skip
    Case(
        "faults",
        "budget above the pool",
        _select("--strategy", "random", "--count", "100000"),
        outputs=["ids.txt"],
    ),
    # -- tampered tables ------------------------------------------------------------------------------
    Case(
        "tables",
        "NaN score",
        _select(
            "--strategy",
            "topi",
            "--rate",
            "0.5",
            scores=_tampered_scores(self_influence=lambda v: [float("nan")] + v[1:]),
        ),
        outputs=["ids.txt"],
    ),  # fmt: skip
    Case(
        "tables",
        "duplicate id",
        _select("--strategy", "topi", "--rate", "0.5", scores=_tampered_scores(id=lambda v: [v[1]] + v[1:])),
        outputs=["ids.txt"],
    ),  # fmt: skip
    Case(
        "tables",
        "ghost id",
        _select(
            "--strategy", "topi", "--rate", "0.5", scores=_tampered_scores(id=lambda v: ["ghost"] + v[1:])
        ),
        outputs=["ids.txt"],
    ),  # fmt: skip
    Case(
        "tables",
        "negative influence",
        _select(
            "--strategy",
            "topi",
            "--rate",
            "0.5",
            scores=_tampered_scores(self_influence=lambda v: [-1.0] + v[1:]),
        ),
        outputs=["ids.txt"],
    ),  # fmt: skip
    Case(
        "tables",
        "string score column (report)",
        _report(scores=_tampered_scores(self_influence=lambda v: [str(x) for x in v])),
        outputs=["report.md"],
        fragment="not numbers",
    ),  # fmt: skip
    Case(
        "tables",
        "missing score column (report)",
        _report("--score-column", "nope", scores=lambda c: str(c.d / "scores.parquet")),
        outputs=["report.md"],
        fragment="its columns",
    ),  # fmt: skip
    Case(
        "tables",
        "garbage pool table",
        _select("--strategy", "topi", "--rate", "0.5", pool=_pool_copy_with(_garbage_table)),
        outputs=["ids.txt"],
    ),  # fmt: skip
    Case(
        "tables",
        "pool table out of step (reference)",
        lambda ctx: [
            "reference",
            _pool_copy_with(_renamed_id)(ctx),
            "--out",
            str(ctx.out),
            "--dsub-fraction",
            "1.0",
            *TINY,
            "--max-steps",
            "1",
            "--threads",
            "1",
        ],
        outputs=["model.pt", "dsub_ids.txt", "dsub.fasta.gz"],
        fragment="intruder",
    ),  # fmt: skip
    Case(
        "tables",
        "binary id list (perplexity-set)",
        lambda ctx: [
            "perplexity-set",
            "--pool",
            str(ctx.pool),
            "--out",
            str(ctx.out),
            str(_write(ctx.out.parent / "inputs" / "ids.txt", b"s1\n\xff\xfe\n")),
        ],
        outputs=["sequences.fasta.gz"],
        fragment="not UTF-8",
    ),  # fmt: skip
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def classify(case: Case, ctx: Ctx, capsys) -> dict:
    """Run one case; return its record (outcome and why)."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    capsys.readouterr()
    before = None
    rc, err, escaped = None, "", None
    try:
        argv = case.run(ctx)  # prepares the inputs (and a user's files), or runs a start-up check
        before = _snapshot(ctx.out)
        if argv is None:  # a start-up check that passed
            rc = 0
        else:
            try:
                rc = cli.main(argv)
            except SystemExit as exc:  # argparse's usage errors
                rc = exc.code
    except BiopruneError as exc:  # a start-up check refused the config
        rc, err = 2, "config: error: " + " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001  (that is what the campaign looks for)
        escaped = exc
    err = err or capsys.readouterr().err
    after = _snapshot(ctx.out)
    record = {"category": case.category, "case": case.name, "rc": rc}
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if escaped is not None or "Traceback" in err:
        record["outcome"], record["why"] = "traceback", repr(escaped)[:300] if escaped else err[-300:]
    elif case.user_file and before.get(case.user_file) != after.get(case.user_file):
        record["outcome"], record["why"] = "data lost", case.user_file
    elif case.ok:
        record["outcome"] = "clean" if rc == 0 else "failed"
        record["why"] = "" if rc == 0 else (lines[-1] if lines else "")
    else:
        new = sorted(set(after) - set(before or {}))
        last = lines[-1] if lines else ""
        if new:
            record["outcome"], record["why"] = "partial output", ", ".join(new)[:300]
        elif rc in (0, None) or ": error: " not in last or case.fragment not in last:
            record["outcome"], record["why"] = "unclear", last[:300] or f"exit {rc}"
        else:
            record["outcome"], record["why"] = "clean", last[:300]
    return record


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}:{c.name}" for c in CASES])
def test_case(case, shared, tmp_path, capsys):
    record = classify(case, Ctx(shared, tmp_path / "out"), capsys)
    RESULTS.append(record)
    assert record["outcome"] == "clean", record
    assert not _MALICIOUS_MARK.exists(), "a pickled payload ran"


# -- faults that need more than one call ---------------------------------------------------------------


def _record(category: str, name: str, outcome: str, why: str = "") -> None:
    RESULTS.append({"category": category, "case": name, "outcome": outcome, "why": why})
    assert outcome == "clean", why


def test_output_folder_turned_read_only_mid_run(shared, tmp_path, capsys):
    """A real read-only remount between scoring and the final rename (root only: a tmpfs)."""
    if os.geteuid() != 0:
        pytest.skip("remounting a tmpfs read-only needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    real_replace = os.replace

    def turn_read_only_then_rename(src, dst):
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        return real_replace(src, dst)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(atomic.os, "replace", turn_read_only_then_rename)
            argv = _score()(Ctx(shared, mnt))
            try:
                rc = cli.main(argv)
            except Exception as exc:  # noqa: BLE001
                _record("faults", "folder read-only mid-run", "traceback", repr(exc))
        err = capsys.readouterr().err.strip().splitlines()
        ok = rc == 2 and err[-1].startswith("bioprune score: error:") and "read-only file system" in err[-1]
        _record("faults", "folder read-only mid-run", "clean" if ok else "unclear", err[-1] if err else "")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_killed_mmseqs_scratch_is_removed_by_the_next_run(shared, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    dead = scratch / f"bioprune-mmseqs-999999999@{socket.gethostname()}.x1"
    dead.mkdir()
    (dead / "db").write_bytes(b"\0" * 1000)
    argv = [
        "cluster",
        "--alphabet",
        "rna",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "c"),
        str(shared / "pool"),
    ]
    assert cli.main(argv) == 0
    _record("faults", "stale MMseqs2 scratch", "clean" if not any(scratch.iterdir()) else "partial output")


# -- concurrency -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_selections_into_one_folder_at_once(shared, tmp_path):
    """Two processes writing the same selection folder: both succeed, one complete set remains, no
    staging folder is left."""
    out = tmp_path / "sel"
    argv = [
        sys.executable,
        "-m",
        "bioprune",
        *_select("--strategy", "cci", "--rate", "0.5")(Ctx(shared, out)),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    codes = [p.wait() for p in procs]
    errs = b"".join(p.stderr.read() for p in procs).decode()
    names = sorted(p.name for p in out.iterdir())
    ok = codes == [0, 0] and names == ["coreset.fasta.gz", "diagnostics.png", "ids.txt", "summary.json"]
    _record(
        "concurrency",
        "two selects, one folder",
        "clean" if ok else "unclear",
        f"{codes} {names}" + ("" if ok else f" {errs[-300:]}"),
    )


def test_two_writers_of_one_file_at_once(tmp_path):
    target = tmp_path / "scores.parquet"
    barrier = threading.Barrier(2)
    errors = []

    def write(text: str) -> None:
        try:
            with atomic.atomic_path(target) as tmp:
                tmp.write_text(text * 10000)
                barrier.wait()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    whole = target.read_text() in ("a" * 10000, "b" * 10000)
    ok = not errors and whole and [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]
    _record("concurrency", "two writers, one file", "clean" if ok else "unclear", repr(errors))


# -- paths with spaces through the workflow ----------------------------------------------------------------


@pytest.mark.workflow
def test_paths_with_spaces_through_the_workflow(tmp_path):
    """The rules did not quote {input} / {params.out}: a results folder or an input with a space broke
    the run, and messages named files that do not exist (issue 12.6). Every job's command line must keep
    each path one word, and the pool stage must run."""
    run_dir = tmp_path / "my run"
    (run_dir / "in put").mkdir(parents=True)
    (run_dir / "example").symlink_to(ROOT / "example", target_is_directory=True)
    rng = random.Random(0)
    records = "".join(
        f">s{i} fam{i % 5}\n{''.join(rng.choice('ACGU') for _ in range(60))}\n" for i in range(60)
    )
    (run_dir / "in put" / "pool one.fasta").write_text(records)
    (run_dir / "in put" / "eval set.fasta").write_text(">e1\n" + "ACGU" * 15 + "\n")
    evals = {"heldout": "in put/eval set.fasta", "trna_valid": None, "trna_test": None}
    config = {
        "inputs": ["in put/pool one.fasta"], "results": "my results", "logs": "my logs",
        "decontaminate": {"eval_sets": evals},
    }  # fmt: skip
    (run_dir / "c.yaml").write_text(yaml.safe_dump(config))
    base = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(run_dir)]
    base += ["--configfile", str(run_dir / "c.yaml"), "--cores", "2"]
    planned = plan(
        run_dir, "--configfile", str(run_dir / "c.yaml"), "--forceall", snakefile=ROOT / "Snakefile"
    )
    commands = [job.shellcmd for job in planned.jobs if job.shellcmd]
    assert len(commands) > 40
    split_paths = [
        (word, cmd[:120])
        for cmd in commands
        for word in shlex.split(cmd)
        if word.startswith(("results/", "logs/", "put/", "set.fasta", "one.fasta"))
        or word in ("my", "in", "eval")
    ]
    outcome = "clean" if not split_paths else "unclear"
    report = tmp_path / "my run" / "my results" / "pool" / "shards" / "shard_report.json"
    if not split_paths:
        run = subprocess.run([*base, str(report.relative_to(run_dir))], capture_output=True, text=True)
        if run.returncode != 0 or not report.exists():
            outcome, split_paths = "failed", [run.stderr[-500:]]
    _record("workflow", "paths with spaces", outcome, repr(split_paths[:3]))


# -- the counts --------------------------------------------------------------------------------


def test_campaign_counts():
    """All outcomes but "clean" are 0; with BIOPRUNE_CAMPAIGN_RESULTS the counts are written there."""
    counts = Counter(r["outcome"] for r in RESULTS)
    summary = {
        "cases": len(RESULTS),
        "clean": counts["clean"],
        "tracebacks": counts["traceback"],
        "partial_outputs": counts["partial output"],
        "data_lost": counts["data lost"],
        "other": sum(
            n for k, n in counts.items() if k not in ("clean", "traceback", "partial output", "data lost")
        ),
        "per_category": dict(Counter(r["category"] for r in RESULTS)),
        "not_clean": [r for r in RESULTS if r["outcome"] != "clean"],
        "records": RESULTS,
    }
    if not RESULTS:
        pytest.skip("no case ran (run the whole module)")
    path = os.environ.get("BIOPRUNE_CAMPAIGN_RESULTS")
    if path:
        text = re.sub(r"[^\s'\"]*/pytest-\d+/", "<tmp>/", json.dumps(summary, indent=2))  # no run's paths
        with contextlib.suppress(OSError):
            Path(path).write_text(text + "\n")
    assert summary["clean"] == summary["cases"], summary["not_clean"]
