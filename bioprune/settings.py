"""Settings written once: every default is in ``config/schema.yaml``; the dataclasses that carry settings
and the command-line flags of the steps are derived from it here (torch-free).

A setting that has a config key takes its default, type and allowed values from the schema, so the
workflow, ``bioprune <step> --help`` and a dataclass built in Python cannot disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import cache

from bioprune.cli import seed
from bioprune.config import load_schema

_TYPES = {"number": float, "integer": int, "string": str, "boolean": bool}


@cache
def _schema() -> dict:
    return load_schema()


def schema_property(section: str, key: str) -> dict:
    """The schema entry of config key ``section.key``."""
    return _schema()["properties"][section]["properties"][key]


def default(section: str, key: str):
    """The schema default of ``section.key`` (KeyError when it has none: every setting must have one)."""
    return schema_property(section, key)["default"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option(group, cls, name: str, help: str, section: str) -> None:
    """Add ``--name`` to ``group``: default from ``cls`` (a dataclass whose default is the schema's),
    type and choices from the schema entry ``section.name``."""
    prop = schema_property(section, name)
    types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    kind = _TYPES[next(t for t in types if t != "null")]
    d = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    kwargs = {"default": d, "help": f"{help} (default {'none' if d is None else '%(default)s'})"}
    if "enum" in prop:
        kwargs["choices"] = [c for c in prop["enum"] if c is not None]
    elif name.endswith("seed"):
        kwargs["type"] = seed
    else:
        kwargs["type"] = kind
    group.add_argument(flag(name), **kwargs)


def from_args(cls, args: argparse.Namespace):
    """An instance of dataclass ``cls`` from the parsed flags of its fields (others keep their default)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def options(values: dict, names) -> list[str]:
    """``--flag value`` for each of ``names`` whose value is not None (a rule's command-line pieces)."""
    return [f"{flag(n)} {values[n]}" for n in names if values[n] is not None]
