"""Load and validate the workflow config against ``config/schema.yaml`` with readable messages."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import yaml

from bioprune.errors import ConfigError

# config/schema.yaml, through the package's link to it (a copy in an installed wheel)
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"


def load_schema(path: os.PathLike | str = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults from the schema and validate. Raises ConfigError listing every problem by key path.

    Values given on the command line (``snakemake --config 'select={rates: [0.9, 0.95]}'``) reach the
    workflow as strings inside nested values; a string where the schema wants a number, integer, boolean
    or null (and no string) is converted first, so every setting can be changed from the command line."""
    schema = schema or load_schema()
    coerce_strings(config, schema)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_key(e)}: {_explain(e)}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


DATA_DIR_FIELD = "{data_dir}"


def expand_data_dir(config: dict) -> list[str]:
    """Replace ``{data_dir}`` in every string of the (validated) config by ``config["data_dir"]``.

    Returns the paths, relative to the data folder, of the values that named it: the real data files the
    run reads, which the download rule fetches when they are missing."""
    data_dir = os.path.normpath(config["data_dir"])
    used: list[str] = []

    def expand(value):
        if isinstance(value, str) and DATA_DIR_FIELD in value:
            rest = value.split(DATA_DIR_FIELD, 1)[1].lstrip("/")
            if value.startswith(DATA_DIR_FIELD) and rest:
                used.append(rest)
            return value.replace(DATA_DIR_FIELD, data_dir)
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        return value

    for key in list(config):
        if key != "data_dir":
            config[key] = expand(config[key])
    return sorted(set(used))


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


_NULLS = ("null", "none", "~", "")
_BOOLS = {"true": True, "false": False, "yes": True, "no": False}


def _types(schema: dict) -> set[str]:
    t = schema.get("type", ())
    return {t} if isinstance(t, str) else set(t)


def _coerced(value: str, types: set[str]):
    """``value`` as the first schema type it parses as, or unchanged (validation then names it)."""
    text = value.strip()
    if "null" in types and text.lower() in _NULLS:
        return None
    if "boolean" in types and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return value


def coerce_strings(instance, schema: dict):
    """Convert, in place, strings that stand for the numbers, booleans and nulls the schema asks for
    (the strings a command-line ``--config`` gives). A key whose schema allows strings is left alone."""
    if not isinstance(schema, dict):
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _coerce_value(value, sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(instance):
            instance[i] = _coerce_value(value, schema["items"])
    return instance


def _coerce_value(value, schema: dict):
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types:
        return _coerced(value, types)
    return coerce_strings(value, schema)
