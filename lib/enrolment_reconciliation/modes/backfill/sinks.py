"""Where a backfill's slices go: the tables and topics, or a dry run's report. One protocol.

:class:`TableSink` writes each slice through the outbox (``batch.apply``) and records it in the
runs table, so a stopped run resumes; :class:`ReportSink` writes each slice's would-be changes
and events into the report folder and records nothing (a dry run is never resumed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

from cassandra.cluster import Session
from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.batch import milestones
from enrolment_reconciliation.batch.apply import apply_batch, recover_outbox
from enrolment_reconciliation.batch.pipeline import BatchResult
from enrolment_reconciliation.core.counters import Counts
from enrolment_reconciliation.io.backfill_runs import BackfillRun, RunRecords, new_run_id
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.modes.backfill.plan import Scope, outbox_batch, run_outbox_prefix
from enrolment_reconciliation.modes.backfill.report import DryRunReport
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.logs import log_event

log = logging.getLogger("enrolment_reconciliation.backfill")


class Sink(Protocol):
    """What a run does with its slices."""

    #: the phase a slice's second half is timed under
    phase: str
    #: whether runs are recorded, so one can be resumed
    records_runs: bool

    def recover(self, run: BackfillRun) -> int:
        """Publish what earlier, crashed attempts left in the outbox (``run``'s own unapplied
        slices excepted: its next attempt redoes them); how many batches."""
        ...

    def resumable(self, scope: Scope, *, max_age_hours: float) -> BackfillRun | None:
        """An unfinished run of ``scope`` to resume, if any."""
        ...

    def start(self, scope: Scope, slices: int) -> BackfillRun:
        """A new run of ``scope`` in ``slices`` slices."""
        ...

    def apply(
        self, batch: BatchResult, run: BackfillRun, index: int, repairs: DataFrame | None
    ) -> Counts:
        """Slice ``index`` of ``run``, written (or reported); its counters."""
        ...

    def slice_done(self, run: BackfillRun, index: int, counts: Counts) -> None:
        """Record that slice ``index`` is applied."""
        ...

    def finish(self, run: BackfillRun, counts: Counts, scope: dict) -> None:
        """Every slice is done."""
        ...


class TableSink:
    """Writes to the tables, publishes through the outbox, records each slice."""

    phase = "write-and-publish"
    records_runs = True

    def __init__(self, spark: SparkSession, cfg: JobConfig, session: Session) -> None:
        self._cfg = cfg
        self._outbox = Outbox(spark, cfg.locations.backfill_outbox)
        self._records = RunRecords(
            session, keyspace=cfg.cassandra.keyspace, table=cfg.backfill.runs_table
        )

    def recover(self, run: BackfillRun) -> int:
        # another run's unapplied slice is not redone by this one: settle it by the table
        mine = run_outbox_prefix(run)
        recovered = recover_outbox(
            self._outbox, self._cfg, settle=lambda batch: not batch.startswith(mine)
        )
        if recovered:
            log_event(log, "outbox-recovered", level=logging.WARNING, batches=recovered)
        return recovered

    def resumable(self, scope: Scope, *, max_age_hours: float) -> BackfillRun | None:
        return self._records.resumable(scope.digest, max_age_hours=max_age_hours)

    def start(self, scope: Scope, slices: int) -> BackfillRun:
        return self._records.start(scope.digest, slices=slices, description=scope.description)

    def apply(
        self, batch: BatchResult, run: BackfillRun, index: int, repairs: DataFrame | None
    ) -> Counts:
        return apply_batch(
            batch, outbox_batch(run, index), self._cfg, self._outbox, repairs=repairs
        )

    def slice_done(self, run: BackfillRun, index: int, counts: Counts) -> None:
        self._records.finish_slice(run, index, counts)
        milestones.reached(milestones.AFTER_SLICE_RECORDED)

    def finish(self, run: BackfillRun, counts: Counts, scope: dict) -> None:
        self._records.finish_run(run)


class ReportSink:
    """A dry run: each slice into the report (``report.DryRunReport``), nothing recorded."""

    phase = "report-slices"
    records_runs = False

    def __init__(self, spark: SparkSession, directory: str, *, repairs: bool) -> None:
        self.report = DryRunReport(spark, directory, repairs=repairs)

    def recover(self, run: BackfillRun) -> int:
        return 0  # a dry run publishes nothing, not even what a crashed real run left

    def resumable(self, scope: Scope, *, max_age_hours: float) -> BackfillRun | None:
        return None

    def start(self, scope: Scope, slices: int) -> BackfillRun:
        return BackfillRun(scope.digest, f"dry-run-{new_run_id()}", slices, datetime.now(UTC))

    def apply(
        self, batch: BatchResult, run: BackfillRun, index: int, repairs: DataFrame | None
    ) -> Counts:
        self.report.add(batch, index, repairs)
        return batch.counters

    def slice_done(self, run: BackfillRun, index: int, counts: Counts) -> None:
        run.finished[index] = dict(counts)

    def finish(self, run: BackfillRun, counts: Counts, scope: dict) -> None:
        self.report.finish(counts, {"scope": scope, "slices": run.slices})
