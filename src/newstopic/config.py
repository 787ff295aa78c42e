"""Config validation against the schema (config.schema.yaml, shipped in this package;
workflow/schemas/config.schema.yaml links to it, where Snakemake workflows keep theirs),
defaults filled in.

Errors are one line naming the key: an unknown (e.g. misspelt) key, a value of the wrong
type or out of range.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from newstopic.errors import ConfigError

SCHEMA = "config.schema.yaml"


def looks_like_path(name_or_path: str) -> bool:
    """Whether model.name_or_path reads as a local path rather than a hub id ("org/name"): a
    path-like name that does not exist is a typo, not something to ask the hub for."""
    return name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, nested dicts merged key by key (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in extra.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = deep_merge(out[key], value) if both_dicts else value
    return out


def _with_defaults(validator_class: type) -> type:
    """A validator that fills in `default` values while it validates (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The config schema: package data, so that a plain (not editable) install finds it."""
    source = resources.files("newstopic") / SCHEMA if path is None else Path(path)
    return yaml.safe_load(source.read_text(encoding="utf-8"))


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        parts = []
        for name in extra:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            full = f"{key}.{name}" if error.absolute_path else name
            parts.append(f"unknown key '{full}'{hint}")
        return "; ".join(parts) + f"; allowed here: {', '.join(allowed)}"
    if error.validator == "type":
        return (
            f"key '{key}' must be of type {error.validator_value}, "
            f"got {type(error.instance).__name__} {error.instance!r}"
        )
    if error.validator == "enum":
        return f"key '{key}' must be one of {error.validator_value}, got {error.instance!r}"
    return f"key '{key}': {error.message}"


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None, source: str = "config"
) -> dict[str, Any]:
    """Return a validated deep copy of `config` with every default filled in.

    Raises ConfigError with one line naming the offending key.
    """
    schema = load_schema() if schema is None else schema
    filled = copy.deepcopy(dict(config))
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), str(e.path)))
    if errors:
        raise ConfigError(f"{source}: {_describe(errors[0], schema)}")
    _check_consistency(filled, source)
    return filled


def _check_consistency(cfg: dict[str, Any], source: str) -> None:
    """Rules that a JSON schema cannot say simply."""
    tok = cfg["tokenizer"]
    if tok["source"] == "vocab" and not tok.get("vocab_file"):
        raise ConfigError(
            f"{source}: key 'tokenizer.vocab_file' is required when tokenizer.source is 'vocab'"
        )
    if tok["source"] == "pretrained" and not cfg["model"].get("name_or_path"):
        raise ConfigError(
            f"{source}: key 'model.name_or_path' is required when tokenizer.source is 'pretrained'"
        )
    arch = cfg["model"]["arch"]
    if arch["hidden_size"] % arch["num_attention_heads"]:
        raise ConfigError(
            f"{source}: key 'model.arch.hidden_size' ({arch['hidden_size']}) must be divisible "
            f"by model.arch.num_attention_heads ({arch['num_attention_heads']})"
        )

    for rule, res in cfg["resources"].items():
        procs = res.get("processes")
        if res["gpus"] and procs is not None and procs != res["gpus"]:
            raise ConfigError(
                f"{source}: key 'resources.{rule}.processes' ({procs}) must equal "
                f"resources.{rule}.gpus ({res['gpus']}): one training process per GPU"
            )


def _subschema(schema: Mapping[str, Any], root: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The schema of property `key` of an object schema, local `$ref`s resolved."""
    sub = schema.get("properties", {}).get(key)
    if not isinstance(sub, Mapping):
        return None
    while "$ref" in sub:  # "#/$defs/training"; siblings such as `default` stay
        target: Any = root
        for part in sub["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        sub = {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


def _coerce_scalar(value: str, types: list[str]) -> Any:
    """`value` read as a config file would read it, when the result is one of `types`;
    else `value` unchanged (validation then reports it in one line)."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if parsed is None and "null" in types:
        return None
    if isinstance(parsed, bool):
        return parsed if "boolean" in types else value
    if isinstance(parsed, int) and ("integer" in types or "number" in types):
        return parsed
    if "number" in types:
        # YAML 1.1 reads 1e-4 (no dot) as a string; a config value of 1e-4 is a number.
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def coerce_overrides(
    config: Mapping[str, Any], overrides: Mapping[str, Any], schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A deep copy of `config` in which the strings that came from `--config` (`overrides`,
    Snakemake's workflow.config_settings.config) are converted to their key's schema type.

    Snakemake reads a nested `--config 'finetune={epochs: 2}'` with YAML's BaseLoader, which
    makes every scalar a string; top-level values are already typed. Only strings at keys the
    command line set are converted (a quoted "2" in a config file stays an error), and only when
    they parse as the type (integer, number, boolean, null); anything else is left for
    validate_config to report.
    """
    schema = load_schema() if schema is None else schema
    out = copy.deepcopy(dict(config))

    def walk(target: Any, given: Any, sub: Mapping[str, Any] | None) -> Any:
        if sub is None:
            return target  # an unknown key: validation names it
        if isinstance(given, Mapping) and isinstance(target, dict):
            for key, value in given.items():
                if key in target:
                    target[key] = walk(target[key], value, _subschema(sub, schema, key))
            return target
        if isinstance(given, list) and isinstance(target, list) and isinstance(sub.get("items"), Mapping):
            return [walk(t, g, sub["items"]) for t, g in zip(target, given, strict=False)]
        if isinstance(given, str) and target == given:
            types = sub.get("type", [])
            return _coerce_scalar(given, [types] if isinstance(types, str) else list(types))
        return target

    return walk(out, overrides, schema)


def load_config(path: str | Path, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return validate_config(raw, schema, source=str(path))
