"""User-facing errors: one line naming the file, the row or key, and what is wrong."""

from __future__ import annotations

import logging
import sys
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


def fail(message: str, log_file: str | None = None) -> NoReturn:
    """Print `message` as the single error line (and append it to `log_file`), exit 1."""
    line = f"newstopic: error: {message}"
    print(line, file=sys.stderr, flush=True)
    if log_file:
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    raise SystemExit(1)


def run_main(main: Callable[..., Any], *args: Any, log_file: str | None = None, **kwargs: Any) -> Any:
    """Call `main`; turn a NewstopicError into one line on stderr (and the log) and exit 1.

    Scripts run through this so that bad input never ends in a traceback from inside
    pandas or torch.
    """
    try:
        return main(*args, **kwargs)
    except NewstopicError as exc:
        logging.getLogger("newstopic").error("%s", exc)
        fail(str(exc), log_file=None)
