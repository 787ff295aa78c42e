"""Extra ensemble members in the real workflow: an extra training seed (cv.seeds: a {seed}
wildcard of the fold jobs) and another encoder (ensemble.encoders: a tiny RoBERTa with its own
byte-level BPE tokenizer, written by save_pretrained here as a hub download would leave it)
beside the demo's offline BERT, as members of the ensemble with the baseline. One Snakemake run
shared by the module (2 folds, short training: it checks the DAG and the files, not accuracy);
dry runs for what a change reruns; the DAG without them as it was."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, run_snakemake
from test_cv_roberta import save_tiny_roberta
from test_cv_workflow import REPORT_RULES, jobs_of

from newstopic.formats import PROB_COLUMNS, read_folds, read_probs

pytestmark = pytest.mark.e2e

K = 2
MEMBERS = ["finetune", "finetune@seed7", "roberta", "baseline"]


def members_config(roberta: Path) -> dict:
    return {
        "cv": {"folds": K, "seeds": [7]},
        "ensemble": {
            "enabled": True,
            "members": MEMBERS,
            # Its own hyper-parameters (not finetune's): a tiny random RoBERTa needs a high rate.
            "encoders": {"roberta": {"name_or_path": str(roberta), "finetune": {"epochs": 2, "lr": 1e-3}}},
        },
        "mlm": {"epochs": 1},
        "finetune": {"epochs": 2},
        "pseudo_label": {"enabled": False},
    }


@pytest.fixture(scope="module")
def members_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("members")
    wf = copy_workflow(root / "wf")
    save_tiny_roberta(
        pd.read_csv(wf / "data" / "demo" / "demo_train.csv")["title"].tolist(), root / "roberta"
    )
    config = members_config(root / "roberta")
    run_snakemake(wf, config=config, timeout=1500)
    return wf, config


def test_a_seed_member_trains_on_the_same_folds_with_another_seed(members_run: tuple[Path, dict]) -> None:
    wf, _ = members_run
    res = wf / "results"
    folds = read_folds(res / "cv" / "folds.parquet")
    for k in range(K):
        base, seeded = res / "finetune" / f"fold{k}", res / "finetune" / "seed7" / f"fold{k}"
        # The same fold's rows held out (the folds come from `seed`, not the training seed) ...
        fold_rows = sorted(folds.loc[folds["fold"] == k, "index"])
        assert sorted(read_probs(seeded / "oof_probs.parquet")["index"]) == fold_rows
        assert sorted(read_probs(base / "oof_probs.parquet")["index"]) == fold_rows
        m, m7 = (json.loads((d / "metrics.json").read_text()) for d in (base, seeded))
        assert m7["fold"] == k and m7["train_rows"] == m["train_rows"] and m7["stage"] == "finetune"
        # ... by another model: the training seed changed its initialisation and batches.
        p, p7 = (read_probs(d / "valid_probs.parquet")[PROB_COLUMNS].to_numpy() for d in (base, seeded))
        assert not np.allclose(p, p7, atol=1e-4)
        assert (wf / "logs" / f"finetune_seed7_fold{k}.log").is_file()
        assert (wf / "benchmarks" / f"finetune_seed7_fold{k}.tsv").is_file()
    m = json.loads((res / "finetune" / "seed7" / "metrics.json").read_text())
    assert m["folds"] == K and m["oof_rows"] == len(folds)


def test_an_encoder_member_has_its_own_tokenizer_and_fold_models(members_run: tuple[Path, dict]) -> None:
    wf, _ = members_run
    res = wf / "results"
    own = json.loads((res / "encoders" / "roberta" / "tokenizer" / "tokenizer_config.json").read_text())
    assert own["tokenizer_class"] == "RobertaTokenizer"  # from its name_or_path
    main = json.loads((res / "tokenizer" / "tokenizer_config.json").read_text())
    assert main["tokenizer_class"] != "RobertaTokenizer"  # the demo's WordPiece, trained on the titles
    for k in range(K):
        cfg = json.loads(
            (res / "encoders" / "roberta" / "finetune" / f"fold{k}" / "model" / "config.json").read_text()
        )
        assert cfg["encoder"]["model_type"] == "roberta"
        bert = json.loads((res / "finetune" / f"fold{k}" / "model" / "config.json").read_text())
        assert bert["encoder"]["model_type"] == "bert"
        assert (wf / "logs" / f"encoder_finetune_roberta_fold{k}.log").is_file()
    assert not (res / "encoders" / "roberta" / "mlm").exists()  # no MLM unless configured
    assert (res / "mlm" / "model").is_dir()  # the config's own encoder had its MLM


def test_the_ensemble_and_summary_name_the_new_members(members_run: tuple[Path, dict]) -> None:
    wf, config = members_run
    res = wf / "results"
    m = json.loads((res / "ensemble" / "metrics.json").read_text())
    assert list(m["weights"]) == MEMBERS and abs(sum(m["weights"].values()) - 1) < 1e-6
    assert m["oof_loss"] <= min(x["oof_loss"] for x in m["members"]) + 1e-6
    # The new members say what they are; the others keep their plain names.
    labels = {x["name"]: x.get("label") for x in m["members"]}
    path = config["ensemble"]["encoders"]["roberta"]["name_or_path"]
    assert labels == {
        "finetune": None,
        "finetune@seed7": "finetune (this config's encoder), training seed 7",
        "roberta": f"roberta: {path} fine-tuned, its own seed",
        "baseline": None,
    }
    report = (res / "ensemble" / "report.md").read_text()
    for name, label in labels.items():
        shown = re.escape(f"{name}: {label}" if label else name)
        assert re.search(rf"^\| {shown} \| \d\.\d{{3}} \|", report, re.M), name
    summary = json.loads((res / "summary.json").read_text())
    assert {"finetune/seed7", "encoders/roberta/finetune", "ensemble"} <= set(summary["stages"])
    assert {"finetune_seed7_fold1", "encoder_tokenizer_roberta", "encoder_finetune_roberta_fold1"} <= set(
        summary["rules"]
    )
    assert (res / "submission.csv").read_bytes() == (res / "ensemble" / "submission.csv").read_bytes()
    # The report scores the new members on valid as it does the others, topic by topic.
    for stage in ("finetune", "finetune/seed7", "encoders/roberta/finetune", "ensemble"):
        assert (res / "report" / f"{stage}_confusion.png").stat().st_size > 0, stage
        assert "<table" in (res / "report" / f"{stage}_per_topic.html").read_text(), stage
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(run_snakemake(wf, "-n", config=config))


def _merged(config: dict, change: dict) -> dict:
    out = json.loads(json.dumps(config))
    for key, value in change.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def _roberta(config: dict, **change: object) -> dict:
    roberta = config["ensemble"]["encoders"]["roberta"]
    return {"ensemble": {"encoders": {"roberta": {**roberta, **change}}}}


ENSEMBLE_ONWARDS = Counter(ensemble=1, submission=1)


@pytest.mark.parametrize(
    ("change", "rerun"),
    [
        # Another seed, not a member: its fold jobs and their average (in the summary), no more.
        (lambda c: {"cv": {"seeds": [7, 8]}}, Counter(finetune_seed=K, fold_average=1)),
        # The seed member dropped: only the ensemble; nothing is trained again.
        (
            lambda c: {"ensemble": {"members": ["finetune", "roberta", "baseline"]}},
            ENSEMBLE_ONWARDS,
        ),
        # The encoder member dropped: only the ensemble.
        (lambda c: {"ensemble": {"members": ["finetune", "finetune@seed7", "baseline"]}}, ENSEMBLE_ONWARDS),
        # The encoder at the extra seed as one more member: its fold jobs, not its tokenizer.
        (
            lambda c: {"ensemble": {"members": [*MEMBERS, "roberta@seed7"]}},
            Counter(encoder_finetune_seed=K, fold_average=1) + ENSEMBLE_ONWARDS,
        ),
        # The encoder's own hyper-parameters: its fold jobs only, not the BERT's.
        (
            lambda c: _roberta(c, finetune={"epochs": 2, "lr": 5e-4}),
            Counter(encoder_finetune=K, fold_average=1) + ENSEMBLE_ONWARDS,
        ),
        # MLM for the encoder: its own MLM on its own tokenizer, then its fold jobs.
        (
            lambda c: _roberta(c, mlm=True),
            Counter(encoder_mlm_pretrain=1, encoder_finetune=K, fold_average=1) + ENSEMBLE_ONWARDS,
        ),
        # finetune's hyper-parameters: the BERT's fold jobs at both seeds, not the RoBERTa's.
        (
            lambda c: {"finetune": {"epochs": 2, "lr": 5e-4}},
            Counter(finetune=K, finetune_seed=K, fold_average=2) + ENSEMBLE_ONWARDS,
        ),
    ],
)
def test_a_member_change_reruns_what_it_affects(
    members_run: tuple[Path, dict], change, rerun: Counter
) -> None:
    wf, config = members_run
    jobs = Counter(jobs_of(run_snakemake(wf, "-n", config=_merged(config, change(config)))))
    jobs = Counter({job: n for job, n in jobs.items() if job not in REPORT_RULES})
    assert jobs == rerun + Counter(summary=1, all=1)


def _dag(wf: Path, config: dict) -> list[str]:
    """The dry run's jobs as their rule, outputs and log lines (job ids and reasons left out)."""
    out = run_snakemake(wf, "-n", config=config).stdout
    keep = re.compile(r"^(?:(?:local)?rule \w+:|\s+(?:output|log|wildcards): .*)$")
    return sorted(line.strip() for line in out.splitlines() if keep.match(line))


def test_the_dag_without_extra_members_is_unchanged(tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "wf")
    plain = {"cv": {"folds": K}, "ensemble": {"enabled": True}}
    # Declared but off: no seed, and an encoder that no member names.
    off = {
        "cv": {"folds": K, "seeds": []},
        "ensemble": {"enabled": True, "encoders": {"roberta": {"name_or_path": "klue/roberta-base"}}},
    }
    dag = _dag(wf, plain)
    assert any(line.startswith("output: results/finetune/fold1/") for line in dag)
    assert _dag(wf, off) == dag
    assert not any("seed" in line or "encoder" in line for line in dag)


def test_lint_passes_with_extra_members(members_run: tuple[Path, dict]) -> None:
    wf, config = members_run
    with_mlm = _merged(config, _roberta(config, mlm=True))  # every new rule in the DAG
    proc = run_snakemake(wf, "--lint", config=with_mlm)
    assert "Congratulations" in proc.stdout + proc.stderr
