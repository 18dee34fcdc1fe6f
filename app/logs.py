"""Logging of every rapport process: the CLI's, and each worker of ``serve --workers N``.

Workers are fresh interpreters (uvicorn spawns them), so they configure logging
themselves from ``RAPPORT_LOG_LEVEL``, which ``rapport --log-level`` sets for them.
"""

from __future__ import annotations

import logging
import os

LEVEL_VARIABLE = "RAPPORT_LOG_LEVEL"

# Loggers that speak at INFO about their own machinery (faiss's CPU-feature probe reports a
# ModuleNotFoundError that is no error; Alembic lists its plugins): warnings only, unless
# the operator asks for debug output.
_CHATTY_LOGGERS = ("alembic", "faiss", "faiss.loader", "httpx")


def configure(level: str) -> None:
    """Log at ``level`` (debug, info, warning, ...) to stderr, one line a record."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _CHATTY_LOGGERS:
        quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        logging.getLogger(name).setLevel(quiet)
    if numeric > logging.DEBUG:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_open_clip)


def configure_worker() -> None:
    """A served worker's logging, at the level its ``rapport serve`` was given."""
    configure(os.environ.get(LEVEL_VARIABLE, "info"))


def _quiet_open_clip(record: logging.LogRecord) -> bool:
    # open_clip narrates each model build at INFO on the root logger (no logger of its own).
    return record.levelno >= logging.WARNING or f"{os.sep}open_clip{os.sep}" not in record.pathname
