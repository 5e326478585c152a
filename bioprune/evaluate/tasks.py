"""Downstream tasks: their settings (config ``evaluate.tasks``) and data loaders.

A task is a name and a mapping of settings; labs add their own in config. Kinds:

================== ============================================= ==================================
kind               data                                          metrics (first = headline unless `metric`)
================== ============================================= ==================================
rna_ss             dot-bracket files (``.dbn``, pseudoknots ok)   f1, precision, recall, mcc
seq_class          FASTA (label from a header regex), dot-bracket accuracy, macro_f1
                   (label from the id) or CSV
seq_regression     CSV (sequence and target columns) or FASTA     spearman, pearson, mse
                   (target from a header regex)
per_residue_class  FASTA of sequences + FASTA of label strings    accuracy (per residue), macro_f1
                   (one character per residue) + optional 0/1
                   mask FASTA, matched by id
mlm_perplexity     FASTA (``test``), ``source: unselected_pool``    perplexity, loss
                   or ``source: heldout_families``
================== ============================================= ==================================

Splits come from three files (``train``, ``valid``, ``test``; without ``valid`` a seeded
``valid_fraction`` of train is held out), or with ``source: flip`` from one file using FLIP's
convention (FASTA headers ``SET=train|test VALIDATION=True|False``, CSV columns ``set`` and
``validation``): test -> test, train with validation true -> valid, other train -> train.

Every record read is accounted for in the task's counts: used, or dropped with a reason
(``too_long``: over ``max_length``; ``sampled_out``: over ``max_records`` of its split, which keeps a
seeded uniform sample; model-dependent reasons are added by the evaluation step).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioprune.dbn import is_dbn_path, pairs, read_dbn
from bioprune.errors import ConfigError, InputError
from bioprune.fasta import open_maybe_gzip, read_fasta

KINDS = ("rna_ss", "seq_class", "seq_regression", "per_residue_class", "mlm_perplexity")
SPLITS = ("train", "valid", "test")
# metric names per kind; the first is the headline metric of the report
METRICS = {
    "rna_ss": ("f1", "precision", "recall", "mcc"),
    "seq_class": ("accuracy", "macro_f1"),
    "seq_regression": ("spearman", "pearson", "mse"),
    "per_residue_class": ("accuracy", "macro_f1"),
    "mlm_perplexity": ("perplexity", "loss"),
}
LOWER_IS_BETTER = {"perplexity", "loss", "mse"}
SOURCES = ("files", "flip", "unselected_pool", "heldout_families")
# mlm_perplexity test sets the workflow makes: pool sequences no selection kept (families the pretraining
# saw: it measures family coverage), and the families the holdout step set aside (never seen)
WORKFLOW_SOURCES = ("unselected_pool", "heldout_families")
STRUCTURE_HEADS = ("pair", "attention", "cnn")
# kinds with a floor (bioprune/evaluate/floors.py): a no-language-model score computed once per task
FLOOR_KINDS = ("rna_ss", "seq_class", "seq_regression")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    enabled: bool = True
    alphabet: str | None = None  # rna | protein: the task runs only in workflows of that alphabet
    source: str = "files"  # files | flip | unselected_pool | heldout_families (the last two: mlm_perplexity)
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    path: str | None = None  # source flip: the one file holding every split
    sequences: str | None = None  # per_residue_class: FASTA of the sequences, matched by id
    mask: str | None = None  # per_residue_class: FASTA of 0/1 strings (1 = evaluated residue)
    label_regex: str | None = None  # seq_class / seq_regression from FASTA: group 1 on "id description"
    sequence_column: str = "sequence"  # CSV inputs
    target_column: str = "target"  # CSV inputs: the label or value
    valid_fraction: float = 0.1
    max_records: dict = field(default_factory=dict)  # split -> cap (seeded sample), absent = all
    max_length: int | None = None  # longer records are dropped (reason too_long)
    head: str = "mlp"  # linear | mlp
    hidden: int = 64
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64  # sequences per optimizer step (rna_ss: 8 is plenty)
    threshold: float | None = None  # rna_ss: pair probability cut; null = tuned on valid
    min_loop: int = 3  # rna_ss: pairs need j - i > min_loop
    structure_head: str = "pair"  # rna_ss: pair | attention | cnn (bioprune/evaluate/structure_heads.py)
    canonical_only: bool | None = None  # rna_ss: decode AU/CG/GU pairs only; null: yes except for pair
    cnn_blocks: int = 6  # rna_ss cnn head: residual blocks
    cnn_channels: int = 24  # rna_ss cnn head: channels
    cnn_attention: bool = True  # rna_ss cnn head: add the model's per-layer attention maps
    kmer_max: int = 4  # seq_class / seq_regression floor: k-mer counts for k = 1..kmer_max
    mask_prob: float = 0.15  # mlm_perplexity
    mask_seed: int = 0  # mlm_perplexity: masks come from (id, mask_seed)
    metric: str | None = None  # headline metric of the report (one of the kind's); null: the kind's first

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS[self.kind]

    @property
    def canonical(self) -> bool:
        """rna_ss: whether decoding keeps canonical and GU pairs only."""
        if self.canonical_only is None:
            return self.structure_head != "pair"
        return bool(self.canonical_only)

    @property
    def headline(self) -> str:
        return self.metric or METRICS[self.kind][0]

    def to_dict(self) -> dict:
        return asdict(self)


_FIELDS = {f for f in TaskSpec.__dataclass_fields__}


def spec_from_config(name: str, settings: dict | None) -> TaskSpec:
    """A validated TaskSpec from the config mapping of task ``name`` (ConfigError names the key)."""
    where = f"evaluate.tasks.{name}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"{where}: task names use letters, digits, '_', '.', '-' (they name folders)")
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(settings).__name__}")
    unknown = set(settings) - _FIELDS - {"name"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}")
    kind = settings.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {list(KINDS)}")
    values = {k: v for k, v in settings.items() if k != "name"}
    values["max_records"] = dict(values.get("max_records") or {})
    spec = TaskSpec(name=name, **values)
    _check(spec, where)
    return spec


def _check(s: TaskSpec, where: str) -> None:
    def need(*keys):
        for k in keys:
            if not getattr(s, k):
                raise ConfigError(f"{where}: kind {s.kind} with source {s.source} needs {k!r}")

    if s.source not in SOURCES:
        raise ConfigError(f"{where}.source: {s.source!r} is not one of {list(SOURCES)}")
    if s.source in WORKFLOW_SOURCES and s.kind != "mlm_perplexity":
        raise ConfigError(f"{where}.source: {s.source} is for kind mlm_perplexity only")
    if s.kind == "mlm_perplexity":
        if s.source == "flip":
            raise ConfigError(
                f"{where}.source: mlm_perplexity reads 'test', the unselected pool or the held-out families"
            )
        if s.source == "files":
            need("test")
    elif s.source == "flip":
        need("path")
    else:
        need("train", "test")
    if s.kind == "per_residue_class":
        need("sequences")
    if s.kind == "rna_ss" and s.source == "flip":
        raise ConfigError(f"{where}.source: rna_ss reads train/valid/test dot-bracket files")
    bad = set(s.max_records) - set(SPLITS)
    if bad:
        raise ConfigError(f"{where}.max_records: unknown split(s) {sorted(bad)}; use {list(SPLITS)}")
    for k, v in s.max_records.items():
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"{where}.max_records.{k}: must be a positive integer or null, got {v!r}")
    if s.label_regex is not None:
        try:
            if re.compile(s.label_regex).groups < 1:
                raise ConfigError(f"{where}.label_regex: needs one capturing group (the label)")
        except re.error as exc:
            raise ConfigError(f"{where}.label_regex: not a valid regular expression ({exc})") from None
    if s.metric is not None and s.metric not in METRICS[s.kind]:
        raise ConfigError(f"{where}.metric: {s.metric!r} is not a {s.kind} metric {list(METRICS[s.kind])}")
    if s.alphabet not in (None, "rna", "protein"):
        raise ConfigError(f"{where}.alphabet: {s.alphabet!r} is not rna, protein or null")
    if s.head not in ("linear", "mlp"):
        raise ConfigError(f"{where}.head: {s.head!r} is not linear or mlp")
    if s.structure_head not in STRUCTURE_HEADS:
        raise ConfigError(
            f"{where}.structure_head: {s.structure_head!r} is not one of {list(STRUCTURE_HEADS)}"
        )
    if s.structure_head != "pair" and s.kind != "rna_ss":
        raise ConfigError(f"{where}.structure_head: only rna_ss tasks have structure heads")
    for key in ("canonical_only", "cnn_attention"):
        value = getattr(s, key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: must be true or false, got {value!r}")
    checks = [
        ("cnn_blocks", isinstance(s.cnn_blocks, int) and s.cnn_blocks >= 1, "must be an integer >= 1"),
        ("cnn_channels", isinstance(s.cnn_channels, int) and s.cnn_channels >= 1, "must be an integer >= 1"),
        ("kmer_max", isinstance(s.kmer_max, int) and 1 <= s.kmer_max <= 6, "must be an integer in 1..6"),
        ("valid_fraction", 0 < s.valid_fraction < 1, "must be in (0, 1)"),
        ("hidden", s.hidden >= 1, "must be >= 1"),
        ("epochs", s.epochs >= 1, "must be >= 1"),
        ("lr", s.lr > 0, "must be > 0"),
        ("weight_decay", s.weight_decay >= 0, "must be >= 0"),
        ("batch_size", s.batch_size >= 1, "must be >= 1"),
        ("min_loop", s.min_loop >= 0, "must be >= 0"),
        ("mask_prob", 0 < s.mask_prob < 1, "must be in (0, 1)"),
        ("max_length", s.max_length is None or s.max_length >= 1, "must be >= 1 or null"),
        ("threshold", s.threshold is None or 0 < s.threshold < 1, "must be in (0, 1) or null"),
    ]
    for key, ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}.{key}: {msg}, got {getattr(s, key)!r}")


def tasks_from_config(config: dict) -> list[TaskSpec]:
    """Enabled tasks of a validated config whose alphabet (if set) is the config's, in config order."""
    tasks = (config.get("evaluate") or {}).get("tasks") or {}
    specs = [spec_from_config(name, settings) for name, settings in tasks.items()]
    alphabet = config.get("alphabet")
    return [
        s for s in specs if s.enabled and (s.alphabet is None or alphabet is None or s.alphabet == alphabet)
    ]


def task_files(spec: TaskSpec) -> list[str]:
    """Data files a task reads (workflow inputs); the unselected pool set is added by the workflow."""
    keys = ("train", "valid", "test", "path", "sequences", "mask")
    return [getattr(spec, k) for k in keys if getattr(spec, k)]


# -- loaded data -----------------------------------------------------------------------------------------
@dataclass
class Example:
    id: str
    seq: str  # upper case, as in the file otherwise (T->U is the tokenizer's job)
    # int class index | float | dot-bracket string (pairs after structure_pairs) | per-residue int array
    # (-1 = not evaluated)
    target: Any = None


@dataclass
class TaskData:
    spec: TaskSpec
    splits: dict[str, list[Example]]
    classes: list[str] | None = None  # class names by index (seq_class, per_residue_class)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {"read": n, reason: n, ...}

    def drop(self, split: str, keep: list[bool], reason: str) -> None:
        """Remove the examples of ``split`` whose ``keep`` is False, counting them under ``reason``."""
        before = self.splits[split]
        self.splits[split] = [e for e, k in zip(before, keep, strict=True) if k]
        n = len(before) - len(self.splits[split])
        if n:
            c = self.counts.setdefault(split, {})
            c[reason] = c.get(reason, 0) + n


def load_task(spec: TaskSpec, seed: int = 0) -> TaskData:
    """Read a task's splits (not for sources the workflow makes: pass their file as ``test``)."""
    if spec.kind == "rna_ss":
        raw = {s: _read_dbn_split(getattr(spec, s)) for s in SPLITS if getattr(spec, s)}
    elif spec.kind == "per_residue_class":
        raw = _read_per_residue(spec)
    elif spec.kind == "mlm_perplexity":
        raw = {"test": [Example(r.id, _seq(r)) for r in read_fasta(spec.test)]}
    else:
        raw = _read_sequence_level(spec)
    raw = {k: v for k, v in raw.items() if v is not None}
    counts = {s: {"read": len(v)} for s, v in raw.items()}
    if spec.kind != "mlm_perplexity" and "valid" not in raw:
        raw["train"], raw["valid"] = _carve(raw["train"], spec.valid_fraction, seed)
        counts["valid"] = {"read": 0, "carved_from_train": len(raw["valid"])}
        counts["train"]["moved_to_valid"] = len(raw["valid"])
    for split in SPLITS:
        if spec.kind != "mlm_perplexity" and not raw.get(split):
            what = spec.path or getattr(spec, split) or "(no file)"
            raise InputError(what, f"task {spec.name}: the {split} split has no records")
    data = TaskData(spec, raw, counts=counts)
    if spec.max_length is not None:
        for split, exs in data.splits.items():
            data.drop(split, [len(e.seq) <= spec.max_length for e in exs], "too_long")
    _finish_targets(data)
    return data


def cap_splits(data: TaskData, seed: int) -> None:
    """Keep a seeded uniform sample of ``max_records[split]`` examples (order kept); the rest are counted
    as ``sampled_out``. Called after every other filter so the cap is the number actually used."""
    for i, split in enumerate(SPLITS):
        cap = data.spec.max_records.get(split)
        exs = data.splits.get(split)
        if cap is None or exs is None or len(exs) <= cap:
            continue
        chosen = np.zeros(len(exs), dtype=bool)
        chosen[np.random.default_rng([seed, 7919, i]).choice(len(exs), size=cap, replace=False)] = True
        data.drop(split, chosen.tolist(), "sampled_out")


def _carve(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    n = len(examples)
    k = max(1, round(fraction * n)) if n >= 2 else 0
    is_valid = np.zeros(n, dtype=bool)
    is_valid[np.random.default_rng([seed, 104729]).choice(n, size=k, replace=False)] = True
    return [e for e, v in zip(examples, is_valid, strict=True) if not v], [
        e for e, v in zip(examples, is_valid, strict=True) if v
    ]


def _seq(rec) -> str:
    return rec.seq.decode("ascii", errors="replace").upper()


def _read_dbn_split(path: str) -> list[Example]:
    # the structure string is kept: turning it into pairs waits until the caps are applied
    return [Example(r.id, r.sequence.upper(), r.structure) for r in read_dbn(path)]


def structure_pairs(data: TaskData) -> None:
    """rna_ss: replace each example's dot-bracket string by its 0-based base pairs (i < j)."""
    for exs in data.splits.values():
        for e in exs:
            if isinstance(e.target, str):
                e.target = pairs(e.target)


# -- sequence-level tasks (seq_class, seq_regression) -----------------------------------------------------
def _is_csv(path: str) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def _flip_split_from_header(path: str, line: int, rec_id: str, header: str) -> str:
    m_set = re.search(r"\bSET=(\w+)", header)
    m_val = re.search(r"\bVALIDATION=(\w+)", header)
    if not m_set or m_set.group(1).lower() not in ("train", "test"):
        raise InputError(path, "FLIP header needs SET=train or SET=test", line=line, record=rec_id)
    if m_set.group(1).lower() == "test":
        return "test"
    return "valid" if m_val and m_val.group(1).lower() == "true" else "train"


def _flip_split_from_row(path: str, line: int, row: dict) -> str:
    s = (row.get("set") or "").strip().lower()
    if s not in ("train", "test"):
        raise InputError(path, f"column 'set' is {row.get('set')!r}, expected train or test", line=line)
    if s == "test":
        return "test"
    return "valid" if (row.get("validation") or "").strip().lower() == "true" else "train"


def _label(spec: TaskSpec, path: str, line: int, rec_id: str, text: str) -> str:
    regex = spec.label_regex or r"^\S+\s+(\S+)"
    m = re.search(regex, text)
    if not m or m.group(1) is None:
        raise InputError(
            path, f"header {text!r} does not match label_regex {regex!r}", line=line, record=rec_id
        )
    return m.group(1)


def _target(spec: TaskSpec, path: str, line: int, rec_id: str, value: str):
    if spec.kind == "seq_class":
        return value
    try:
        x = float(value)
    except ValueError:
        raise InputError(path, f"target {value!r} is not a number", line=line, record=rec_id) from None
    if not np.isfinite(x):
        raise InputError(path, f"target {value!r} is not finite", line=line, record=rec_id)
    return x


def _read_csv(spec: TaskSpec, path: str) -> list[tuple[str, Example]]:
    out = []
    with open_maybe_gzip(path) as fh:
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
        cols = reader.fieldnames or []
        for col in (spec.sequence_column, spec.target_column):
            if col not in cols:
                raise InputError(path, f"no column {col!r} (columns: {cols})", line=1)
        for line, row in enumerate(reader, 2):
            rec_id = row.get("id") or f"row{line}"
            seq = (row[spec.sequence_column] or "").strip().upper()
            ex = Example(rec_id, seq, _target(spec, path, line, rec_id, row[spec.target_column] or ""))
            split = _flip_split_from_row(path, line, row) if spec.source == "flip" else ""
            out.append((split, ex))
    if not out:
        raise InputError(path, "no data rows")
    return out


def _read_labelled_fasta(spec: TaskSpec, path: str) -> list[tuple[str, Example]]:
    out = []
    if is_dbn_path(path):  # dot-bracket headers are ids only: the label comes from the id
        for r in read_dbn(path):
            value = _label(spec, path, r.line, r.id, r.id)
            out.append(("", Example(r.id, r.sequence.upper(), _target(spec, path, r.line, r.id, value))))
        return out
    for r in read_fasta(path):
        text = f"{r.id} {r.description}".strip()
        value = _label(spec, path, r.line, r.id, text)
        split = _flip_split_from_header(path, r.line, r.id, text) if spec.source == "flip" else ""
        out.append((split, Example(r.id, _seq(r), _target(spec, path, r.line, r.id, value))))
    return out


def _read_sequence_level(spec: TaskSpec) -> dict[str, list[Example] | None]:
    def read(path):
        return _read_csv(spec, path) if _is_csv(path) else _read_labelled_fasta(spec, path)

    if spec.source == "flip":
        rows = read(spec.path)
        return {s: [e for sp, e in rows if sp == s] or None for s in SPLITS}
    return {s: [e for _, e in read(getattr(spec, s))] if getattr(spec, s) else None for s in SPLITS}


# -- per-residue tasks ------------------------------------------------------------------------------------
def _read_per_residue(spec: TaskSpec) -> dict[str, list[Example] | None]:
    # labels first (they carry the split), then the sequences and masks of those ids only
    labelled: dict[str, list[tuple[str, str, int]]] = {s: [] for s in SPLITS}
    files = {"all": spec.path} if spec.source == "flip" else {s: getattr(spec, s) for s in SPLITS}
    for key, path in files.items():
        if not path:
            continue
        for r in read_fasta(path):
            split = (
                _flip_split_from_header(path, r.line, r.id, f"{r.id} {r.description}")
                if key == "all"
                else key
            )
            labelled[split].append((r.id, r.seq.decode("ascii", errors="replace"), r.line))
    wanted = {rid for recs in labelled.values() for rid, _, _ in recs}
    seqs = {r.id: _seq(r) for r in read_fasta(spec.sequences) if r.id in wanted}
    masks = (
        {r.id: r.seq.decode("ascii", errors="replace") for r in read_fasta(spec.mask)} if spec.mask else {}
    )
    out: dict[str, list[Example] | None] = {}
    for split, recs in labelled.items():
        exs = []
        for rid, labels, line in recs:
            label_file = spec.path or getattr(spec, split)
            if rid not in seqs:
                raise InputError(
                    label_file, f"no sequence with this id in {spec.sequences}", line=line, record=rid
                )
            seq = seqs[rid]
            if len(labels) != len(seq):
                raise InputError(
                    label_file,
                    f"{len(labels)} labels for a sequence of {len(seq)} residues",
                    line=line,
                    record=rid,
                )
            mask = masks.get(rid)
            if spec.mask and mask is None:
                raise InputError(spec.mask, "no mask for this id", record=rid)
            if mask is not None and (len(mask) != len(seq) or set(mask) - {"0", "1"}):
                raise InputError(spec.mask, "mask must be one 0/1 per residue", record=rid)
            exs.append(Example(rid, seq, (labels, mask)))
        out[split] = exs or None
    return out


def _finish_targets(data: TaskData) -> None:
    """Turn string labels into class indices (classes seen in train; others get new indices, counted)."""
    kind = data.spec.kind
    if kind == "seq_class":
        classes = sorted({e.target for e in data.splits["train"]})
        index = {c: i for i, c in enumerate(classes)}
        for split, exs in data.splits.items():
            unseen = Counter(e.target for e in exs if e.target not in index)
            for c in sorted(unseen):
                index[c] = len(index)
            if unseen:
                data.counts[split]["label_not_in_train"] = sum(unseen.values())
            for e in exs:
                e.target = index[e.target]
        data.classes = sorted(index, key=index.get)
    elif kind == "per_residue_class":
        alphabet = sorted({ch for e in data.splits["train"] for ch in e.target[0]})
        index = {c: i for i, c in enumerate(alphabet)}
        for split, exs in data.splits.items():
            unseen = 0
            for e in exs:
                labels, mask = e.target
                y = np.array([index.get(ch, -2) for ch in labels], dtype=np.int64)
                unseen += int((y == -2).sum())
                if mask is not None:
                    y[np.frombuffer(mask.encode(), dtype=np.uint8) == ord("0")] = -1
                y[y == -2] = len(alphabet)  # a residue label never seen in train: always wrong
                e.target = y
            if unseen:
                data.counts[split]["residue_labels_not_in_train"] = unseen
        data.classes = alphabet
