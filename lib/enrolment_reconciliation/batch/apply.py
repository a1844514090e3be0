"""Apply one batch: write aggregates and enrolments, publish events through the outbox.

Order matters (docs/design.md §4.3, docs/behaviour.md §5.8): events are staged in the outbox
(by the driver when they are few: one Spark job, their collect with the failed payloads,
instead of up to three), then the aggregates and enrolment rows are written, then the outbox is
marked applied, then the AUDIT and certificate events are published together with the failed
events (so status 2 is visible before the certificate request). Any exception propagates: the
caller re-runs the batch, and every write is idempotent for the same input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.batch import milestones
from enrolment_reconciliation.batch.clock import PhaseClock
from enrolment_reconciliation.batch.pipeline import BatchResult
from enrolment_reconciliation.core.counters import Counter, Counts
from enrolment_reconciliation.core.schemas import (
    CERTIFICATE,
    COMPLETED,
    ENROLMENT_TABLE_KEY,
    to_event_key_names,
    to_table_key_names,
)
from enrolment_reconciliation.io.cassandra import (
    enrolment_table,
    write_activity_aggregates,
    write_enrolment_updates,
)
from enrolment_reconciliation.io.kafka import (
    DriverPublisher,
    can_publish_from_driver,
    write_to_topics,
)
from enrolment_reconciliation.io.outbox import EVENT_FIELDS, Outbox
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.logs import log_event

log = logging.getLogger(__name__)
# Up to this many messages (completion events and failed payloads) a batch stages and publishes
# from the driver: one Spark job (their collect) instead of two for the events (the Parquet
# outbox, then the publish) and one for the failed payloads; more go by Spark.
DRIVER_EVENTS_MAX = 2000


def completion_messages(events: DataFrame, cfg: JobConfig) -> DataFrame:
    """Certificate requests to ``kafka.certissue.topic``, AUDIT events to ``kafka.audit.topic``."""
    topic = F.when(F.col("kind") == CERTIFICATE, F.lit(cfg.kafka.certissue_topic)).otherwise(
        F.lit(cfg.kafka.audit_topic)
    )
    return events.select(topic.alias("topic"), "value")


def failed_messages(failed: DataFrame, cfg: JobConfig) -> DataFrame:
    return failed.select(F.lit(cfg.kafka.failed_topic).alias("topic"), "value")


def recover_outbox(
    outbox: Outbox, cfg: JobConfig, *, settle: Callable[[str], bool] = lambda batch: False
) -> int:
    """Publish what crashed attempts left in the outbox; returns how many batches.

    An applied batch (its writes done) is published as it is. An unapplied one whose batch
    ``settle`` says no attempt will redo (a backfill run's, after a new run started) is settled
    by the table: the events of enrolments that are complete now (status 2 was written before
    the crash) are published, the others dropped (the enrolment is not complete; a later run
    completes it and sends them then). Only then may the folder go: no certificate request is
    lost, and none goes out before its status 2 is visible.
    """

    def publish(events: DataFrame) -> None:
        write_to_topics(completion_messages(events, cfg), cfg.kafka)

    recovered = outbox.recover(publish)
    for batch in outbox.unapplied_batches():
        if not settle(batch):
            continue
        events = outbox.pending(batch)
        if events is not None:
            completed = events_of_completed_enrolments(events, cfg)
            log_event(log, "outbox-settled", level=logging.WARNING, batch=batch)
            publish(completed)
        outbox.discard(batch)
        recovered += 1
    return recovered


def events_of_completed_enrolments(events: DataFrame, cfg: JobConfig) -> DataFrame:
    """The events whose enrolment is complete in ``user_enrolments`` now (a direct join)."""
    completed = (
        enrolment_table(events.sparkSession, cfg.cassandra)
        .where(F.col("status") == COMPLETED)
        .select(*ENROLMENT_TABLE_KEY)
    )
    return (
        to_table_key_names(events)
        .join(completed, ENROLMENT_TABLE_KEY, "left_semi")
        .transform(to_event_key_names)
    )


def apply_batch(
    batch: BatchResult,
    batch_id: str,
    cfg: JobConfig,
    outbox: Outbox,
    *,
    repairs: DataFrame | None = None,
) -> Counts:
    """Write and publish a reconciled batch; returns its counters with the writes added.

    ``repairs``: certificate requests of a repair run (counted in ``backfill.certificate-
    repair-count``), staged and published with the batch's completion events."""
    counts = dict(batch.counters)
    clock = PhaseClock(batch.seconds)
    outputs = batch.outputs
    events = counts[Counter.CERT_EVENTS] + counts[Counter.AUDIT_EVENTS]
    to_stage = outputs.events
    if repairs is not None and counts.get(Counter.CERT_REPAIRS, 0):
        events += counts[Counter.CERT_REPAIRS]
        to_stage = to_stage.unionByName(repairs)
    failures = counts[Counter.FAILED_EVENTS]
    # few messages: staged and published by the driver, all of them in one collect; an earlier
    # attempt's staged events are merged in by Spark (Outbox.stage)
    by_driver = (
        0 < events + failures <= DRIVER_EVENTS_MAX
        and can_publish_from_driver(cfg.kafka)
        and not outbox.has_pending(batch_id)
    )
    on_driver: DriverMessages | None = None
    with clock("outbox"):
        if by_driver:
            on_driver = _collect_for_driver(
                to_stage if events else None, outputs.failed if failures else None
            )
            if on_driver.events:
                outbox.stage_rows(batch_id, on_driver.events)
            staged = bool(on_driver.events)
        else:
            staged = outbox.stage(batch_id, to_stage, any_events=events > 0)
    with clock("write-aggregates"):
        if counts[Counter.AGGREGATE_ROWS]:
            write_activity_aggregates(
                outputs.activity_aggregates,
                cfg.cassandra,
                cfg.write,
                rows=counts[Counter.AGGREGATE_ROWS],
            )
            counts[Counter.AGGREGATE_WRITES] = counts[Counter.AGGREGATE_ROWS]
    with clock("write-enrolments"):
        if counts[Counter.ENROLMENT_UPDATES]:
            write_enrolment_updates(
                outputs.enrolment_updates,
                cfg.cassandra,
                cfg.write,
                rows=counts[Counter.ENROLMENT_UPDATES],
            )
    with clock("publish"):
        if on_driver is not None:
            _publish_by_driver(staged, on_driver, batch_id, cfg, outbox)
        else:
            failed = failed_messages(outputs.failed, cfg) if failures else None
            _publish(staged, failed, batch_id, cfg, outbox)
    return counts


@dataclass
class DriverMessages:
    """A batch's few events (``EVENT_FIELDS`` tuples) and failed payloads, on the driver."""

    events: list[tuple[str, ...]]
    failed: list[str]


_FAILED = "failed"  # the kind of a failed payload in the one collect


def _collect_for_driver(events: DataFrame | None, failed: DataFrame | None) -> DriverMessages:
    """One Spark job: the events and the failed payloads together."""
    parts = [] if events is None else [events.select(*EVENT_FIELDS)]
    if failed is not None:
        blank = [F.lit("").alias(c) for c in EVENT_FIELDS if c not in ("kind", "value")]
        parts.append(failed.select(F.lit(_FAILED).alias("kind"), *blank, "value"))
    rows = [tuple(r) for r in reduce(DataFrame.unionByName, parts).collect()]
    kind = EVENT_FIELDS.index("kind")
    return DriverMessages(
        events=[r for r in rows if r[kind] != _FAILED],
        failed=[r[EVENT_FIELDS.index("value")] for r in rows if r[kind] == _FAILED],
    )


def _publish_by_driver(
    staged: bool, on_driver: DriverMessages, batch_id: str, cfg: JobConfig, outbox: Outbox
) -> None:
    """The Spark-free publish: status 2 written, outbox marked, then every message at once."""
    if staged:
        outbox.mark_applied(batch_id)
        milestones.reached(milestones.AFTER_ENROLMENT_WRITE)
    kind, value = EVENT_FIELDS.index("kind"), EVENT_FIELDS.index("value")
    topics = {CERTIFICATE: cfg.kafka.certissue_topic}
    messages = [(topics.get(r[kind], cfg.kafka.audit_topic), r[value]) for r in on_driver.events]
    messages += [(cfg.kafka.failed_topic, payload) for payload in on_driver.failed]
    DriverPublisher(cfg.kafka).send(messages)
    if staged:
        outbox.discard(batch_id)


def _publish(
    staged: bool, failed: DataFrame | None, batch_id: str, cfg: JobConfig, outbox: Outbox
) -> None:
    if staged:
        outbox.mark_applied(batch_id)
        milestones.reached(milestones.AFTER_ENROLMENT_WRITE)

        def publish(staged_events: DataFrame) -> None:
            messages = completion_messages(staged_events, cfg)
            write_to_topics(messages if failed is None else messages.unionByName(failed), cfg.kafka)

        outbox.publish(batch_id, publish)
    elif failed is not None:
        write_to_topics(failed, cfg.kafka)
