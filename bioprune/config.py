"""Load and validate the workflow config against ``config/schema.yaml`` with readable messages."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import yaml

from bioprune.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


def load_schema(path: os.PathLike | str = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults from the schema and validate. Raises ConfigError listing every problem by key path."""
    schema = schema or load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_key(e)}: {_explain(e)}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


def _key(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    desc = error.schema.get("description") if isinstance(error.schema, dict) else None
    msg = error.message
    return f"{msg} ({desc})" if desc else msg


def _with_defaults(validator_cls):
    """A validator that also writes each property's schema default into the instance (as Snakemake does)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
