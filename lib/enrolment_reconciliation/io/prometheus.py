"""Operating figures on a Prometheus endpoint of the driver (``metrics.prometheus.port``).

Two families, from the same counters (``counters.py``):

* ``enrolment_reconciliation_<stage>_<counter>_total`` — monotonic counters, one per counter,
  plus ``enrolment_reconciliation_batch_seconds`` (the last micro-batch) and
  ``enrolment_reconciliation_consumer_lag`` (requests on the topic not yet read);
* ``flink_taskmanager_job_task_operator_enrolment_reconciliation_<metric>`` — the original Flink
  job's names as its Prometheus reporter exposed them, with ``job_name`` and ``operator_name``
  labels, as gauges that count since the previous scrape (the original's gauges reset on each
  read), so existing Sunbird dashboards carry over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from enrolment_reconciliation.core.counters import MEANING, ORIGINAL, Counter

PREFIX = "enrolment_reconciliation"
FLINK_PREFIX = "flink_taskmanager_job_task_operator_enrolment_reconciliation"
JOB_NAME = "enrolment-reconciliation"


def _snake(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


class _OriginalNames(Collector):
    """The original's gauges: counts since the last scrape, then back to zero."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}

    def add(self, counter: Counter, value: int) -> None:
        if counter in ORIGINAL:
            key = (ORIGINAL[counter], str(counter).split(".", 1)[0])
            with self._lock:
                self._pending[key] = self._pending.get(key, 0) + value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            pending, self._pending = self._pending, {}
        for metric in sorted(set(ORIGINAL.values())):
            family = GaugeMetricFamily(
                f"{FLINK_PREFIX}_{_snake(metric)}",
                f"{metric} of the original job (since the previous scrape)",
                labels=["job_name", "operator_name"],
            )
            for operator in sorted(
                {str(c).split(".", 1)[0] for c, m in ORIGINAL.items() if m == metric}
            ):
                family.add_metric([JOB_NAME, operator], pending.get((metric, operator), 0))
            yield family


class PrometheusExporter:
    """Serves the job's figures on ``port``; the stream feeds it after every micro-batch."""

    def __init__(self, port: int, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._counters = {
            c: PromCounter(f"{PREFIX}_{_snake(c)}", MEANING[c], registry=self.registry)
            for c in Counter
        }
        self._batch_seconds = Gauge(
            f"{PREFIX}_batch_seconds", "seconds of the last micro-batch", registry=self.registry
        )
        self._batches = PromCounter(
            f"{PREFIX}_batches", "micro-batches applied", registry=self.registry
        )
        self._lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "sync requests on the input topic not yet read by the stream",
            registry=self.registry,
        )
        self._original = _OriginalNames()
        self.registry.register(self._original)
        self.server = None
        if port:
            self.server, _ = start_http_server(port, registry=self.registry)

    def record_batch(self, counts: Mapping[str, int], seconds: float) -> None:
        for name, value in counts.items():
            counter = Counter(name)
            if value:
                self._counters[counter].inc(value)
                self._original.add(counter, value)
        self._batch_seconds.set(seconds)
        self._batches.inc()

    def record_lag(self, lag: int) -> None:
        self._lag.set(lag)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
