"""Resumable training state in a scratch directory that is not a Snakemake output.

Snakemake deletes a job's declared outputs before it runs, so state kept there would be
lost on the very rerun that needs it. Layout of a run's scratch directory:

    step-00000050/  model.safetensors  trainer.pt  state.json   (last K kept)
    best/           model.safetensors  state.json                (best model so far)

`state.json` holds the step, the run's fingerprint and a SHA-256 of every other file, so a
truncated or corrupt checkpoint is detected and the previous good one is used. Tensors are
stored with safetensors and `torch.load(weights_only=True)`: loading never unpickles code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from newstopic.errors import CheckpointError

log = logging.getLogger("newstopic")

STEP_PREFIX = "step-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(params: dict[str, Any], inputs: list[str | os.PathLike[str]]) -> str:
    """Identify a run: its hyper-parameters and its input files (size + mtime).

    A checkpoint from a run with other parameters or other inputs is never resumed.
    """
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for item in inputs:
        for path in sorted(Path(item).rglob("*")) if Path(item).is_dir() else [Path(item)]:
            if path.is_file():
                st = path.stat()
                h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass
class TrainState:
    """What the loop needs besides tensors to continue exactly where it stopped."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    epoch_loss_sum: float = 0.0  # of the epoch in progress, so its mean survives a resume
    epoch_batches: int = 0


class CheckpointDir:
    def __init__(self, root: str | os.PathLike[str], run_fingerprint: str, keep: int = 2) -> None:
        self.root = Path(root)
        self.fingerprint = run_fingerprint
        self.keep = keep

    # --- saving -------------------------------------------------------------------------
    def _write(self, final: Path, files: dict[str, Any], meta: dict[str, Any]) -> None:
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, writer in files.items():
            writer(tmp / name)
        meta = {
            **meta,
            "fingerprint": self.fingerprint,
            "sha256": {name: _sha256(tmp / name) for name in files},
        }
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        state: TrainState,
    ) -> Path:
        final = self.root / f"{STEP_PREFIX}{state.step:08d}"
        trainer = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            trainer["cuda_rng"] = torch.cuda.get_rng_state_all()
        self._write(
            final,
            {
                "model.safetensors": lambda p: save_model(model, str(p)),
                "trainer.pt": lambda p: torch.save(trainer, p),
            },
            {"kind": "step", **state.__dict__},
        )
        for old in self.step_dirs()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def save_best(self, model: torch.nn.Module, step: int, metric: float) -> None:
        self._write(
            self.root / "best",
            {"model.safetensors": lambda p: save_model(model, str(p))},
            {"kind": "best", "step": step, "metric": metric},
        )

    # --- loading ------------------------------------------------------------------------
    def step_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob(f"{STEP_PREFIX}*") if p.is_dir())

    def _verified_meta(self, path: Path) -> dict[str, Any]:
        try:
            meta = json.loads((path / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable state.json ({exc})") from None
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(f"{path}: belongs to a run with other parameters or inputs")
        for name, digest in meta.get("sha256", {}).items():
            f = path / name
            if not f.is_file() or _sha256(f) != digest:
                raise CheckpointError(f"{path}: {name} is truncated or corrupt (checksum mismatch)")
        return meta

    def resume(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> TrainState | None:
        """Load the newest good checkpoint into model/optimizer/scheduler/RNG; None if none."""
        for path in reversed(self.step_dirs()):
            try:
                meta = self._verified_meta(path)
                load_model(model, str(path / "model.safetensors"))
                trainer = torch.load(path / "trainer.pt", weights_only=True)
                optimizer.load_state_dict(trainer["optimizer"])
                scheduler.load_state_dict(trainer["scheduler"])
                torch.set_rng_state(trainer["torch_rng"])
                if "cuda_rng" in trainer and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(trainer["cuda_rng"])
            except (CheckpointError, OSError, RuntimeError, KeyError, ValueError) as exc:
                log.warning("skipping checkpoint: %s", str(exc).splitlines()[0])
                continue
            fields = {k: meta[k] for k in TrainState.__dataclass_fields__ if k in meta}
            return TrainState(**fields)
        return None

    def load_best(self, model: torch.nn.Module) -> dict[str, Any] | None:
        path = self.root / "best"
        if not path.is_dir():
            return None
        meta = self._verified_meta(path)
        load_model(model, str(path / "model.safetensors"))
        return meta

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
