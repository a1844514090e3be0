"""Structured logs: one helper for the events an operator alerts or searches on, and the format
every line takes.

Off a terminal (a service, a pod, a pipe into a log shipper) each line is one JSON object::

    {"time": "2026-12-06T15:31:06.164Z", "level": "INFO", "logger": "enrolment_reconciliation
    .backfill", "event": "slice", "slice": 3, "of": 12, ...}

and a line that is not an event carries ``"event": "log"`` and its ``message`` (with the
traceback of an error in ``error``). On a terminal the lines are for people:
``<time> <level> <logger>: <message>``. ``ER_LOG_FORMAT=json|text`` chooses explicitly
(``spark-submit.sh`` sets it from its own standard error, which the driver cannot see).

Example::

    log_event(log, "slice-retry", level=logging.WARNING, slice=3, attempt=1)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMAT_ENV = "ER_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries whose INFO lines say nothing an operator needs
QUIET_LOGGERS = ("py4j", "cassandra", "kafka")


def log_event(
    logger: logging.Logger,
    event: str,
    *,
    level: int = logging.INFO,
    traceback: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log the event ``event`` with ``fields`` (kept on the record as ``event`` and ``fields``;
    its message is the same object as JSON, for a text line); ``traceback``: an error whose
    traceback the line carries (``error`` in JSON)."""
    if not logger.isEnabledFor(level):
        return
    message = json.dumps({"event": event, **fields}, default=str)
    logger.log(level, message, extra={"event": event, "fields": fields}, exc_info=traceback)


def first_line(error: BaseException, limit: int = 500) -> str:
    """The first line of an error's text (a Java stack trace can run to hundreds of lines)."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object on one line: time, level, logger, event, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
            line.update(getattr(record, "fields", {}))
        else:
            line["event"] = "log"
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def wants_json(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """JSON unless a person watches: ``ER_LOG_FORMAT``, else whether ``stream`` is a terminal."""
    chosen = (environ if environ is not None else os.environ).get(FORMAT_ENV, "").lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    return not stream.isatty()


def configure_logging(stream: TextIO | None = None, *, level: int = logging.INFO) -> None:
    """The job's logging, to ``stream`` (standard error: standard output holds a run's result
    alone), in JSON or for people (:func:`wants_json`); Python's warnings go through it too."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if wants_json(stream) else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
