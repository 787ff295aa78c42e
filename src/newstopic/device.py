"""Where and in what precision a model runs: the device name of `runtime.device` and bf16
autocast (`runtime.precision`), shared by training and prediction."""

from __future__ import annotations

import torch


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
