"""Counter names on the Prometheus endpoint, the original's reset-on-read gauges, and the lag."""

from __future__ import annotations

import json
from types import SimpleNamespace

from prometheus_client import generate_latest

from enrolment_reconciliation.core.counters import Counter, new_counts
from enrolment_reconciliation.io.prometheus import PrometheusExporter
from enrolment_reconciliation.modes.stream import ProgressListener

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


class _Recorder:
    def __init__(self) -> None:
        self.lags: list[tuple[int, int | None]] = []
        self.commits: list[dict] = []

    def record_lag(self, lag: int, behind_latest: int | None = None) -> None:
        self.lags.append((lag, behind_latest))

    def commit(self, ends: dict) -> bool:
        self.commits.append(ends)
        return True


def _progress(*sources: SimpleNamespace, rows: int = 1) -> SimpleNamespace:
    return SimpleNamespace(progress=SimpleNamespace(sources=list(sources), numInputRows=rows))


def test_the_lag_is_what_the_topic_held_unread_when_the_batch_began():
    batch = SimpleNamespace(  # took everything there was: end == latest at planning time
        startOffset=json.dumps({"t": {"0": 40, "1": 7}}),
        endOffset=json.dumps({"t": {"0": 50, "1": 7, "2": 3}}),
        latestOffset=json.dumps({"t": {"0": 50, "1": 7, "2": 3}}),
        metrics={"maxOffsetsBehindLatest": "0"},
    )
    first = SimpleNamespace(  # PySpark renders the first batch's missing start as "None"
        startOffset="None", endOffset='{"u": {"0": 4}}', latestOffset='{"u": {"0": 4}}', metrics={}
    )
    seen = _Recorder()
    listener = ProgressListener(seen, seen)  # type: ignore[arg-type]
    listener.onQueryProgress(_progress(batch))
    listener.onQueryProgress(_progress(first))
    listener.onQueryProgress(_progress(first, rows=0))  # no batch ran: nothing to commit
    assert [lag for lag, _ in seen.lags] == [13, 4, 4]
    # each applied batch's end offsets go to the consumer group, for the operator's lag tools
    assert seen.commits == [{"t": {"0": 50, "1": 7, "2": 3}}, {"u": {"0": 4}}]
