"""Which machine a measurement ran on, in the words a wall time needs.

Machines of one kind are not one CPU: on 2 cores the same MLM ran 1,830 s on an Intel Xeon
with AMX and 3,620 s on the same day's earlier host (docs/performance.md). bf16 matmuls, most of a
training step, run on AMX tiles where the CPU has them, else on AVX512-BF16 or by conversion,
so a wall time is read with the CPU model and its bf16 unit beside it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(field: str) -> str | None:
    lines = CPUINFO.read_text().splitlines() if CPUINFO.is_file() else []
    values = [line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field]
    return values[0] if values else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def bf16_matmul_unit() -> str:
    """What runs bf16 matmuls here: AMX tiles, AVX512-BF16 instructions, or neither."""
    flags = set((_cpuinfo("flags") or "").split())
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX512-BF16" if "avx512_bf16" in flags else "none"


def describe() -> str:
    """One line: `Intel(R) Xeon(R) Processor, 2 cores, bf16 matmul unit: AMX`."""
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, bf16 matmul unit: {bf16_matmul_unit()}"
