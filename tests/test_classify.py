"""Topic names and the classifier a person can call: the trained model's config carries the names
of data.topic_dict, so `pipeline("text-classification")` answers `스포츠`; `newstopic-classify`
on arguments, standard input and files, and on bad input (one line, exit 1)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, TINY_ARCH, copy_workflow, run_snakemake, snakemake_env

from newstopic.config import validate_config
from newstopic.errors import ConfigError, InputError
from newstopic.finetune import initial_classifier
from newstopic.labels import read_topic_dict, topic_names
from newstopic.startup import check_startup

DEMO_NAMES = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]
# Short training: the names and the command are tested, not the accuracy.
FAST = {"mlm": {"epochs": 1}, "finetune": {"epochs": 2}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo work dir with a fine-tuned model (the demo config names data/demo/demo_topic_dict.csv)."""
    wf = copy_workflow(tmp_path_factory.mktemp("classify") / "wf")
    run_snakemake(wf, "results/finetune/model", config=FAST)
    return wf


def classify(wf: Path, *args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
    """`newstopic-classify` as a process (the entry point's function, from this checkout)."""
    cmd = [sys.executable, "-c", "import sys; from newstopic.classify import main; sys.exit(main())", *args]
    text = not isinstance(stdin, bytes)
    return subprocess.run(
        cmd, cwd=wf, env=snakemake_env(), input=stdin, capture_output=True, text=text, timeout=300
    )


# --- topic names --------------------------------------------------------------------------------
def test_pipeline_answers_topic_names(trained: Path) -> None:
    """`pipeline("text-classification", model=dir)` after `import newstopic.model` gives the name."""
    from transformers import AutoConfig, pipeline

    import newstopic.model  # noqa: F401  (registers the model with the Auto classes)

    model_dir = str(trained / "results" / "finetune" / "model")
    config = AutoConfig.from_pretrained(model_dir)
    assert [config.id2label[i] for i in range(7)] == DEMO_NAMES
    assert config.label2id["스포츠"] == 5
    clf = pipeline("text-classification", model=model_dir)
    answers = clf(["시즌 내년 발표 월드컵 종합", "속보 공천 여당 개헌 종합"])
    assert all(a["label"] in DEMO_NAMES and 0 < a["score"] <= 1 for a in answers), answers
    # (The submission keeps Dacon's integer topic_idx: tests/test_report.py checks it on a named run.)


def test_without_names_the_model_answers_ids() -> None:
    cfg = {"name_or_path": None, "trust_remote_code": False, "arch": TINY_ARCH, "pooling": "mean"}
    cfg |= {"dropout": 0.1, "head_hidden_size": 16}
    plain = initial_classifier(None, cfg, vocab_size=50, pad_token_id=0)
    assert plain.config.id2label == {i: str(i) for i in range(7)}
    named = initial_classifier(None, cfg | {"topic_names": DEMO_NAMES}, vocab_size=50, pad_token_id=0)
    assert named.config.id2label[5] == "스포츠" and named.config.label2id["정치"] == 6


def test_topic_names_from_the_config(tmp_path: Path) -> None:
    base = validate_config({})
    assert topic_names(base) is None  # the schema default: ids, as before
    demo = REPO / "data" / "demo" / "demo_topic_dict.csv"
    assert topic_names({**base, "data": {**base["data"], "topic_dict": str(demo)}}) == DEMO_NAMES
    # `labels` wins over the file.
    names = [f"t{i}" for i in range(7)]
    assert topic_names({**base, "labels": names, "data": {"topic_dict": str(demo)}}) == names
    with pytest.raises(ConfigError, match=r"^key 'labels': 2 names, expected 7"):
        topic_names({**base, "labels": ["a", "b"]})
    # The real competition file has the same layout (topic,topic_idx), any row order.
    shuffled = tmp_path / "topic_dict.csv"
    shuffled.write_text(
        "topic,topic_idx\n" + "".join(f"{n},{i}\n" for i, n in reversed(list(enumerate(names))))
    )
    assert read_topic_dict(shuffled) == names


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name,id\nx,0\n", r"line 1: the header must name columns topic,topic_idx"),
        ("topic,topic_idx\na,0\nb,7\n", r"line 3: topic_idx '7' is not one of 0..6"),
        ("topic,topic_idx\na,0\nb,0\n", r"line 3: topic_idx 0 appears twice"),
        ("topic,topic_idx\n" + "".join(f"t{i},{i}\n" for i in range(6)), r"no name for topic_idx 6"),
        (
            "topic,topic_idx\n" + "".join(f"t,{i}\n" for i in range(7)),
            r"topic name 't' \(topic_idx 1\) is used twice",
        ),
        ("topic,topic_idx\n,0\n", r"line 2: empty topic name"),
    ],
)
def test_a_bad_topic_dict_is_one_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "topic_dict.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{path}: {error}"):
        read_topic_dict(path)


def test_a_missing_topic_dict_stops_the_run_at_start_up(tmp_path: Path) -> None:
    cfg = validate_config({})
    cfg["data"] = {**cfg["data"], "train": str(REPO / "data/demo/demo_train.csv")}
    cfg["data"]["test"] = str(REPO / "data/demo/demo_test.csv")
    cfg["data"]["topic_dict"] = str(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"^data.topic_dict: .*nope.csv: file not found$"):
        check_startup(cfg)


# --- newstopic-classify -----------------------------------------------------------------------------
def test_the_entry_point_is_declared() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["newstopic-classify"] == "newstopic.classify:main"
    from newstopic.classify import main

    assert callable(main)


def test_classify_arguments_and_stdin(trained: Path) -> None:
    model = "results/finetune/model"
    titles = ["시즌 내년 발표 월드컵 종합", "참석 금리 투자"]
    out = classify(trained, model, *titles)
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    assert [line[2] for line in lines] == titles
    assert all(line[0] in DEMO_NAMES and 0 < float(line[1]) <= 1 for line in lines)
    assert "Loading" not in out.stderr  # no progress bars between the answers

    piped = classify(trained, model, stdin="\n".join(titles) + "\n\n")  # blank lines are skipped
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == out.stdout  # same headlines, same answers


def test_classify_files_in_chunks(trained: Path) -> None:
    """A CSV and a parquet file, read in chunks smaller than the file: the same answers, the
    input's index kept, one row per headline."""
    test = pd.read_parquet(trained / "results" / "data" / "test.parquet")
    csv_out, pq_out = trained / "out.csv", trained / "out.parquet"
    run = classify(trained, "results/finetune/model", "-i", "data/demo/demo_test.csv", "-o", str(csv_out))
    assert run.returncode == 0, run.stderr
    run = classify(
        trained,
        "results/finetune/model",
        "-i",
        "results/data/test.parquet",
        "-o",
        str(pq_out),
        "--chunk-rows",
        "64",
    )
    assert run.returncode == 0, run.stderr
    a, b = pd.read_csv(csv_out), pd.read_parquet(pq_out)
    assert len(a) == len(b) == len(test)
    assert (a["index"].to_numpy() == test["index"].to_numpy()).all()
    assert set(a["topic"]) <= set(DEMO_NAMES)
    assert (a["topic"].map(DEMO_NAMES.index) == a["topic_idx"]).all()
    assert (a["topic_idx"].to_numpy() == b["topic_idx"].to_numpy()).all()  # chunking changes nothing
    assert ((a["probability"] - b["probability"]).abs() < 1e-5).all()


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["results/nope", "뉴스"], None, r"results/nope: directory not found"),
        (["-i", "missing.csv"], None, r"missing.csv: file not found"),
        (
            ["-i", "data/demo/demo_test.csv", "--column", "headline"],
            None,
            r"no column 'headline' \(columns: index, title\)",
        ),
        (["-i", "bad.csv"], None, r"bad.csv: line 3: empty title"),
        (["-i", "bad.parquet"], None, r"bad.parquet: not a readable parquet file"),
        ([], b"\xff\xfe headline\n", r"<stdin>: not valid UTF-8"),
        (["뉴스", "-o", "out.txt"], None, r"--output out.txt: expected a .csv or .parquet file name"),
    ],
)
def test_bad_input_is_one_line(trained: Path, args: list[str], stdin: bytes | None, error: str) -> None:
    (trained / "bad.csv").write_text("index,title\n1,좋은 소식\n2,\n")
    (trained / "bad.parquet").write_text("not parquet")
    model = [] if args and args[0].startswith("results/") else ["results/finetune/model"]
    run = classify(trained, *model, *args, stdin=stdin)
    stderr = run.stderr.decode() if isinstance(run.stderr, bytes) else run.stderr
    assert run.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newstopic: error: "), stderr
    assert re.search(error, lines[0]), lines[0]
