"""Logging for the stage entry points (hdmole.bin.*, recipe local/ scripts).

Handlers go on the `hdmole` logger, not the root logger, so a stage called in-process (tests, a driver
script) does not tear down its caller's logging; records still propagate to the root.
"""

from __future__ import annotations

import logging
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_stage_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """INFO to stderr and, if given, to `log_file` (appended); replaces handlers set by an earlier call."""
    logger = logging.getLogger("hdmole")
    for handler in list(logger.handlers):
        if getattr(handler, "_hdmole_stage", False):
            logger.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler._hdmole_stage = True
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
    return logger
