"""Where and in what precision a model runs: the device name of `runtime.device` and bf16
autocast (`runtime.precision`), shared by training and prediction."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def resolve_device(name: str) -> torch.device:
    """'auto' = the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast (matmuls in bfloat16 on GPUs and on CPUs with AMX/AVX512-BF16)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def describe(device: torch.device) -> str:
    """The device for a log line, with the GPU's name."""
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def attention_for(device: torch.device) -> str:
    """The attention kernel to train with: on a CPU, PyTorch's fused SDPA kernel is slower
    than plain matmuls for titles of ~14 tokens (a whole MLM step 1.4x slower without
    dropout, 3% with it: `newstopic.study.mlm_memory levers`); elsewhere SDPA."""
    return "eager" if device.type == "cpu" else "sdpa"


def set_attention(model: torch.nn.Module, device: torch.device) -> None:
    """Every Hugging Face (sub)model of `model` computes attention with `attention_for(device)`.
    A run-time choice: saved configs do not record it."""
    impl = attention_for(device)
    for module in model.modules():
        if (
            isinstance(module, PreTrainedModel)
            and module.config._attn_implementation != impl
            and module._can_set_attn_implementation()
        ):
            module.set_attn_implementation(impl)
