"""The users' main setup, offline: a pretrained RoBERTa-style encoder with its own byte-level BPE
tokenizer, written by `save_pretrained` here (as a hub download would leave it), given as
model.name_or_path (tokenizer.source: pretrained), through the whole DAG with K-fold jobs,
the ensemble (beside the baseline) and a pseudo-label round."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

MAX_LENGTH = 32


def save_tiny_roberta(titles: list[str], out: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(titles, vocab_size=600, min_frequency=1, special_tokens=special)
    backend = bpe._tokenizer  # the tokenizers.Tokenizer inside the wrapper
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=MAX_LENGTH,
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH + 2,  # RoBERTa's positions start after the pad id
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    RobertaForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def test_local_roberta_through_the_fold_dag(tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "wf")
    titles = pd.read_csv(wf / "data" / "demo" / "demo_train.csv")["title"].tolist()
    save_tiny_roberta(titles, tmp_path / "tiny-roberta")
    config = {
        "model": {"name_or_path": str(tmp_path / "tiny-roberta")},
        "tokenizer": {"source": "pretrained", "max_length": MAX_LENGTH},
        "cv": {"folds": 2},
        "ensemble": {"enabled": True, "members": ["finetune", "retrain", "baseline"]},
        "mlm": {"epochs": 1},
        "finetune": {"epochs": 2},
        "retrain": {"epochs": 1},
        "pseudo_label": {"soft": True, "threshold": 0.0},
    }
    run_snakemake(wf, config=config, timeout=1500)
    res = wf / "results"
    tok = json.loads((res / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "RobertaTokenizer"  # the model's own, not a trained WordPiece
    assert json.loads((res / "mlm" / "model" / "config.json").read_text())["model_type"] == "roberta"
    for k in range(2):
        cfg = json.loads((res / "finetune" / f"fold{k}" / "model" / "config.json").read_text())
        assert cfg["encoder"]["model_type"] == "roberta"
    m = json.loads((res / "ensemble" / "metrics.json").read_text())
    assert list(m["weights"]) == config["ensemble"]["members"] and m["valid_accuracy"] > 0.8
    assert (res / "submission.csv").read_bytes() == (res / "ensemble" / "submission.csv").read_bytes()
