"""Length-grouped batches, dynamic padding, MLM masking and fine-tuning input noise."""

from __future__ import annotations

import numpy as np
import torch

from newstopic.data import (
    length_grouped_batches,
    mask_inputs,
    mask_tokens,
    pad_batch,
    special_tokens_mask,
    step_generator,
)


def test_batches_cover_every_row_once_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=5000)
    batches = length_grouped_batches(lengths, 32, seed=7, epoch=0)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(5000))
    assert max(len(b) for b in batches) == 32
    # grouping: padded tokens far fewer than with random batches
    grouped_pad = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)
    perm = rng.permutation(5000)
    random_pad = sum(
        lengths[perm[i : i + 32]].max() * 32 - lengths[perm[i : i + 32]].sum() for i in range(0, 5000, 32)
    )
    assert grouped_pad < random_pad / 4


def test_batch_order_is_a_function_of_seed_and_epoch() -> None:
    lengths = np.arange(1000) % 17 + 3
    a = length_grouped_batches(lengths, 16, seed=1, epoch=3)
    b = length_grouped_batches(lengths, 16, seed=1, epoch=3)
    c = length_grouped_batches(lengths, 16, seed=1, epoch=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_pad_batch_pads_to_longest() -> None:
    batch = pad_batch([[2, 10, 3], [2, 11, 12, 13, 3]], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 10, 3, 0, 0], [2, 11, 12, 13, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_masked_lm_loss_is_the_same_with_padded_head_rows() -> None:
    """The LM head's rows are padded to a multiple of 64 with ignored targets: the loss is
    that of the masked positions alone."""
    from transformers import BertConfig, BertForMaskedLM

    from newstopic.encoder import HEAD_ROWS_MULTIPLE, masked_lm_loss

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    model = BertForMaskedLM(config).eval()
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    positions, labels = torch.tensor([1, 5, 9, 20]), torch.tensor([7, 8, 9, 10])
    padded = masked_lm_loss(model, ids, mask, positions, labels, reduction="sum")
    hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(-1, 16)
    plain = torch.nn.functional.cross_entropy(model.cls(hidden[positions]), labels, reduction="sum")
    assert len(positions) < HEAD_ROWS_MULTIPLE
    torch.testing.assert_close(padded, plain)


def test_masking_never_touches_special_tokens_and_is_reproducible() -> None:
    ids = pad_batch([[2] + list(range(10, 60)) + [3], [2, 20, 21, 3]], pad_id=0)["input_ids"]
    special = special_tokens_mask(ids, [0, 1, 2, 3, 4])
    masked, positions, labels = mask_tokens(ids, special, 4, 100, 0.3, step_generator(5, 11))
    flat_special = special.flatten()
    assert not flat_special[positions].any()
    assert torch.equal(ids.flatten()[positions], labels)
    # unchosen positions are unchanged
    unchanged = torch.ones(ids.numel(), dtype=torch.bool)
    unchanged[positions] = False
    assert torch.equal(masked.flatten()[unchanged], ids.flatten()[unchanged])
    assert (masked.flatten()[positions] == 4).float().mean() > 0.5  # mostly [MASK]
    again = mask_tokens(ids, special, 4, 100, 0.3, step_generator(5, 11))
    assert torch.equal(again[0], masked) and torch.equal(again[1], positions)


def test_masking_predicts_at_least_one_token() -> None:
    ids = torch.tensor([[2, 50, 3]])
    special = special_tokens_mask(ids, [0, 1, 2, 3, 4])
    _, positions, labels = mask_tokens(ids, special, 4, 100, 0.01, step_generator(0, 0))
    assert positions.tolist() == [1] and labels.tolist() == [50]


def test_input_noise_masks_only_ordinary_tokens_at_the_given_rate() -> None:
    ids = pad_batch([[2] + list(range(10, 410)) + [3], [2, 20, 21, 3]], pad_id=0)["input_ids"]
    special = special_tokens_mask(ids, [0, 1, 2, 3, 4])
    noisy = mask_inputs(ids, [0, 1, 2, 3, 4], 4, 0.25, step_generator(3, 9))
    assert torch.equal(noisy[special], ids[special])  # [CLS], [SEP], [PAD] untouched
    changed = noisy != ids
    assert (noisy[changed] == 4).all()  # only ever [MASK]
    assert 0.15 < changed[~special].float().mean() < 0.35
    assert ids[0, 1] == 10  # the input tensor itself is not modified
    assert torch.equal(noisy, mask_inputs(ids, [0, 1, 2, 3, 4], 4, 0.25, step_generator(3, 9)))
    assert not torch.equal(noisy, mask_inputs(ids, [0, 1, 2, 3, 4], 4, 0.25, step_generator(3, 10)))
