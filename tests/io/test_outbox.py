"""The outbox keeps a batch's completion events on disk from before the status write until they
are published: staged by Spark or by the driver, merged with an earlier attempt's by mid,
published after a crash only once the batch's writes were applied."""

from __future__ import annotations

import pytest

from enrolment_reconciliation.core.schemas import EVENT_SCHEMA
from enrolment_reconciliation.io.outbox import APPLIED_MARKER, DRIVER_FILE, Outbox


def event(mid: str, kind: str = "audit", user: str = "u1") -> tuple[str, ...]:
    return (kind, mid, user, "do_course", "batch-1", f'{{"mid": "{mid}"}}')


@pytest.fixture
def outbox(spark, tmp_path) -> Outbox:
    return Outbox(spark, f"file://{tmp_path}/outbox/")


def events_frame(spark, *mids: str):
    return spark.createDataFrame([event(m) for m in mids], EVENT_SCHEMA)


def mids(frame) -> list[str]:
    return sorted(r.mid for r in frame.collect())


def test_events_staged_by_spark_are_pending_until_discarded(spark, outbox):
    assert not outbox.has_pending("b1") and outbox.pending("b1") is None
    assert outbox.stage("b1", events_frame(spark, "m1", "m2"))
    assert outbox.has_pending("b1")
    assert sorted(tuple(r) for r in outbox.pending("b1").collect()) == [event("m1"), event("m2")]
    outbox.discard("b1")
    assert not outbox.has_pending("b1") and outbox.pending("b1") is None


def test_events_staged_by_the_driver_read_as_spark_s_do(outbox, tmp_path):
    rows = [event("m1", "certificate"), event("m2", "audit", user="ü-2")]
    outbox.stage_rows("b1", rows)
    assert outbox.has_pending("b1")
    assert (tmp_path / "outbox" / "b1" / DRIVER_FILE).is_file()
    assert sorted(tuple(r) for r in outbox.pending("b1").collect()) == sorted(rows)
    assert not (tmp_path / "outbox" / "b1.staging").exists()


def test_a_batch_known_to_have_no_events_stages_nothing(spark, outbox):
    assert not outbox.stage("b1", events_frame(spark), any_events=False)
    assert not outbox.has_pending("b1")


def test_a_retry_keeps_the_earlier_attempt_s_events_once_by_mid(spark, outbox):
    # the first attempt staged by the driver, then failed before its status write
    outbox.stage_rows("b1", [event("m1"), event("m2")])
    assert outbox.stage("b1", events_frame(spark, "m2", "m3"))
    assert mids(outbox.pending("b1")) == ["m1", "m2", "m3"]
    # a third attempt, by Spark over Spark's folder, that recomputed none of them
    assert outbox.stage("b1", events_frame(spark), any_events=False)
    assert mids(outbox.pending("b1")) == ["m1", "m2", "m3"]


def test_recovery_publishes_exactly_the_applied_batches_and_removes_them(spark, outbox):
    outbox.stage("b1", events_frame(spark, "m1", "m2"))
    outbox.stage_rows("b2", [event("m3")])
    outbox.stage("b3", events_frame(spark, "m4"))  # its writes may be partial: not applied
    outbox.mark_applied("b1")
    outbox.mark_applied("b2")
    assert outbox.applied_batches() == ["b1", "b2"]

    published = []
    assert outbox.recover(lambda frame: published.append(mids(frame))) == 2
    assert published == [["m1", "m2"], ["m3"]]
    assert not outbox.has_pending("b1") and not outbox.has_pending("b2")
    assert outbox.applied_batches() == []
    assert mids(outbox.pending("b3")) == ["m4"]  # left for its batch's re-run
    assert outbox.recover(published.append) == 0 and len(published) == 2


def test_marking_a_batch_applied_keeps_its_events_readable(spark, outbox, tmp_path):
    outbox.stage("b1", events_frame(spark, "m1"))
    outbox.mark_applied("b1")
    assert (tmp_path / "outbox" / "b1" / APPLIED_MARKER).is_file()
    assert mids(outbox.pending("b1")) == ["m1"]
