"""Start-up checks: everything the config names is checked when the workflow is parsed, before
Snakemake builds the DAG, so before it deletes the outputs of a job it is about to rerun.

Why at parse time: Snakemake says "Nothing to be done" about a missing input of a job it does
not need to run (the results made from the old input stand as if made from the new one), and it
deletes a job's old outputs before running it, so an error found inside a job costs what that job
had produced (on the real data, a 38-minute MLM). A check here stops the run with one line, no
job started, nothing deleted.

Three groups, each one line (`NewstopicError`) naming the key or file and what is wrong:

- paths (`PATH_RULES`, one line per config key that names a path): missing, a directory where a
  file belongs or the reverse, a dangling symlink, a symlink loop, unreadable;
- the raw CSVs: parsed and validated as `preprocess` will (`read_raw_csv`), test indices that
  also appear in train;
- trainability: after `preprocess.sample_per_class` and the stratified split, every one of the
  NUM_LABELS topics must keep `MIN_TRAIN_PER_TOPIC` training rows and one valid row.

Cost: one read of each CSV plus a stat/open per path (about 0.2 s on the full 45k-row data),
paid on every `snakemake` call, dry runs and cluster jobs included.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from newstopic import NUM_LABELS
from newstopic.config import looks_like_path
from newstopic.errors import ConfigError, InputError
from newstopic.labels import topic_names
from newstopic.members import check_members
from newstopic.preprocess import read_raw_csv, sample_per_class, stratified_split

# The baseline's Platt calibration is a 3-fold stratified cross-validation on the training rows
# (newstopic.baseline.calibrated_svm): scikit-learn refuses a class with fewer than 3 of them.
MIN_TRAIN_PER_TOPIC = 3
# Every topic is scored on the valid split (a topic absent there would go unmeasured).
MIN_VALID_PER_TOPIC = 1


def _get(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key, None where a level is missing."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _always(config: Mapping[str, Any], value: str) -> bool:
    return True


def _local_model(config: Mapping[str, Any], value: str) -> bool:
    """Whether model.name_or_path names a local directory rather than a hub id.

    The rule newstopic.encoder applies (config.looks_like_path), plus: anything that exists on
    disk is what the hub client loads, so it is checked too (a file named like a hub id would
    fail inside the job).
    """
    return looks_like_path(value) or os.path.lexists(value)


def _vocab_source(config: Mapping[str, Any], value: str) -> bool:
    return _get(config, "tokenizer.source") == "vocab"


@dataclass(frozen=True)
class PathRule:
    """A config key that names a path: what must be there when the key `applies`."""

    key: str
    kind: Literal["file", "dir"]
    applies: Callable[[Mapping[str, Any], str], bool] = _always
    # Files a directory must hold (a model directory without config.json is not a saved model).
    contains: tuple[str, ...] = ()


# One line per config key that names a path; a later feature that adds such a key adds a line.
PATH_RULES: tuple[PathRule, ...] = (
    PathRule("data.train", "file"),
    PathRule("data.test", "file"),
    PathRule("model.name_or_path", "dir", applies=_local_model, contains=("config.json",)),
    PathRule("tokenizer.vocab_file", "file", applies=_vocab_source),
    PathRule("data.topic_dict", "file", applies=lambda config, value: not config.get("labels")),
)


def _kind_problem(mode: int, kind: str) -> str | None:
    if kind == "file":
        if stat.S_ISDIR(mode):
            return "is a directory, expected a file"
        if not stat.S_ISREG(mode):
            return "is not a regular file (a device, pipe or socket), expected a file"
    elif not stat.S_ISDIR(mode):
        return "is a file, expected a directory" if stat.S_ISREG(mode) else "is not a directory"
    return None


def _stat_problem(path: str, kind: str, exc: OSError) -> str:
    """What os.stat's failure means, in words."""
    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if os.path.islink(path):
        return f"dangling symlink (its target {os.readlink(path)} does not exist)"
    if exc.errno == errno.ENOENT:
        # The shell expands ~, YAML does not, and neither do the jobs.
        hint = " (~ is not expanded in the config: write the full path)" if path.startswith("~") else ""
        return f"{kind} not found{hint}"
    if exc.errno == errno.ENOTDIR:
        return f"{kind} not found (a parent of it is not a directory)"
    if exc.errno == errno.EACCES:
        return "cannot be reached (permission denied on a parent directory)"
    return f"cannot be checked ({exc.strerror})"


def path_problem(path: str, kind: Literal["file", "dir"], contains: tuple[str, ...] = ()) -> str | None:
    """What is wrong with `path` as a readable `kind` ("file" or "dir"), or None when it is fine."""
    if not path:
        return "empty path"
    # No ~ expansion: the jobs (pandas, the tokenizer, the hub client) open the path as written.
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a good link to a good file is fine
    except OSError as exc:
        return _stat_problem(path, "directory" if kind == "dir" else "file", exc)
    problem = _kind_problem(mode, kind)
    if problem:
        return problem
    # Readability is tried, not inferred from the mode bits: root reads a mode-000 file, while
    # an ACL or a root-squashed network file system can refuse what the bits allow.
    try:
        if kind == "file":
            with open(path, "rb"):
                pass
        else:
            names = set(os.listdir(path))
    except OSError as exc:
        what = "cannot be read" if kind == "file" else "cannot be listed"
        return f"{what} ({exc.strerror.lower() if exc.strerror else exc})"
    missing = [name for name in contains if name not in names] if kind == "dir" else []
    if missing:
        return f"has no {missing[0]} (not a saved model directory)"
    return None


def check_paths(config: Mapping[str, Any], rules: tuple[PathRule, ...] = PATH_RULES) -> None:
    """Raise ConfigError naming the key, the path and the problem for the first bad path."""
    for rule in rules:
        value = _get(config, rule.key)
        if value is None or not isinstance(value, str) or not rule.applies(config, value):
            continue
        problem = path_problem(value, rule.kind, rule.contains)
        if problem:
            raise ConfigError(f"{rule.key}: {value}: {problem}")
    # The extra encoders of the ensemble (ensemble.encoders.<name>.name_or_path): one key each.
    for name, encoder in config["ensemble"]["encoders"].items():
        value = encoder["name_or_path"]
        if value and _local_model(config, value):
            problem = path_problem(value, "dir", ("config.json",))
            if problem:
                raise ConfigError(f"ensemble.encoders.{name}.name_or_path: {value}: {problem}")


def min_rows_per_topic(valid_fraction: float) -> int:
    """The fewest rows of a topic for which the stratified split keeps MIN_TRAIN_PER_TOPIC
    training rows and MIN_VALID_PER_TOPIC valid rows (the split's own arithmetic, not a copy)."""
    for n in range(1, 10_000):
        tr, va = stratified_split(np.zeros(n, dtype=np.int64), valid_fraction, seed=0)
        if len(tr) >= MIN_TRAIN_PER_TOPIC and len(va) >= MIN_VALID_PER_TOPIC:
            return n
    raise ConfigError(f"key 'preprocess.valid_fraction' ({valid_fraction}) leaves no rows to train on")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def check_trainable(labels: np.ndarray, config: Mapping[str, Any], source: str) -> None:
    """Raise InputError unless every topic keeps enough rows after sampling and the split.

    The model, the baseline and the submission are built for all NUM_LABELS topics, so a topic
    with too few rows is refused here rather than failing (or silently never being predicted)
    in a later rule. `labels` are the train CSV's topic_idx values; `source` names the file.
    """
    prep = config["preprocess"]
    fraction, per_class, seed = prep["valid_fraction"], prep["sample_per_class"], config["seed"]
    need = min_rows_per_topic(fraction)
    raw = np.bincount(labels, minlength=NUM_LABELS)
    rule = (
        f"each of the {NUM_LABELS} topics needs at least {need} rows ({MIN_TRAIN_PER_TOPIC} to train "
        f"on and {MIN_VALID_PER_TOPIC} to validate with preprocess.valid_fraction {fraction})"
    )
    few = [t for t in range(NUM_LABELS) if raw[t] < need]
    if len(few) == 1:
        raise InputError(f"{source}: topic {few[0]} has {_rows(raw[few[0]])}; {rule}")
    if few:
        listed = ", ".join(f"{t} ({_rows(raw[t])})" for t in few)
        raise InputError(f"{source}: too few rows of topics {listed}; {rule}")
    if per_class is not None and per_class < need:
        raise ConfigError(f"key 'preprocess.sample_per_class' ({per_class}) is too small: {rule}")
    # The real split on the real labels (cheap), in case its arithmetic ever changes.
    kept = labels[sample_per_class(labels, per_class, seed)] if per_class else labels
    tr, va = stratified_split(kept, fraction, seed)
    n_train = np.bincount(kept[tr], minlength=NUM_LABELS)
    n_valid = np.bincount(kept[va], minlength=NUM_LABELS)
    short = [t for t in range(NUM_LABELS) if n_train[t] < MIN_TRAIN_PER_TOPIC or n_valid[t] < 1]
    if short:
        t = short[0]
        raise InputError(
            f"{source}: topic {t} splits into {n_train[t]} train and {n_valid[t]} valid rows; {rule}"
        )


def check_data(config: Mapping[str, Any]) -> None:
    """Parse both CSVs as `preprocess` will, and check that the result can be trained on."""
    data = config["data"]
    try:
        train = read_raw_csv(data["train"], labeled=True)
        test = read_raw_csv(data["test"], labeled=False)
    except OSError as exc:  # e.g. the file vanished or lost its permissions since check_paths
        raise InputError(f"{exc.filename}: cannot be read ({exc.strerror})") from None
    overlap = np.intersect1d(train["index"], test["index"])
    if overlap.size:
        # Same words as preprocess(), which checks it again.
        raise InputError(f"{data['test']}: index {overlap[0]} also appears in {data['train']}")
    check_trainable(train["topic_idx"].to_numpy(), config, data["train"])


def check_settings(config: Mapping[str, Any]) -> None:
    """Config values the schema cannot judge and that a job would only trip over later."""
    pattern = config["preprocess"]["remove_pattern"]
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"key 'preprocess.remove_pattern': {pattern!r} is not a valid regular expression ({exc})"
            ) from None


def check_cv(config: Mapping[str, Any]) -> None:
    """Folds and ensemble settings that only make sense together."""
    folds, ensemble = config["cv"]["folds"], config["ensemble"]
    if folds == 1:
        raise ConfigError("key 'cv.folds': 1 fold leaves nothing to train on; use 0 (off) or K >= 2")
    if ensemble["enabled"] and folds < 2:
        raise ConfigError(
            "key 'ensemble.enabled': its weights are fit on out-of-fold predictions; set cv.folds >= 2"
        )
    pseudo = config["pseudo_label"]
    # retrain at an extra seed (retrain@seed7) is retrain too.
    bases = {name.split("@")[0] for name in ensemble["members"]}
    if ensemble["enabled"] and "retrain" in bases and not pseudo["enabled"]:
        raise ConfigError("key 'ensemble.members': retrain is a member but pseudo_label.enabled is false")
    if pseudo["rounds"] >= 2:
        if not (ensemble["enabled"] and pseudo["enabled"]):
            raise ConfigError(
                "key 'pseudo_label.rounds': round r's teacher is round r-1's ensemble; "
                "set pseudo_label.enabled and ensemble.enabled (with cv.folds >= 2)"
            )
        if bases == {"retrain"}:
            raise ConfigError(
                "key 'ensemble.members': with pseudo_label.rounds >= 2 round 0's ensemble needs "
                "a member other than retrain (finetune or baseline)"
            )
    check_members(config)


def check_startup(config: Mapping[str, Any]) -> None:
    """Every start-up check, cheapest first; `config` is validated with defaults filled in.

    Raises a NewstopicError (one line) at the first problem. Called from workflow/rules/common.smk.
    """
    check_settings(config)
    check_cv(config)
    check_paths(config)
    topic_names(config)  # the labels list or the topic_dict file, parsed as the rules will
    check_data(config)
