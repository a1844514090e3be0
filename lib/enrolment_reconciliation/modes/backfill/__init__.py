"""Backfill mode: reconcile every enrolment (or those of some courses, batches, users) from
full scans, slice by slice, under a lease; or a dry run that writes a report instead.

Same batch function and core as the stream: the scan reader reads the tables with the filters
pushed down, only what changes is written, completion events go through the outbox exactly as
in the stream. ``--repair-certificates`` also sends the certificate request of every completed
enrolment in scope that holds none (``core.repairs``), slice by slice through the same outbox.

Modules: ``options`` (what to reconcile), ``plan`` (scope, slice count, resume: no side
effects), ``sinks`` (the tables or the dry run's report, one protocol), ``run`` (set-up and the
loop over slices), ``report`` (the dry run's files).

Exit codes a scheduler sees (README, "Exit codes"): 0 done, 1 a defect (not retried), 2 bad
arguments or configuration, 3 another backfill holds the lease, 4 a store or service was
unreachable (resumable).
"""

from enrolment_reconciliation.modes.backfill.options import BackfillOptions
from enrolment_reconciliation.modes.backfill.run import SliceFailedError, log, run_backfill

__all__ = ["BackfillOptions", "SliceFailedError", "log", "run_backfill"]
