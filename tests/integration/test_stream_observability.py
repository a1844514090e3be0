"""Counters reach Spark's observed metrics (a StreamingQueryListener sees them), and an
infrastructure fault fails the micro-batch without moving offsets past unapplied requests."""

from __future__ import annotations

import time
import uuid

import pytest
from pyspark.sql.streaming import StreamingQueryListener

from enrolment_reconciliation.modes.stream import OBSERVATION, run_stream
from tests.helpers import (
    config_for,
    json_lines,
    messages_on,
    produce,
    run_job,
    seed,
    sync_request,
)

pytestmark = pytest.mark.integration


class ProgressCollector(StreamingQueryListener):
    def __init__(self) -> None:
        self.progress = []

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's listener API)
        pass

    def onQueryProgress(self, event) -> None:  # noqa: N802
        self.progress.append(event.progress)

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        pass


def test_request_counters_are_observed_metrics_of_the_stream(spark, cql, tmp_path):
    env = f"obs{uuid.uuid4().hex[:8]}"
    cfg, _ = config_for(env, tmp_path)
    seed(cql, cfg)
    cfg = cfg.with_overrides("stream.trigger.mode=available-now")
    produce(
        cfg,
        [
            sync_request("user001", "course001", "Batch1").encode(),
            sync_request("user002", "course001", "Batch1", action="other").encode(),
            b"{broken",
        ],
    )
    listener = ProgressCollector()
    spark.streams.addListener(listener)
    try:
        run_stream(spark, cfg)
        deadline = time.time() + 30
        while time.time() < deadline and not any(
            OBSERVATION in p.observedMetrics for p in listener.progress
        ):
            time.sleep(0.5)
    finally:
        spark.streams.removeListener(listener)
    observed = [
        p.observedMetrics[OBSERVATION]
        for p in listener.progress
        if OBSERVATION in p.observedMetrics
    ]
    assert [row.asDict() for row in observed] == [
        {
            "requests.total-events-count": 3,
            "requests.skipped-events-count": 1,
            "requests.failed-events-count": 1,
            "requests.valid-events-count": 1,
        }
    ]
    status = cql.execute("SELECT status FROM user_enrolments WHERE userid='user001'").one()
    assert status.status == 2


def test_unreachable_redis_fails_the_batch_and_a_rerun_applies_the_request(cql, tmp_path):
    env = f"fault{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    produce(cfg, [sync_request("user001", "course001", "Batch1").encode()])
    broken = [
        *args,
        "--set",
        "redis.port=1",
        "--set",
        "stream.restart.max.attempts=1",
        "--set",
        "stream.restart.backoff.seconds=1",
    ]
    failed = run_job(broken)
    assert failed.returncode != 0
    # restarted once, then gave up
    assert len(json_lines(failed.stderr, "query-failed")) == 1
    assert json_lines(failed.stderr, "giving-up")
    row = cql.execute("SELECT status FROM user_enrolments WHERE userid='user001'").one()
    assert row.status == 1  # nothing applied
    assert messages_on(cfg, cfg.kafka.certissue_topic) == []

    fixed = run_job(args)  # same checkpoint: the unapplied request is still there
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    row = cql.execute("SELECT status FROM user_enrolments WHERE userid='user001'").one()
    assert row.status == 2
    assert len(messages_on(cfg, cfg.kafka.certissue_topic)) == 1
