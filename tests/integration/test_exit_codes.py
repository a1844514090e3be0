"""The exit codes a scheduler sees, from one judgement of a fault (``runtime.faults``): 4 for a
store that cannot be reached, in every mode; 1 for a defect, attempted once (5 for an enrolment
that is not there: tests/integration/test_explain.py)."""

from __future__ import annotations

import socket
import uuid

import pytest

from enrolment_reconciliation.batch.milestones import AFTER_ENROLMENT_WRITE
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from tests.fault_injection.sitecustomize import FAULT_ACTION_ENV, FAULT_POINT_ENV
from tests.helpers import config_for, json_lines, produce, seed, spark_submit, sync_request
from tests.integration.conftest import pushed

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_every_mode_exits_4_when_cassandra_cannot_be_reached(tmp_path):
    env = f"exit{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    produce(cfg, [sync_request("u1", "c1", "b1").encode()])  # so the stream has a batch to run
    unreachable = [
        *args,
        "--set",
        f"lms-cassandra.port={closed_port()}",
        "--set",
        "stream.restart.max.attempts=0",
        "--set",
        f"backfill.outbox.location={tmp_path}/outbox",
    ]
    enrolment = ["--user", "u1", "--course", "c1", "--batch", "b1"]
    runs = {
        "stream": spark_submit("stream", ["--trigger", "available-now", *unreachable]),
        "sync": spark_submit("sync", [*enrolment, *unreachable]),
        "explain": spark_submit("explain", [*enrolment, *unreachable]),
        "backfill": spark_submit("backfill", unreachable),
    }
    for mode, run in runs.items():
        output = run.stdout[-3000:] + run.stderr[-3000:]
        assert run.returncode == ExitCode.UNREACHABLE, f"{mode}: {output}"
        assert "a store or service unreachable" in run.stdout + run.stderr, f"{mode}: {output}"
    assert json_lines(runs["stream"].stderr, "giving-up")  # the stream judged it and gave up


def test_a_defect_in_a_backfill_is_attempted_once_and_exits_1(cql, tmp_path, pushgateway):
    env = f"defect{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)  # user001 completes course001: the slice reaches its enrolment write
    run = spark_submit(
        "backfill",
        [
            *args,
            "--courses",
            "course001",
            "--restart",
            "--set",
            f"backfill.outbox.location={tmp_path}/outbox",
            "--set",
            "backfill.slice.retry.backoff.seconds=0.1",
            "--set",
            f"metrics.pushgateway.url={pushgateway}",
        ],
        **{FAULT_POINT_ENV: AFTER_ENROLMENT_WRITE, FAULT_ACTION_ENV: "raise"},
    )
    try:
        output = run.stdout + run.stderr
        assert run.returncode == ExitCode.ERROR, output[-4000:]
        assert output.count("fault injection: a defect at") == 1  # one attempt
        assert '"event": "slice-retry"' not in output
        assert "a defect: not retried" in output and "injected defect" in output
        outcome = {
            name: value
            for name, labels, value in pushed(pushgateway)
            if labels.get("env") == env and labels.get("mode") == "backfill"
        }
        assert outcome["enrolment_reconciliation_run_exit_code"] == ExitCode.ERROR
        assert "enrolment_reconciliation_run_success_timestamp_seconds" not in outcome
    finally:
        cql.execute(f"TRUNCATE {cfg.backfill.runs_table}")  # the stopped run is not resumed
