"""The backfill's run: set up, each pending slice through the batch function, then the summary.

Set-up: publish what a crashed run left in the outbox, resume the unfinished run of the same
scope or plan a new one (``plan``), and stage what every slice reads (``io.staging``). Then each
slice is one batch: the scan reader over its users, ``reconcile_batch``, and the sink (the
tables, or the dry run's report). A slice that fails with an infrastructure fault is retried
with backoff (every write is idempotent for the same input); a defect is not retried, it stops
the run at once. Each finished slice is recorded, so the next run resumes after it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.batch.clock import PhaseClock
from enrolment_reconciliation.batch.pipeline import BatchResources, BatchResult, reconcile_batch
from enrolment_reconciliation.batch.read import read_in_scope
from enrolment_reconciliation.core.counters import Counter, Counts, new_counts
from enrolment_reconciliation.core.events import to_certificate_repairs
from enrolment_reconciliation.core.repairs import needs_certificate, templated_batches
from enrolment_reconciliation.core.schemas import to_event_key_names
from enrolment_reconciliation.io.backfill_runs import BackfillRun
from enrolment_reconciliation.io.cassandra import (
    ScanFilters,
    connect,
    estimated_table_bytes,
    scan_course_batches,
    scan_enrolment_certificates,
    scan_enrolment_users,
)
from enrolment_reconciliation.io.filesystem import write_text
from enrolment_reconciliation.io.lease import Lease, LeaseLostError
from enrolment_reconciliation.io.staging import RunStaging
from enrolment_reconciliation.modes.backfill.options import BackfillOptions
from enrolment_reconciliation.modes.backfill.plan import (
    Scope,
    choose_slice_count,
    compares_staged_aggregates,
)
from enrolment_reconciliation.modes.backfill.report import backfill_summary
from enrolment_reconciliation.modes.backfill.sinks import ReportSink, Sink, TableSink
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.faults import AttemptWatch, InfrastructureError
from enrolment_reconciliation.runtime.logs import first_line, log_event

log = logging.getLogger("enrolment_reconciliation.backfill")
LEASE_NAME = "backfill"
READ_AND_RECONCILE = "read-and-reconcile"


class SliceFailedError(InfrastructureError):
    """A slice failed with an infrastructure fault on every attempt; the next run resumes at it."""


def run_backfill(spark: SparkSession, cfg: JobConfig, options: BackfillOptions) -> dict[str, Any]:
    """Run one backfill under the lease (a dry run takes no lease: it changes nothing).

    Works through the scope in slices, records each finished one, and resumes an unfinished
    run of the same scope (``options.restart`` starts over). Raises
    :class:`enrolment_reconciliation.io.lease.LeaseHeldError` when another run holds the lease,
    :class:`SliceFailedError` when a slice failed on every attempt, and a defect's own error
    after its one attempt.

    Example::

        summary = run_backfill(spark, cfg, BackfillOptions(courses=("do_1",)))
        summary["summary"]["changed"]
    """
    if cfg.backfill.repair_certificates:
        options = replace(options, repair_certificates=True)
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        if options.dry_run:
            sink: Sink = ReportSink(spark, options.dry_run, repairs=options.repair_certificates)
            summary = _SlicedRun(spark, cfg, options, sink).run(session)
        else:
            lease = Lease(
                session,
                keyspace=cfg.cassandra.keyspace,
                table=cfg.backfill.lease_table,
                seconds=cfg.backfill.lease_seconds,
            )
            with lease.hold(LEASE_NAME):
                run = _SlicedRun(spark, cfg, options, TableSink(spark, cfg, session), lease)
                summary = run.run(session)
                lease.check()
    finally:
        cluster.shutdown()
    if options.summary_file:
        write_text(spark, options.summary_file, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


@dataclass
class RunTally:
    """What a run has done: its counts (earlier processes' slices too) and this process's
    slices, retries and consumption rows."""

    counts: Counts
    slices_run: int = 0
    retries: int = 0
    rows: int = 0
    began: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, run: BackfillRun) -> RunTally:
        tally = cls(new_counts())
        for finished in run.finished.values():
            tally.add(finished, this_process=False)
        return tally

    def add(self, counts: Counts, *, this_process: bool = True) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + int(value)
        if this_process:
            self.slices_run += 1
            self.rows += counts.get(Counter.CONSUMPTION_ROWS_SCANNED, 0)

    def rows_per_second(self) -> float:
        return round(self.rows / max(time.monotonic() - self.began, 1e-9), 1)

    def eta_seconds(self, remaining: int) -> float:
        elapsed = time.monotonic() - self.began
        return round(elapsed / max(self.slices_run, 1) * remaining, 1)


class SliceLog:
    """One JSON line per finished slice and, on a terminal, a progress bar (tqdm)."""

    def __init__(self, run: BackfillRun) -> None:
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=run.slices, initial=len(run.finished), unit="slice", desc="backfill"
            )

    def slice_done(self, **line: Any) -> None:
        log_event(log, "slice", **line)
        if self._bar is not None:
            self._bar.set_postfix(rows_s=line["rowsPerSecond"], eta_s=line["etaSeconds"])
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _SlicedRun:
    """One process's part of a run (what :func:`run_backfill` runs under the lease)."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: JobConfig,
        options: BackfillOptions,
        sink: Sink,
        lease: Lease | None = None,
    ) -> None:
        self.spark, self.cfg, self.options, self.sink, self.lease = spark, cfg, options, sink, lease
        self.clock = PhaseClock()  # the run's phases
        self.halves = PhaseClock()  # every slice's two halves, summed
        self.resources = BatchResources.from_config(cfg)
        self.resources.scan_once = True  # one structure for the whole run, read once
        self.filters = options.filters(spark)
        self.compare_staged = compares_staged_aggregates(self.filters.narrowed)
        self.scope = Scope.of(cfg, options)

    def run(self, session: Session) -> dict[str, Any]:
        """Set up, work through the pending slices, and return the run's summary."""
        run, staging = self._begin(session)
        if self.sink.records_runs:
            with self.clock.logged("recover-outbox"):
                self.sink.recover(run)
        resumed_after = len(run.finished)
        log_event(
            log,
            "backfill-run",
            runId=run.run_id,
            slices=run.slices,
            resumed=run.resumed,
            slicesDone=resumed_after,
        )
        tally = RunTally.of(run)
        templated = self._templated_batches() if self.options.repair_certificates else None
        finished = False
        slice_log = SliceLog(run)
        try:
            with self.clock.logged("slices"):
                for index in run.pending():
                    self._one_slice(run, index, staging, templated, tally, slice_log)
            with self.clock.logged("report" if not self.sink.records_runs else "record-run"):
                self.sink.finish(run, tally.counts, self.options.describe())
            finished = True
        finally:
            slice_log.close()
            if templated is not None:
                templated.unpersist()
            # a stopped run keeps its copies for the run that resumes it; a dry run never resumes
            if staging is not None and (finished or not self.sink.records_runs):
                staging.drop_run()
        log_event(log, "reconciled", counters=tally.counts)
        return self._summary(run, tally, resumed_after)

    # --- set-up ---------------------------------------------------------------------------------
    def _begin(self, session: Session) -> tuple[BackfillRun, RunStaging | None]:
        """The run to work on (the unfinished one of this scope, or a new one) and its staged
        users and aggregates (none for a run of one slice)."""
        resumed = None
        if not self.options.restart:
            max_age = self.cfg.backfill.resume_max_age_hours
            resumed = self.sink.resumable(self.scope, max_age_hours=max_age)
        if resumed is not None:
            staging = self._staging(resumed) if resumed.slices > 1 and resumed.pending() else None
            if staging is not None and staging.has_users():
                log_event(log, "slice-users", users=staging.user_count(), reused=True)
            elif staging is not None:
                with self.clock.logged("slice-users"):
                    staging.stage_users(self._users())
                log_event(log, "slice-users", users=staging.user_count(), reused=False)
            self._stage_aggregates(staging)
            return resumed, staging
        return self._start(session)

    def _users(self) -> DataFrame:
        return scan_enrolment_users(self.spark, self.cfg.cassandra, self.filters)

    def _start(self, session: Session) -> tuple[BackfillRun, RunStaging | None]:
        """A new run: count the users in scope (one pass, kept for staging), choose the slice
        count, record the run, stage its users by slice."""
        configured = self.cfg.backfill.slices
        if configured == 1:  # one slice reads the whole scope: no users to divide
            run = self.sink.start(self.scope, 1)
            log_event(log, "slice-plan", **choose_slice_count(1, 0.0, 0).describe())
            return run, None
        with self.clock.logged("slice-users"):
            users = self._users().persist(StorageLevel.MEMORY_AND_DISK)
            count = users.count()
        try:
            estimated = 0.0
            if configured <= 0:
                estimated = estimated_table_bytes(
                    session, self.cfg.cassandra.keyspace, self.cfg.cassandra.consumption_table
                )
            plan = choose_slice_count(configured, estimated, count)
            log_event(log, "slice-plan", **plan.describe())
            run = self.sink.start(self.scope, plan.count)
            log_event(log, "slice-users", users=count, reused=False)
            if run.slices == 1:
                return run, None
            staging = self._staging(run)
            if self.sink.records_runs:
                staging.drop_other_runs()
            with self.clock.logged("stage-users"):
                staging.stage_users(users)
        finally:
            users.unpersist()
        self._stage_aggregates(staging)
        return run, staging

    def _staging(self, run: BackfillRun) -> RunStaging:
        dry = not self.sink.records_runs
        return RunStaging(
            self.spark,
            self.cfg.cassandra,
            self.cfg.locations.backfill_staging,
            scope=self.scope.digest + ("-dry-run" if dry else ""),
            run_id=run.run_id,
            slices=run.slices,
        )

    def _stage_aggregates(self, staging: RunStaging | None) -> None:
        if staging is None or not self.compare_staged:
            return
        with self.clock.logged("stage-aggregates"):
            scanned = staging.stage_aggregates(self.filters)
        log_event(log, "staged-aggregates", location=staging.location, reused=not scanned)

    def _templated_batches(self) -> DataFrame:
        """The batches in scope with a certificate template, read once for the run."""
        with self.clock.logged("certificate-templates"):
            templated = templated_batches(
                scan_course_batches(self.spark, self.cfg.cassandra, self.filters)
            ).persist(StorageLevel.MEMORY_AND_DISK)
            log_event(log, "templated-batches", batches=templated.count())
        return templated

    # --- slices ---------------------------------------------------------------------------------
    def _one_slice(
        self,
        run: BackfillRun,
        index: int,
        staging: RunStaging | None,
        templated: DataFrame | None,
        tally: RunTally,
        slice_log: SliceLog,
    ) -> None:
        if self.lease is not None:
            self.lease.check()
        log_event(log, "slice-start", slice=index, of=run.slices)
        began = time.monotonic()
        halves, steps = PhaseClock(), PhaseClock()  # over every attempt: each was spent
        filters = (
            self.filters if staging is None else replace(self.filters, users=staging.users(index))
        )
        staged = staging.aggregates(index) if staging is not None and self.compare_staged else None

        def attempt() -> Counts:
            with halves(READ_AND_RECONCILE):
                source = read_in_scope(self.spark, self.cfg, filters, staged_aggregates=staged)
                batch = reconcile_batch(self.spark, source, self.cfg, self.resources)
            repairs = None
            try:
                with halves(self.sink.phase):
                    if templated is not None:
                        repairs = self._certificate_repairs(run, filters, templated, batch)
                    return self.sink.apply(batch, run, index, repairs)
            finally:
                steps.add(batch.seconds)  # read, structure, reconcile, writes, publish
                batch.release()
                if repairs is not None:
                    repairs.unpersist()

        counts = self._with_retries(index, tally, attempt)
        self.halves.add(halves.seconds)
        tally.add(counts)
        self.sink.slice_done(run, index, counts)
        slice_log.slice_done(
            runId=run.run_id,
            slice=index,
            done=len(run.finished),
            of=run.slices,
            seconds=round(time.monotonic() - began, 3),
            phases=halves.seconds,
            steps=steps.seconds,
            enrolments=tally.counts.get(Counter.ENROLMENTS_SCANNED, 0),
            consumptionRows=tally.counts.get(Counter.CONSUMPTION_ROWS_SCANNED, 0),
            rowsPerSecond=tally.rows_per_second(),
            etaSeconds=tally.eta_seconds(len(run.pending())),
        )

    def _certificate_repairs(
        self, run: BackfillRun, filters: ScanFilters, templated: DataFrame, batch: BatchResult
    ) -> DataFrame:
        """The certificate requests of the slice's completed enrolments that hold none, kept
        until the slice is applied (counted, then staged or reported)."""
        eligible = needs_certificate(
            scan_enrolment_certificates(self.spark, self.cfg.cassandra, filters),
            templated,
            completed_before=run.started_at,
        )
        repairs = to_certificate_repairs(to_event_key_names(eligible), batch.now, run.run_id)
        repairs = repairs.persist(StorageLevel.MEMORY_AND_DISK)
        batch.counters[Counter.CERT_REPAIRS] = repairs.count()
        return repairs

    def _with_retries(self, index: int, tally: RunTally, attempt: Callable[[], Counts]) -> Counts:
        """Run a slice; an infrastructure fault is retried with backoff, a defect is not."""
        retries = self.cfg.backfill.slice_retries
        for tried in range(retries + 1):
            watch = AttemptWatch(self.spark)
            try:
                return attempt()
            except LeaseLostError:
                raise
            except Exception as error:
                if not watch.is_infrastructure(error):
                    raise  # a defect: another attempt would only repeat it
                if tried == retries:
                    raise SliceFailedError(
                        f"slice {index} failed {tried + 1} times; the next run resumes at it: "
                        f"{first_line(error)}"
                    ) from error
                wait = self.cfg.backfill.slice_backoff_seconds * 2**tried
                log_event(
                    log,
                    "slice-retry",
                    level=logging.WARNING,
                    slice=index,
                    attempt=tried + 1,
                    waitSeconds=wait,
                    error=first_line(error),
                    lostExecutors=sorted(watch.lost_executors()),
                )
                tally.retries += 1
                time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _summary(self, run: BackfillRun, tally: RunTally, resumed_after: int) -> dict[str, Any]:
        resumed = {"runId": run.run_id, "slicesDone": resumed_after} if run.resumed else None
        return {
            "event": "backfill-summary",
            "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "scope": self.options.describe(),
            "runId": run.run_id,
            "slices": run.slices,
            "slicesRun": tally.slices_run,
            "resumedFrom": resumed,
            "retries": tally.retries,
            "seconds": round(time.monotonic() - self.clock.started, 3),
            "phases": self.clock.seconds | self.halves.seconds,
            "summary": backfill_summary(tally.counts),
            "counters": tally.counts,
        }
