"""Named moments in applying a batch, which an observer may watch.

The job announces them and does nothing else with them. The tests' fault injection is the
observer that uses them: it stops the process at one to show that a crash there loses nothing
(``tests/fault_injection``). Production code registers no observer.

Example::

    seen = []
    milestones.observe(seen.append)
    ...                                   # apply a batch
    seen  # ['after-enrolment-write']
"""

from __future__ import annotations

from collections.abc import Callable

AFTER_ENROLMENT_WRITE = "after-enrolment-write"  # status written, outbox marked, not published
AFTER_SLICE_RECORDED = "after-slice-recorded"  # a backfill slice written, published, recorded

_observers: list[Callable[[str], None]] = []


def observe(observer: Callable[[str], None]) -> Callable[[], None]:
    """Call ``observer(name)`` at every milestone; returns what stops it."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


def reached(name: str) -> None:
    """Announce the milestone ``name`` to the observers (none in production)."""
    for observer in list(_observers):
        observer(name)
