"""Resumable training state in a scratch directory that is not a Snakemake output.

Snakemake deletes a job's declared outputs before it runs, so state kept there would be
lost on the very rerun that needs it. Layout of a run's scratch directory:

    step-00000050/  model.safetensors  trainer.pt  state.json   (last K kept)
    best-00000045/  model.safetensors  state.json                (best model so far)

`state.json` holds the step, the run's fingerprint and a SHA-256 of every other file, so a
truncated or corrupt checkpoint is detected and the previous good one is used. Tensors are
stored with safetensors and `torch.load(weights_only=True)`: loading never unpickles code.

The best model is versioned by step and never overwritten in place: each step checkpoint
names the best model it goes with (`best_step`), and that one is kept as long as the step
checkpoint is. A run killed between writing a new best model and its next step checkpoint
therefore resumes with the best model that matches the resumed state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from newstopic.errors import CheckpointError

log = logging.getLogger("newstopic")

STEP_PREFIX = "step-"
BEST_PREFIX = "best-"

# What loading a checkpoint that passed its checksums can still raise (e.g. a trainer.pt
# holding a pickled object, which weights_only=True refuses to build).
_LOAD_ERRORS = (
    CheckpointError,
    OSError,
    RuntimeError,
    KeyError,
    ValueError,
    TypeError,
    pickle.UnpicklingError,
    SafetensorError,
)


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


def step_of(path: Path) -> int | None:
    """The step in a checkpoint directory's name (step-00000050, checkpoint-50), or None."""
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


class CheckpointDir:
    def __init__(self, root: str | os.PathLike[str], run_fingerprint: str, keep: int = 2) -> None:
        self.root = Path(root)
        self.fingerprint = run_fingerprint
        self.keep = keep

    # --- saving -------------------------------------------------------------------------
    def _write(self, final: Path, files: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write `files` and state.json into a hidden temporary directory, then rename it."""
        tmp = final.with_name(f".{final.name}.tmp")
        try:
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
        except (OSError, RuntimeError, SafetensorError) as exc:
            # Disk full, quota, permissions: one line, not a traceback from inside torch.
            shutil.rmtree(tmp, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise CheckpointError(f"{final}: cannot write checkpoint ({reason})") from None

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
        self._prune()
        return final

    def save_best(self, model: torch.nn.Module, step: int, metric: float) -> Path:
        final = self._best_path(step)
        self._write(
            final,
            {"model.safetensors": lambda p: save_model(model, str(p))},
            {"kind": "best", "step": step, "metric": metric},
        )
        return final

    def _prune(self) -> None:
        """Keep the last K step checkpoints, the best models they name, and the newest best."""
        steps = self.step_dirs()
        for old in steps[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        needed = set()
        for path in steps[-self.keep :]:
            try:
                needed.add(json.loads((path / "state.json").read_text()).get("best_step"))
            except (OSError, ValueError):
                continue
        bests = self.best_dirs()
        for path in bests[:-1]:
            if step_of(path) not in needed:
                shutil.rmtree(path, ignore_errors=True)

    # --- loading ------------------------------------------------------------------------
    def _dirs(self, prefix: str) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob(f"{prefix}*") if p.is_dir() and step_of(p) is not None]
        return sorted(found, key=step_of)

    def step_dirs(self) -> list[Path]:
        """Step checkpoints, oldest first (complete ones only: partial writes are hidden)."""
        return self._dirs(STEP_PREFIX)

    def best_dirs(self) -> list[Path]:
        return self._dirs(BEST_PREFIX)

    def _best_path(self, step: int) -> Path:
        return self.root / f"{BEST_PREFIX}{step:08d}"

    def _verified_meta(self, path: Path) -> dict[str, Any]:
        try:
            meta = json.loads((path / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable state.json ({exc})") from None
        if not isinstance(meta, dict) or meta.get("step") != step_of(path):
            raise CheckpointError(f"{path}: state.json does not match the directory name")
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
        """Load the newest good checkpoint into model/optimizer/scheduler/RNG; None if none.

        A checkpoint is good when its files match their checksums, it belongs to this run
        (fingerprint), and the best model it names is good too. Each one skipped is
        reported in one line.
        """
        for path in reversed(self.step_dirs()):
            try:
                meta = self._verified_meta(path)
                if meta.get("best_step") is not None:
                    best = self._best_path(meta["best_step"])
                    if not best.is_dir():
                        raise CheckpointError(f"{path}: its best model {best.name} is missing")
                    self._verified_meta(best)
                # The only pickle, loaded first: a rejected one leaves the model untouched.
                trainer = torch.load(path / "trainer.pt", weights_only=True)
                load_model(model, str(path / "model.safetensors"))
                optimizer.load_state_dict(trainer["optimizer"])
                scheduler.load_state_dict(trainer["scheduler"])
                torch.set_rng_state(trainer["torch_rng"])
                if "cuda_rng" in trainer and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(trainer["cuda_rng"])
            except _LOAD_ERRORS as exc:
                log.warning("skipping checkpoint %s: %s", path.name, str(exc).splitlines()[0])
                continue
            # Best models newer than the resumed step belong to the part of the run that
            # is redone; it writes them again when it gets there.
            for best in self.best_dirs():
                if step_of(best) > meta["step"]:
                    shutil.rmtree(best, ignore_errors=True)
            fields = {k: meta[k] for k in TrainState.__dataclass_fields__ if k in meta}
            return TrainState(**fields)
        return None

    def load_best(self, model: torch.nn.Module, step: int | None = None) -> dict[str, Any] | None:
        """Load the best model saved at `step` (default: the newest); None if there is none."""
        if step is None:
            bests = self.best_dirs()
            if not bests:
                return None
            path = bests[-1]
        else:
            path = self._best_path(step)
            if not path.is_dir():
                raise CheckpointError(f"{path}: best model not found")
        meta = self._verified_meta(path)
        load_model(model, str(path / "model.safetensors"))
        return meta

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
