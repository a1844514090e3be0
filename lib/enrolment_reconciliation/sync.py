"""``sync`` mode: reconcile one enrolment now, through the same batch function, and report."""

from __future__ import annotations

import json
import time
from typing import Any

from pyspark.sql import SparkSession

from enrolment_reconciliation.apply import apply_batch, recover_outbox
from enrolment_reconciliation.config import JobConfig
from enrolment_reconciliation.inputs import read_requested
from enrolment_reconciliation.io.cassandra import connect_from_config
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.schemas import (
    CONTEXT_PREFIX,
    COURSE_ACTIVITY_TYPE,
    RAW_REQUEST_SCHEMA,
    SYNC_ACTION,
)
from enrolment_reconciliation.streaming import outbox_location


def enrolment_state(cfg: JobConfig, user: str, course: str, batch: str) -> dict[str, Any]:
    """The enrolment row and the user's course aggregates, as they are in Cassandra now."""
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    try:
        row = session.execute(
            f"SELECT status, progress, completedon, contentstatus FROM {cfg.enrolments_table}"
            " WHERE userid = %s AND courseid = %s AND batchid = %s",
            (user, course, batch),
        ).one()
        enrolment = None
        if row:
            enrolment = {
                "status": row.status,
                "progress": row.progress,
                "completedon": row.completedon.isoformat() if row.completedon else None,
                "contentstatus": dict(row.contentstatus or {}),
            }
        agg = session.execute(
            f"SELECT aggregates FROM {cfg.activity_agg_table} WHERE activity_type = %s"
            " AND activity_id = %s AND user_id = %s AND context_id = %s",
            (COURSE_ACTIVITY_TYPE, course, user, CONTEXT_PREFIX + batch),
        ).one()
        return {
            "enrolment": enrolment,
            "courseAggregates": dict(agg.aggregates or {}) if agg else None,
        }
    finally:
        cluster.shutdown()


def sync_request_frame(spark: SparkSession, user: str, course: str, batch: str):
    """One sync request, as the stream would read it from Kafka."""
    request = json.dumps(
        {
            "eid": "BE_JOB_REQUEST",
            "edata": {"action": SYNC_ACTION, "userId": user, "courseId": course, "batchId": batch},
        }
    )
    return spark.createDataFrame([(request.encode(), "sync", 0, 0)], RAW_REQUEST_SCHEMA)


def run_sync(
    spark: SparkSession, cfg: JobConfig, user: str, course: str, batch: str
) -> dict[str, Any]:
    """Reconcile (user, course, batch) and return before/after state and the counters."""
    outbox = Outbox(spark, outbox_location(cfg))
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
    return {
        "enrolment": {"userId": user, "courseId": course, "batchId": batch},
        "before": before,
        "after": after,
        "changed": before != after,
        "counters": counters,
    }
