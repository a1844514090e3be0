"""Backfill mode: reconcile every enrolment (or some courses, batches, users) from full scans.

Same batch function and core as the stream; the scan reader reads the tables with the filters
pushed down, only what changes is written, completion events go through the outbox exactly as
in the stream, and one lease makes sure two runs never overlap. ``--dry-run DIR`` writes a
report instead of touching any table or topic.

Exit codes a scheduler sees (README, "Nightly backfill"): 0 done, 2 bad arguments or
configuration, 3 another backfill holds the lease, 4 a store or service was unreachable, 1 any
other error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.apply import apply_batch, recover_outbox
from enrolment_reconciliation.config import ConfigError, JobConfig
from enrolment_reconciliation.counters import Counter, Counts
from enrolment_reconciliation.inputs import read_in_scope
from enrolment_reconciliation.io.cassandra import ScanFilters, connect_from_config
from enrolment_reconciliation.io.lease import Lease
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.report import backfill_summary, write_dry_run_report

log = logging.getLogger("enrolment_reconciliation.backfill")
LEASE_NAME = "backfill"
OUTBOX_BATCH = "backfill"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LEASE_HELD, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class BackfillOptions:
    """What to reconcile and how (the command line of ``backfill``)."""

    courses: tuple[str, ...] = ()
    batches: tuple[str, ...] = ()
    users_file: str | None = None
    dry_run: str | None = None  # a folder: write the report there, touch nothing
    summary_file: str | None = None

    def filters(self, spark: SparkSession) -> ScanFilters:
        users = None
        if self.users_file:
            if not Path(self.users_file).is_file():
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
        }


class Phases:
    """A log line per phase with its elapsed time and counts."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, counts: Counts | None = None) -> Iterator[None]:
        began = time.monotonic()
        log.info(json.dumps({"event": "phase-start", "phase": name}))
        yield
        self.seconds[name] = round(time.monotonic() - began, 3)
        line: dict[str, Any] = {"event": "phase", "phase": name, "seconds": self.seconds[name]}
        if counts is not None:
            line["counts"] = backfill_summary(counts)
        log.info(json.dumps(line))


def _run(spark: SparkSession, cfg: JobConfig, options: BackfillOptions) -> dict[str, Any]:
    phases = Phases()
    resources = BatchResources.from_config(cfg)
    filters = options.filters(spark)
    outbox = None
    if not options.dry_run:
        outbox = Outbox(spark, cfg.backfill_outbox_location)
        with phases.phase("recover-outbox"):
            recovered = recover_outbox(outbox, cfg)
        if recovered:
            log.warning(json.dumps({"event": "outbox-recovered", "batches": recovered}))
    with phases.phase("read-and-reconcile"):
        batch = reconcile_batch(spark, read_in_scope(spark, cfg, filters), cfg, resources)
    counts = batch.counters
    log.info(json.dumps({"event": "reconciled", "counters": counts}))
    try:
        if options.dry_run:
            with phases.phase("report", counts):
                report = write_dry_run_report(
                    spark, batch, options.dry_run, {"scope": options.describe()}
                )
            counts = report["counters"]
        else:
            assert outbox is not None
            with phases.phase("write-and-publish", counts):
                counts = apply_batch(batch, OUTBOX_BATCH, cfg, outbox)
    finally:
        batch.release()
    return {
        "event": "backfill-summary",
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "scope": options.describe(),
        "seconds": round(time.monotonic() - phases.started, 3),
        "phases": phases.seconds,
        "summary": backfill_summary(counts),
        "counters": counts,
    }


def run_backfill(spark: SparkSession, cfg: JobConfig, options: BackfillOptions) -> dict[str, Any]:
    """Run one backfill under the lease (a dry run takes no lease: it changes nothing).

    Raises :class:`enrolment_reconciliation.io.lease.LeaseHeldError` when another run holds the
    lease.
    """
    if options.dry_run:
        summary = _run(spark, cfg, options)
    else:
        cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
        try:
            lease = Lease(
                session, keyspace=cfg.keyspace, table=cfg.lease_table, seconds=cfg.lease_seconds
            )
            with lease.hold(LEASE_NAME):
                summary = _run(spark, cfg, options)
                if lease.lost.is_set():
                    raise RuntimeError("the backfill lease was lost during the run")
        finally:
            cluster.shutdown()
    text = json.dumps(summary, indent=2, sort_keys=False, default=str)
    if options.summary_file:
        Path(options.summary_file).write_text(text + "\n")
    return summary


def total_writes(counts: Counts) -> int:
    """Rows written by a run (0 for a run over unchanged data)."""
    return counts.get(Counter.AGGREGATE_ROWS, 0) + counts.get(Counter.ENROLMENT_UPDATES, 0)
