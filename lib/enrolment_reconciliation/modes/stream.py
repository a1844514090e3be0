"""Streaming mode: Kafka Structured Streaming with foreachBatch into the batch function.

Offsets live in the checkpoint; a micro-batch is fully applied or re-run with the same input
(docs/design.md §4). An exception in a micro-batch stops the query before its offsets are committed;
this loop restarts it from the checkpoint with exponential backoff, up to
``stream.restart.max.attempts`` consecutive failures (a successful micro-batch resets the count).
A micro-batch that runs past ``stream.batch.timeout.seconds`` (a store that hangs instead of
failing) has its Spark jobs cancelled and fails like any other fault.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from enrolment_reconciliation.batch.apply import apply_batch, recover_outbox
from enrolment_reconciliation.batch.clock import PhaseClock
from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.counters import Counts
from enrolment_reconciliation.core.requests import request_counter_columns, to_sync_requests
from enrolment_reconciliation.io.kafka import GroupOffsets, read_sync_request_stream
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.io.probes import stores_down
from enrolment_reconciliation.io.prometheus import PrometheusExporter
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from enrolment_reconciliation.runtime.faults import (
    AttemptWatch,
    InfrastructureError,
    is_infrastructure_fault,
)
from enrolment_reconciliation.runtime.jvm import evict_connector_sessions
from enrolment_reconciliation.runtime.logs import first_line, log_event
from enrolment_reconciliation.runtime.session import launcher_value

log = logging.getLogger("enrolment_reconciliation.stream")
OBSERVATION = "enrolment-reconciliation"
PROBE_INTERVAL_SECONDS = 2.0  # while a store is down, how often the restart wait asks it


def observed_requests(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """The parsed request stream with request counters as Spark observed metrics.

    A StreamingQueryListener finds them in ``progress.observedMetrics["enrolment-reconciliation"]``.
    """
    return to_sync_requests(read_sync_request_stream(spark, cfg.kafka, cfg.stream)).observe(
        OBSERVATION, *request_counter_columns()
    )


def tune_for_micro_batches(spark: SparkSession) -> None:
    """Small batches: a fixed shuffle width (one partition per core) and no adaptive
    re-planning, which would add a Spark job per exchange to every micro-batch; each only
    where the operator did not set it."""
    tuned = {
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.shuffle.partitions": str(spark.sparkContext.defaultParallelism),
    }
    for key, value in tuned.items():
        if launcher_value(key) is None:
            spark.conf.set(key, value)


class BatchWatchdog:
    """Fails a micro-batch that runs longer than ``seconds``.

    First its Spark jobs are cancelled and the connector's cached sessions closed (a driver-side
    call stuck on a session of a Cassandra that went away, e.g. an uninterruptible schema
    refresh, is not a Spark job and ignores the cancel). If the batch still has not returned
    ``grace`` seconds later, the process exits with ``ExitCode.STUCK``: a stuck JVM thread cannot be
    recovered in process, and a restart from the checkpoint loses nothing.
    """

    def __init__(
        self,
        spark: SparkSession,
        seconds: float,
        grace: float | None = None,
        on_timeout: Callable[[], None] = lambda: None,
    ) -> None:
        self._spark, self._sc = spark, spark.sparkContext
        self._seconds, self._on_timeout = seconds, on_timeout
        self._grace = grace if grace is not None else min(max(seconds / 2, 10), 120)

    def spark_jobs(self, group: str) -> int:
        """How many Spark jobs the group ran (the micro-batch's, with the watchdog's group)."""
        return len(self._sc.statusTracker().getJobIdsForGroup(group))

    def _give_up(self, group: str) -> None:
        log_event(
            log,
            "batch-stuck",
            level=logging.CRITICAL,
            batch=group,
            seconds=self._seconds + self._grace,
            exitCode=int(ExitCode.STUCK),
            action="exiting for a restart from the checkpoint",
        )
        logging.shutdown()
        os._exit(ExitCode.STUCK)

    def run(self, group: str, work: Callable[[], Counts]) -> Counts:
        self._sc.setJobGroup(group, f"enrolment-reconciliation {group}", interruptOnCancel=True)
        expired = threading.Event()
        stuck = threading.Timer(self._grace, self._give_up, args=(group,))
        stuck.daemon = True

        def cancel() -> None:
            expired.set()
            log_event(log, "batch-timeout", level=logging.ERROR, batch=group)
            self._on_timeout()
            stuck.start()
            self._sc.cancelJobGroup(group)
            _close_connector_sessions(self._spark)

        timer = threading.Timer(self._seconds, cancel)
        timer.daemon = True
        timer.start()
        try:
            counts = work()
        except Exception as error:
            if expired.is_set():
                raise TimeoutError(
                    f"{group} ran past {self._seconds}s and was cancelled"
                ) from error
            raise
        finally:
            timer.cancel()
            stuck.cancel()
        if expired.is_set():
            raise TimeoutError(f"{group} ran past {self._seconds}s and was cancelled")
        return counts


class StreamMonitor:
    """What the stream's restart loop and its endpoint learn from the micro-batches.

    A failed micro-batch is judged (``runtime.faults``) where its error is whole, in
    ``foreachBatch``: the loop sees it only as the text of a ``StreamingQueryException``.
    """

    def __init__(
        self,
        exporter: PrometheusExporter | None = None,
        on_batch: Callable[[Counts, float], None] = lambda counts, seconds: None,
    ) -> None:
        self._exporter, self._on_batch = exporter, on_batch
        self._pending: Callable[[], int] = lambda: 0
        self._judged: bool | None = None
        self.applied_since_restart = False  # consecutive failures count from the last batch

    def count_pending(self, pending: Callable[[], int]) -> None:
        """How to count the outbox's batches not yet published."""
        self._pending = pending

    def applied(self, counts: Counts, seconds: float) -> None:
        self.applied_since_restart = True
        if self._exporter is not None:
            self._exporter.record_batch(counts, seconds)
            self._exporter.record_outbox_pending(self._pending())
        self._on_batch(counts, seconds)

    def failed(self, infrastructure: bool) -> None:
        self._judged = infrastructure

    def timed_out(self) -> None:
        if self._exporter is not None:
            self._exporter.record_timeout()

    def restarting(self) -> None:
        self.applied_since_restart = False
        if self._exporter is not None:
            self._exporter.record_restart()

    def recovered(self) -> None:
        """The outbox was recovered at a (re)start: what it holds now."""
        if self._exporter is not None:
            self._exporter.record_outbox_pending(self._pending())

    def take_judgement(self) -> bool | None:
        """Whether the last failed micro-batch failed on the infrastructure (None: no
        micro-batch failed in ``foreachBatch``)."""
        judged, self._judged = self._judged, None
        return judged


class StreamGaveUpError(InfrastructureError):
    """The query failed on ``stream.restart.max.attempts`` consecutive restarts."""


def batch_handler(
    spark: SparkSession,
    cfg: JobConfig,
    resources: BatchResources,
    outbox: Outbox,
    monitor: StreamMonitor,
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: reconcile and apply the batch, log one JSON line; a failure is
    judged (``monitor``) and raised, which stops the query before its offsets are committed."""
    watchdog = BatchWatchdog(spark, cfg.stream.batch_timeout_seconds, on_timeout=monitor.timed_out)

    def handle(batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        phases: dict[str, float] = {}
        clock = PhaseClock(phases)

        def work() -> Counts:
            with clock("read-plan"):  # the keyed reader's frames (no Spark job yet)
                source = read_requested(spark, batch, cfg)
            result = reconcile_batch(spark, source, cfg, resources)
            try:
                return apply_batch(result, f"batch-{batch_id}", cfg, outbox)
            finally:
                for phase, spent in result.seconds.items():
                    phases[phase] = round(phases.get(phase, 0.0) + spent, 3)
                with clock("release"):
                    result.release()

        group = f"batch-{batch_id}"
        watch = AttemptWatch(spark)
        try:
            counts = watchdog.run(group, work)
        except Exception as error:
            monitor.failed(watch.is_infrastructure(error))
            raise
        seconds = time.monotonic() - started
        # what no phase names (the watchdog, the log line's own Spark status calls, Python):
        # so the phases of every line add up to its seconds
        phases["other"] = round(max(0.0, seconds - sum(phases.values())), 3)
        monitor.applied(counts, seconds)
        log_event(
            log,
            "micro-batch",
            batchId=batch_id,
            seconds=round(seconds, 3),
            sparkJobs=watchdog.spark_jobs(group),
            phases=phases,
            counters=counts,
        )

    return handle


# Spark's own parts of a trigger (StreamingQueryProgress.durationMs); addBatch is foreachBatch.
TRIGGER_PARTS = (
    "latestOffset",
    "getBatch",
    "queryPlanning",
    "walCommit",
    "addBatch",
    "commitOffsets",
)


class TriggerListener(StreamingQueryListener):
    """One JSON line per trigger with what Spark spent outside ``foreachBatch``: finding the
    offsets, planning, the write-ahead log and the commit (``durationMs`` of its progress), so
    a micro-batch's wall time is accounted for from its trigger to its commit."""

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 (Spark's listener API)
        pass

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        progress = event.progress
        durations = {k: int(v) for k, v in (progress.durationMs or {}).items()}
        total = durations.get("triggerExecution", 0)
        parts = {k: durations[k] for k in TRIGGER_PARTS if k in durations}
        log_event(
            log,
            "trigger",
            batchId=progress.batchId,
            triggerMs=total,
            partsMs=parts,
            outsideBatchMs=total - parts.get("addBatch", 0),
            otherMs=max(0, total - sum(parts.values())),
        )

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass


def parse_offsets(offsets: Any) -> dict[str, dict[str, int]]:
    """A Kafka source's offsets as ``{topic: {partition: offset}}``: from the JSON text a
    progress event holds, a dict already parsed, or nothing. PySpark renders a missing offset
    (a query's first batch has no start) as the text ``"None"``."""
    if isinstance(offsets, dict):
        return offsets
    if not offsets or offsets in ("None", "null"):
        return {}
    return json.loads(offsets)


def end_offsets(progress: Any) -> dict[str, dict[str, int]]:
    """``{topic: {partition: offset}}`` a query's progress ended at (a progress event's
    ``sources`` or ``StreamingQuery.lastProgress``, a dict); empty without one."""
    ends: dict[str, dict[str, int]] = {}
    if not progress:
        return ends
    sources = progress["sources"] if isinstance(progress, dict) else progress.sources
    for source in sources:
        end = source["endOffset"] if isinstance(source, dict) else source.endOffset
        ends |= parse_offsets(end)
    return ends


class ProgressListener(StreamingQueryListener):
    """After each micro-batch: its end offsets committed to the consumer group (for the
    operator's lag tools), and, with the Prometheus endpoint on, the consumer lag as the batch
    began and Spark's offsets behind latest.

    The lag counts the requests on the topic the stream had not read when the batch was planned
    (the batch's own included).

    Measured from the batch's *start* offsets: Spark's progress reports as ``latestOffset`` the
    newest offset at planning time, so ``latestOffset - endOffset`` is 0 whenever the batch took
    everything there was (below ``stream.max.offsets.per.trigger``) and never shows a stream
    falling behind.
    """

    def __init__(self, offsets: GroupOffsets, exporter: PrometheusExporter | None) -> None:
        self._offsets, self._exporter = offsets, exporter

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 (Spark's listener API)
        pass

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        lag, behind = 0, 0
        for source in event.progress.sources:
            # no start yet: the query reads from the beginning
            starts, latest = parse_offsets(source.startOffset), parse_offsets(source.latestOffset)
            for topic, partitions in latest.items():
                for partition, offset in partitions.items():
                    lag += max(0, offset - starts.get(topic, {}).get(partition, 0))
            behind += int(float((source.metrics or {}).get("maxOffsetsBehindLatest") or 0))
        if event.progress.numInputRows:  # a batch ran: its end is applied and committed
            self._offsets.commit(end_offsets(event.progress))
        if self._exporter is not None:
            self._exporter.record_lag(lag, behind)

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        # a trigger found nothing new (Spark reports idle triggers here, not as progress)
        if self._exporter is not None:
            self._exporter.record_lag(0, 0)

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass


def run_stream(
    spark: SparkSession,
    cfg: JobConfig,
    on_batch: Callable[[Counts, float], None] = lambda counts, seconds: None,
) -> None:
    """Run until stopped (processing-time) or until the topic is drained (available-now)."""
    tune_for_micro_batches(spark)
    resources = BatchResources.from_config(cfg)
    exporter = (
        PrometheusExporter(cfg.metrics.prometheus_port) if cfg.metrics.prometheus_port else None
    )
    offsets = GroupOffsets(cfg.kafka)
    listeners: list[StreamingQueryListener] = [
        TriggerListener(),
        ProgressListener(offsets, exporter),
    ]
    for listener in listeners:
        spark.streams.addListener(listener)
    try:
        _run_query(spark, cfg, resources, StreamMonitor(exporter, on_batch), offsets)
    finally:
        for listener in listeners:
            spark.streams.removeListener(listener)
        offsets.close()
        if exporter:
            exporter.close()


def _run_query(
    spark: SparkSession,
    cfg: JobConfig,
    resources: BatchResources,
    monitor: StreamMonitor,
    offsets: GroupOffsets,
) -> None:
    failures = 0
    outbox = Outbox(spark, cfg.locations.stream_outbox)
    monitor.count_pending(outbox.pending_count)
    while True:
        published = recover_outbox(outbox, cfg)
        monitor.recovered()
        if published:
            log_event(log, "outbox-recovered", level=logging.WARNING, batches=published)
        writer = (
            observed_requests(spark, cfg)
            .writeStream.queryName("enrolment-reconciliation")
            .option("checkpointLocation", cfg.locations.stream_query)
            .foreachBatch(batch_handler(spark, cfg, resources, outbox, monitor))
        )
        if cfg.stream.trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=cfg.stream.trigger_interval)
        query = writer.start()
        try:
            query.awaitTermination()
            # drained (available-now): the listener may not have heard of the last batch yet
            offsets.commit(end_offsets(query.lastProgress))
            return
        except StreamingQueryException as error:
            judged = monitor.take_judgement()
            infrastructure = is_infrastructure_fault(error) if judged is None else judged
            if not infrastructure:  # a defect: a restart would only repeat it
                log_event(
                    log, "query-failed", level=logging.ERROR, defect=True, error=first_line(error)
                )
                raise
            failures = 1 if monitor.applied_since_restart else failures + 1
            monitor.restarting()
            if failures > cfg.stream.restart_max_attempts:
                log_event(log, "giving-up", level=logging.ERROR, failures=failures)
                raise StreamGaveUpError(
                    f"the query failed {failures} times in a row: {first_line(error)}"
                ) from error
            backoff = min(
                cfg.stream.restart_backoff_seconds * 2 ** (failures - 1),
                cfg.stream.restart_backoff_max_seconds,
            )
            log_event(
                log,
                "query-failed",
                level=logging.ERROR,
                failures=failures,
                restartInSeconds=backoff,
                error=first_line(error),
            )
            _close_connector_sessions(spark)
            _wait_to_restart(cfg, backoff)


def _close_connector_sessions(spark: SparkSession) -> None:
    """Close the connector's cached driver sessions before a restart, so the restarted query
    opens a fresh one. A session whose schema refresh failed while Cassandra was away never
    refreshes again (Java driver 4.18: the failed refresh stays "in progress" and every later
    ``Session.refreshSchema`` waits behind it, uninterruptibly), and the connector keeps an
    unused session for an hour (``keepAliveMS``): every micro-batch after the outage would hang
    in it until the watchdog ended the process."""
    try:
        evict_connector_sessions(spark)
    except Exception as error:  # the connector is not on the classpath, or the JVM side is gone
        log.warning("closing the connector's sessions failed: %s", error)


def _wait_to_restart(cfg: JobConfig, backoff: float) -> None:
    """Wait ``backoff`` seconds; if a store was down as the query failed, restart as soon as
    every store answers again (probed every few seconds), so an outage costs the time the
    store was away, not the rest of a doubled backoff."""
    deadline = time.monotonic() + backoff
    down = was_down = stores_down(cfg.cassandra, cfg.redis)
    while down and time.monotonic() < deadline:
        time.sleep(min(PROBE_INTERVAL_SECONDS, max(0.0, deadline - time.monotonic())))
        down = stores_down(cfg.cassandra, cfg.redis)
        if not down:
            log_event(
                log, "stores-back", level=logging.WARNING, stores=was_down, action="restarting now"
            )
            return
    time.sleep(max(0.0, deadline - time.monotonic()))
