"""Counter names on the Prometheus endpoint, the original's reset-on-read gauges, and the lag."""

from __future__ import annotations

import json
from types import SimpleNamespace

from prometheus_client import generate_latest

from enrolment_reconciliation.core.counters import Counter, new_counts
from enrolment_reconciliation.io.prometheus import PrometheusExporter
from enrolment_reconciliation.modes.stream import LagListener

FLINK = "flink_taskmanager_job_task_operator_enrolment_reconciliation"
REQUESTS = '{job_name="enrolment-reconciliation",operator_name="requests"}'


def samples(exporter: PrometheusExporter) -> dict[str, float]:
    text = generate_latest(exporter.registry).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_counters_accumulate_and_the_original_gauges_count_since_the_last_scrape():
    exporter = PrometheusExporter(port=0)
    counts = new_counts() | {Counter.TOTAL_EVENTS: 5, Counter.SKIPPED_EVENTS: 1}
    exporter.record_batch(counts, 1.5)
    exporter.record_batch(counts, 0.5)
    first = samples(exporter)
    assert first["enrolment_reconciliation_requests_total_events_count_total"] == 10
    assert first["enrolment_reconciliation_batch_seconds"] == 0.5
    assert first[f"{FLINK}_total_events_count{REQUESTS}"] == 10
    assert first[f"{FLINK}_skipped_events_count{REQUESTS}"] == 2
    second = samples(exporter)
    assert second["enrolment_reconciliation_requests_total_events_count_total"] == 10
    assert second[f"{FLINK}_total_events_count{REQUESTS}"] == 0  # reset on read, as Flink's


def test_the_lag_is_what_the_topic_held_unread_when_the_batch_began():
    lags: list[int] = []
    batch = SimpleNamespace(  # took everything there was: end == latest at planning time
        startOffset=json.dumps({"t": {"0": 40, "1": 7}}),
        endOffset=json.dumps({"t": {"0": 50, "1": 7, "2": 3}}),
        latestOffset=json.dumps({"t": {"0": 50, "1": 7, "2": 3}}),
    )
    first = SimpleNamespace(
        startOffset=None, endOffset='{"u": {"0": 4}}', latestOffset='{"u": {"0": 4}}'
    )
    listener = LagListener(lags.append)
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(sources=[batch])))
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(sources=[first])))
    assert lags == [13, 4]
