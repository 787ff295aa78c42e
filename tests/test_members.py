"""Extra ensemble members by name (newstopic.members): seeds (cv.seeds, NAME@seed<s>) and other
encoders (ensemble.encoders); their folders, their labels in the ensemble's report, and the
one-line errors of a bad configuration. The workflow runs them in tests/test_cv_members.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newstopic.config import validate_config
from newstopic.ensemble import ensemble_report
from newstopic.errors import ConfigError
from newstopic.members import Member, configured_members
from newstopic.startup import check_cv, check_paths

ROBERTA = {"name_or_path": "klue/roberta-base"}
ON = {"cv": {"folds": 3, "seeds": [7, 8]}, "ensemble": {"enabled": True, "encoders": {"roberta": ROBERTA}}}


def with_members(*members: str, **sections: dict) -> dict:
    config = {**ON, **sections}
    config["ensemble"] = {**config["ensemble"], "members": list(members)}
    return validate_config(config)


def test_members_parse_into_their_folders() -> None:
    config = with_members(
        "finetune", "finetune@seed7", "retrain@seed8", "roberta", "roberta@seed7", "baseline"
    )
    check_cv(config)
    got = {m.name: (m.base, m.seed, m.encoder, m.stage) for m in configured_members(config)}
    assert got == {
        "finetune": ("finetune", None, None, "finetune"),
        "finetune@seed7": ("finetune", 7, None, "finetune"),
        "retrain@seed8": ("retrain", 8, None, "retrain"),
        "roberta": ("roberta", None, "roberta", "finetune"),
        "roberta@seed7": ("roberta", 7, "roberta", "finetune"),
        "baseline": ("baseline", None, None, "baseline"),
    }
    dirs = {m.name: m.directory() for m in configured_members(config)}
    assert dirs["finetune"] == "finetune" and dirs["finetune@seed7"] == "finetune/seed7"
    assert dirs["roberta"] == "encoders/roberta/finetune"
    assert dirs["roberta@seed7"] == "encoders/roberta/finetune/seed7"
    # With rounds retrain's folder is the round's; an encoder is not retrained, so has none.
    assert Member("retrain@seed8", "retrain", 8).directory(2) == "round2/retrain/seed8"
    assert Member("roberta", "roberta").directory(2) == "encoders/roberta/finetune"


def test_the_defaults_name_no_extra_member() -> None:
    config = validate_config({})
    assert config["cv"]["seeds"] == [] and config["ensemble"]["encoders"] == {}
    check_cv(config)
    assert [m.name for m in configured_members(config)] == ["finetune", "baseline"]


def test_the_report_says_what_each_member_is() -> None:
    encoders = {"roberta": ROBERTA}
    labels = {
        m: Member(m, m.split("@")[0], int(m.split("seed")[1]) if "@" in m else None).label(encoders)
        for m in ("finetune", "finetune@seed7", "roberta@seed7", "baseline")
    }
    assert labels["finetune@seed7"] == "finetune (this config's encoder), training seed 7"
    assert labels["roberta@seed7"] == "roberta: klue/roberta-base fine-tuned, training seed 7"
    scores = {f"{s}_{m}": 0.5 for s in ("oof", "valid") for m in ("accuracy", "macro_f1")}
    metrics = {
        "members": [{"name": m, "label": lab, "weight": 0.25, **scores} for m, lab in labels.items()],
        "equal_weights": scores,
        **scores,
        "oof_rows": 10,
        "valid_rows": 5,
    }
    report = ensemble_report(metrics)
    assert "| finetune@seed7: finetune (this config's encoder), training seed 7 | 0.250 |" in report
    assert "| roberta@seed7: roberta: klue/roberta-base fine-tuned, training seed 7 |" in report


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cv": {"folds": 3, "seeds": [42]}}, "key 'cv.seeds': 42 is finetune's own seed already"),
        (
            {"cv": {"folds": 3, "seeds": [5]}, "retrain": {"seed": 5}},
            "key 'cv.seeds': 5 is retrain's own seed already",
        ),
        (with_members("finetune@seed9"), "'finetune@seed9': seed 9 is not in cv.seeds [7, 8]"),
        (with_members("baseline@seed7"), "'baseline@seed7': the baseline has no training seed"),
        (with_members("bert"), "'bert' is not a member; members are finetune, retrain, baseline, roberta"),
        (with_members("finetune@7"), "'finetune@7' is not a member"),
        (
            {
                "cv": {"folds": 3, "seeds": [7]},
                "ensemble": {"enabled": True, "members": ["finetune", "retrain@seed7"]},
                "pseudo_label": {"enabled": False},
            },
            "retrain is a member but pseudo_label.enabled is false",
        ),
        (
            {"cv": {"folds": 3}, "ensemble": {"encoders": {"baseline": ROBERTA}}},
            "key 'ensemble.encoders.baseline': 'baseline' is a member's name already",
        ),
        (
            {"cv": {"folds": 3}, "ensemble": {"encoders": {"roberta": {}}}},
            "key 'ensemble.encoders.roberta.name_or_path' is required",
        ),
    ],
)
def test_bad_members_stop_at_startup_in_one_line(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_cv(validate_config(config))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("encoders", "message"),
    [
        ({"RoBERTa": ROBERTA}, "ensemble.encoders"),
        ({"roberta": {"name_or_path": "x", "lr": 1e-5}}, "unknown key 'ensemble.encoders.roberta.lr'"),
        ({"roberta": {"name_or_path": "x", "finetune": {"epoch": 2}}}, "did you mean 'epochs'"),
    ],
)
def test_the_schema_names_a_bad_encoder_key(encoders: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"ensemble": {"encoders": encoders}})


def test_an_encoder_gets_its_own_finetune_defaults() -> None:
    config = validate_config({"finetune": {"lr": 1e-3}, "ensemble": {"encoders": {"roberta": ROBERTA}}})
    roberta = config["ensemble"]["encoders"]["roberta"]
    assert roberta["finetune"]["lr"] == 5e-5 and roberta["mlm"] is False  # not inherited
    assert roberta["trust_remote_code"] is False


def test_a_local_encoder_path_is_checked_at_startup(tmp_path: Path) -> None:
    missing = str(tmp_path / "tiny-roberta")
    config = validate_config({"ensemble": {"encoders": {"roberta": {"name_or_path": missing}}}})
    with pytest.raises(
        ConfigError,
        match=rf"^ensemble.encoders.roberta.name_or_path: {re.escape(missing)}: directory not found$",
    ):
        check_paths(config)
    check_paths(validate_config({"ensemble": {"encoders": {"roberta": ROBERTA}}}))  # a hub id
