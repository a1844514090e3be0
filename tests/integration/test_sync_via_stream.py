"""``sync --via-stream`` against a running stream: the answer printed as ``sync`` prints it, a
rejected request's reason, and a clear error when no stream consumes the topic."""

from __future__ import annotations

import json
import uuid

import pytest

from devkit.stack import StreamProcess
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from tests.helpers import STREAM_KEYSPACE, config_for, seed, spark_submit

pytestmark = pytest.mark.integration


def via_stream(args: list[str], user: str, batch: str = "Batch1", timeout: float = 60):
    return spark_submit(
        "sync",
        [
            "--via-stream",
            "--timeout",
            str(timeout),
            "--user",
            user,
            "--course",
            "course001",
            "--batch",
            batch,
            *args,
        ],
    )


def test_sync_via_stream_asks_the_running_stream(tmp_path):
    cfg, args = config_for(f"via{uuid.uuid4().hex[:8]}", tmp_path)
    cluster, cql = connect(cfg.cassandra, keyspace=STREAM_KEYSPACE)
    try:
        seed(cql, cfg)
    finally:
        cluster.shutdown()

    # no stream consumes the topic: a clear error once the timeout is up
    unanswered = via_stream(args, "user002", timeout=3)
    assert unanswered.returncode == ExitCode.UNREACHABLE, unanswered.stderr[-3000:]
    assert "no stream answered within 3 s" in unanswered.stderr
    assert "SparkContext" not in unanswered.stderr  # no Spark on the caller's side

    stream = StreamProcess(args, tmp_path / "stream.log")
    try:
        stream.wait_for_batches(1, timeout=300)  # it consumed the unanswered request
        applied = via_stream(args, "user001")
        assert applied.returncode == ExitCode.OK, applied.stdout[-3000:] + applied.stderr[-3000:]
        result = json.loads(applied.stdout)
        assert result["before"]["enrolment"]["status"] == 1
        assert result["after"]["enrolment"]["status"] == 2 and result["changed"] is True
        assert result["after"]["courseAggregates"]["completedCount"] == 3.0
        assert result["request"]["topic"] == cfg.kafka.input_topic

        again = via_stream(args, "user001")  # applied, changing nothing: the commit log says so
        assert again.returncode == ExitCode.OK, again.stderr[-3000:]
        assert json.loads(again.stdout)["changed"] is False

        rejected = via_stream(args, "user001", batch=" ")
        assert rejected.returncode == ExitCode.USAGE, rejected.stderr[-3000:]
        assert json.loads(rejected.stdout)["failed"] == "edata.batchId is missing or empty"
        assert "the stream could not sync it: edata.batchId is missing or empty" in (
            rejected.stderr
        )
    finally:
        stream.stop()
