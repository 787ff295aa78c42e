"""checkpoint.py: a resumed run continues with exactly the saved model, optimizer, scheduler,
RNG and step; a bad checkpoint is reported in one line and the previous good one is used;
only the last K are kept; loading never unpickles code."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from newstopic.checkpoint import CheckpointDir, TrainState, fingerprint
from newstopic.errors import CheckpointError


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(50, 16)
        self.drop = nn.Dropout(0.3)  # consumes the global RNG: a resume must restore it
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.emb(ids)))


def make(seed: int) -> tuple[Tiny, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_linear_schedule_with_warmup(opt, 3, 40)
    return model, opt, sched


def step(
    model: Tiny, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, i: int
) -> float:
    g = torch.Generator().manual_seed(i)
    ids = torch.randint(50, (8, 5), generator=g)
    y = torch.randint(3, (8,), generator=g)
    loss = nn.functional.cross_entropy(model(ids), y)
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    return loss.item()


def run(ckpt: CheckpointDir, steps: list[int], seed: int = 0) -> TrainState:
    """Train Tiny for the given steps, saving a checkpoint after each; return the state."""
    model, opt, sched = make(seed)
    state = TrainState()
    for i in steps:
        step(model, opt, sched, i)
        state.step = i
        ckpt.save(model, opt, sched, state)
    return state


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_restores_model_optimizer_scheduler_rng_and_step(tmp_path: Path) -> None:
    model, opt, sched = make(0)
    for i in range(1, 8):
        step(model, opt, sched, i)
    state = TrainState(step=7, best_metric=0.5, best_step=None, history=[{"epoch": 1, "step": 5}])
    state.epoch_loss_sum, state.epoch_batches = 3.25, 2
    ckpt = CheckpointDir(tmp_path, "run-a")
    ckpt.save(model, opt, sched, state)
    # The uninterrupted continuation.
    expected_losses = [step(model, opt, sched, i) for i in range(8, 15)]

    fresh, fresh_opt, fresh_sched = make(123)  # other initial weights and RNG position
    resumed = CheckpointDir(tmp_path, "run-a").resume(fresh, fresh_opt, fresh_sched)

    assert resumed == state
    losses = [step(fresh, fresh_opt, fresh_sched, i) for i in range(8, 15)]
    assert losses == expected_losses  # bitwise: same weights, Adam moments, lr, dropout masks
    assert_same_tensors(fresh.state_dict(), model.state_dict())
    assert fresh_sched.get_last_lr() == sched.get_last_lr()
    assert fresh_sched.state_dict()["last_epoch"] == 14


def test_no_checkpoint_means_no_resume(tmp_path: Path) -> None:
    assert CheckpointDir(tmp_path / "absent", "x").resume(*make(0)) is None


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "model truncated": ("model.safetensors", _truncate, "truncated or corrupt"),
    "model bit flip": ("model.safetensors", _flip_byte, "truncated or corrupt"),
    "trainer truncated": ("trainer.pt", _truncate, "truncated or corrupt"),
    "trainer deleted": ("trainer.pt", Path.unlink, "truncated or corrupt"),
    "state.json truncated": ("state.json", _truncate, "unreadable state.json"),
    "state.json deleted": ("state.json", Path.unlink, "unreadable state.json"),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_corrupt_latest_is_reported_and_previous_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    name, damage, reason = CORRUPTIONS[case]
    ckpt = CheckpointDir(tmp_path, "run-a", keep=2)
    run(ckpt, [5, 10])
    damage(tmp_path / "step-00000010" / name)

    model, opt, sched = make(1)
    with caplog.at_level(logging.WARNING, logger="newstopic"):
        state = ckpt.resume(model, opt, sched)

    assert state is not None and state.step == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "step-00000010" in warnings[0] and reason in warnings[0]
    # The weights are those of step 5, not a mix.
    expected, *_ = make(0)
    ref_opt = torch.optim.AdamW(expected.parameters(), lr=1e-2)
    step(expected, ref_opt, get_linear_schedule_with_warmup(ref_opt, 3, 40), 5)
    assert_same_tensors(model.state_dict(), expected.state_dict())


def test_all_checkpoints_corrupt_means_start_over(tmp_path: Path) -> None:
    ckpt = CheckpointDir(tmp_path, "run-a", keep=2)
    run(ckpt, [5, 10])
    for d in ckpt.step_dirs():
        _flip_byte(d / "trainer.pt")
    assert ckpt.resume(*make(1)) is None


def test_half_written_checkpoint_is_invisible(tmp_path: Path) -> None:
    """A job killed while saving leaves a hidden .step-*.tmp directory that is never resumed."""
    ckpt = CheckpointDir(tmp_path, "run-a")
    run(ckpt, [5])
    partial = tmp_path / ".step-00000010.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    assert [p.name for p in ckpt.step_dirs()] == ["step-00000005"]
    assert ckpt.resume(*make(1)).step == 5
    run(ckpt, [10])  # the next save of that step replaces the leftover
    assert not partial.exists()


def test_other_fingerprint_is_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run(CheckpointDir(tmp_path, fingerprint({"lr": 1e-3}, [])), [5])
    other = CheckpointDir(tmp_path, fingerprint({"lr": 2e-3}, []))
    with caplog.at_level(logging.WARNING, logger="newstopic"):
        assert other.resume(*make(1)) is None
    assert "other parameters or inputs" in caplog.text


def test_fingerprint_follows_params_and_input_files(tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    data.write_bytes(b"abc")
    base = fingerprint({"lr": 1e-3}, [data])
    assert fingerprint({"lr": 1e-3}, [data]) == base
    assert fingerprint({"lr": 2e-3}, [data]) != base
    data.write_bytes(b"abcd")  # rewritten input (e.g. preprocess ran again)
    assert fingerprint({"lr": 1e-3}, [data]) != base


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_only_last_k_checkpoints_are_kept(tmp_path: Path, keep: int) -> None:
    ckpt = CheckpointDir(tmp_path, "run-a", keep=keep)
    run(ckpt, [5, 10, 15, 20, 25])
    expected = [f"step-{s:08d}" for s in [5, 10, 15, 20, 25][-keep:]]
    assert [p.name for p in ckpt.step_dirs()] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == expected  # no leftovers


def test_best_models_kept_while_a_kept_checkpoint_needs_them(tmp_path: Path) -> None:
    model, opt, sched = make(0)
    ckpt = CheckpointDir(tmp_path, "run-a", keep=2)
    state = TrainState()
    for i, best in [(5, None), (10, 10), (15, 10), (20, 20), (25, 20), (30, 20)]:
        step(model, opt, sched, i)
        state.step = i
        if best == i:
            ckpt.save_best(model, i, metric=i / 100)
            state.best_step = best
        ckpt.save(model, opt, sched, state)
        names = {p.name for p in ckpt.best_dirs()}
        # The best model of every kept checkpoint, and nothing older.
        wanted = {
            f"best-{s:08d}"
            for s in [json.loads((d / "state.json").read_text())["best_step"] for d in ckpt.step_dirs()]
            if s is not None
        }
        assert names == wanted, i
    assert ckpt.load_best(model, 20)["step"] == 20


def test_new_best_without_a_later_checkpoint_is_discarded_on_resume(tmp_path: Path) -> None:
    """Killed after saving a new best model but before the next step checkpoint: the resumed
    run redoes those steps, so it must not find (and end with) the lost run's best model."""
    model, opt, sched = make(0)
    ckpt = CheckpointDir(tmp_path, "run-a")
    step(model, opt, sched, 1)
    ckpt.save_best(model, 1, 0.5)
    ckpt.save(model, opt, sched, TrainState(step=1, best_metric=0.5, best_step=1))
    step(model, opt, sched, 2)
    ckpt.save_best(model, 2, 0.6)  # ... and the job dies here

    state = ckpt.resume(*make(1))
    assert state.step == 1 and state.best_step == 1
    assert [p.name for p in ckpt.best_dirs()] == ["best-00000001"]


def test_checkpoint_whose_best_model_is_corrupt_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, opt, sched = make(0)
    ckpt = CheckpointDir(tmp_path, "run-a", keep=3)
    step(model, opt, sched, 1)
    ckpt.save(model, opt, sched, TrainState(step=1))
    step(model, opt, sched, 2)
    ckpt.save_best(model, 2, 0.5)
    ckpt.save(model, opt, sched, TrainState(step=2, best_metric=0.5, best_step=2))
    _truncate(tmp_path / "best-00000002" / "model.safetensors")

    with caplog.at_level(logging.WARNING, logger="newstopic"):
        state = ckpt.resume(*make(1))
    # Resuming step 2 would end with a model that is not the best one: step 1 is used.
    assert state.step == 1 and state.best_step is None
    assert "best-00000002" in caplog.text
    with pytest.raises(CheckpointError, match="best-00000002"):
        ckpt.load_best(model, 2)


class Payload:
    """Unpickling this creates a directory: proof that code ran during loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_pickled_object_in_trainer_pt_is_rejected_not_executed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt_dir = tmp_path / "scratch"
    ckpt = CheckpointDir(ckpt_dir, "run-a", keep=2)
    run(ckpt, [5, 10])
    marker = tmp_path / "code-was-executed"
    trainer = ckpt_dir / "step-00000010" / "trainer.pt"
    torch.save({"optimizer": Payload(marker), "scheduler": {}, "torch_rng": torch.get_rng_state()}, trainer)
    # A crafted checkpoint: its checksum matches, so only the loader stands in the way.
    meta_path = ckpt_dir / "step-00000010" / "state.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"]["trainer.pt"] = __import__("hashlib").sha256(trainer.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))

    model, opt, sched = make(1)
    with caplog.at_level(logging.WARNING, logger="newstopic"):
        state = ckpt.resume(model, opt, sched)

    assert not marker.exists()
    assert state.step == 5
    assert "skipping checkpoint step-00000010" in caplog.text


def test_failed_write_is_one_line_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = CheckpointDir(tmp_path, "run-a")
    run(ckpt, [5])

    def disk_full(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    model, opt, sched = make(0)
    with pytest.raises(CheckpointError, match=r"step-00000010: cannot write checkpoint \(No space left"):
        ckpt.save(model, opt, sched, TrainState(step=10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005"]


def test_load_best_without_any_best_returns_none(tmp_path: Path) -> None:
    assert CheckpointDir(tmp_path, "x").load_best(Tiny()) is None
    with pytest.raises(CheckpointError, match="best model not found"):
        CheckpointDir(tmp_path, "x").load_best(Tiny(), 5)
