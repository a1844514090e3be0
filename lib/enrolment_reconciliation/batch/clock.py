"""Time, as the batch and the modes measure it: seconds per named phase, and "now" as Cassandra
stores it.

Example::

    clock = PhaseClock()
    with clock("write"):
        ...
    clock.seconds  # {"write": 0.42}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from enrolment_reconciliation.runtime.logs import log_event

log = logging.getLogger("enrolment_reconciliation.phases")


class PhaseClock:
    """Seconds spent in each named phase: ``with clock("write"): ...``; ``clock.logged(...)``
    also logs a JSON line as the phase starts and one with its seconds as it ends."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = seconds if seconds is not None else {}
        self.started = time.monotonic()

    @contextmanager
    def logged(
        self, phase: str, detail: Callable[[], dict[str, Any]] | None = None
    ) -> Iterator[None]:
        """The phase, timed and logged; ``detail()`` adds fields to its end line."""
        log_event(log, "phase-start", phase=phase)
        with self(phase):
            yield
        more = detail() if detail is not None else {}
        log_event(log, "phase", phase=phase, seconds=self.seconds[phase], **more)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + elapsed, 3)

    def add(self, seconds: Mapping[str, float]) -> None:
        """Add the seconds another clock measured, phase by phase."""
        for phase, spent in seconds.items():
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + spent, 3)


def utc_now_ms() -> datetime:
    """Now, truncated to the millisecond precision of Cassandra timestamps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
