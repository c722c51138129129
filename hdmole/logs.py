"""Logging for the stage entry points (hdmole.bin.*, recipe local/ scripts).

Handlers go on the `hdmole` logger, not the root logger, so a stage called in-process (tests, a driver
script) does not tear down its caller's logging; records still propagate to the root.

An expected failure (bad input, a missing or unreadable file, a bad config value) is reported by
`log_failure` as one line that names the file and the fix; its traceback goes to the log file only, or
to stderr as well with `--verbose` (docs/reliability.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_stage_logging(log_file: str | Path | None = None, level: int = logging.INFO,
                        verbose: bool = False) -> logging.Logger:
    """`level` and up to stderr (everything with `verbose`) and, if given, everything to `log_file`
    (appended); replaces handlers set by an earlier call."""
    logger = logging.getLogger("hdmole")
    for handler in list(logger.handlers):
        if getattr(handler, "_hdmole_stage", False):
            logger.removeHandler(handler)
            handler.close()
    stream = logging.StreamHandler()
    stream.setLevel(logging.DEBUG if verbose else level)
    handlers: list[logging.Handler] = [stream]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))  # level DEBUG: tracebacks too
    for handler in handlers:
        handler._hdmole_stage = True
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if log_file is not None or verbose else level)
    return logger


def failure_message(error: BaseException) -> str:
    """The one line for an expected failure. An OSError from the system (permission denied, a file
    where a directory should be) names its path; ours already say what to do."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return (f"{error.filename}: {error.strerror}; check the path, that its parent directories exist and "
                "are directories, and that you may read and write there")
    return str(error)


def log_failure(logger: logging.Logger, error: BaseException) -> None:
    """One ERROR line on stderr and in the log; the traceback at DEBUG level (the log file, or stderr
    with --verbose)."""
    logger.error("%s", failure_message(error))
    logger.debug("traceback of the error above:", exc_info=error)
