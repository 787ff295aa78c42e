"""The custom model: save/load round-trip, encoder initialisation, hub-style local models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH
from transformers import AutoModelForSequenceClassification, BertConfig, BertForMaskedLM

from newstopic.device import attention_for, set_attention
from newstopic.encoder import (
    IGNORE_INDEX,
    SummedCrossEntropy,
    masked_lm_loss,
    mlm_from_config,
    mlm_from_pretrained,
    set_dropout,
    split_mlm,
)
from newstopic.errors import ConfigError
from newstopic.finetune import initial_classifier
from newstopic.model import NewsTopicClassifier, build_classifier, hashed_ngrams
from newstopic.training import param_groups

ARCH = TINY_ARCH
MODEL_CFG = dict(
    name_or_path=None, trust_remote_code=False, arch=ARCH, pooling="mean", dropout=0.1, head_hidden_size=16
)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 3, 0, 0]])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("head_hidden", [0, 16])
def test_round_trip_predicts_identically(tmp_path: Path, pooling: str, head_hidden: int) -> None:
    torch.manual_seed(0)
    encoder = mlm_from_config(ARCH, 100, 0).base_model
    model = build_classifier(encoder, pooling, 0.1, head_hidden).eval()
    ids, mask = batch()
    logits = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    for loaded in (
        NewsTopicClassifier.from_pretrained(tmp_path / "m"),
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "m"),
    ):
        assert isinstance(loaded, NewsTopicClassifier)
        assert torch.equal(loaded.eval()(input_ids=ids, attention_mask=mask).logits, logits)


def test_mean_pooling_ignores_padding() -> None:
    torch.manual_seed(0)
    model = build_classifier(mlm_from_config(ARCH, 100, 0).base_model, "mean", 0.0, 0).eval()
    ids = torch.tensor([[2, 20, 3]])
    short = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    padded_ids = torch.tensor([[2, 20, 3, 0, 0]])
    padded = model(input_ids=padded_ids, attention_mask=(padded_ids != 0).long()).logits
    assert torch.allclose(short, padded, atol=1e-5)


def test_classifier_encoder_starts_from_the_mlm_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mlm = mlm_from_config(ARCH, 100, 0)
    mlm.save_pretrained(tmp_path / "mlm")
    clf = initial_classifier(str(tmp_path / "mlm"), MODEL_CFG, 100, 0)
    for name, tensor in mlm.base_model.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(clf.encoder.state_dict()[name], tensor), name


def test_local_hub_style_model_directory(tmp_path: Path) -> None:
    """model.name_or_path pointing at a directory made by save_pretrained (as from the hub)."""
    torch.manual_seed(0)
    BertForMaskedLM(
        BertConfig(
            vocab_size=90, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(tmp_path / "hub")
    model = mlm_from_pretrained(str(tmp_path / "hub"), vocab_size=100)
    assert model.get_input_embeddings().num_embeddings == 100  # resized to the tokenizer
    ids, mask = batch()
    loss = masked_lm_loss(model, ids, mask, torch.tensor([1, 6]), torch.tensor([10, 20]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    encoder, head = split_mlm(model)
    assert encoder is model.base_model and head is model.cls


def test_missing_model_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.name_or_path: .*not found"):
        mlm_from_pretrained(str(tmp_path / "nope" / "model"), vocab_size=100)


def test_masked_only_loss_matches_full_head() -> None:
    torch.manual_seed(0)
    model = mlm_from_config(ARCH, 100, 0).eval()
    ids, mask = batch()
    positions, labels = torch.tensor([1, 3, 6]), torch.tensor([10, 12, 20])
    full = model(input_ids=ids, attention_mask=mask).logits.reshape(-1, 100)[positions]
    expected = torch.nn.functional.cross_entropy(full, labels)
    assert torch.allclose(masked_lm_loss(model, ids, mask, positions, labels), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blockwise_cross_entropy_matches_torch(dtype: torch.dtype) -> None:
    """The MLM loss's own cross-entropy: torch's loss and gradient, ignored rows included, over
    a row count that is not a multiple of its block."""
    torch.manual_seed(0)
    rows = 3 * SummedCrossEntropy.CHUNK_ROWS + 5
    logits = (4 * torch.randn(rows, 300)).to(dtype).requires_grad_()
    labels = torch.randint(0, 300, (rows,))
    labels[::6] = IGNORE_INDEX
    ours = SummedCrossEntropy.apply(logits, labels)
    (ours * 0.5).backward()
    grad, logits.grad = logits.grad, None
    theirs = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
    (theirs * 0.5).backward()
    torch.testing.assert_close(ours, theirs)
    assert grad.dtype == dtype and grad[::6].abs().max() == 0  # ignored rows get no gradient
    torch.testing.assert_close(grad.float(), logits.grad.float(), atol=1e-6, rtol=1e-2)


def test_mlm_dropout_is_for_this_run_only(tmp_path: Path) -> None:
    """mlm.dropout 0: every dropout of the encoder off (a train-mode forward is deterministic),
    while the saved config keeps model.arch's rate for fine-tuning."""
    torch.manual_seed(0)
    model = mlm_from_config(ARCH, 100, 0).train()
    ids, mask = batch()
    positions, labels = torch.tensor([1, 3, 6]), torch.tensor([10, 12, 20])
    noisy = [masked_lm_loss(model, ids, mask, positions, labels) for _ in range(2)]
    assert not torch.equal(*noisy)  # the arch's dropout 0.1 is on
    set_dropout(model, 0.0)
    assert torch.equal(*[masked_lm_loss(model, ids, mask, positions, labels) for _ in range(2)])
    model.save_pretrained(tmp_path / "mlm")
    saved = BertConfig.from_pretrained(tmp_path / "mlm")
    assert saved.hidden_dropout_prob == saved.attention_probs_dropout_prob == ARCH["dropout"]


def test_cpu_training_uses_eager_attention_with_the_same_outputs() -> None:
    """On a CPU the loop switches the classifier's encoder to eager attention (faster for short
    titles); it computes what SDPA computes."""
    assert (attention_for(torch.device("cpu")), attention_for(torch.device("cuda"))) == ("eager", "sdpa")
    torch.manual_seed(0)
    model = build_classifier(mlm_from_config(ARCH, 100, 0).base_model, "mean", 0.1, 16).eval()
    ids, mask = batch()
    before = model(input_ids=ids, attention_mask=mask).logits
    assert model.encoder.config._attn_implementation == "sdpa"
    set_attention(model, torch.device("cpu"))
    assert model.encoder.config._attn_implementation == "eager"
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)


NGRAMS = dict(buckets=997, dim=8, max_n=3, dropout=0.5)


def test_hashed_ngrams_cover_each_real_ngram_once() -> None:
    ids, mask = batch()  # attended lengths 5 and 3
    grams, real = hashed_ngrams(ids, mask, max_n=3, buckets=997)
    # n-grams inside the attended tokens only: 5+4+3 for the first title, 3+2+1 for the second.
    assert real.sum(1).tolist() == [12, 6]
    assert int(grams.min()) >= 0 and int(grams.max()) < 997
    # The same title hashes to the same buckets whatever the padding around it.
    alone, alone_real = hashed_ngrams(ids[1:, :3], mask[1:, :3], max_n=3, buckets=997)
    assert sorted(alone[alone_real].tolist()) == sorted(grams[1][real[1]].tolist())
    # Order matters: a reversed bigram lands elsewhere.
    ab, _ = hashed_ngrams(torch.tensor([[10, 11]]), torch.ones(1, 2), 2, 10**6)
    ba, _ = hashed_ngrams(torch.tensor([[11, 10]]), torch.ones(1, 2), 2, 10**6)
    assert ab[0, 2] != ba[0, 2]


def test_ngram_bag_round_trip_padding_and_lr_group(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = mlm_from_config(ARCH, 100, 0).base_model
    model = build_classifier(encoder, "mean", 0.1, 16, ngrams=NGRAMS).eval()
    assert model.ngrams is not None and model.ngrams.embed.num_embeddings == 997
    ids, mask = batch()
    logits = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.ngram_buckets == 997 and loaded.config.ngram_max_n == 3
    assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, logits)
    # The second title scored alone, without the padding its batch gave it.
    alone = model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    assert torch.allclose(alone, logits[1:], atol=1e-5)
    # The bag is a new layer: it trains at the head's learning rate.
    groups = param_groups(model, lr=1e-4, weight_decay=0.01, head_lr=1e-2)
    bag = model.ngrams.embed.weight
    assert [g["lr"] for g in groups if any(p is bag for p in g["params"])] == [1e-2]


def test_ngram_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_classifier(mlm_from_config(ARCH, 100, 0).base_model, "mean", 0.0, 0, ngrams=NGRAMS)
    ids, mask = batch()
    bag = model.ngrams.eval()
    scored = bag(ids, mask)
    assert not torch.equal(bag.train()(ids, mask), scored)
    assert torch.equal(bag.eval()(ids, mask), scored)


def test_initial_classifier_builds_the_configured_bag() -> None:
    clf = initial_classifier(None, {**MODEL_CFG, "ngrams": {**NGRAMS, "buckets": 0}}, 100, 0)
    assert clf.ngrams is None
    clf = initial_classifier(None, {**MODEL_CFG, "ngrams": NGRAMS}, 100, 0)
    assert clf.ngrams is not None and clf.config.ngram_dim == 8
