"""The custom model: a pretrained (or MLM-adapted) encoder + pooling + dropout + MLP head,
optionally with a bag of hashed token n-grams beside the encoder (fastText-style).

It is a PreTrainedModel with its own config class, so `NewsTopicClassifier.from_pretrained`
on a saved directory rebuilds the encoder from the embedded encoder config and loads every
weight from safetensors, giving the same predictions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from newstopic import NUM_LABELS


class NewsTopicConfig(PretrainedConfig):
    model_type = "newstopic"

    # A Hugging Face config takes its fields (what config.json holds) as arguments.
    def __init__(  # noqa: PLR0913
        self,
        encoder: dict[str, Any] | None = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        head_hidden_size: int = 256,
        ngram_buckets: int = 0,
        ngram_dim: int = 32,
        ngram_max_n: int = 2,
        ngram_dropout: float = 0.5,
        num_labels: int = NUM_LABELS,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_labels=num_labels, **kwargs)
        # label2id from id2label (transformers 5 leaves it None): pipelines and users map a topic
        # name back to its topic_idx. Also for models saved before it was written.
        if not getattr(self, "label2id", None) and getattr(self, "id2label", None):
            self.label2id = {name: int(i) for i, name in self.id2label.items()}
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.head_hidden_size = head_hidden_size
        self.ngram_buckets = ngram_buckets
        self.ngram_dim = ngram_dim
        self.ngram_max_n = ngram_max_n
        self.ngram_dropout = ngram_dropout

    def encoder_config(self) -> PretrainedConfig:
        enc = dict(self.encoder)
        return AutoConfig.for_model(enc.pop("model_type"), **enc)


def _encoder_from_config(config: PretrainedConfig) -> PreTrainedModel:
    try:
        # The encoder's own pooler is unused (we pool ourselves); leaving it out keeps every
        # parameter trained, which DistributedDataParallel requires.
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


# Hashing multiplier and per-n offset for token n-grams (any large odd constants work).
_HASH_MUL = 1_000_003
_HASH_OFFSET = 7_919


def hashed_ngrams(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, max_n: int, buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket ids of every token 1..max_n-gram ([batch, grams]) and whether each is real.

    An n-gram is real when all its tokens are attended (so never padding); [CLS]/[SEP]
    n-grams are kept: they mark how a title starts and ends.
    """
    length = input_ids.shape[1]
    ids, real = [], []
    for n in range(1, min(max_n, length) + 1):
        h = torch.full_like(input_ids[:, : length - n + 1], n * _HASH_OFFSET)
        ok = torch.ones_like(h, dtype=torch.bool)
        for k in range(n):
            h = h * _HASH_MUL + input_ids[:, k : length - n + 1 + k]
            ok &= attention_mask[:, k : length - n + 1 + k].bool()
        ids.append(torch.remainder(h, buckets))
        real.append(ok)
    return torch.cat(ids, 1), torch.cat(real, 1)


class NgramBag(nn.Module):
    """Mean of the embeddings of a title's hashed token n-grams: the lexical evidence a
    linear n-gram model uses, learnt jointly with (and complementing) the encoder."""

    def __init__(self, buckets: int, dim: int, max_n: int, dropout: float) -> None:
        super().__init__()
        self.buckets = buckets
        self.max_n = max_n
        self.dropout = dropout
        self.embed = nn.Embedding(buckets, dim)
        # Puts the bag on the scale of the encoder's (layer-normed) features in the head.
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        grams, real = hashed_ngrams(input_ids, attention_mask, self.max_n, self.buckets)
        if self.training and self.dropout > 0:
            # Dropping whole n-grams keeps the bag from memorising the training titles
            # (millions of free parameters, one epoch to learn them all).
            real &= torch.rand(real.shape, device=real.device) >= self.dropout
        weight = real.unsqueeze(-1).to(self.embed.weight.dtype)
        bag = (self.embed(grams) * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        return self.norm(bag)


class NewsTopicClassifier(PreTrainedModel):
    config_class = NewsTopicConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: NewsTopicConfig) -> None:
        super().__init__(config)
        self.encoder = _encoder_from_config(config.encoder_config())
        features = self.encoder.config.hidden_size
        self.ngrams: NgramBag | None = None
        if config.ngram_buckets > 0:
            self.ngrams = NgramBag(
                config.ngram_buckets, config.ngram_dim, config.ngram_max_n, config.ngram_dropout
            )
            features += config.ngram_dim
        p = config.classifier_dropout
        if config.head_hidden_size > 0:
            self.head = nn.Sequential(
                nn.Dropout(p),
                nn.Linear(features, config.head_hidden_size),
                nn.GELU(),
                nn.Dropout(p),
                nn.Linear(config.head_hidden_size, config.num_labels),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(p), nn.Linear(features, config.num_labels))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Only our own layers: the encoder initialises itself (or is loaded).
        if isinstance(module, nn.Linear) and any(module is m for m in self.head.modules()):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif self.ngrams is not None and module is self.ngrams.embed:
            nn.init.normal_(module.weight, std=0.02)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        features = self.pool(hidden, attention_mask)
        if self.ngrams is not None:
            features = torch.cat([features, self.ngrams(input_ids, attention_mask)], -1)
        logits = self.head(features)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register("newstopic", NewsTopicConfig)
AutoModelForSequenceClassification.register(NewsTopicConfig, NewsTopicClassifier)


def build_classifier(
    encoder: PreTrainedModel,
    pooling: str,
    dropout: float,
    head_hidden_size: int,
    id2label: dict[int, str] | None = None,
    ngrams: dict[str, float] | None = None,
) -> NewsTopicClassifier:
    """A classifier whose encoder starts from `encoder`'s weights; the head is new."""
    enc_cfg = encoder.config.to_dict()
    config = NewsTopicConfig(
        encoder=enc_cfg,
        pooling=pooling,
        classifier_dropout=dropout,
        head_hidden_size=head_hidden_size,
        # model.ngrams {buckets, dim, max_n, dropout} -> ngram_*; what is left out keeps the
        # config's default (no bag).
        **{f"ngram_{key}": value for key, value in (ngrams or {}).items()},
        id2label=id2label or {i: str(i) for i in range(NUM_LABELS)},
    )
    model = NewsTopicClassifier(config)
    missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    # A pooler in the source and none here (or the reverse) is the only allowed mismatch.
    bad = [k for k in [*missing, *unexpected] if not k.startswith("pooler.")]
    if bad:
        raise RuntimeError(f"encoder weights do not fit the classifier's encoder: {bad[:3]}")
    return model
