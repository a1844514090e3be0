"""Fault injection for a job run in another process (``./spark-submit.sh ...``).

A test puts this folder on the job's ``PYTHONPATH`` and names a milestone in ``ER_FAULT_POINT``
(``enrolment_reconciliation.batch.milestones``): Python runs this module at start-up, and the
driver SIGKILLs itself when the job reaches that milestone, as a crash would stop it there; with
``ER_FAULT_ACTION=raise`` it raises :class:`InjectedDefectError` there instead, as a bug would. The
job carries no such code: it only announces its milestones.
"""

from __future__ import annotations

import os
import signal
import sys

FAULT_POINT_ENV = "ER_FAULT_POINT"
FAULT_ACTION_ENV = "ER_FAULT_ACTION"  # kill (the default) | raise
FAULT_SKIP_ENV = "ER_FAULT_SKIP"  # let this many passes of the milestone go by first (0)


class InjectedDefectError(RuntimeError):
    """A bug, injected at a milestone (no store is involved: a defect, never retried)."""


def _fault_at(point: str, action: str, skip: int) -> None:
    passes = [0]

    def observer(name: str) -> None:
        if name != point:
            return
        passes[0] += 1
        if passes[0] <= skip:
            return
        if action == "raise":
            print(f"fault injection: a defect at {name}", file=sys.stderr, flush=True)
            raise InjectedDefectError(f"injected defect at {name}")
        print(f"fault injection: killing the job at {name}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    try:
        from enrolment_reconciliation.batch import milestones
    except ImportError:  # a Python process without the job (Spark's workers before the zip)
        return
    milestones.observe(observer)


if os.environ.get(FAULT_POINT_ENV):
    _fault_at(
        os.environ[FAULT_POINT_ENV],
        os.environ.get(FAULT_ACTION_ENV, "kill"),
        int(os.environ.get(FAULT_SKIP_ENV, "0")),
    )
