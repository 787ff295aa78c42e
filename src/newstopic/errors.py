"""User-facing errors: one line naming the file, the row or key, and what is wrong."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn


class NewstopicError(Exception):
    """An error caused by the user's input or configuration, reported in one line."""


class InputError(NewstopicError):
    """Bad input data (a CSV or parquet file)."""


class ConfigError(NewstopicError):
    """Bad configuration (unknown key, wrong type, missing model path...)."""


class CheckpointError(NewstopicError):
    """A checkpoint that is truncated, corrupt or does not match the run."""


class TrainingInterrupted(Exception):
    """Training stopped on request (SIGTERM/SIGUSR1) after saving a checkpoint.

    Not a user error: `run_main` reports it in one line and exits with 128 + the signal
    number (143 for SIGTERM), the shell's convention for "ended by a signal", so the job
    counts as failed and a rerun resumes from the checkpoint. `then` is the line's end: what
    happens next (a Slurm job stopped at its time limit requeues itself, newstopic.slurm).
    """

    def __init__(self, message: str, signum: int, then: str = "rerun to resume") -> None:
        super().__init__(message)
        self.signum = signum
        self.then = then
        # Called once the stop line is out (the Slurm requeue, which may end the process).
        self.after: Callable[[], None] | None = None

    def __str__(self) -> str:
        return f"{self.args[0]}; {self.then}"


def fail(message: str, log_file: str | None = None, code: int = 1, kind: str = "error") -> NoReturn:
    """Print `message` as the single error line (and append it to `log_file`), exit `code`."""
    line = f"newstopic: {kind}: {message}"
    print(line, file=sys.stderr, flush=True)
    if log_file:
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    raise SystemExit(code)


def run_main(main: Callable[..., Any], *args: Any, log_file: str | None = None, **kwargs: Any) -> Any:
    """Call `main`; turn a NewstopicError into one line on stderr (and the log) and exit 1,
    and a TrainingInterrupted into one line and exit 128 + signal number.

    Scripts run through this so that bad input never ends in a traceback from inside
    pandas or torch. (The message reaches `log_file` through the logging handlers.) Anything
    else is a bug: its traceback goes to `log_file` too, since on a cluster that file is what
    a user reads, and the exception goes on to stderr as usual.
    """
    try:
        return main(*args, **kwargs)
    except NewstopicError as exc:
        logging.getLogger("newstopic").error("%s", exc)
        fail(str(exc))
    except TrainingInterrupted as exc:
        logging.getLogger("newstopic").warning("%s", exc)
        try:
            fail(str(exc), code=128 + exc.signum, kind="stopped")
        finally:
            if exc.after is not None:
                exc.after()
    except KeyboardInterrupt:
        # Ctrl-C: the last periodic checkpoint is kept; no traceback.
        fail(
            "interrupted (Ctrl-C); rerun with --rerun-incomplete to resume from the last checkpoint",
            code=130,
            kind="stopped",
        )
    except Exception:
        if log_file:
            with open(log_file, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        raise
