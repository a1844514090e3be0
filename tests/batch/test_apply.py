"""How a batch is applied: events staged, rows written, the outbox marked applied, then every
message published; a few by the driver, many (or with a JKS truststore, or merged with an
earlier attempt's) by Spark. The writers and publishers are recorded, not run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from enrolment_reconciliation.batch import apply, milestones
from enrolment_reconciliation.batch.apply import DRIVER_EVENTS_MAX, apply_batch
from enrolment_reconciliation.batch.pipeline import BatchResult
from enrolment_reconciliation.core.counters import Counter, new_counts
from enrolment_reconciliation.core.reconcile import Reconciliation
from enrolment_reconciliation.core.schemas import EVENT_SCHEMA
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.runtime.config import load_config

BATCH = "batch-7"
CFG = load_config()
CERT = ("certificate", "m-cert", "u1", "do_c", "b1", '{"cert": "u1"}')
AUDIT = ("audit", "m-audit", "u1", "do_c", "b1", '{"audit": "u1"}')
FAILED = '{"reason": "edata.userId is missing"}'


class RecordingOutbox(Outbox):
    """A real outbox that also notes the calls ``apply_batch`` makes of it."""

    def __init__(self, spark, location: str, calls: list) -> None:
        super().__init__(spark, location)
        self.calls = calls

    def stage_rows(self, batch, rows):
        self.calls.append("stage_rows")
        super().stage_rows(batch, rows)

    def stage(self, batch, events, *, any_events=True):
        self.calls.append("stage")
        return super().stage(batch, events, any_events=any_events)

    def mark_applied(self, batch):
        self.calls.append("mark_applied")
        super().mark_applied(batch)


@pytest.fixture
def calls(monkeypatch):
    """Every step of an apply in order; the messages published land in ``calls.published``."""
    seen = Calls()
    monkeypatch.setattr(apply, "write_activity_aggregates", seen.writer("write-aggregates"))
    monkeypatch.setattr(apply, "write_enrolment_updates", seen.writer("write-enrolments"))
    monkeypatch.setattr(apply, "write_to_topics", seen.write_to_topics)
    monkeypatch.setattr(apply, "DriverPublisher", seen.driver_publisher)
    stop = milestones.observe(seen.append)
    yield seen
    stop()


class Calls(list):
    outbox: Outbox
    published: list

    def writer(self, name):
        def write(frame, cassandra, write, *, rows):
            self.append((name, rows))

        return write

    def write_to_topics(self, messages, kafka):
        # the events are still on disk, marked applied, while they go out
        self.append(("publish-by-spark", self.outbox.applied_batches()))
        self.published = sorted((r.topic, r.value) for r in messages.collect())

    def driver_publisher(self, kafka):
        calls = self

        class Publisher:
            def send(self, messages, timeout=60.0):
                calls.append(("publish-by-driver", calls.outbox.applied_batches()))
                calls.published = sorted(messages)
                return len(calls.published)

        return Publisher()


@pytest.fixture
def outbox(spark, tmp_path, calls) -> RecordingOutbox:
    calls.outbox = RecordingOutbox(spark, str(tmp_path / "outbox"), calls)
    return calls.outbox


def result(spark, events: list[tuple], failed: list[str], *, aggregates=3, updates=2):
    """A reconciled batch with these events and failed payloads (other outputs empty)."""
    empty = spark.createDataFrame([], "x string")
    counts = new_counts()
    counts[Counter.CERT_EVENTS] = sum(e[0] == "certificate" for e in events)
    counts[Counter.AUDIT_EVENTS] = sum(e[0] == "audit" for e in events)
    counts[Counter.FAILED_EVENTS] = len(failed)
    counts[Counter.AGGREGATE_ROWS] = aggregates
    counts[Counter.ENROLMENT_UPDATES] = updates
    outputs = Reconciliation(
        activity_aggregates=empty,
        all_aggregates=empty,
        enrolment_updates=empty,
        enrolment_changes=empty,
        events=spark.createDataFrame(events, EVENT_SCHEMA),
        failed=spark.createDataFrame([(f,) for f in failed], "value string"),
        course_progress=empty,
        reconciled=empty,
        enriched=empty,
    )
    return BatchResult(outputs, counts, datetime.now(UTC))


def audits(n: int) -> list[tuple]:
    return [("audit", f"m{i:05d}", f"u{i}", "do_c", "b1", f'{{"n": {i}}}') for i in range(n)]


def steps(publish: str, stage: str) -> list:
    return [
        stage,
        ("write-aggregates", 3),
        ("write-enrolments", 2),
        "mark_applied",
        milestones.AFTER_ENROLMENT_WRITE,
        (publish, [BATCH]),
    ]


def messages(events: list[tuple], failed: list[str]) -> list[tuple[str, str]]:
    topic = {"certificate": CFG.kafka.certissue_topic, "audit": CFG.kafka.audit_topic}
    return sorted([(topic[e[0]], e[5]) for e in events] + [(CFG.kafka.failed_topic, failed[0])])


def test_a_few_messages_are_staged_and_published_by_the_driver(spark, outbox, calls):
    counts = apply_batch(result(spark, [CERT, AUDIT], [FAILED]), BATCH, CFG, outbox)
    assert calls == steps("publish-by-driver", "stage_rows")
    assert calls.published == messages([CERT, AUDIT], [FAILED])
    assert not outbox.has_pending(BATCH) and outbox.applied_batches() == []
    assert counts[Counter.AGGREGATE_WRITES] == 3


@pytest.mark.parametrize(
    ("events", "path"),
    [
        (DRIVER_EVENTS_MAX - 1, ("publish-by-driver", "stage_rows")),  # with the failed one: max
        (DRIVER_EVENTS_MAX, ("publish-by-spark", "stage")),
    ],
)
def test_more_messages_than_the_driver_s_share_go_through_spark(spark, outbox, calls, events, path):
    many = audits(events)
    apply_batch(result(spark, many, [FAILED]), BATCH, CFG, outbox)
    assert calls == steps(*path)
    assert calls.published == messages(many, [FAILED])
    assert not outbox.has_pending(BATCH)


def test_with_a_kafka_truststore_the_messages_go_through_spark(spark, outbox, calls):
    cfg = CFG.with_overrides("kafka.ssl.truststore.location=/etc/kafka/truststore.jks")
    apply_batch(result(spark, [CERT, AUDIT], [FAILED]), BATCH, cfg, outbox)
    assert calls == steps("publish-by-spark", "stage")
    assert calls.published == messages([CERT, AUDIT], [FAILED])


def test_an_earlier_attempt_s_events_are_merged_and_published_once(spark, outbox, calls):
    earlier = ("certificate", "m-earlier", "u2", "do_c", "b1", '{"cert": "u2"}')
    outbox.stage_rows(BATCH, [earlier, CERT])  # that attempt failed before marking it applied
    calls.clear()
    apply_batch(result(spark, [CERT, AUDIT], [FAILED]), BATCH, CFG, outbox)
    assert calls == steps("publish-by-spark", "stage")
    assert calls.published == messages([earlier, CERT, AUDIT], [FAILED])
    assert not outbox.has_pending(BATCH)


def test_a_batch_with_only_failed_payloads_stages_and_writes_nothing(spark, outbox, calls):
    apply_batch(result(spark, [], [FAILED], aggregates=0, updates=0), BATCH, CFG, outbox)
    assert calls == [("publish-by-driver", [])]
    assert calls.published == [(CFG.kafka.failed_topic, FAILED)]
    assert not outbox.has_pending(BATCH)
