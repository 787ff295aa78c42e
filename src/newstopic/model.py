"""The custom model: a pretrained (or MLM-adapted) encoder + pooling + dropout + MLP head.

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

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        head_hidden_size: int = 256,
        num_labels: int = NUM_LABELS,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_labels=num_labels, **kwargs)
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.head_hidden_size = head_hidden_size

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


class NewsTopicClassifier(PreTrainedModel):
    config_class = NewsTopicConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: NewsTopicConfig) -> None:
        super().__init__(config)
        self.encoder = _encoder_from_config(config.encoder_config())
        hidden = self.encoder.config.hidden_size
        p = config.classifier_dropout
        if config.head_hidden_size > 0:
            self.head = nn.Sequential(
                nn.Dropout(p),
                nn.Linear(hidden, config.head_hidden_size),
                nn.GELU(),
                nn.Dropout(p),
                nn.Linear(config.head_hidden_size, config.num_labels),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(p), nn.Linear(hidden, config.num_labels))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Only our own layers: the encoder initialises itself (or is loaded).
        if isinstance(module, nn.Linear) and any(module is m for m in self.head.modules()):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

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
        logits = self.head(self.pool(hidden, attention_mask))
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
) -> NewsTopicClassifier:
    """A classifier whose encoder starts from `encoder`'s weights; the head is new."""
    enc_cfg = encoder.config.to_dict()
    config = NewsTopicConfig(
        encoder=enc_cfg,
        pooling=pooling,
        classifier_dropout=dropout,
        head_hidden_size=head_hidden_size,
        id2label=id2label or {i: str(i) for i in range(NUM_LABELS)},
    )
    model = NewsTopicClassifier(config)
    missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    # A pooler in the source and none here (or the reverse) is the only allowed mismatch.
    bad = [k for k in [*missing, *unexpected] if not k.startswith("pooler.")]
    if bad:
        raise RuntimeError(f"encoder weights do not fit the classifier's encoder: {bad[:3]}")
    return model
