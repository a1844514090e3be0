"""The stream's figures on the driver's Prometheus endpoint, under our names and the original's."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid

import pytest

from enrolment_reconciliation.core.counters import Counter, new_counts
from enrolment_reconciliation.io.prometheus import RunOutcome, exported_metric_names, push_run
from enrolment_reconciliation.modes.stream import run_stream
from tests.deploy.test_prometheus_rules import dashboard_exprs, metric_names, rules
from tests.helpers import config_for, produce, seed, sync_request
from tests.integration.conftest import pushed

pytestmark = pytest.mark.integration
FLINK = "flink_taskmanager_job_task_operator_enrolment_reconciliation"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alert_exprs() -> list[str]:
    return [rule["expr"] for rule in rules()]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_the_stream_exports_its_counters_lag_and_the_original_metric_names(
    spark, cql, tmp_path, pushgateway
):
    env = f"prom{uuid.uuid4().hex[:8]}"
    cfg, _ = config_for(env, tmp_path)
    seed(cql, cfg)
    port = free_port()
    cfg = cfg.with_overrides("stream.trigger.mode=available-now", f"metrics.prometheus.port={port}")
    produce(
        cfg,
        [
            sync_request("user001", "course001", "Batch1").encode(),
            sync_request("user002", "course001", "Batch1").encode(),
            b"not json",
        ],
    )
    scraped: dict[str, float] = {}

    def scrape_after_batch(counts, seconds):
        scraped.update(scrape(port))

    run_stream(spark, cfg, on_batch=scrape_after_batch)
    assert scraped["enrolment_reconciliation_requests_total_events_count_total"] == 3
    assert scraped["enrolment_reconciliation_requests_failed_events_count_total"] == 1
    assert scraped["enrolment_reconciliation_enrolment_cert_issue_events_count_total"] == 1
    assert scraped["enrolment_reconciliation_batches_total"] == 1
    assert scraped["enrolment_reconciliation_batch_seconds"] > 0
    labels = '{job_name="enrolment-reconciliation",operator_name="requests"}'
    assert scraped[f"{FLINK}_total_events_count{labels}"] == 3
    enrolment = '{job_name="enrolment-reconciliation",operator_name="enrolment"}'
    assert scraped[f"{FLINK}_cert_issue_events_count{enrolment}"] == 1
    assert scraped[f"{FLINK}_db_read_count{enrolment}"] == 2
    # the stream's health, for the alert rules: when it last applied a batch, what waits
    assert scraped["enrolment_reconciliation_last_batch_timestamp_seconds"] > time.time() - 300
    assert scraped["enrolment_reconciliation_outbox_pending_batches"] == 0
    assert scraped["enrolment_reconciliation_query_restarts_total"] == 0
    assert scraped["enrolment_reconciliation_batch_timeouts_total"] == 0

    # every metric the alert rules and the dashboard name is one the running job exports: the
    # stream's endpoint, or a batch run's push to a real Pushgateway
    outcome = RunOutcome("backfill", ended=time.time(), exit_code=0, slices=1, slices_done=1)
    outcome.counters, outcome.rows_per_second, outcome.outbox_pending = new_counts(), 1.0, 0
    push_run(pushgateway, "enrolment-reconciliation", env, outcome, starting=True)
    push_run(pushgateway, "enrolment-reconciliation", env, outcome)
    running = {key.split("{", 1)[0] for key in scraped}
    running |= {name for name, labels, _ in pushed(pushgateway) if labels.get("env") == env}
    used = {name for expr in (*alert_exprs(), *dashboard_exprs()) for name in metric_names(expr)}
    assert used - {"up"} <= running, used - running
    assert exported_metric_names() <= running, exported_metric_names() - running


def test_a_batch_run_pushes_its_outcome_and_counters_to_a_pushgateway(pushgateway):
    env = f"push{uuid.uuid4().hex[:8]}"
    first = RunOutcome("backfill", started=1000.0, ended=1100.0, exit_code=0, slices=4)
    first.slices_done, first.rows_per_second = 4, 1234.5
    first.counters = {Counter.ENROLMENTS_COMPLETED: 7, Counter.FAILED_EVENTS: 2}
    push_run(pushgateway, "enrolment-reconciliation", env, first)
    failed = RunOutcome("backfill", started=2000.0, ended=2010.0, exit_code=4)
    push_run(pushgateway, "enrolment-reconciliation", env, failed)
    held = {
        name: value
        for name, labels, value in pushed(pushgateway)
        if labels.get("env") == env and labels.get("mode") == "backfill"
    }
    assert held["enrolment_reconciliation_run_exit_code"] == 4  # the last run's
    assert held["enrolment_reconciliation_run_end_timestamp_seconds"] == 2010
    # a failed run leaves the last success in place: "the backfill did not run" stays true
    assert held["enrolment_reconciliation_run_success_timestamp_seconds"] == 1100
    assert held["enrolment_reconciliation_run_enrolment_enrolment_complete_count"] == 7
    assert held["enrolment_reconciliation_run_slices_done"] == 4
