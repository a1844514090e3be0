"""``sync`` mode: reconcile one enrolment now, through the same batch function, and report."""

from __future__ import annotations

import json
import time
from typing import Any

from pyspark.sql import SparkSession

from enrolment_reconciliation.config import JobConfig
from enrolment_reconciliation.io.cassandra import connect_from_config
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.pipeline import BatchResources
from enrolment_reconciliation.schemas import RAW_REQUEST_SCHEMA, SYNC_ACTION
from enrolment_reconciliation.sinks import apply_batch, outbox_location, recover_outbox


def _state(cfg: JobConfig, user: str, course: str, batch: str) -> dict[str, Any]:
    """The enrolment row and the user's aggregate rows of this course (course and units)."""
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
            f"SELECT aggregates FROM {cfg.activity_agg_table} WHERE activity_type = 'Course'"
            " AND activity_id = %s AND user_id = %s AND context_id = %s",
            (course, user, f"cb:{batch}"),
        ).one()
        return {
            "enrolment": enrolment,
            "courseAggregates": dict(agg.aggregates or {}) if agg else None,
        }
    finally:
        cluster.shutdown()


def run_sync(
    spark: SparkSession, cfg: JobConfig, user: str, course: str, batch: str
) -> dict[str, Any]:
    """Reconcile (user, course, batch) and return before/after state and the counters."""
    recover_outbox(spark, cfg)
    request = json.dumps(
        {
            "eid": "BE_JOB_REQUEST",
            "edata": {"action": SYNC_ACTION, "userId": user, "courseId": course, "batchId": batch},
        }
    )
    raw = spark.createDataFrame([(request.encode(), "sync", 0, 0)], RAW_REQUEST_SCHEMA)
    before = _state(cfg, user, course, batch)
    batch_id = f"sync-{int(time.time() * 1000)}"
    counters = apply_batch(
        spark,
        raw,
        batch_id,
        cfg,
        BatchResources.from_config(cfg),
        Outbox(spark, outbox_location(cfg)),
    )
    after = _state(cfg, user, course, batch)
    return {
        "enrolment": {"userId": user, "courseId": course, "batchId": batch},
        "before": before,
        "after": after,
        "changed": before != after,
        "counters": counters,
    }
