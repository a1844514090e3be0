"""Operating figures for Prometheus: the stream's endpoint, and what batch runs push.

The stream serves them on its driver (``metrics.prometheus.port``), from the same counters as
its log lines (``core.counters``):

* ``enrolment_reconciliation_<stage>_<counter>_total``: monotonic counters, one per counter;
* the stream's health: micro-batches applied and the seconds of the last one, the time it was
  applied, the consumer lag and Spark's offsets behind latest, query restarts, watchdog
  timeouts, outbox batches not yet published;
* ``flink_taskmanager_job_task_operator_enrolment_reconciliation_<metric>``: the original Flink
  job's names as its Prometheus reporter exposed them, with ``job_name`` and ``operator_name``
  labels, as gauges that count since the previous scrape (the original's gauges reset on each
  read), so existing Sunbird dashboards carry over.

A batch run (backfill, dry run, repair, ``sync``) ends before any scrape: it pushes its outcome
and counters to a Pushgateway (``metrics.pushgateway.url``) with :func:`push_run`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    pushadd_to_gateway,
    start_http_server,
)
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
        self._behind = Gauge(
            f"{PREFIX}_offsets_behind_latest",
            "Spark's maxOffsetsBehindLatest of the Kafka source at the last trigger",
            registry=self.registry,
        )
        self._last_batch = Gauge(
            f"{PREFIX}_last_batch_timestamp_seconds",
            "unix time the last micro-batch was applied (0 until one is)",
            registry=self.registry,
        )
        self._restarts = PromCounter(
            f"{PREFIX}_query_restarts",
            "query restarts after a micro-batch failed on an infrastructure fault",
            registry=self.registry,
        )
        self._timeouts = PromCounter(
            f"{PREFIX}_batch_timeouts",
            "micro-batches cancelled by the watchdog (stream.batch.timeout.seconds)",
            registry=self.registry,
        )
        self._pending = Gauge(
            f"{PREFIX}_outbox_pending_batches",
            "outbox batches staged but not yet published (completion events held back)",
            registry=self.registry,
        )
        self._original = _OriginalNames()
        self.registry.register(self._original)
        # process_start_time_seconds and friends: a restarted stream is seen as one
        ProcessCollector(registry=self.registry)
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
        self._last_batch.set(time.time())

    def record_lag(self, lag: int, behind_latest: int | None = None) -> None:
        self._lag.set(lag)
        if behind_latest is not None:
            self._behind.set(behind_latest)

    def record_restart(self) -> None:
        self._restarts.inc()

    def record_timeout(self) -> None:
        self._timeouts.inc()

    def record_outbox_pending(self, batches: int) -> None:
        self._pending.set(batches)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@dataclass
class RunOutcome:
    """What a batch run reports when it ends: pushed as gauges grouped by job, mode and env."""

    mode: str  # backfill | backfill-dry-run | backfill-repair | sync
    started: float = field(default_factory=time.time)
    ended: float | None = None
    exit_code: int | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    slices: int | None = None
    slices_done: int | None = None
    rows_per_second: float | None = None
    outbox_pending: int | None = None

    def started_gauges(self) -> dict[str, tuple[float, str]]:
        """What a run pushes as it starts: a run killed before it ends (an OOM, a timeout of
        its scheduler) stays visible as one that never finished."""
        return {
            "run_start_timestamp_seconds": (self.started, "unix time the run started"),
            "run_in_progress": (1.0, "1 while a run is going, 0 once it has ended"),
        }

    def gauges(self) -> dict[str, tuple[float, str]]:
        """Every gauge of the outcome: name -> (value, help)."""
        ended = self.ended if self.ended is not None else time.time()
        values: dict[str, tuple[float | None, str]] = {
            "run_start_timestamp_seconds": (self.started, "unix time the run started"),
            "run_in_progress": (0, "1 while a run is going, 0 once it has ended"),
            "run_end_timestamp_seconds": (ended, "unix time the run ended"),
            "run_seconds": (ended - self.started, "seconds the run took"),
            "run_exit_code": (self.exit_code, "exit code of the run (0 done, 3 lease held)"),
            "run_slices": (self.slices, "slices of the backfill run"),
            "run_slices_done": (self.slices_done, "slices of the run done"),
            "run_rows_per_second": (self.rows_per_second, "consumption rows read per second"),
            "outbox_pending_batches": (self.outbox_pending, "outbox batches left unpublished"),
        }
        if self.exit_code == 0:
            values["run_success_timestamp_seconds"] = (ended, "unix time of the last success")
        for name, value in self.counters.items():
            counter = Counter(name)
            values[f"run_{_snake(counter)}"] = (value, f"{MEANING[counter]} (this run)")
        return {n: (float(v), h) for n, (v, h) in values.items() if v is not None}


def push_run(
    gateway: str, job: str, env: str, outcome: RunOutcome, *, starting: bool = False
) -> None:
    """Push ``outcome`` (its start, with ``starting``) to the Pushgateway at ``gateway`` (POST:
    what this push does not hold, such as the time of the last success after a failure, keeps
    its value)."""
    registry = CollectorRegistry()
    gauges = outcome.started_gauges() if starting else outcome.gauges()
    for name, (value, text) in gauges.items():
        Gauge(f"{PREFIX}_{name}", text, registry=registry).set(value)
    pushadd_to_gateway(
        gateway,
        job=job,
        registry=registry,
        grouping_key={"mode": outcome.mode, "env": env},
        timeout=10,
    )


def exported_metric_names() -> set[str]:
    """Every sample name the job exports, as Prometheus shows them: the stream's endpoint and a
    batch run's push (what alert rules and dashboards may use)."""
    exporter = PrometheusExporter(0)
    names = {s.name for family in exporter.registry.collect() for s in family.samples}
    done = RunOutcome("backfill", ended=time.time(), exit_code=0, slices=1, slices_done=1)
    done.counters, done.rows_per_second, done.outbox_pending = dict.fromkeys(Counter, 0), 0, 0
    pushed = {*done.gauges(), *done.started_gauges()}
    return names | {f"{PREFIX}_{name}" for name in pushed}
