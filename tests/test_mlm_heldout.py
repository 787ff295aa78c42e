"""newstopic.study.mlm_heldout: the eval-mode masked-LM loss that compares MLM runs."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from conftest import TINY_ARCH

from newstopic.atomic import save_pretrained_dir
from newstopic.config import validate_config
from newstopic.encoder import mlm_from_config
from newstopic.formats import read_titles
from newstopic.preprocess import preprocess
from newstopic.study.mlm_heldout import heldout_loss
from newstopic.tokenization import train_wordpiece


def test_heldout_loss_is_deterministic_and_sees_no_dropout(tmp_path: Path, repo: Path) -> None:
    """The same masks every time and no dropout noise: one run measured twice gives one figure,
    and an untrained encoder scores about ln(vocabulary size)."""
    splits = {s: tmp_path / "results" / "data" / f"{s}.parquet" for s in ("train", "valid", "test")}
    demo = repo / "data" / "demo"
    preprocess(
        demo / "demo_train.csv",
        demo / "demo_test.csv",
        splits,
        section=validate_config({})["preprocess"],
        seed=0,
    )
    tokenizer = train_wordpiece(read_titles([str(p) for p in splits.values()]), 300, 1, 32)
    torch.manual_seed(0)
    model = mlm_from_config(TINY_ARCH, len(tokenizer), tokenizer.pad_token_id)
    save_pretrained_dir(tmp_path / "results" / "mlm" / "model", model, tokenizer)  # as mlm_pretrain does
    first, second = heldout_loss(tmp_path, 0.4), heldout_loss(tmp_path, 0.4)
    assert first == second
    assert abs(first - math.log(len(tokenizer))) < 1.0
