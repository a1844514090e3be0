"""Structured log events: one helper, so every line an operator alerts or searches on has the
same shape (``{"event": ..., fields...}``).

Example::

    log_event(log, "slice-retry", level=logging.WARNING, slice=3, attempt=1)
    # message: {"event": "slice-retry", "slice": 3, "attempt": 1}
"""

from __future__ import annotations

import json
import logging
from typing import Any


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log the event ``event`` with ``fields`` as one JSON object (also kept on the record as
    ``event`` and ``fields`` for a formatter)."""
    if not logger.isEnabledFor(level):
        return
    message = json.dumps({"event": event, **fields}, default=str)
    logger.log(level, message, extra={"event": event, "fields": fields})


def first_line(error: BaseException, limit: int = 500) -> str:
    """The first line of an error's text (a Java stack trace can run to hundreds of lines)."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
