"""The stream as an instrument: ``./spark-submit.sh stream --trigger processing-time=1s`` as a
process of its own, fed through Kafka.

- latency: waves of requests; latency = the enrolment row's Cassandra write time minus the
  moment the request was produced (the rows are first given a progress no reconciliation
  yields, so the job rewrites each one);
- micro-batches: seconds, Spark jobs and phases of each warm micro-batch, with and without
  completions; the warm-up a restarted stream pays (its first request, its first batches);
- throughput: offered rates in steps; a rate is sustained when the backlog left at the end of
  the step is applied within two micro-batches;
- memory: peak RSS of the stream's process tree and its driver's live heap.

Measured on in-progress learners only, then on a request mix like production's
(``RequestMix``: completions, duplicates, failed and skipped requests), the headline.
"""

from __future__ import annotations

import random
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from statistics import median
from typing import Any

from kafka import KafkaProducer

from benchmarks.common import (
    PeakMemory,
    Preset,
    Request,
    RequestMix,
    mixed_requests,
    percentile,
)
from devkit.stack import StreamProcess, sync_request
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import JobConfig


def measure_streams(
    cfg: JobConfig,
    overrides: list[str],
    preset: Preset,
    keys: dict[str, list],
    workdir: Path,
    rng: random.Random,
) -> dict[str, Any]:
    """The stream on in-progress learners only (when the preset asks for it), then on the
    realistic mix (the headline): the figures' ``streamInProgressOnly`` and ``stream``, the
    latter with its peak memory still under ``memory``."""
    figures: dict[str, Any] = {}
    if preset.in_progress_stream:
        only = mixed_requests(keys["stream"], [], None, rng)
        figures["streamInProgressOnly"] = measure_stream(cfg, overrides, preset, only, workdir)
        figures["streamInProgressOnly"].pop("memory")
    mix = RequestMix()
    pool = mixed_requests(keys["stream"], keys["stuck"], mix, rng)
    figures["stream"] = measure_stream(cfg, overrides, preset, pool, workdir)
    figures["stream"]["mix"] = asdict(mix) | {"stuckLearners": len(keys["stuck"])}
    return figures


class StreamJob(StreamProcess):
    """The stream at ``--trigger processing-time=1s`` with its Prometheus endpoint on ``port``."""

    def __init__(self, cfg: JobConfig, overrides: list[str], log: Path, port: int) -> None:
        args = ["--env", cfg.env, "--set", f"metrics.prometheus.port={port}"]
        super().__init__([*args, *(a for o in overrides for a in ("--set", o))], log)
        self.port = port

    def lag(self) -> float | None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read()
        except OSError:
            return None
        for line in text.decode().splitlines():
            if line.startswith("enrolment_reconciliation_consumer_lag "):
                return float(line.split()[1])
        return None


def mark_stale(cfg: JobConfig, keys: list[tuple]) -> None:
    """Give the enrolments a progress no reconciliation yields, so the job rewrites each row
    (it writes only what changes) and the row's write time marks when the request was applied."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    update = session.prepare(
        f"UPDATE {cfg.cassandra.enrolments_table} SET progress = -1"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    for key in set(keys):
        session.execute(update, key)
    cluster.shutdown()


def _rewritten_after(
    cfg: JobConfig, produced: dict[tuple, float], timeout: float, settled: Callable[[], bool]
) -> dict[tuple, float]:
    """When each enrolment row was rewritten (Cassandra's write time), polled until all are or
    the stream has processed every request (a row the job finds unchanged is not rewritten)."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    query = session.prepare(
        f"SELECT writetime(status) AS written FROM {cfg.cassandra.enrolments_table}"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    latency: dict[tuple, float] = {}
    deadline = time.monotonic() + timeout
    last_round = False
    while len(latency) < len(produced) and time.monotonic() < deadline and not last_round:
        last_round = settled()
        for key, at in produced.items():
            if key in latency:
                continue
            row = session.execute(query, key).one()
            if row and row.written and row.written / 1e6 > at:
                latency[key] = row.written / 1e6 - at
        time.sleep(0.2)
    cluster.shutdown()
    return latency


def measure_stream(
    cfg: JobConfig,
    overrides: list[str],
    preset: Preset,
    pool: Iterator[Request],
    workdir: Path,
) -> dict[str, Any]:
    """Latency, micro-batches and the rate ladder of a stream fed from ``pool``."""
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, acks=1, linger_ms=5)

    def send(batch: list[Request]) -> dict[tuple, float]:
        sent = {}
        for request in batch:
            if isinstance(request, bytes):
                producer.send(cfg.kafka.input_topic, request)
                continue
            sent.setdefault(request, time.time())  # a duplicate: latency of its first copy
            producer.send(cfg.kafka.input_topic, sync_request(*request).encode())
        producer.flush()
        return sent

    with socket_port() as port:
        job = StreamJob(cfg, overrides, workdir / "stream.log", port)
    processed = job.processed
    result: dict[str, Any] = {}
    with PeakMemory(job.proc.pid) as memory:
        try:
            first = next(k for k in pool if isinstance(k, tuple))
            mark_stale(cfg, [first])
            first_sent = send([first])  # the first micro-batch starts the JVM's work
            first_applied = _rewritten_after(cfg, first_sent, timeout=300, settled=lambda: False)
            job.wait_for_batches(1, timeout=300)
            for _ in range(preset.warmup_waves):  # then a steady trickle, not measured
                warmup = [next(pool) for _ in range(preset.wave_size)]
                target = processed() + len(warmup)
                send(warmup)
                while processed() < target and job.alive():
                    time.sleep(0.25)
                time.sleep(max(0.0, preset.wave_gap))
            warm = len(job.batches())
            latencies: list[float] = []
            for _ in range(preset.waves):
                keys_of_wave = [next(pool) for _ in range(preset.wave_size)]
                mark_stale(cfg, [k for k in keys_of_wave if isinstance(k, tuple)])
                wave = send(keys_of_wave)
                target = processed() + len(keys_of_wave)
                latencies += _rewritten_after(
                    cfg, wave, timeout=120, settled=lambda t=target: processed() >= t
                ).values()
                time.sleep(max(0.0, preset.wave_gap))
            batches = [
                b for b in job.batches()[warm:] if b["counters"]["requests.total-events-count"]
            ]
            result["latency"] = {
                "requests": len(latencies),
                "p50": round(percentile(latencies, 0.5), 3),
                "p95": round(percentile(latencies, 0.95), 3),
                "max": round(max(latencies), 3) if latencies else None,
                "all": [round(x, 3) for x in latencies],
            }
            result["microBatches"] = _batch_figures(batches)
            completing = "enrolment.enrolment-complete-count"
            result["microBatchesWithCompletions"] = _batch_figures(
                [b for b in batches if b["counters"].get(completing)]
            )
            result["microBatchesWithoutCompletions"] = _batch_figures(
                [b for b in batches if not b["counters"].get(completing)]
            )
            result["warmUp"] = {  # what a restarted stream pays on every deploy
                "firstRequestSeconds": round(next(iter(first_applied.values()), -1.0), 3),
                "firstBatchesSeconds": [b["seconds"] for b in job.batches()[:20]],
            }
            result["throughput"] = _throughput(job, preset, pool, send)
            memory.record_live_heap()
        finally:
            job.stop()
            producer.close()
    result["memory"] = memory.peaks
    return result


def _batch_figures(batches: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [b["seconds"] for b in batches]
    return {
        "count": len(batches),
        "seconds": seconds,
        "medianSeconds": round(median(seconds), 3) if seconds else None,
        "sparkJobs": [b.get("sparkJobs") for b in batches],
        "medianSparkJobs": median([b.get("sparkJobs") or 0 for b in batches]) if batches else None,
        "requests": [b["counters"]["requests.total-events-count"] for b in batches],
        "phases": [b.get("phases") for b in batches[-5:]],  # the last few, to read
    }


def _throughput(
    job: StreamJob, preset: Preset, pool: Iterator[Request], send: Callable[[list], dict]
) -> dict[str, Any]:
    """Offer each rate for a step; the stream keeps up when its backlog drains within a batch.

    Backlog = requests sent - requests the stream's micro-batches reported. A stream that keeps
    up carries at most one micro-batch's worth (a sawtooth); one that does not ends the step
    with a backlog that takes several batches to clear.
    """
    processed = job.processed
    steps = []
    for rate in preset.rates:
        base, lags, sent = processed(), [], 0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < preset.step_seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                send([next(pool) for _ in range(due)])
                sent += due
            lags.append(job.lag())
            time.sleep(0.25)
        stopped = time.monotonic()
        while processed() - base < sent and time.monotonic() - stopped < 300:
            time.sleep(0.25)
        drain = time.monotonic() - stopped
        batches = [b["seconds"] for b in job.batches()[-3:]]
        # the last request waits at most for the batch under way plus its own batch
        keeps_up = processed() - base >= sent and drain <= 2 * max(batches) + 1
        steps.append(
            {
                "rate": rate,
                "offered": sent,
                "drainSeconds": round(drain, 2),
                "recentBatchSeconds": batches,
                "prometheusLagMax": max((x for x in lags if x is not None), default=None),
                "keepsUp": keeps_up,
            }
        )
        if not keeps_up:
            break
    sustained = max((s["rate"] for s in steps if s["keepsUp"]), default=0)
    return {"steps": steps, "sustainedRate": sustained}


@contextmanager
def socket_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port
