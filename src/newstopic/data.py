"""Tokenised data, length-grouped batches, dynamic padding and MLM masking.

Batch order is a pure function of (seed, epoch), and MLM masks of (seed, step): a resumed
run sees exactly the batches and masks an uninterrupted run would, and skipping to the
middle of an epoch costs nothing (it is list slicing, not replaying a data loader).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

# Batches are sorted by length within windows of this many batches: titles of similar
# length share a batch (little padding) while batch order stays random.
SORT_WINDOW_BATCHES = 50


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with special tokens, truncated to max_length (a 1 MB title is just cut)."""
    # Cut absurdly long strings before the tokenizer sees them: only the first
    # max_length pieces survive anyway.
    limit = max_length * 20
    clipped = [t[:limit] for t in texts]
    return tokenizer(clipped, truncation=True, max_length=max_length)["input_ids"]


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Split row positions into batches of similar length, in a random order fixed by (seed, epoch)."""
    n = len(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    window = batch_size * SORT_WINDOW_BATCHES
    batches = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (dynamic padding)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def mask_tokens(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT masking. Returns (masked input_ids, flat positions to predict, their labels).

    Only the chosen positions are returned so the LM head runs on them alone: the
    full-vocabulary projection on every position is otherwise most of the MLM cost.
    """
    candidates = ~special_mask
    probs = torch.full(input_ids.shape, mask_prob)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probs) & candidates
    if not chosen.any():  # every batch predicts at least one token
        flat = torch.nonzero(candidates.flatten()).flatten()
        pick = flat[torch.randint(len(flat), (1,), generator=generator)]
        chosen.view(-1)[pick] = True
    labels = input_ids[chosen]
    masked = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (roll < 0.8)
    to_random = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[to_mask] = mask_id
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked[to_random] = random_ids[to_random]
    positions = torch.nonzero(chosen.flatten()).flatten()
    return masked, positions, labels


def mask_inputs(
    input_ids: torch.Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    prob: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Input noise for fine-tuning: each non-special token becomes [MASK] with probability `prob`
    (no targets; the encoder knows [MASK] from MLM). Returns a new tensor."""
    hit = torch.rand(input_ids.shape, generator=generator) < prob
    noisy = input_ids.clone()
    noisy[hit & ~special_tokens_mask(input_ids, special_ids)] = mask_id
    return noisy


def special_tokens_mask(input_ids: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """True where the token is a special token ([CLS], [SEP], [PAD], ...)."""
    return torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))


def step_generator(seed: int, step: int) -> torch.Generator:
    """An RNG for one optimiser step, independent of everything before it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)
