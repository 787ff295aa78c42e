"""Logging for rule scripts: to the rule's log file and to stderr; third-party noise off."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from newstopic.errors import run_main


def setup_logging(log_file: str | None = None) -> logging.Logger:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers reads this when it is imported; a script that loads no model never imports it.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    transformers = sys.modules.get("transformers")
    if transformers is not None:  # imported before this call: the variables came too late
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger("newstopic")


def run_rule(log_file: str, main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A rule script's body: log to the rule's log and stderr, call `main`; bad input ends in
    one line, an unexpected exception's traceback reaches the log as well (newstopic.errors)."""
    setup_logging(log_file)
    return run_main(main, *args, log_file=log_file, **kwargs)
