"""Config validation: defaults filled in, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from newstopic.config import load_config, load_schema, validate_config
from newstopic.errors import ConfigError


def test_every_schema_key_has_a_default_and_description() -> None:
    def walk(node: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if "$ref" in sub:
                ref = sub["$ref"].split("/")[-1]
                sub = {**load_schema()["$defs"][ref], **sub}
            assert "description" in sub, f"{path}{name} has no description"
            assert "default" in sub, f"{path}{name} has no default"
            walk(sub, f"{path}{name}.")
            # A map of named entries (ensemble.encoders): each entry's keys too.
            if isinstance(sub.get("additionalProperties"), dict):
                walk(sub["additionalProperties"], f"{path}{name}.<name>.")

    walk(load_schema(), "")


def test_defaults_fill_in_nested_sections() -> None:
    cfg = validate_config({"retrain": {"epochs": 2}})
    assert cfg["retrain"]["epochs"] == 2 and cfg["retrain"]["batch_size"] == 32
    assert cfg["finetune"]["epochs"] == 3
    assert cfg["model"]["arch"]["hidden_size"] == 256
    assert cfg["model"]["trust_remote_code"] is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mlm": {"epoch": 1}}, "unknown key 'mlm.epoch' (did you mean 'epochs'?)"),
        ({"finetun": {}}, "unknown key 'finetune'".replace("finetune", "finetun")),
        ({"finetune": {"lr": "fast"}}, "key 'finetune.lr' must be of type number"),
        ({"tokenizer": {"source": "bpe"}}, "key 'tokenizer.source' must be one of"),
        ({"tokenizer": {"source": "vocab"}}, "'tokenizer.vocab_file' is required"),
        ({"model": {"arch": {"hidden_size": 30}}}, "must be divisible"),
        ({"pseudo_label": {"threshold": 1.5}}, "key 'pseudo_label.threshold'"),
        ({"mlm": {"dropout": 1.0}}, "key 'mlm.dropout'"),
    ],
)
def test_bad_config_names_the_key(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["config.yaml", "dacon.yaml", "klue_roberta.yaml"])
def test_shipped_configs_are_valid(repo: Path, name: str) -> None:
    cfg = load_config(repo / "config" / name)
    raw = yaml.safe_load((repo / "config" / name).read_text())
    assert cfg["seed"] == raw.get("seed", 42)


def test_the_mlm40_overlay_only_doubles_the_mlm(repo: Path) -> None:
    """config/dacon_mlm40.yaml (docs/results_mlm40.md) is config/dacon.yaml with 40 MLM epochs:
    its figures compare with docs/results.md's because nothing else differs."""
    from newstopic.study.runs import merged_config

    config_dir = repo / "config"
    base = merged_config([config_dir / "dacon.yaml"])
    longer = merged_config([config_dir / "dacon.yaml", config_dir / "dacon_mlm40.yaml"])
    assert (base["mlm"]["epochs"], longer["mlm"]["epochs"]) == (20, 40)
    longer["mlm"]["epochs"] = 20
    assert longer == base
