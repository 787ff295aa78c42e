"""Start-up checks (newstopic.startup) and `--config` coercion (newstopic.config.coerce_overrides).

Unit tests of the checks, then a table of bad configurations run through real `snakemake` in a
workdir that holds a finished demo run: each exits != 0 with exactly one `newstopic: error:` line,
no job runs, every output and Snakemake's metadata are unchanged, and a dry run with the original
config afterwards has nothing to do.

"Unreadable" is tested for real: as root (who reads a mode-000 file) Snakemake runs under
`setpriv` without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH); as another user plain mode 000 does it. The unit test also simulates it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, run_snakemake, snakemake_env

from newstopic import NUM_LABELS, startup
from newstopic.baseline import tfidf_svm_baseline
from newstopic.config import coerce_overrides, deep_merge, validate_config
from newstopic.errors import ConfigError, InputError
from newstopic.preprocess import preprocess
from newstopic.startup import PathRule, check_paths, check_startup, min_rows_per_topic, path_problem

# --- paths ---------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Every kind of path the checks tell apart."""
    (tmp_path / "file.csv").write_text("x\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "link_to_file").symlink_to("file.csv")
    (tmp_path / "link_to_dir").symlink_to("model")
    (tmp_path / "dangling").symlink_to("nowhere.csv")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "loop_a").symlink_to("loop_b")
    (tmp_path / "loop_b").symlink_to("loop_a")
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


PATH_CASES = [
    ("file.csv", "file", None),
    ("link_to_file", "file", None),
    ("model", "dir", None),
    ("link_to_dir", "dir", None),
    ("missing.csv", "file", "file not found"),
    ("missing_dir/x.csv", "file", "file not found"),
    ("missing_model", "dir", "directory not found"),
    ("file.csv/x.csv", "file", "file not found (a parent of it is not a directory)"),
    ("dangling", "file", "dangling symlink (its target nowhere.csv does not exist)"),
    ("loop", "file", "symlink loop (too many levels of symbolic links)"),
    ("loop_a", "dir", "symlink loop (too many levels of symbolic links)"),
    ("dir", "file", "is a directory, expected a file"),
    ("file.csv", "dir", "is a file, expected a directory"),
    ("fifo", "file", "is not a regular file (a device, pipe or socket), expected a file"),
    ("dir", "dir", "has no config.json (not a saved model directory)"),
    ("", "file", "empty path"),
]


@pytest.mark.parametrize(
    "name,kind,problem", PATH_CASES, ids=[f"{n or 'empty'}-{k}" for n, k, _ in PATH_CASES]
)
def test_path_problem(tree: Path, name: str, kind: str, problem: str | None) -> None:
    path = str(tree / name) if name else ""
    contains = ("config.json",) if kind == "dir" else ()
    assert path_problem(path, kind, contains) == problem  # type: ignore[arg-type]


def test_unreadable_is_reported_simulated(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What open() / listdir() refuse, whatever the mode bits say (root reads mode 000)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(startup, "open", refuse, raising=False)
    monkeypatch.setattr(startup.os, "listdir", refuse)
    assert path_problem(str(tree / "file.csv"), "file") == "cannot be read (permission denied)"
    assert path_problem(str(tree / "model"), "dir") == "cannot be listed (permission denied)"


def test_path_rules_apply_only_where_the_key_names_a_local_path(tmp_path: Path) -> None:
    cfg = validate_config({})
    check_paths(cfg)  # the demo defaults: both CSVs exist, no model, tokenizer trained

    hub = deep_merge(cfg, {"model": {"name_or_path": "klue/roberta-base"}})
    check_paths(hub)  # a hub id is not a path

    tilde = "~/no/such/model"
    with pytest.raises(
        ConfigError, match=r"directory not found \(~ is not expanded in the config: write the full"
    ):
        check_paths(deep_merge(cfg, {"model": {"name_or_path": tilde}}))
    for local in ("./models/kcbert", str(tmp_path / "kcbert"), "a/b/c"):
        bad = deep_merge(cfg, {"model": {"name_or_path": local}})
        with pytest.raises(
            ConfigError, match=rf"^model.name_or_path: {re.escape(local)}: directory not found$"
        ):
            check_paths(bad)

    vocab = str(tmp_path / "vocab.txt")
    check_paths(deep_merge(cfg, {"tokenizer": {"vocab_file": vocab}}))  # source: train ignores it
    with pytest.raises(ConfigError, match=rf"^tokenizer.vocab_file: {re.escape(vocab)}: file not found$"):
        check_paths(deep_merge(cfg, {"tokenizer": {"source": "vocab", "vocab_file": vocab}}))


def test_a_new_path_key_is_one_more_rule(tmp_path: Path) -> None:
    rules = (*startup.PATH_RULES, PathRule("extra.lexicon", "file"))
    cfg = {**validate_config({}), "extra": {"lexicon": str(tmp_path / "lexicon.txt")}}
    with pytest.raises(ConfigError, match=r"^extra.lexicon: .*lexicon.txt: file not found$"):
        check_paths(cfg, rules)


# --- trainability --------------------------------------------------------------------------------


def write_train(path: Path, counts: list[int]) -> Path:
    """A train CSV with counts[t] distinct titles of topic t."""
    rows, i = [], 0
    for topic, n in enumerate(counts):
        for _ in range(n):
            rows.append(f"{i},주제{topic} 단어{topic} 기사 {i},{topic}\n")
            i += 1
    path.write_text("index,title,topic_idx\n" + "".join(rows), encoding="utf-8")
    return path


def data_config(tmp_path: Path, counts: list[int], **prep: Any) -> dict[str, Any]:
    train = write_train(tmp_path / "train.csv", counts)
    test = tmp_path / "test.csv"
    test.write_text("index,title\n" + "".join(f"{9000 + i},시험 기사 {i}\n" for i in range(5)))
    return validate_config({"data": {"train": str(train), "test": str(test)}, "preprocess": prep})


@pytest.mark.parametrize(
    "fraction,need", [(0.1, 4), (0.15, 4), (0.5, 5), (0.9, 25)], ids=["0.1", "0.15", "0.5", "0.9"]
)
def test_min_rows_per_topic(fraction: float, need: int) -> None:
    assert min_rows_per_topic(fraction) == need


TRAINABLE_CASES = [
    ([4] * 7, {}, None),
    ([4] * 6 + [0], {}, r"train.csv: topic 6 has 0 rows; each of the 7 topics needs at least 4 rows"),
    ([4] * 6 + [3], {}, r"train.csv: topic 6 has 3 rows; each of the 7 topics needs at least 4 rows"),
    ([4] * 6 + [1], {}, r"train.csv: topic 6 has 1 row; each of the 7 topics needs at least 4 rows"),
    (
        [1, 1, 1, 0, 0, 0, 0],
        {},
        r"train.csv: too few rows of topics 0 \(1 row\), 1 \(1 row\), 2 \(1 row\), 3 \(0 rows\), "
        r".*6 \(0 rows\)",
    ),
    ([30] * 7, {"sample_per_class": 3}, r"^key 'preprocess.sample_per_class' \(3\) is too small: each of"),
    (
        [20] * 7,
        {"valid_fraction": 0.9},
        r"topics 0 \(20 rows\).*needs at least 25 rows \(3 to train on and 1 to validate with "
        r"preprocess.valid_fraction 0.9\)",
    ),
    ([25] * 7, {"valid_fraction": 0.9}, None),
]


@pytest.mark.parametrize(
    "counts,prep,error",
    TRAINABLE_CASES,
    ids=["minimum", "absent", "rare", "single", "3 rows", "sampled", "fraction", "25"],
)
def test_trainability(tmp_path: Path, counts: list[int], prep: dict, error: str | None) -> None:
    cfg = data_config(tmp_path, counts, **prep)
    if error is None:
        check_startup(cfg)
        return
    with pytest.raises((InputError, ConfigError)) as info:
        check_startup(cfg)
    assert "\n" not in str(info.value)
    assert re.search(error, str(info.value)), str(info.value)


def test_the_minimum_really_trains(tmp_path: Path) -> None:
    """The rule is not arbitrary: with the minimum per topic the split and the baseline (its
    3-fold calibration is the strictest consumer) run; one row fewer is what they refuse."""
    cfg = data_config(tmp_path, [min_rows_per_topic(0.15)] * NUM_LABELS, valid_fraction=0.15)
    check_startup(cfg)
    splits = {name: str(tmp_path / f"{name}.parquet") for name in ("train", "valid", "test")}
    counts = preprocess(cfg["data"]["train"], cfg["data"]["test"], splits, section=cfg["preprocess"], seed=42)
    assert counts == {"train": 3 * NUM_LABELS, "valid": NUM_LABELS, "test": 5}
    outputs = {name: str(tmp_path / name) for name in ("metrics", "submission", "test_probs")}
    metrics = tfidf_svm_baseline(splits, outputs, section=cfg["baseline"])
    assert metrics["train_rows"] == 3 * NUM_LABELS


def test_test_index_also_in_train_is_caught_at_start_up(tmp_path: Path) -> None:
    cfg = data_config(tmp_path, [4] * 7)
    Path(cfg["data"]["test"]).write_text("index,title\n3,겹치는 기사\n")
    with pytest.raises(InputError, match=r"test.csv: index 3 also appears in .*train.csv$"):
        check_startup(cfg)


def test_invalid_remove_pattern(tmp_path: Path) -> None:
    cfg = data_config(tmp_path, [4] * 7)
    cfg["preprocess"]["remove_pattern"] = "[가-힣"
    with pytest.raises(
        ConfigError, match=r"^key 'preprocess.remove_pattern': '\[가-힣' is not a valid regular"
    ):
        check_startup(cfg)


# --- --config coercion ---------------------------------------------------------------------------


def cli(config: dict[str, Any]) -> dict[str, Any]:
    """What Snakemake makes of --config: the merged config and the override itself."""
    return coerce_overrides(deep_merge(validate_config({}), config), config)


def test_nested_values_from_the_command_line_get_their_schema_type() -> None:
    out = cli(
        {
            "finetune": {"epochs": "2", "lr": "1e-4", "head_lr": "null", "seed": "7"},
            "retrain": {"epochs": "0.5"},
            "model": {"trust_remote_code": "true", "name_or_path": "null", "arch": {"hidden_size": "32"}},
            "resources": {"finetune": {"gpus": "2", "gpu_model": "a100"}},
            "pseudo_label": {"teachers": ["finetune", "baseline"], "soft": "False"},
            "data": {"train": "123"},  # a string key stays a string
        }
    )
    assert out["finetune"]["epochs"] == 2 and isinstance(out["finetune"]["epochs"], int)
    assert out["finetune"]["lr"] == 1e-4 and out["finetune"]["head_lr"] is None
    assert out["finetune"]["seed"] == 7 and out["retrain"]["epochs"] == 0.5
    assert out["model"]["trust_remote_code"] is True and out["model"]["name_or_path"] is None
    assert out["model"]["arch"]["hidden_size"] == 32
    assert out["resources"]["finetune"] == {**out["resources"]["finetune"], "gpus": 2, "gpu_model": "a100"}
    assert out["pseudo_label"]["soft"] is False and out["pseudo_label"]["teachers"] == [
        "finetune",
        "baseline",
    ]
    assert out["data"]["train"] == "123"
    validate_config(out)


@pytest.mark.parametrize(
    "override,error",
    [
        ({"finetune": {"epochs": "two"}}, "key 'finetune.epochs' must be of type number, got str 'two'"),
        (
            {"finetune": {"batch_size": "2.5"}},
            "key 'finetune.batch_size' must be of type integer, got str '2.5'",
        ),
        ({"finetune": {"epochs": "nan"}}, "key 'finetune.epochs' must be of type number, got str 'nan'"),
        ({"model": {"trust_remote_code": "1"}}, "key 'model.trust_remote_code' must be of type boolean"),
        ({"finetune": {"epoch": "2"}}, "unknown key 'finetune.epoch' (did you mean 'epochs'?)"),
    ],
    ids=["word", "fraction for integer", "nan", "number for boolean", "unknown key"],
)
def test_what_does_not_parse_stays_a_one_line_error(override: dict, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(cli(override))
    assert error in str(info.value) and "\n" not in str(info.value)


def test_only_command_line_strings_are_converted() -> None:
    """A quoted "2" in a config file is what its author wrote: still an error."""
    merged = deep_merge(validate_config({}), {"finetune": {"epochs": "2"}, "retrain": {"epochs": "3"}})
    out = coerce_overrides(merged, {"retrain": {"epochs": "3"}})
    assert out["finetune"]["epochs"] == "2" and out["retrain"]["epochs"] == 3


# --- through the real workflow -------------------------------------------------------------------

# The demo, smaller and shorter: the finished run every case starts from (about 40 s).
BASE = {
    "preprocess": {"sample_per_class": 20, "test_sample": 20},
    "mlm": {"epochs": 1},
    "finetune": {"epochs": 1},
    "retrain": {"epochs": 1},
}
NOTHING_TO_DO = "Nothing to be done (all requested files are present and up to date)."
NEED = (
    "each of the 7 topics needs at least 4 rows "
    "(3 to train on and 1 to validate with preprocess.valid_fraction 0.15)"
)


def make_inputs(wd: Path) -> None:
    """The bad (and good) inputs the cases point at, next to the demo data."""
    data = wd / "data"
    demo = pd.read_csv(data / "demo" / "demo_train.csv", dtype=str)
    topic = demo["topic_idx"].astype(int)
    demo.head(3).to_csv(data / "three.csv", index=False)
    demo[topic != 6].to_csv(data / "no6.csv", index=False)
    demo[(topic != 6) | (topic.groupby(topic).cumcount() < 3)].to_csv(data / "rare6.csv", index=False)
    (data / "header_only_test.csv").write_text("index,title\n")
    (data / "overlap_test.csv").write_text(f"index,title\n{demo['index'].iat[0]},겹치는 기사\n")
    (data / "dangling.csv").symlink_to("nowhere.csv")
    (data / "loop.csv").symlink_to("loop.csv")
    (data / "good_link.csv").symlink_to("demo/demo_train.csv")
    shutil.copy(data / "demo" / "demo_train.csv", data / "unreadable.csv")
    (data / "unreadable.csv").chmod(0)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = copy_workflow(tmp_path_factory.mktemp("startup") / "wf")
    run_snakemake(wd, config=BASE)
    assert (wd / "results" / "submission.csv").is_file()
    make_inputs(wd)
    return wd


def state(wd: Path) -> dict[str, tuple[str, int]]:
    """Content and mtime of every output, log, benchmark and Snakemake record (not its own logs)."""
    roots = [wd / "results", wd / "logs", wd / "benchmarks", wd / ".snakemake" / "metadata"]
    return {
        str(p.relative_to(wd)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def without_file_permissions() -> list[str]:
    """A command prefix under which a mode-000 file cannot be read (see the module docstring)."""
    if os.geteuid() != 0:
        return []
    drop = "-dac_override,-dac_read_search"
    prefix = ["setpriv", "--bounding-set", drop, "--inh-caps", drop]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
    return prefix


@dataclass(frozen=True)
class E2E:
    id: str
    line: str  # the error line after "newstopic: error: " (a regex when it starts with ^)
    overlay: dict[str, Any] = field(default_factory=dict)  # merged over BASE in a config file
    cli: tuple[str, ...] = ()  # --config entries
    unprivileged: bool = False


E2E_CASES = [
    E2E("train missing", "data.train: data/nope.csv: file not found", {"data": {"train": "data/nope.csv"}}),
    E2E("test missing", "data.test: data/nope.csv: file not found", {"data": {"test": "data/nope.csv"}}),
    E2E(
        "train in a missing directory",
        "data.train: nowhere/train.csv: file not found",
        {"data": {"train": "nowhere/train.csv"}},
    ),
    E2E(
        "train under a file",
        "data.train: data/demo/demo_train.csv/x: file not found (a parent of it is not a directory)",
        {"data": {"train": "data/demo/demo_train.csv/x"}},
    ),
    E2E(
        "train dangling symlink",
        "data.train: data/dangling.csv: dangling symlink (its target nowhere.csv does not exist)",
        {"data": {"train": "data/dangling.csv"}},
    ),
    E2E(
        "train symlink loop",
        "data.train: data/loop.csv: symlink loop (too many levels of symbolic links)",
        {"data": {"train": "data/loop.csv"}},
    ),
    E2E(
        "train is a directory",
        "data.train: data/demo: is a directory, expected a file",
        {"data": {"train": "data/demo"}},
    ),
    E2E(
        "train unreadable",
        "data.train: data/unreadable.csv: cannot be read (permission denied)",
        {"data": {"train": "data/unreadable.csv"}},
        unprivileged=True,
    ),
    E2E(
        "model directory missing",
        "model.name_or_path: ./models/kcbert: directory not found",
        {"model": {"name_or_path": "./models/kcbert"}},
    ),
    E2E(
        "model path is a file",
        "model.name_or_path: data/demo/demo_train.csv: is a file, expected a directory",
        {"model": {"name_or_path": "data/demo/demo_train.csv"}},
    ),
    E2E(
        "model directory without config.json",
        "model.name_or_path: ./data/demo: has no config.json (not a saved model directory)",
        {"model": {"name_or_path": "./data/demo"}},
    ),
    E2E(
        "vocab file missing",
        "tokenizer.vocab_file: data/vocab.txt: file not found",
        {"tokenizer": {"source": "vocab", "vocab_file": "data/vocab.txt"}},
    ),
    E2E(
        "vocab file is a directory",
        "tokenizer.vocab_file: data/demo: is a directory, expected a file",
        {"tokenizer": {"source": "vocab", "vocab_file": "data/demo"}},
    ),
    E2E(
        "train with 3 rows",
        r"^data/three.csv: too few rows of topics 0 \(0 rows\), .*; " + re.escape(NEED) + "$",
        {"data": {"train": "data/three.csv"}},
    ),
    E2E("topic absent", f"data/no6.csv: topic 6 has 0 rows; {NEED}", {"data": {"train": "data/no6.csv"}}),
    E2E(
        "topic too rare", f"data/rare6.csv: topic 6 has 3 rows; {NEED}", {"data": {"train": "data/rare6.csv"}}
    ),
    E2E(
        "sample_per_class too small",
        f"key 'preprocess.sample_per_class' (3) is too small: {NEED}",
        {"preprocess": {"sample_per_class": 3}},
    ),
    E2E(
        "valid_fraction leaves too few to train on",
        "key 'preprocess.sample_per_class' (20) is too small: each of the 7 topics needs at least 25 rows "
        "(3 to train on and 1 to validate with preprocess.valid_fraction 0.9)",
        {"preprocess": {"valid_fraction": 0.9}},
    ),
    E2E(
        "test file with no rows",
        "data/header_only_test.csv: no data rows (header only)",
        {"data": {"test": "data/header_only_test.csv"}},
    ),
    E2E(
        "test index also in train",
        "data/overlap_test.csv: index 0 also appears in data/demo/demo_train.csv",
        {"data": {"test": "data/overlap_test.csv"}},
    ),
    E2E(
        "remove_pattern not a regex",
        r"^key 'preprocess.remove_pattern': '\[' is not a valid regular expression \(.*\)$",
        {"preprocess": {"remove_pattern": "["}},
    ),
    E2E(
        "nested --config not a number",
        "config: key 'finetune.epochs' must be of type number, got str 'two'",
        cli=("finetune={epochs: two}",),
    ),
    E2E(
        "nested --config not a boolean",
        "config: key 'model.trust_remote_code' must be of type boolean, got str 'maybe'",
        cli=("model={trust_remote_code: maybe}",),
    ),
    E2E(
        "--config path missing",
        "data.train: data/nope.csv: file not found",
        cli=("data={train: data/nope.csv}",),
    ),
]


def snakemake_cmd(wd: Path, case: E2E) -> list[str]:
    overlay = wd / "case_overlay.yaml"
    overlay.write_text(yaml.safe_dump(deep_merge(BASE, case.overlay), allow_unicode=True))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--configfile",
        "config/config.yaml",
        str(overlay),
    ]
    if case.cli:
        cmd += ["--config", *case.cli]
    return cmd


@pytest.mark.e2e
@pytest.mark.parametrize("case", E2E_CASES, ids=[c.id for c in E2E_CASES])
def test_bad_config_stops_before_any_job(finished: Path, case: E2E) -> None:
    before = state(finished)
    prefix = without_file_permissions() if case.unprivileged else []
    proc = subprocess.run(
        [*prefix, *snakemake_cmd(finished, case)],
        cwd=finished,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    lines = [line for line in output.splitlines() if line.startswith("newstopic: error: ")]
    assert len(lines) == 1, output
    message = lines[0].removeprefix("newstopic: error: ")
    if case.line.startswith("^"):
        assert re.search(case.line, message), message
    else:
        assert message == case.line
    assert "Traceback" not in output
    assert NOTHING_TO_DO not in output and "Building DAG" not in output  # stopped at parse time
    assert state(finished) == before  # nothing deleted, rewritten or recorded

    # Back to the good config: the earlier results still stand, nothing to redo.
    again = run_snakemake(finished, "-n", config=BASE)
    assert NOTHING_TO_DO in again.stdout + again.stderr


@pytest.mark.e2e
def test_good_alternatives_pass_the_checks(finished: Path) -> None:
    """Neighbours that are fine: a symlink to a good file; nested --config numbers and booleans,
    converted to the schema's type (equal values leave nothing to do, a new one reruns finetune)."""
    link = run_snakemake(finished, "-n", config=deep_merge(BASE, {"data": {"train": "data/good_link.csv"}}))
    assert "newstopic: error" not in link.stdout + link.stderr

    same = run_snakemake(
        finished, "-n", "--config", "model={trust_remote_code: false}", "finetune={lr: 1.0e-3}", config=BASE
    )
    assert NOTHING_TO_DO in same.stdout + same.stderr

    new = run_snakemake(finished, "-n", "--config", "finetune={epochs: 2}", config=BASE)
    output = new.stdout + new.stderr
    assert "params have changed since last execution:\n        finetune" in output, output
    assert re.search(r"^rule finetune:", output, re.M)
