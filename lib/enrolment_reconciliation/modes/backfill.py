"""Backfill mode: reconcile every enrolment (or some courses, batches, users) from full scans.

Same batch function and core as the stream; the scan reader reads the tables with the filters
pushed down, only what changes is written, completion events go through the outbox exactly as
in the stream, and one lease makes sure two runs never overlap. ``--dry-run DIR`` writes a
report instead of touching any table or topic. ``--repair-certificates`` also sends the
certificate request of every completed enrolment in scope that holds none (``core.repairs``),
slice by slice through the same outbox.

Exit codes a scheduler sees (README, "Nightly backfill"): 0 done, 2 bad arguments or
configuration, 3 another backfill holds the lease, 4 a store or service was unreachable, 1 any
other error.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cassandra.cluster import Session
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.batch import milestones
from enrolment_reconciliation.batch.apply import apply_batch, recover_outbox
from enrolment_reconciliation.batch.pipeline import (
    BatchResources,
    BatchResult,
    PhaseClock,
    reconcile_batch,
)
from enrolment_reconciliation.batch.read import read_in_scope
from enrolment_reconciliation.core.counters import Counter, Counts, new_counts
from enrolment_reconciliation.core.events import to_certificate_repairs
from enrolment_reconciliation.core.repairs import needs_certificate, templated_batches
from enrolment_reconciliation.core.schemas import to_event_key_names
from enrolment_reconciliation.core.slices import slices_for
from enrolment_reconciliation.io.backfill_runs import BackfillRun, ProgressStore, scope_digest
from enrolment_reconciliation.io.cassandra import (
    ScanFilters,
    connect_from_config,
    estimated_table_bytes,
    scan_course_batches,
    scan_enrolment_certificates,
    scan_enrolment_users,
)
from enrolment_reconciliation.io.filesystem import HadoopFileSystem, write_text
from enrolment_reconciliation.io.lease import Lease, LeaseLostError
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.io.staging import RunStaging
from enrolment_reconciliation.modes.dry_run_report import DryRunReport, backfill_summary
from enrolment_reconciliation.runtime.config import ConfigError, JobConfig

log = logging.getLogger("enrolment_reconciliation.modes.backfill")
LEASE_NAME = "backfill"
OUTBOX_BATCH = "backfill"


@dataclass(frozen=True)
class BackfillOptions:
    """What to reconcile and how (the command line of ``backfill``)."""

    courses: tuple[str, ...] = ()
    batches: tuple[str, ...] = ()
    users_file: str | None = None
    dry_run: str | None = None  # a folder: write the report there, touch nothing
    summary_file: str | None = None
    restart: bool = False  # start over even if an unfinished run of this scope could resume
    # also send a certificate request to each completed enrolment that has none (core.repairs)
    repair_certificates: bool = False

    def filters(self, spark: SparkSession) -> ScanFilters:
        users = None
        if self.users_file:
            # any Hadoop path the cluster sees (a local file, file://, hdfs://, s3a://)
            if not HadoopFileSystem(spark, self.users_file).is_file(self.users_file):
                raise ConfigError(f"--users-file {self.users_file}: no such file")
            # read by Spark, so a file of millions of ids never passes through the driver
            users = (
                spark.read.text(self.users_file)
                .select(F.trim("value").alias("userid"))
                .where(F.col("userid") != "")
                .distinct()
            )
        return ScanFilters(courses=self.courses, batches=self.batches, users=users)

    def describe(self) -> dict[str, Any]:
        return {
            "courses": list(self.courses) or "all",
            "batches": list(self.batches) or "all",
            "usersFile": self.users_file or "all",
            "dryRun": self.dry_run is not None,
            "repairCertificates": self.repair_certificates,
        }


READ_AND_RECONCILE, WRITE = "read-and-reconcile", "write-and-publish"
BYTES_PER_SLICE = 128 * 2**20  # `backfill.slices` 0: one slice per this much consumption


class SliceFailedError(RuntimeError):
    """A slice failed on every attempt; the run stops and resumes at it next time."""


@dataclass
class _RunState:
    """What one process of a run did: counts of every slice (this and earlier processes)."""

    run: BackfillRun
    counts: Counts
    slices_run: int = 0
    retries: int = 0
    began: float = field(default_factory=time.monotonic)
    rows_this_process: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per half of a slice, summed


def slice_count(cfg: JobConfig, session: Session) -> int:
    if cfg.backfill_slices > 0:
        return cfg.backfill_slices
    estimated = estimated_table_bytes(session, cfg.keyspace, cfg.consumption_table)
    return slices_for(estimated, BYTES_PER_SLICE)


def _scope(cfg: JobConfig, options: BackfillOptions) -> dict[str, Any]:
    """What a run reconciles and with which settings: a run resumes only the same scope."""
    return {
        **options.describe(),
        "keyspace": cfg.keyspace,
        "slices": cfg.backfill_slices,
        "excludeOptionalNodes": cfg.exclude_optional_nodes,
        "moduleAggs": cfg.module_aggs_enabled,
        "filterProcessedEnrolments": cfg.filter_processed_enrolments,
    }


def _begin(
    cfg: JobConfig, options: BackfillOptions, session: Session, store: ProgressStore | None
) -> BackfillRun:
    """The run to work on: the unfinished one of this scope, or a new one."""
    description = _scope(cfg, options)
    scope = scope_digest(description)
    if store is not None and not options.restart:
        run = store.resumable(scope, max_age_hours=cfg.backfill_resume_max_age_hours)
        if run is not None:
            return run
    slices = slice_count(cfg, session)
    if store is None:  # a dry run records nothing
        return BackfillRun(scope, "dry-run", slices, datetime.now(UTC))
    return store.start(scope, slices=slices, description=description)


def outbox_batch(run: BackfillRun, index: int) -> str:
    """The outbox folder of a slice: the same for the same slice of a retried or resumed run,
    so the events an interrupted attempt staged are merged into the next one's."""
    return OUTBOX_BATCH if run.slices == 1 else f"{OUTBOX_BATCH}-{index:05d}-of-{run.slices:05d}"


def _slice_filters(filters: ScanFilters, staging: RunStaging | None, index: int) -> ScanFilters:
    if staging is None:  # one slice: the scans of the whole scope
        return filters
    return replace(filters, users=staging.users(index))


def _reconcile_slice(
    spark: SparkSession,
    cfg: JobConfig,
    filters: ScanFilters,
    staged: DataFrame | None,
    resources: BatchResources,
    apply: Callable[[BatchResult], Counts],
    seconds: dict[str, float],
) -> Counts:
    """One slice through the batch function, then written (or reported); ``seconds`` gets the
    time of each half (an attempt that fails counts too: it was spent). ``staged``: the
    slice's staged aggregates, if the run staged them."""
    began = time.monotonic()
    source = read_in_scope(spark, cfg, filters, staged_aggregates=staged)
    batch = reconcile_batch(spark, source, cfg, resources)
    applied = time.monotonic()
    seconds[READ_AND_RECONCILE] = seconds.get(READ_AND_RECONCILE, 0.0) + applied - began
    try:
        return apply(batch)
    finally:
        seconds[WRITE] = seconds.get(WRITE, 0.0) + time.monotonic() - applied
        for step, spent in batch.seconds.items():  # read, structure, reconcile, writes, publish
            seconds[f"step:{step}"] = seconds.get(f"step:{step}", 0.0) + spent
        batch.release()


def _with_retries(
    cfg: JobConfig, index: int, state: _RunState, attempt: Callable[[], Counts]
) -> Counts:
    """Run a slice, retrying it with backoff: every write is idempotent for the same input."""
    for tried in range(cfg.backfill_slice_retries + 1):
        try:
            return attempt()
        except (ConfigError, LeaseLostError):
            raise
        except Exception as error:
            first_line = (str(error).splitlines() or [type(error).__name__])[0][:500]
            if tried == cfg.backfill_slice_retries:
                raise SliceFailedError(
                    f"slice {index} failed {tried + 1} times; the next run resumes at it: "
                    f"{first_line}"
                ) from error
            wait = cfg.backfill_slice_backoff_seconds * 2**tried
            log.warning(
                json.dumps(
                    {
                        "event": "slice-retry",
                        "slice": index,
                        "attempt": tried + 1,
                        "waitSeconds": wait,
                        "error": first_line,
                    }
                )
            )
            state.retries += 1
            time.sleep(wait)
    raise AssertionError("unreachable")


class _ProgressLine:
    """One JSON line per finished slice and, on a terminal, a progress bar (tqdm)."""

    def __init__(self, state: _RunState) -> None:
        self._state = state
        run = state.run
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=run.slices, initial=len(run.finished), unit="slice", desc="backfill"
            )

    def slice_done(
        self, index: int, seconds: float, slice_counts: Counts, phases: dict[str, float]
    ) -> None:
        state, run = self._state, self._state.run
        rows = slice_counts.get(Counter.CONSUMPTION_ROWS_SCANNED, 0)
        state.slices_run += 1
        state.rows_this_process += rows
        elapsed = time.monotonic() - state.began
        remaining = len(run.pending())
        line = {
            "event": "slice",
            "runId": run.run_id,
            "slice": index,
            "done": len(run.finished),
            "of": run.slices,
            "seconds": round(seconds, 3),
            "phases": {n: round(spent, 3) for n, spent in phases.items() if ":" not in n},
            "steps": {n[5:]: round(spent, 3) for n, spent in phases.items() if ":" in n},
            "enrolments": state.counts.get(Counter.ENROLMENTS_SCANNED, 0),
            "consumptionRows": state.counts.get(Counter.CONSUMPTION_ROWS_SCANNED, 0),
            "rowsPerSecond": round(state.rows_this_process / max(elapsed, 1e-9), 1),
            "etaSeconds": round(elapsed / state.slices_run * remaining, 1),
        }
        log.info(json.dumps(line))
        if self._bar is not None:
            self._bar.set_postfix(rows_s=line["rowsPerSecond"], eta_s=line["etaSeconds"])
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _named_for(options: BackfillOptions, seconds: dict[str, float]) -> dict[str, float]:
    """A dry run's slices are reported, not written."""
    if not options.dry_run:
        return seconds
    return {("report-slices" if name == WRITE else name): v for name, v in seconds.items()}


def _add(total: Counts, more: Counts) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + int(value)


class _SlicedRun:
    """One process's part of a run: set up (outbox recovery, the run to resume or start, the
    users of each slice), then each pending slice through the batch function, then the
    summary."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: JobConfig,
        options: BackfillOptions,
        session: Session,
        lease: Lease | None,
    ) -> None:
        self.spark, self.cfg, self.options, self.lease = spark, cfg, options, lease
        self.phases = PhaseClock()
        self.resources = BatchResources.from_config(cfg)
        self.resources.scan_once = True  # one structure for the whole run, read once
        self.filters = options.filters(spark)
        # a run of the whole table compares with its staged aggregates; a narrowed scope, whose
        # rows may be a small share of the table, by key
        self.compare_staged = not self.filters.narrowed
        self.outbox: Outbox | None = None
        self.store: ProgressStore | None = None
        if not options.dry_run:
            self.outbox = Outbox(spark, cfg.backfill_outbox_location)
            with self.phases.logged("recover-outbox"):
                recovered = recover_outbox(self.outbox, cfg)
            if recovered:
                log.warning(json.dumps({"event": "outbox-recovered", "batches": recovered}))
            self.store = ProgressStore(
                session, keyspace=cfg.keyspace, table=cfg.backfill_progress_table
            )
        self.run = _begin(cfg, options, session, self.store)
        self.resumed_after = len(self.run.finished)
        self.state = _RunState(self.run, new_counts())
        for finished in self.run.finished.values():
            _add(self.state.counts, finished)
        self.report = (
            DryRunReport(spark, options.dry_run, repairs=options.repair_certificates)
            if options.dry_run
            else None
        )
        self.templated = self._templated_batches() if options.repair_certificates else None
        log.info(
            json.dumps(
                {
                    "event": "backfill-run",
                    "runId": self.run.run_id,
                    "slices": self.run.slices,
                    "resumed": self.run.resumed,
                    "slicesDone": self.resumed_after,
                }
            )
        )

    def _stage(self) -> RunStaging | None:
        """The run's users by slice and, for the whole table, its aggregates: staged once per
        run and reused by a run that resumes it (none for a single slice)."""
        if self.run.slices == 1 or not self.run.pending():
            return None
        dry = self.options.dry_run
        staging = RunStaging(
            self.spark,
            self.cfg,
            scope=self.run.scope + ("-dry-run" if dry else ""),
            run_id=f"dry-run-{uuid.uuid4().hex[:8]}" if dry else self.run.run_id,
            slices=self.run.slices,
        )
        if not dry:
            staging.drop_other_runs()
        with self.phases.logged("slice-users"):
            passed = staging.stage_users(
                lambda: scan_enrolment_users(self.spark, self.cfg, self.filters)
            )
            users = staging.user_count()
        log.info(json.dumps({"event": "slice-users", "users": users, "reused": not passed}))
        if self.compare_staged:
            with self.phases.logged("stage-aggregates"):
                scanned = staging.stage_aggregates(self.filters)
            event = {"event": "staged-aggregates", "location": staging.location}
            log.info(json.dumps(event | {"reused": not scanned}))
        return staging

    def _templated_batches(self) -> DataFrame:
        """The batches in scope with a certificate template, read once for the run."""
        with self.phases.logged("certificate-templates"):
            templated = templated_batches(
                scan_course_batches(self.spark, self.cfg, self.filters)
            ).persist(StorageLevel.MEMORY_AND_DISK)
            log.info(json.dumps({"event": "templated-batches", "batches": templated.count()}))
        return templated

    def _certificate_repairs(self, filters: ScanFilters, batch: BatchResult) -> DataFrame:
        """The certificate requests of the slice's completed enrolments that hold none, kept
        until the slice is applied (counted, then staged or reported)."""
        assert self.templated is not None
        eligible = needs_certificate(
            scan_enrolment_certificates(self.spark, self.cfg, filters),
            self.templated,
            completed_before=self.run.started_at,
        )
        repairs = to_certificate_repairs(to_event_key_names(eligible), batch.now, self.run.run_id)
        return repairs.persist(StorageLevel.MEMORY_AND_DISK)

    def _apply(self, index: int, filters: ScanFilters) -> Callable[[BatchResult], Counts]:
        def applied(batch: BatchResult) -> Counts:
            repairs = None
            if self.templated is not None:
                repairs = self._certificate_repairs(filters, batch)
                batch.counters[Counter.CERT_REPAIRS] = repairs.count()
            try:
                if self.report is not None:
                    self.report.add(batch, index, repairs)
                    return batch.counters
                assert self.outbox is not None
                batch_id = outbox_batch(self.run, index)
                return apply_batch(batch, batch_id, self.cfg, self.outbox, repairs=repairs)
            finally:
                if repairs is not None:
                    repairs.unpersist()

        return applied

    def _one_slice(self, index: int, staging: RunStaging | None, progress: _ProgressLine) -> None:
        if self.lease is not None and self.lease.lost.is_set():
            raise LeaseLostError("the backfill lease was lost during the run")
        log.info(json.dumps({"event": "slice-start", "slice": index, "of": self.run.slices}))
        began, seconds = time.monotonic(), dict[str, float]()
        filters = _slice_filters(self.filters, staging, index)
        compared = staging.aggregates(index) if staging and self.compare_staged else None
        attempt = partial(
            _reconcile_slice,
            self.spark,
            self.cfg,
            filters,
            compared,
            self.resources,
            self._apply(index, filters),
            seconds,
        )
        counts = _with_retries(self.cfg, index, self.state, attempt)
        for name, spent in seconds.items():
            if not name.startswith("step:"):
                self.state.seconds[name] = round(self.state.seconds.get(name, 0.0) + spent, 3)
        _add(self.state.counts, counts)
        if self.store is not None:
            self.store.finish_slice(self.run, index, counts)
            milestones.reached(milestones.AFTER_SLICE_RECORDED)
        else:
            self.run.finished[index] = counts
        progress.slice_done(
            index, time.monotonic() - began, counts, _named_for(self.options, seconds)
        )

    def __call__(self) -> dict[str, Any]:
        """Work through the pending slices; returns the summary of the whole run."""
        staging = self._stage()
        progress = _ProgressLine(self.state)
        finished = False
        try:
            with self.phases.logged("slices"):
                for index in self.run.pending():
                    self._one_slice(index, staging, progress)
            if self.report is not None:
                with self.phases.logged("report", self._counted):
                    extra = {"scope": self.options.describe(), "slices": self.run.slices}
                    self.report.finish(self.state.counts, extra)
            if self.store is not None:
                self.store.finish_run(self.run)
            finished = True
        finally:
            progress.close()
            if self.templated is not None:
                self.templated.unpersist()
            # a stopped run keeps its copies for the run that resumes it; a dry run never resumes
            if staging is not None and (finished or self.options.dry_run):
                staging.drop_run()
        log.info(json.dumps({"event": "reconciled", "counters": self.state.counts}))
        return self._summary()

    def _counted(self) -> dict[str, Any]:
        return {"counts": backfill_summary(self.state.counts)}

    def _summary(self) -> dict[str, Any]:
        run, state = self.run, self.state
        resumed = {"runId": run.run_id, "slicesDone": self.resumed_after} if run.resumed else None
        return {
            "event": "backfill-summary",
            "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "scope": self.options.describe(),
            "runId": run.run_id,
            "slices": run.slices,
            "slicesRun": state.slices_run,
            "resumedFrom": resumed,
            "retries": state.retries,
            "seconds": round(time.monotonic() - self.phases.started, 3),
            "phases": self.phases.seconds | _named_for(self.options, state.seconds),
            "summary": backfill_summary(state.counts),
            "counters": state.counts,
        }


def run_backfill(spark: SparkSession, cfg: JobConfig, options: BackfillOptions) -> dict[str, Any]:
    """Run one backfill under the lease (a dry run takes no lease: it changes nothing).

    Works through the scope in slices, records each finished one, and resumes an unfinished
    run of the same scope (``options.restart`` starts over). Raises
    :class:`enrolment_reconciliation.io.lease.LeaseHeldError` when another run holds the lease,
    :class:`SliceFailedError` when a slice failed on every attempt.
    """
    if cfg.backfill_repair_certificates:
        options = replace(options, repair_certificates=True)
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    try:
        if options.dry_run:
            summary = _SlicedRun(spark, cfg, options, session, None)()
        else:
            lease = Lease(
                session, keyspace=cfg.keyspace, table=cfg.lease_table, seconds=cfg.lease_seconds
            )
            with lease.hold(LEASE_NAME):
                summary = _SlicedRun(spark, cfg, options, session, lease)()
                if lease.lost.is_set():
                    raise LeaseLostError("the backfill lease was lost during the run")
    finally:
        cluster.shutdown()
    text = json.dumps(summary, indent=2, sort_keys=False, default=str)
    if options.summary_file:
        write_text(spark, options.summary_file, text + "\n")
    return summary


def total_writes(counts: Counts) -> int:
    """Rows written by a run (0 for a run over unchanged data)."""
    return counts.get(Counter.AGGREGATE_ROWS, 0) + counts.get(Counter.ENROLMENT_UPDATES, 0)
