"""Apply one batch: write aggregates and enrolments, publish events through the outbox.

Order matters (design.md §3.3, spec.md §5.6): events are staged in the outbox, then the
aggregates and enrolment rows are written, then the outbox is marked applied, then the AUDIT and
certificate events are published (so status 2 is visible before the certificate request), then
failed events go to the failed topic. Any exception propagates: the caller re-runs the batch.
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.config import JobConfig
from enrolment_reconciliation.io.cassandra import (
    write_activity_aggregates,
    write_enrolment_updates,
)
from enrolment_reconciliation.io.kafka import write_to_topic
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.schemas import AUDIT, CERTIFICATE

log = logging.getLogger(__name__)
# Only tests switch this on: the process SIGKILLs itself at the named point.
FAULT_POINT_ENV = "ER_FAULT_POINT"
AFTER_ENROLMENT_WRITE = "after-enrolment-write"


def _fault_point(name: str) -> None:
    if os.environ.get(FAULT_POINT_ENV) == name:
        log.error("fault point %s reached: killing the job (test only)", name)
        os.kill(os.getpid(), signal.SIGKILL)


def publish_completion_events(events: DataFrame, cfg: JobConfig) -> None:
    """AUDIT events to ``kafka.audit.topic``, certificate requests to ``kafka.certissue.topic``."""
    for kind, topic in ((CERTIFICATE, cfg.certissue_topic), (AUDIT, cfg.audit_topic)):
        write_to_topic(events.where(F.col("kind") == kind), topic, cfg)


def outbox_location(cfg: JobConfig) -> str:
    return cfg.checkpoint_location.rstrip("/") + "/outbox"


def recover_outbox(spark: SparkSession, cfg: JobConfig) -> int:
    """Publish events that a crashed run wrote to the outbox but did not publish."""
    outbox = Outbox(spark, outbox_location(cfg))
    return outbox.recover(lambda events: publish_completion_events(events, cfg))


def apply_batch(
    spark: SparkSession,
    raw: DataFrame,
    batch_id: str,
    cfg: JobConfig,
    resources: BatchResources,
    outbox: Outbox,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Reconcile ``raw`` and apply the result; returns the batch's counters."""
    result = reconcile_batch(spark, raw, cfg, resources, now=now)
    counters = dict(result.counters)
    try:
        staged = outbox.stage(batch_id, result.events)
        counters["write.db-update-count"] = write_activity_aggregates(
            result.activity_aggregates, cfg
        )
        if counters["enrolment.enrolment-update-count"]:
            write_enrolment_updates(result.enrolment_updates, cfg)
        if staged:
            outbox.mark_applied(batch_id)
            _fault_point(AFTER_ENROLMENT_WRITE)
            outbox.publish(batch_id, lambda events: publish_completion_events(events, cfg))
        if counters["failed.failed-events-count"]:
            write_to_topic(result.failed, cfg.failed_topic, cfg)
    finally:
        result.release()
    return counters
