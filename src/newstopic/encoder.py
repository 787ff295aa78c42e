"""Building the encoder: from the hub / a local HF directory, or from config sizes (offline).

The masked-LM model is split into its encoder (`base_model`) and its LM head so that the
head runs on masked positions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    PreTrainedModel,
)

from newstopic.config import looks_like_path
from newstopic.errors import ConfigError

HEAD_ROWS_MULTIPLE = 64
IGNORE_INDEX = -100  # the target of a position that is not predicted


def _check_local(name_or_path: str) -> None:
    # A path-like name that does not exist is a typo, not a hub id: say so instead of
    # letting the hub client try (and time out offline).
    if looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise ConfigError(f"model.name_or_path: {name_or_path}: directory not found")


def mlm_from_config(arch: dict[str, Any], vocab_size: int, pad_token_id: int) -> BertForMaskedLM:
    """A randomly initialised BERT masked-LM of the sizes in `arch`."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=arch["hidden_size"],
        num_hidden_layers=arch["num_hidden_layers"],
        num_attention_heads=arch["num_attention_heads"],
        intermediate_size=arch["intermediate_size"],
        max_position_embeddings=arch["max_position_embeddings"],
        hidden_dropout_prob=arch["dropout"],
        attention_probs_dropout_prob=arch["dropout"],
        pad_token_id=pad_token_id,
    )
    return BertForMaskedLM(config)


def set_dropout(model: nn.Module, p: float) -> None:
    """Every dropout of `model` (hidden states and attention probabilities) at rate `p`, for
    this run only: the saved config keeps its own rate for fine-tuning."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def from_hub(auto_class: Any, name_or_path: str, what: str = "", **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(name_or_path, **kwargs)` (a hub id or a local directory);
    one that cannot be found or read is a config error in one line."""
    _check_local(name_or_path)
    try:
        return auto_class.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"model.name_or_path: cannot load {what}{name_or_path!r}: {reason}") from None


def mlm_from_pretrained(
    name_or_path: str, vocab_size: int, trust_remote_code: bool = False
) -> PreTrainedModel:
    """A pretrained masked-LM (hub id or local directory), embeddings resized to the tokenizer."""
    model = from_hub(AutoModelForMaskedLM, name_or_path, trust_remote_code=trust_remote_code)
    if model.get_input_embeddings().num_embeddings < vocab_size:
        model.resize_token_embeddings(vocab_size)
    return model


def encoder_from_pretrained(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedModel:
    """The bare encoder (no LM head) of a hub id or a local directory."""
    try:
        return from_hub(AutoModel, name_or_path, trust_remote_code=trust_remote_code, add_pooling_layer=False)
    except TypeError:  # an encoder without a pooler to leave out
        return from_hub(AutoModel, name_or_path, trust_remote_code=trust_remote_code)


def split_mlm(model: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    """(encoder, lm_head) of a BERT/RoBERTa-style masked-LM (e.g. `bert` + `cls`)."""
    base = model.base_model
    heads = [m for name, m in model.named_children() if m is not base]
    if len(heads) != 1:
        raise ConfigError(
            f"model.name_or_path: {type(model).__name__} has {len(heads)} head modules; "
            "masked-only MLM supports BERT/RoBERTa-style models with one LM head"
        )
    return base, heads[0]


def masked_lm_loss(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    labels: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of the LM head evaluated on the masked positions only.

    Their count is padded to a multiple of HEAD_ROWS_MULTIPLE with ignored targets: the count
    changes at every step, and each new shape of the vocabulary projection costs oneDNN a
    kernel compilation and megabytes of cache that is never freed (newstopic.study.mlm_memory)."""
    encoder, head = split_mlm(model)
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    extra = -len(positions) % HEAD_ROWS_MULTIPLE
    positions = torch.cat([positions, positions.new_zeros(extra)])
    labels = torch.cat([labels, labels.new_full((extra,), IGNORE_INDEX)])
    logits = head(hidden.reshape(-1, hidden.shape[-1])[positions])
    total = SummedCrossEntropy.apply(logits, labels)
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1) if reduction == "mean" else total


class SummedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of [rows, vocab] logits (IGNORE_INDEX targets skipped), computed
    in float32 a block of rows at a time.

    The same loss and gradient as `cross_entropy(logits.float(), reduction="sum")`, which
    passes over the whole float32 copy of the logits six times (copy, log-softmax, the
    gradient's zero fill, scatter, softmax backward, cast back): 16 ms of a ~150 ms CPU MLM step
    with a 12,000-token vocabulary, 10 ms this way (`newstopic.study.mlm_memory ce`). Blocks of
    CHUNK_ROWS rows stay in cache between passes."""

    CHUNK_ROWS = 32

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        kept = labels != IGNORE_INDEX
        targets = torch.where(kept, labels, 0)
        lse = torch.cat(
            [block.float().logsumexp(-1) for block in logits.split(SummedCrossEntropy.CHUNK_ROWS)]
        )
        picked = logits.gather(1, targets[:, None]).squeeze(1).float()
        ctx.save_for_backward(logits, lse, targets, kept)
        return ((lse - picked) * kept).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, lse, targets, kept = ctx.saved_tensors
        out = torch.empty_like(logits)
        scale = grad * kept  # d loss / d logits = (softmax - one_hot) on kept rows, 0 elsewhere
        n = SummedCrossEntropy.CHUNK_ROWS
        for start in range(0, len(logits), n):
            rows = slice(start, start + n)
            probs = logits[rows].to(torch.float32, copy=True).sub_(lse[rows, None]).exp_()
            probs[torch.arange(len(probs)), targets[rows]] -= 1.0
            out[rows] = probs.mul_(scale[rows, None])
        return out, None
