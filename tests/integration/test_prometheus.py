"""The stream's figures on the driver's Prometheus endpoint, under our names and the original's."""

from __future__ import annotations

import socket
import urllib.request
import uuid

import pytest

from enrolment_reconciliation.modes.stream import run_stream
from tests.helpers import config_for, produce, seed, sync_request

pytestmark = pytest.mark.integration
FLINK = "flink_taskmanager_job_task_operator_enrolment_reconciliation"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_the_stream_exports_its_counters_lag_and_the_original_metric_names(spark, cql, tmp_path):
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
