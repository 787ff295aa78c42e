"""Progress lines: steps per second and the time the stage still needs, in both engines' logs."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest

from newstopic.hf_engine import _NewstopicCallback
from newstopic.training import Progress, pace

LINE = re.compile(r"\((\d+\.\d\d) steps/s, (\d+h\d\dm|\d+m\d\ds) left\)$")


def test_pace() -> None:
    assert pace(100, 300, 50.0) == "2.00 steps/s, 2m30s left"
    assert pace(10, 36_000, 10.0) == "1.00 steps/s, 10h00m left"
    assert pace(0, 10, 1.0) == "0.00 steps/s, time left unknown"  # no step yet: no division by zero


def test_loop_progress_line(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(total_steps=100, log_every=10, first_step=0)
    with caplog.at_level(logging.INFO, logger="newstopic"):
        for step in range(1, 11):
            progress.update(step, 0, 1.0, 1e-3)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("step 10/100 epoch 0 loss 1.0000") and LINE.search(line), line


def test_hf_engine_progress_line(caplog: pytest.LogCaptureFixture) -> None:
    """The Trainer engine's lines say the same; a resumed run's speed counts its own steps."""
    callback = _NewstopicCallback("fp", log_every=10, previous_seconds=0.0)
    state = SimpleNamespace(global_step=40, max_steps=100, epoch=1.0)
    callback.on_train_begin(None, state, None)  # resumed at step 40
    callback.start -= 5.0  # five seconds ago
    state.global_step = 50
    scheduler = SimpleNamespace(get_last_lr=lambda: [2e-4])
    with caplog.at_level(logging.INFO, logger="newstopic"):
        callback.on_step_end(None, state, None, lr_scheduler=scheduler)
    (line,) = [r.getMessage() for r in caplog.records]
    match = LINE.search(line)
    assert line.startswith("step 50/100 epoch 1.00 lr 2.00e-04") and match, line
    assert float(match.group(1)) == pytest.approx(2.0, rel=0.05)  # 10 steps in 5 s, not 50
    assert match.group(2) in ("0m25s", "0m24s", "0m26s")  # 50 steps left at 2 steps/s
