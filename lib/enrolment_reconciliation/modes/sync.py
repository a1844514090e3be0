"""``sync`` mode: reconcile one enrolment now, through the same batch function, and report."""

from __future__ import annotations

import time
from typing import Any

from pyspark.sql import SparkSession

from enrolment_reconciliation.batch.apply import apply_batch, recover_outbox
from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.schemas import RAW_REQUEST_SCHEMA
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.modes.enrolment_state import (
    enrolment_state,
    found_parts,
    missing_parts,
    sync_request_payload,
)
from enrolment_reconciliation.runtime.config import JobConfig


def sync_request_frame(spark: SparkSession, user: str, course: str, batch: str):
    """One sync request, as the stream would read it from Kafka."""
    request = sync_request_payload(user, course, batch)
    return spark.createDataFrame([(request, "sync", 0, 0)], RAW_REQUEST_SCHEMA)


def run_sync(
    spark: SparkSession, cfg: JobConfig, user: str, course: str, batch: str
) -> dict[str, Any]:
    """Reconcile (user, course, batch) and return before/after state, the counters, and what
    of the enrolment was not there (``missing``: the CLI exits ``ExitCode.NOT_FOUND``)."""
    outbox = Outbox(spark, cfg.locations.stream_outbox)
    recover_outbox(outbox, cfg)
    raw = sync_request_frame(spark, user, course, batch)
    before = enrolment_state(cfg, user, course, batch)
    result = reconcile_batch(
        spark, read_requested(spark, raw, cfg), cfg, BatchResources.from_config(cfg)
    )
    try:
        counters = apply_batch(result, f"sync-{int(time.time() * 1000)}", cfg, outbox)
    finally:
        result.release()
    after = enrolment_state(cfg, user, course, batch)
    found = found_parts(counters, before)
    return {
        "enrolment": {"userId": user, "courseId": course, "batchId": batch},
        "found": found,
        "missing": missing_parts(user, course, batch, found),
        "before": before,
        "after": after,
        "changed": before != after,
        "counters": counters,
    }
