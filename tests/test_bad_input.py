"""Bad input never corrupts: each case exits with one line naming the file and the row, or
the config key, and what is wrong, and nothing produced before is deleted or altered. The
cases that are legitimate input (a UTF-8 byte-order mark, CRLF line ends, the headline
"NaN", a 1 MB title) are accepted.

What counts as an empty title: a CSV has no NaN, only empty fields. An empty (or blank)
title field is an error; the text "NaN" is a headline like any other and is kept as is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from newstopic.config import load_config, validate_config
from newstopic.data import encode
from newstopic.encoder import encoder_from_pretrained, mlm_from_config, mlm_from_pretrained
from newstopic.errors import ConfigError, InputError
from newstopic.formats import read_split
from newstopic.model import build_classifier
from newstopic.predict import predict_parquet
from newstopic.preprocess import preprocess
from newstopic.tokenization import train_wordpiece, wordpiece_from_vocab

HEADER = "index,title,topic_idx\n"
ROWS = "".join(f"{i},제목 {i} 경제 증시 뉴스,{i % 7}\n" for i in range(10, 24))
GOOD_TRAIN = (HEADER + ROWS).encode()
GOOD_TEST = ("index,title\n" + "".join(f"{i},시험 제목 {i}\n" for i in range(100, 105))).encode()
SPLITS = ("train", "valid", "test")
SECTION = {"valid_fraction": 0.2, "remove_pattern": None, "sample_per_class": None, "test_sample": None}
MEGA_TITLE = "가나다라 마바사 " * 80_000  # ~1 MB of UTF-8


@dataclass(frozen=True)
class Case:
    id: str
    train: bytes | None  # None: the file does not exist
    error: str | None  # regex of the message; None: accepted
    test: bytes = GOOD_TEST
    bad_file: str = "train.csv"  # the file the message must name
    check: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None  # for accepted cases


def _titles_are(expected: set[str]) -> Callable[[pd.DataFrame, pd.DataFrame], None]:
    def check(train: pd.DataFrame, _test: pd.DataFrame) -> None:
        assert expected <= set(train["title_raw"])

    return check


def _no_carriage_returns(train: pd.DataFrame, test: pd.DataFrame) -> None:
    for df in (train, test):
        assert not df["title_raw"].str.contains("\r").any()
    assert sorted(train["topic_idx"].unique()) == list(range(7))


def _mega_title_kept(train: pd.DataFrame, _test: pd.DataFrame) -> None:
    assert train["title_raw"].str.len().max() == len(MEGA_TITLE)


CSV_CASES = [
    Case("missing file", None, r"file not found"),
    Case("missing column", b"index,title\n10,a\n", r"missing column 'topic_idx'"),
    Case(
        "extra unnamed column (trailing commas)",
        HEADER.replace("\n", ",\n").encode() + b"10,a,1,\n",
        r"unexpected column '<unnamed>'",
    ),
    Case(
        "extra unnamed column (pandas index)",
        b",index,title,topic_idx\n0,10,a,1\n",
        r"unexpected column '<unnamed>'",
    ),
    Case("extra named column", b"index,title,topic_idx,date\n10,a,1,2020\n", r"unexpected column 'date'"),
    Case("header only", HEADER.encode(), r"no data rows \(header only\)"),
    Case("empty file", b"", r"file is empty"),
    Case("blank file", b"\n  \n\n", r"file is empty"),
    Case("empty title", (HEADER + "10,a,1\n11,,2\n").encode(), r"row 2 \(line 3, index='11'\): empty title"),
    Case(
        "blank title", (HEADER + "10,a,1\n11, \t ,2\n").encode(), r"row 2 \(line 3, index='11'\): empty title"
    ),
    Case(
        "the headline NaN is text",
        GOOD_TRAIN + b"24,NaN,1\n25,nan,2\n",
        None,
        check=_titles_are({"NaN", "nan"}),
    ),
    Case(
        "label not an integer",
        (HEADER + "10,a,1\n11,b,sports\n").encode(),
        r"row 2 .*topic_idx 'sports' is not an integer",
    ),
    Case("label a fraction", (HEADER + "10,a,2.5\n").encode(), r"row 1 .*topic_idx '2.5' is not an integer"),
    Case("label empty", (HEADER + "10,a,\n").encode(), r"row 1 .*topic_idx '' is not an integer"),
    Case(
        "label out of range", (HEADER + "10,a,1\n11,b,7\n").encode(), r"row 2 .*topic_idx 7 is outside 0..6"
    ),
    Case("label negative", (HEADER + "10,a,-1\n").encode(), r"row 1 .*topic_idx -1 is outside 0..6"),
    Case(
        "duplicate index",
        (HEADER + "10,a,1\n11,b,2\n10,c,3\n").encode(),
        r"row 3 \(line 4, index='10'\): duplicate index 10",
    ),
    Case(
        "index not an integer",
        (HEADER + "10,a,1\nx1,b,2\n").encode(),
        r"row 2 .*index 'x1' is not an integer",
    ),
    Case(
        "non-UTF-8 bytes (CP949 from Excel)",
        (HEADER + "10,삼성전자 실적 발표,1\n").encode("cp949"),
        r"line 2: not valid UTF-8 \(byte 0x[0-9a-f]{2} at offset 25\); it looks like CP949",
    ),
    Case(
        "non-UTF-8 bytes (binary)", HEADER.encode() + b"10,\xff\xfe\x00junk,1\n", r"line 2: not valid UTF-8"
    ),
    Case("UTF-8 BOM accepted", b"\xef\xbb\xbf" + GOOD_TRAIN, None),
    Case("CRLF accepted", GOOD_TRAIN.replace(b"\n", b"\r\n"), None, check=_no_carriage_returns),
    Case(
        "BOM and CRLF accepted in both files",
        b"\xef\xbb\xbf" + GOOD_TRAIN.replace(b"\n", b"\r\n"),
        None,
        test=b"\xef\xbb\xbf" + GOOD_TEST.replace(b"\n", b"\r\n"),
        check=_no_carriage_returns,
    ),
    Case(
        "semicolon delimiter",
        b"index;title;topic_idx\n10;a;1\n",
        r"header 'index;title;topic_idx' is not comma-separated",
    ),
    Case("tab delimiter", b"index\ttitle\ttopic_idx\n10\ta\t1\n", r"is not comma-separated"),
    Case(
        "unquoted comma in a title",
        (HEADER + "10,a,1\n11,삼성, 반도체 호황,2\n").encode(),
        r"line 3: 4 fields, the header has 3 .*must be in double quotes",
    ),
    Case(
        "unquoted comma in every title (no silent column shift)",
        (HEADER + "10,5,a,1\n11,6,b,2\n").encode(),
        r"line 2: 4 fields, the header has 3",
    ),
    Case("missing field", (HEADER + "10,a,1\n11,b\n").encode(), r"line 3: 2 fields, the header has 3"),
    Case(
        "quoted comma, quote and line break accepted",
        GOOD_TRAIN + '30,"삼성, ""반도체""\n호황",1\n31,b,2\n'.encode(),
        None,
        check=_titles_are({'삼성, "반도체"\n호황'}),
    ),
    Case("1 MB title accepted", GOOD_TRAIN + f"40,{MEGA_TITLE},3\n".encode(), None, check=_mega_title_kept),
    Case(
        "test index also in train",
        GOOD_TRAIN,
        r"index 10 also appears in .*train.csv",
        test=b"index,title\n10,a\n",
        bad_file="test.csv",
    ),
    Case(
        "test file with a label column",
        GOOD_TRAIN,
        r"unexpected column 'topic_idx' \(expected exactly index,title\)",
        test=b"index,title,topic_idx\n100,a,1\n",
        bad_file="test.csv",
    ),
    Case(
        "test title empty",
        GOOD_TRAIN,
        r"row 1 \(line 2, index='100'\): empty title",
        test=b"index,title\n100,\n",
        bad_file="test.csv",
    ),
]

OUTPUTS = ["train.parquet", "valid.parquet", "test.parquet"]


def fingerprint_files(paths: list[Path]) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths if p.exists()}


@pytest.mark.parametrize("case", CSV_CASES, ids=[c.id for c in CSV_CASES])
def test_csv_input(tmp_path: Path, case: Case) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    if case.train is not None:
        train.write_bytes(case.train)
    test.write_bytes(case.test)
    out = tmp_path / "results"
    out.mkdir()
    outputs = [out / name for name in OUTPUTS]
    for p in outputs:  # what an earlier run produced
        p.write_bytes(b"previous " + p.name.encode())
    before = fingerprint_files(outputs)

    def run() -> dict[str, int]:
        return preprocess(train, test, dict(zip(SPLITS, outputs, strict=True)), section=SECTION, seed=1)

    if case.error is None:
        counts = run()
        train_df = pd.concat([read_split(outputs[0], labeled=True), read_split(outputs[1], labeled=True)])
        test_df = read_split(outputs[2], labeled=False)
        assert counts["train"] + counts["valid"] == len(train_df) > 0
        if case.check:
            case.check(train_df, test_df)
        assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
        return

    with pytest.raises(InputError) as info:
        run()
    message = str(info.value)
    assert "\n" not in message.replace(str(tmp_path), "")  # one line (a title may hold a newline)
    assert message.startswith(str(tmp_path / case.bad_file) + ": "), message
    assert re.search(case.error, message), message
    assert len(message) < 400, "the message quotes the bad value, not the whole file"
    assert fingerprint_files(outputs) == before  # nothing produced before is lost or altered
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # and no half-written file


def test_mega_title_is_truncated_by_the_tokenizer_not_a_crash(tmp_path: Path) -> None:
    """A 1 MB title goes through preprocess, tokenisation and prediction like any other."""
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_bytes(GOOD_TRAIN)
    test.write_bytes(GOOD_TEST + f"200,{MEGA_TITLE}\n".encode())
    outputs = [tmp_path / name for name in OUTPUTS]
    preprocess(train, test, dict(zip(SPLITS, outputs, strict=True)), section=SECTION, seed=1)
    titles = read_split(outputs[2], labeled=False)["title"].tolist()
    tokenizer = train_wordpiece(titles[:-1] + ["가나다라 마바사"], 200, 1, 24)

    ids = encode(tokenizer, titles, max_length=24)
    assert max(len(x) for x in ids) == 24
    assert ids[-1][0] == tokenizer.cls_token_id and ids[-1][-1] == tokenizer.sep_token_id

    arch = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "dropout": 0.0,
    }
    model = build_classifier(
        mlm_from_config(arch, len(tokenizer), tokenizer.pad_token_id).base_model, "mean", 0.0, 0
    )
    n = predict_parquet(
        model,
        tokenizer,
        outputs[2],
        tmp_path / "probs.parquet",
        tmp_path / "submission.csv",
        max_length=24,
        batch_size=4,
        read_batch_rows=3,
    )
    assert n == 6
    assert pd.read_csv(tmp_path / "submission.csv")["index"].tolist()[-1] == 200


def test_corrupt_parquet_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "train.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"train.parquet: not a readable parquet file"):
        read_split(bad, labeled=True)


# --- configuration ---------------------------------------------------------------------------

CONFIG_CASES = [
    ({"finetune": {"epoch": 3}}, r"unknown key 'finetune.epoch' \(did you mean 'epochs'\?\)"),
    ({"pseudo_labels": {"threshold": 0.9}}, r"unknown key 'pseudo_labels' \(did you mean 'pseudo_label'\?\)"),
    (
        {"runtime": {"keep_checkpoint": 3}},
        r"unknown key 'runtime.keep_checkpoint' \(did you mean 'keep_checkpoints'\?\)",
    ),
    ({"finetune": {"epochs": "three"}}, r"key 'finetune.epochs' must be of type number, got str 'three'"),
    ({"runtime": {"checkpoint_every": 2.5}}, r"key 'runtime.checkpoint_every' must be of type integer"),
    (
        {"runtime": {"checkpoint_every": 0}},
        r"key 'runtime.checkpoint_every': 0 is less than the minimum of 1",
    ),
    ({"model": {"trust_remote_code": "yes"}}, r"key 'model.trust_remote_code' must be of type boolean"),
    (
        {"tokenizer": {"source": "vocab"}},
        r"key 'tokenizer.vocab_file' is required when tokenizer.source is 'vocab'",
    ),
]


@pytest.mark.parametrize("overlay,error", CONFIG_CASES, ids=[e.split("'")[1] for _, e in CONFIG_CASES])
def test_config_error_names_the_key(tmp_path: Path, overlay: dict, error: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(overlay))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert re.search(error, message), message


def test_config_file_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("finetune: {epochs: 3\n")
    with pytest.raises(ConfigError, match=r"config.yaml: not valid YAML: "):
        load_config(path)


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "models" / "kcbert")
    for load in (lambda: encoder_from_pretrained(missing), lambda: mlm_from_pretrained(missing, 100)):
        with pytest.raises(
            ConfigError, match=rf"^model.name_or_path: {re.escape(missing)}: directory not found$"
        ):
            load()


def test_vocab_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_file: .*vocab.txt: file not found"):
        wordpiece_from_vocab(tmp_path / "vocab.txt", 32)


# --- untrusted artifacts ---------------------------------------------------------------------


def test_remote_code_is_off_by_default_and_never_runs(tmp_path: Path) -> None:
    """A model directory that ships its own Python code: with trust_remote_code off (the
    default) the code is not imported; a known architecture loads with the library's code,
    an unknown one is a one-line error."""
    assert validate_config({})["model"]["trust_remote_code"] is False
    arch = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "dropout": 0.0,
    }
    marker = tmp_path / "remote-code-ran"
    model_dir = tmp_path / "model"
    mlm_from_config(arch, 50, 0).save_pretrained(model_dir)
    (model_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (model_dir / "config.json").write_text(json.dumps(config))

    encoder = encoder_from_pretrained(str(model_dir))
    assert type(encoder).__name__ == "BertModel"

    config["model_type"] = "evil"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"^model.name_or_path: cannot load "):
        encoder_from_pretrained(str(model_dir))
    assert not marker.exists()


# --- through the real workflow ---------------------------------------------------------------

TINY = {"preprocess": {"sample_per_class": 20, "test_sample": 20}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow copy whose preprocess and build_tokenizer have run."""
    workdir = copy_workflow(tmp_path_factory.mktemp("bad-input") / "wf")
    run_snakemake(workdir, "--until", "build_tokenizer", config=TINY)
    assert (workdir / "results" / "tokenizer").is_dir()
    return workdir


def results_state(workdir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(workdir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file()
    }


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("newstopic: error: ")]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "overlay,error",
    [
        ({"finetune": {"epoch": 3}}, "config: unknown key 'finetune.epoch' (did you mean 'epochs'?)"),
        ({"retrain": {"lr": "fast"}}, "config: key 'retrain.lr' must be of type number, got str 'fast'"),
    ],
    ids=["misspelt key", "wrong type"],
)
def test_snakemake_config_error_stops_before_anything_runs(prepared: Path, overlay: dict, error: str) -> None:
    before = results_state(prepared)
    proc = run_snakemake(prepared, config={**TINY, **overlay}, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    [line] = error_lines(output)
    assert line.startswith(f"newstopic: error: {error}")
    assert "Traceback" not in output
    assert results_state(prepared) == before


@pytest.mark.e2e
def test_snakemake_bad_csv_fails_before_any_job_and_keeps_every_result(prepared: Path) -> None:
    """The raw CSVs are validated when the workflow starts, before Snakemake would delete the
    outputs of the preprocess job it reruns: one line naming the file and line, and every
    result made from the previous (good) CSV is still there, unchanged."""
    bad = prepared / "data" / "bad_test.csv"
    bad.write_bytes(("index,title\n9000,삼성전자 실적\n").encode("cp949"))
    before = results_state(prepared)
    proc = run_snakemake(prepared, config={**TINY, "data": {"test": "data/bad_test.csv"}}, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    [line] = error_lines(output)
    assert line.startswith("newstopic: error: data/bad_test.csv: line 2: not valid UTF-8"), line
    assert "CP949" in line
    assert "Traceback" not in output
    assert results_state(prepared) == before  # nothing lost, nothing altered
    assert not list((prepared / "results").rglob(".*.tmp"))
