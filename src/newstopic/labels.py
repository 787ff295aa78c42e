"""Topic names: from the config's `labels` list or a Dacon `topic_dict.csv` (columns topic,
topic_idx). The trained model's config carries them as id2label/label2id, so a pipeline or
the classifier command answers `스포츠` rather than `5`; the submission keeps topic_idx.

Importing this module loads neither torch nor transformers.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from newstopic import NUM_LABELS
from newstopic.errors import ConfigError, InputError


def read_topic_dict(path: str | Path) -> list[str]:
    """The topic names of a topic_dict.csv, in topic_idx order: every id 0..6 once, names
    unique and not empty."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]] if rows else []
    if "topic" not in header or "topic_idx" not in header:
        raise InputError(f"{path}: line 1: the header must name columns topic,topic_idx (found {header})")
    columns = (header.index("topic"), header.index("topic_idx"), len(header))
    names: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if row and "".join(row).strip():  # blank lines are skipped
            topic_idx, name = _topic_row(path, line, row, columns)
            if topic_idx in names:
                raise InputError(f"{path}: line {line}: topic_idx {topic_idx} appears twice")
            names[topic_idx] = name
    return _checked(names_in_order(names, str(path)), str(path))


def _topic_row(path: str | Path, line: int, row: list[str], columns: tuple[int, int, int]) -> tuple[int, str]:
    """(topic_idx, name) of one row of a topic_dict.csv, checked."""
    name_col, id_col, width = columns
    if len(row) != width:
        raise InputError(f"{path}: line {line}: {len(row)} fields, the header has {width}")
    name, raw_id = row[name_col].strip(), row[id_col].strip()
    if not raw_id.isdigit() or int(raw_id) >= NUM_LABELS:
        raise InputError(f"{path}: line {line}: topic_idx {raw_id!r} is not one of 0..{NUM_LABELS - 1}")
    if not name:
        raise InputError(f"{path}: line {line}: empty topic name")
    return int(raw_id), name


def names_in_order(names: Mapping[int, str], source: str) -> list[str]:
    missing = [i for i in range(NUM_LABELS) if i not in names]
    if missing:
        raise InputError(f"{source}: no name for topic_idx {missing[0]} (all {NUM_LABELS} topics need one)")
    return [names[i] for i in range(NUM_LABELS)]


def _checked(names: list[str], source: str) -> list[str]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(f"{source}: topic name {name!r} (topic_idx {i}) is used twice")
        seen.add(name)
    return names


def topic_names(config: Mapping[str, Any]) -> list[str] | None:
    """The run's topic names in topic_idx order: config `labels` when set (it wins over the
    file), else data.topic_dict's, else None (the model answers ids, as before)."""
    labels = config.get("labels")
    if labels is not None:
        if len(labels) != NUM_LABELS:
            raise ConfigError(f"key 'labels': {len(labels)} names, expected {NUM_LABELS} (one per topic_idx)")
        if any(not str(name).strip() for name in labels):
            raise ConfigError("key 'labels': an empty topic name")
        try:
            return _checked([str(name).strip() for name in labels], "key 'labels'")
        except InputError as exc:
            raise ConfigError(str(exc)) from None
    path = config.get("data", {}).get("topic_dict")
    return read_topic_dict(path) if path else None


def id2label(names: list[str] | None) -> dict[int, str]:
    """What a model config's id2label holds: the names, or the ids as text without them."""
    return {i: (names[i] if names else str(i)) for i in range(NUM_LABELS)}


def label_of(names: list[str] | None, topic_idx: int) -> str:
    return names[topic_idx] if names else str(topic_idx)
