"""Streaming mode: Kafka Structured Streaming with foreachBatch into the batch function.

Offsets live in the checkpoint; a micro-batch is fully applied or re-run with the same input
(design.md §4). An exception in a micro-batch stops the query before its offsets are committed;
this loop restarts it from the checkpoint with exponential backoff, up to
``stream.restart.max.attempts`` consecutive failures (a successful micro-batch resets the count).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.config import JobConfig
from enrolment_reconciliation.core.requests import request_counter_columns, to_sync_requests
from enrolment_reconciliation.io.kafka import read_sync_request_stream
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.pipeline import BatchResources
from enrolment_reconciliation.sinks import apply_batch, outbox_location, recover_outbox

log = logging.getLogger("enrolment_reconciliation.stream")
OBSERVATION = "enrolment-reconciliation"


def observed_requests(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """The parsed request stream with request counters as Spark observed metrics.

    A StreamingQueryListener finds them in ``progress.observedMetrics["enrolment-reconciliation"]``.
    """
    return to_sync_requests(read_sync_request_stream(spark, cfg)).observe(
        OBSERVATION, *request_counter_columns()
    )


def batch_handler(
    spark: SparkSession,
    cfg: JobConfig,
    resources: BatchResources,
    outbox: Outbox,
    on_success: Callable[[], None] = lambda: None,
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: apply the batch, log one JSON line with its counters."""

    def handle(batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        counters = apply_batch(spark, batch, f"batch-{batch_id}", cfg, resources, outbox)
        on_success()
        log.info(
            json.dumps(
                {
                    "event": "micro-batch",
                    "batchId": batch_id,
                    "seconds": round(time.monotonic() - started, 3),
                    "counters": counters,
                },
                sort_keys=True,
            )
        )

    return handle


def run_stream(spark: SparkSession, cfg: JobConfig) -> None:
    """Run until stopped (processing-time) or until the topic is drained (available-now)."""
    resources = BatchResources.from_config(cfg)
    failures = 0
    applied = [False]  # a batch succeeded since the last restart: consecutive failures reset

    def mark_applied() -> None:
        applied[0] = True

    while True:
        published = recover_outbox(spark, cfg)
        if published:
            log.warning(json.dumps({"event": "outbox-recovered", "batches": published}))
        outbox = Outbox(spark, outbox_location(cfg))
        writer = (
            observed_requests(spark, cfg)
            .writeStream.queryName("enrolment-reconciliation")
            .option("checkpointLocation", cfg.checkpoint_location.rstrip("/") + "/query")
            .foreachBatch(batch_handler(spark, cfg, resources, outbox, mark_applied))
        )
        if cfg.trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=cfg.trigger_interval)
        query = writer.start()
        try:
            query.awaitTermination()
            return
        except StreamingQueryException as error:
            failures = 1 if applied[0] else failures + 1
            applied[0] = False
            if failures > cfg.restart_max_attempts:
                log.error(json.dumps({"event": "giving-up", "failures": failures}))
                raise
            backoff = min(cfg.restart_backoff_seconds * 2 ** (failures - 1), 300)
            log.error(
                json.dumps(
                    {
                        "event": "query-failed",
                        "failures": failures,
                        "restartInSeconds": backoff,
                        "error": str(error).splitlines()[0][:500],
                    }
                )
            )
            time.sleep(backoff)
