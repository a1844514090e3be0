"""Every instrument of docs/benchmarks.md in one run: ``./dev.sh bench [small|medium|large]``.

On the local stack, in one run (so the figures are ratios on one machine at one moment):

1. data at scale: a generated sample with realistic courses, loaded by the executors;
2. the baseline: the original job's access pattern, one request at a time, with the writes;
3. the batch function on the same requests (read, reconcile, write, publish), warm;
4. the stream (``spark-submit.sh stream --trigger processing-time=1s``): end-to-end latency of
   waves of requests (produced -> enrolment row rewritten), seconds and Spark jobs per
   micro-batch, then the highest request rate at which the consumer lag does not grow;
5. the backfill over every enrolment, then again over unchanged data, and the floor: a bare
   connector scan of the same tables plus a bare write of as many rows;
6. peak memory of the driver (JVM and Python) and the Python workers, per instrument.

Prints a table and writes ``<out>/<preset>.json`` and ``<out>/<preset>.png``.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import platform
import random
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import psutil
from kafka import KafkaProducer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from benchmarks.backfill_cold import chart as cold_chart
from benchmarks.backfill_cold import measure_backfill_cold
from benchmarks.baseline import reconcile_one_by_one
from benchmarks.cpu import CpuAccount, summed
from devkit.sample.data import SampleData, generate_sample
from devkit.sample.loader import load_sample_with_spark
from devkit.stack import (
    PROJECT_ROOT,
    StreamProcess,
    stack_overrides,
    sync_request,
)
from enrolment_reconciliation.batch.apply import apply_batch
from enrolment_reconciliation.batch.materialise import drop_materialised
from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.schemas import (
    CONSUMPTION_COLUMNS,
    CURRENT_AGGREGATES_SCHEMA,
    ENROLMENT_COLUMNS,
    ENROLMENT_WRITE_COLUMNS,
    RAW_REQUEST_SCHEMA,
)
from enrolment_reconciliation.io.cassandra import (
    AGGREGATE_COLUMNS,
    APPENDED_MAPS,
    connect_from_config,
    read_table,
    write_activity_aggregates,
    write_enrolment_updates,
)
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.modes.stream import tune_for_micro_batches
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from enrolment_reconciliation.runtime.session import build_spark_session

KEYSPACE, REDIS_DB = "er_bench", 15


@dataclass(frozen=True)
class Preset:
    courses: int
    users: int
    requests: int  # per batch-function run, and for the baseline
    waves: int  # stream latency: waves of `wave_size` requests, `wave_gap` seconds apart
    wave_size: int
    wave_gap: float
    rates: tuple[int, ...]  # stream throughput: offered requests per second, in steps
    step_seconds: int
    batch_sizes: tuple[int, ...] = ()  # the batch function at these sizes too (fixed vs marginal)
    batch_runs: int = 4  # runs per size: the first is cold, the median of the second half is warm
    warmup_waves: int = 2  # stream waves not measured (JIT, caches: a stream runs for weeks)
    in_progress_stream: bool = True  # the stream on in-progress learners too, beside the mix


PRESETS = {
    # every instrument once, as briefly as it can run: the suite's smoke test, not figures
    "smoke": Preset(3, 60, 30, 1, 10, 1.0, (30,), 5, (), 2, 1, in_progress_stream=False),
    "small": Preset(4, 150, 100, 2, 10, 2.0, (20, 60, 120), 8, (), 4, 3),
    "medium": Preset(
        60, 6_500, 1_000, 8, 50, 4.0, (100, 200, 400, 800, 1200, 1600, 2400), 30, (100, 500), 10, 20
    ),
    "large": Preset(  # about 10 M consumption rows
        200,
        74_000,
        1_000,
        8,
        50,
        4.0,
        (100, 200, 400, 800, 1200, 1600, 2400),
        30,
        (100, 500),
        10,
        20,
    ),
}


# --- measuring -------------------------------------------------------------------------------
def live_heap_mb(root: int) -> float | None:
    """Live objects in the heap of the JVM in ``root``'s process tree, in MB: the total of a
    class histogram, which forces a full GC first. Unlike RSS, independent of the heap's size."""
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        jvm = next(p for p in tree if p.name() == "java")
        out = subprocess.run(
            ["jcmd", str(jvm.pid), "GC.class_histogram"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (StopIteration, psutil.Error, OSError, subprocess.TimeoutExpired):
        return None
    total = re.search(r"^Total\s+\d+\s+(\d+)", out, re.MULTILINE)
    return round(int(total.group(1)) / 2**20, 1) if total else None


class PeakMemory:
    """Peak resident memory of a process tree, by role, sampled every 0.2 s; and the driver
    JVM's live heap at the end (``record_live_heap``, else on exit)."""

    def __init__(self, root: int) -> None:
        self._root = root
        self.peaks: dict[str, Any] = {
            "driverJvmMb": 0.0,
            "driverPythonMb": 0.0,
            "pythonWorkersMb": 0.0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            procs = [psutil.Process(self._root), *psutil.Process(self._root).children(True)]
        except psutil.Error:
            return
        sizes = {"driverJvmMb": 0.0, "driverPythonMb": 0.0, "pythonWorkersMb": 0.0}
        for proc in procs:
            try:  # a Python worker may exit between the listing and these reads
                cmd, name = " ".join(proc.cmdline()), proc.name()
                rss = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            if "pyspark.daemon" in cmd or "pyspark/worker" in cmd:
                sizes["pythonWorkersMb"] += rss
            elif "java" in name:
                sizes["driverJvmMb"] += rss
            elif "python" in name:
                sizes["driverPythonMb"] += rss
        for role, size in sizes.items():
            self.peaks[role] = max(self.peaks[role], round(size, 1))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def record_live_heap(self) -> None:
        self.peaks["driverLiveHeapMb"] = live_heap_mb(self._root)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if "driverLiveHeapMb" not in self.peaks:
            self.record_live_heap()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def timed(into: dict[str, Any], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - started, 3)


# --- data --------------------------------------------------------------------------------------
def make_sample(preset: Preset, seed: int) -> SampleData:
    """Courses of 10 to about 300 leaves, 2 to 4 levels deep, ~10% optional, several batches."""
    return generate_sample(
        seed=seed,
        courses=preset.courses,
        users=preset.users,
        batches_per_course=3,
        min_units=2,
        max_units=12,
        max_leaves_per_unit=24,
        courses_per_user=(1, 3),
    )


def pick_requests(sample: SampleData, count: int, rng: random.Random) -> dict[str, list]:
    """Enrolment keys: in progress with consumption (rewritten on every sync), stuck (status 1,
    every leaf complete: a sync completes them), and all."""
    in_progress, stuck, every = [], [], []
    leaves = {c.course_id: set(c.leaf_ids) for c in sample.courses}
    for activity in sample.activities():
        completed: dict[tuple, set[str]] = {}
        for r in activity.consumption:
            done_here = completed.setdefault((r.userid, r.courseid, r.batchid), set())
            if r.status == 2:
                done_here.add(r.contentid)
        for e in activity.enrolments:
            key = (e.userid, e.courseid, e.batchid)
            every.append(key)
            if e.status != 1 or key not in completed:
                continue
            (stuck if completed[key] >= leaves[e.courseid] else in_progress).append(key)
    for keys in (every, in_progress, stuck):
        rng.shuffle(keys)
    return {"batch": every[:count], "stream": in_progress, "stuck": stuck, "every": every}


@dataclass(frozen=True)
class RequestMix:
    """What a production stream sees besides in-progress learners (shares of requests)."""

    completing: float = 0.3  # learners whose sync completes the enrolment (events, outbox)
    duplicates: float = 0.05  # the same learner asked again within moments
    failed: float = 0.03  # malformed requests (failed topic)
    skipped: float = 0.02  # another action on the topic


Request = tuple | bytes  # an enrolment key to sync, or a payload that syncs nothing


def mixed_requests(
    in_progress: list[tuple], stuck: list[tuple], mix: RequestMix | None, rng: random.Random
) -> Iterator[Request]:
    """An endless stream of requests: in-progress learners only (``mix`` None), or the mix.
    Completing learners are used once each (a completed enrolment is left alone); when they
    run out the mix goes on without them."""
    progress = itertools.cycle(in_progress)
    completing = iter(stuck)
    recent: list[tuple] = []
    while True:
        roll = rng.random()
        if mix is None:
            yield next(progress)
            continue
        if roll < mix.failed:
            yield b'{"eid": "BE_JOB_REQUEST", "edata": {"action": "user-enrolment-sync"}}'
        elif roll < mix.failed + mix.skipped:
            key = next(progress)
            yield sync_request(*key, action="batch-enrolment-update").encode()
        elif roll < mix.failed + mix.skipped + mix.duplicates and recent:
            yield rng.choice(recent)
        else:
            share = mix.completing / (1 - mix.failed - mix.skipped - mix.duplicates)
            key = next(completing, None) if rng.random() < share else None
            key = key or next(progress)
            recent = [*recent[-19:], key]
            yield key


def mark_stale(cfg: JobConfig, keys: list[tuple]) -> None:
    """Give the enrolments a progress no reconciliation yields, so the job rewrites each row
    (it writes only what changes) and the row's write time marks when the request was applied."""
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    update = session.prepare(
        f"UPDATE {cfg.enrolments_table} SET progress = -1"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    for key in set(keys):
        session.execute(update, key)
    cluster.shutdown()


def sample_enrolments(sample: SampleData, keys: list[tuple]) -> list[Any]:
    """The sample's enrolment rows of ``keys`` (one pass over the sample: at ``large`` a pass
    generates 74,000 users' activity, so it is made once per set of keys)."""
    wanted = set(keys)
    return [e for e in sample.enrolments() if (e.userid, e.courseid, e.batchid) in wanted]


def restore_enrolments(cfg: JobConfig, rows: list[Any]) -> None:
    """Put the sample's enrolment rows back (so two runs over the same requests do the same)."""
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    insert = session.prepare(
        f"UPDATE {cfg.enrolments_table} SET status = ?, progress = ?, contentstatus = ?,"
        " completedon = ?, datetime = ? WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    for e in rows:
        session.execute(
            insert,
            (
                e.status,
                e.progress,
                e.contentstatus,
                e.completedon,
                e.datetime,
                e.userid,
                e.courseid,
                e.batchid,
            ),
        )
    cluster.shutdown()


# --- instruments -------------------------------------------------------------------------------
def measure_batch(
    spark: SparkSession, cfg: JobConfig, sample: SampleData, keys: list[tuple], runs: int
) -> dict[str, Any]:
    """The batch function on ``keys``, end to end (read, reconcile, write, publish), ``runs``
    times in one session, each time over the sample's enrolment rows (so each run writes the
    same). Cold is the first run; warm is the median of the second half (the JIT and the
    caches settle over several runs, as they do in a stream that runs for weeks)."""
    run = BatchRunner(spark, cfg, keys)
    done, rows = [], sample_enrolments(sample, keys)
    for _ in range(max(runs, 2)):
        restore_enrolments(cfg, rows)
        done.append(run())
    warm = sorted(done[len(done) // 2 :], key=lambda r: r["seconds"])
    return {
        "requests": len(keys),
        "cold": done[0],
        "warm": warm[(len(warm) - 1) // 2],
        "runSeconds": [r["seconds"] for r in done],
    }


class BatchRunner:
    """Runs the batch function on the same requests, again and again, in one Spark session."""

    def __init__(self, spark: SparkSession, cfg: JobConfig, keys: list[tuple]) -> None:
        self.spark, self.cfg = spark, cfg
        self.resources = BatchResources.from_config(cfg)
        self.outbox = Outbox(spark, cfg.checkpoint_location + "/bench-outbox")
        self.rows = [(sync_request(*k).encode(), "bench", 0, i) for i, k in enumerate(keys)]

    def __call__(self, profiler: cProfile.Profile | None = None) -> dict[str, Any]:
        """One run: its seconds, Spark jobs (from the UI) and phases; ``profiler`` on while the
        batch function runs."""
        spark, sc = self.spark, self.spark.sparkContext
        raw = spark.createDataFrame(self.rows, RAW_REQUEST_SCHEMA).localCheckpoint()
        group = f"bench-batch-{uuid.uuid4().hex[:6]}"
        sc.setJobGroup(group, group)
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        result = reconcile_batch(
            spark, read_requested(spark, raw, self.cfg), self.cfg, self.resources
        )
        counts = apply_batch(result, group, self.cfg, self.outbox)
        result.release()
        seconds = round(time.perf_counter() - started, 3)
        if profiler:
            profiler.disable()
        jobs = spark_job_profile(spark, group)
        sc.setJobGroup("bench", "bench")
        return {
            "seconds": seconds,
            "sparkJobs": len(sc.statusTracker().getJobIdsForGroup(group)),
            "jobs": jobs,
            "sparkJobSeconds": round(sum(j["seconds"] for j in jobs), 3),
            "driverOnlySeconds": round(seconds - sum(j["seconds"] for j in jobs), 3),
            "phases": result.seconds,
            "aggregateRows": counts["aggregates.activity-agg-rows-count"],
            "enrolmentUpdates": counts["enrolment.enrolment-update-count"],
        }


def _size_row(batch: dict[str, Any]) -> dict[str, Any]:
    warm = batch["warm"]
    return {
        "requests": batch["requests"],
        "coldSeconds": batch["cold"]["seconds"],
        "warmSeconds": warm["seconds"],
        "requestsPerSecond": round(batch["requests"] / warm["seconds"], 1),
        "sparkJobs": warm["sparkJobs"],
        "sparkJobSeconds": warm["sparkJobSeconds"],
        "driverOnlySeconds": warm["driverOnlySeconds"],
        "runSeconds": batch["runSeconds"],
    }


def spark_job_profile(spark: SparkSession, group: str) -> list[dict[str, Any]]:
    """Each Spark job of ``group`` from the UI's REST API: what it ran, its seconds, its tasks."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    for _ in range(20):  # the UI's store is fed asynchronously by the listener bus
        jobs = [
            j
            for j in json.loads(urllib.request.urlopen(url, timeout=5).read())
            if j.get("jobGroup") == group
        ]
        if all("completionTime" in j for j in jobs):
            break
        time.sleep(0.25)

    def at(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%Z").timestamp()

    return [
        {
            "name": j["name"].split(" at ")[0],
            "description": (j.get("description") or "")[:60],
            "seconds": round(at(j["completionTime"]) - at(j["submissionTime"]), 3),
            "tasks": j["numTasks"],
        }
        for j in sorted(jobs, key=lambda j: j["jobId"])
        if "completionTime" in j
    ]


def measure_floor(
    spark: SparkSession, cfg: JobConfig, aggregates: int, enrolments: int
) -> dict[str, Any]:
    """A bare scan of the rows and columns the backfill reads, and a bare write of as many rows
    as it wrote, of the same shape and through the same writers.

    Each scan hands every column it reads to Spark (a checksum over them), so the connector
    converts what the backfill's scans convert. The write puts ``aggregates`` rows of
    ``user_activity_agg`` and ``enrolments`` rows of ``user_enrolments`` back as they are (the
    same values: the tables do not change), read and held before the clock starts, through the
    job's own writers (map appends; ``contentstatus`` maps): what writing the backfill's
    results costs, without computing them.
    """
    floor: dict[str, Any] = {}
    tables = [
        (cfg.consumption_table, CONSUMPTION_COLUMNS),
        (cfg.enrolments_table, ENROLMENT_COLUMNS),
        (cfg.activity_agg_table, CURRENT_AGGREGATES_SCHEMA.fieldNames()),
    ]
    cpu: list[dict[str, Any]] = []
    with timed(floor, "scanSeconds"), CpuAccount(os.getpid()) as scan_cpu:
        scanned = 0
        for table, columns in tables:
            df = read_table(spark, cfg.keyspace, table).select(*columns)
            hashable = [  # maps cannot be hashed; their entries can
                F.map_entries(f.name) if isinstance(f.dataType, MapType) else F.col(f.name)
                for f in df.schema.fields
            ]
            row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.hash(*hashable)).alias("h")).first()
            assert row is not None
            scanned += row["n"]
    held_aggregates = (
        read_table(spark, cfg.keyspace, cfg.activity_agg_table)
        .select(*AGGREGATE_COLUMNS, *APPENDED_MAPS)
        .limit(aggregates)
        .repartition(spark.sparkContext.defaultParallelism)  # as many tasks as the job's
        .localCheckpoint()
    )
    held_enrolments = (
        read_table(spark, cfg.keyspace, cfg.enrolments_table)
        .select(*ENROLMENT_WRITE_COLUMNS)
        .limit(enrolments)
        .repartition(spark.sparkContext.defaultParallelism)
        .localCheckpoint()
    )
    rows = (held_aggregates.count(), held_enrolments.count())
    cpu.append(scan_cpu.figures)
    with timed(floor, "writeSeconds"), CpuAccount(os.getpid()) as write_cpu:
        write_activity_aggregates(held_aggregates, cfg, rows=rows[0])
        write_enrolment_updates(held_enrolments, cfg, rows=rows[1])
    cpu.append(write_cpu.figures)
    for held in (held_aggregates, held_enrolments):  # not counted in the instrument's live heap
        drop_materialised(held)
    floor["rowsScanned"] = scanned
    floor["rowsWritten"] = sum(rows)
    floor["seconds"] = round(floor["scanSeconds"] + floor["writeSeconds"], 3)
    floor["cpuSeconds"] = summed(*cpu)  # where the CPU of the two timed parts went
    return floor


def measure_backfill(spark: SparkSession, cfg: JobConfig, rows: int) -> dict[str, Any]:
    first = run_backfill(spark, cfg, BackfillOptions())
    second = run_backfill(spark, cfg, BackfillOptions())
    summary = first["summary"]
    written = summary["aggregatesChanged"] + summary["changed"]
    floor = measure_floor(spark, cfg, summary["aggregatesChanged"], summary["changed"])
    return {
        "seconds": first["seconds"],
        "phases": first["phases"],
        "enrolmentsScanned": summary["scanned"],
        "consumptionRows": rows,
        "rowsWritten": written,
        "enrolmentsPerSecond": round(summary["scanned"] / first["seconds"], 1),
        "consumptionRowsPerSecond": round(rows / first["seconds"], 1),
        "rerunSeconds": second["seconds"],
        "rerunRowsWritten": second["summary"]["aggregatesChanged"] + second["summary"]["changed"],
        "floor": floor,
        "efficiency": round(floor["seconds"] / first["seconds"], 3),
    }


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


def _rewritten_after(
    cfg: JobConfig, produced: dict[tuple, float], timeout: float, settled: Callable[[], bool]
) -> dict[tuple, float]:
    """When each enrolment row was rewritten (Cassandra's write time), polled until all are or
    the stream has processed every request (a row the job finds unchanged is not rewritten)."""
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    query = session.prepare(
        f"SELECT writetime(status) AS written FROM {cfg.enrolments_table}"
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
    producer = KafkaProducer(bootstrap_servers=cfg.kafka_broker_servers, acks=1, linger_ms=5)

    def send(batch: list[Request]) -> dict[tuple, float]:
        sent = {}
        for request in batch:
            if isinstance(request, bytes):
                producer.send(cfg.input_topic, request)
                continue
            sent.setdefault(request, time.time())  # a duplicate: latency of its first copy
            producer.send(cfg.input_topic, sync_request(*request).encode())
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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


# --- report ------------------------------------------------------------------------------------
def chart(figures: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    lat = figures["stream"]["latency"]["all"]
    axes[0][0].hist(lat, bins=20, color="#4c72b0")
    axes[0][0].set_title(
        f"stream: request -> row rewritten (p50 {figures['stream']['latency']['p50']} s)"
    )
    axes[0][0].set_xlabel("seconds")
    mb = figures["stream"]["microBatches"]
    axes[0][1].plot(mb["seconds"], marker="o", label="seconds")
    axes[0][1].plot(mb["sparkJobs"], marker="s", label="Spark jobs")
    axes[0][1].set_title("stream: warm micro-batches")
    axes[0][1].set_xlabel("micro-batch")
    axes[0][1].legend()
    steps = figures["stream"]["throughput"]["steps"]
    axes[1][0].bar(
        [str(s["rate"]) for s in steps],
        [s["drainSeconds"] for s in steps],
        color=["#55a868" if s["keepsUp"] else "#c44e52" for s in steps],
    )
    axes[1][0].set_title("stream: backlog drain after each rate step (green: keeps up)")
    axes[1][0].set_ylabel("seconds to apply the last request")
    axes[1][0].set_xlabel("requests per second")
    b = figures["backfill"]
    names = ["baseline (per request)", "backfill", "floor (scan + write)"]
    baseline_seconds = b["enrolmentsScanned"] / max(figures["baseline"]["requestsPerSecond"], 1e-9)
    values = [baseline_seconds, b["seconds"], b["floor"]["seconds"]]
    axes[1][1].barh(names, values, color=["#c0c0c0", "#4c72b0", "#55a868"])
    axes[1][1].set_title(f"backfill of {b['enrolmentsScanned']} enrolments (seconds)")
    sizes = sorted(figures["batchSizes"].values(), key=lambda r: r["requests"])
    names = [str(r["requests"]) for r in sizes]
    per_request = 1 / max(figures["baseline"]["requestsPerSecond"], 1e-9)
    x = range(len(sizes))
    axes[0][2].bar(
        [i - 0.2 for i in x],
        [r["requests"] * per_request for r in sizes],
        width=0.4,
        color="#c0c0c0",
        label="baseline (per request)",
    )
    axes[0][2].bar(
        [i + 0.2 for i in x],
        [r["warmSeconds"] for r in sizes],
        width=0.4,
        color="#4c72b0",
        label="batch function, warm",
    )
    axes[0][2].set_xticks(list(x), names)
    axes[0][2].set_xlabel("requests in the batch")
    axes[0][2].set_ylabel("seconds")
    axes[0][2].set_title("batch function by size (read, reconcile, write, publish)")
    axes[0][2].legend()
    ratios = figures["ratios"]
    labels = ["batch", "stream rate", "backfill"]
    values = [
        ratios["batchVsBaseline"],
        ratios.get("streamVsBaseline", 0),
        ratios["backfillVsBaseline"],
    ]
    axes[1][2].bar(labels, values, color="#4c72b0")
    for goal, label in ((10, "stream/batch target 10x"), (20, "backfill target 20x")):
        axes[1][2].axhline(goal, color="#c44e52", linestyle="--", linewidth=1)
        axes[1][2].text(-0.4, goal, label, va="bottom", fontsize=8, color="#c44e52")
    axes[1][2].set_title("speedup over the per-request baseline (same run)")
    fig.suptitle(f"enrolment-reconciliation benchmarks, preset {figures['preset']}")
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def _stream_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    if "stream" not in f:
        return [("stream", "not run (--no-stream)")]
    s, r = f["stream"], f["ratios"]
    lat, mb = s["latency"], s["microBatches"]
    done, undone = s["microBatchesWithCompletions"], s["microBatchesWithoutCompletions"]
    rows = [
        ("request mix", ", ".join(f"{k} {v}" for k, v in s["mix"].items())),
        ("Spark jobs per micro-batch", f"{sorted(set(mb['sparkJobs']))}"),
        ("latency p50/p95/max", f"{lat['p50']} / {lat['p95']} / {lat['max']} s, trigger 1 s"),
        ("micro-batch median", f"{mb['medianSeconds']} s"),
        (
            "  with / without completions",
            f"{done['medianSeconds']} s ({done['medianSparkJobs']} jobs) / "
            f"{undone['medianSeconds']} s ({undone['medianSparkJobs']} jobs)",
        ),
        ("stream sustained", f"{s['throughput']['sustainedRate']} req/s, {r['streamVsBaseline']}x"),
        ("warm-up: first request", f"{s['warmUp']['firstRequestSeconds']} s"),
    ]
    only = f.get("streamInProgressOnly")
    if only:
        o = only["latency"]
        rows += [
            ("in-progress only: p50/p95", f"{o['p50']} / {o['p95']} s"),
            (
                "in-progress only: batch, rate",
                f"{only['microBatches']['medianSeconds']} s, "
                f"{only['throughput']['sustainedRate']} req/s",
            ),
        ]
    return rows


def _cold_rows(c: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The backfill as an operator runs it (``benchmarks.backfill_cold``)."""
    if not c:
        return []
    run, resume, mem = c["run"], c["resume"], c["run"]["memory"]
    return [
        (
            "cold backfill (1 GiB)",
            f"{run['seconds']} s, {run['slices']} slices, {run['consumptionRowsPerSecond']} rows/s,"
            f" fixed cost {run['coldFixedSeconds']} s",
        ),
        ("cold re-run, unchanged", f"{c['rerun']['seconds']} s"),
        (
            "cold efficiency",
            f"{c['efficiency']} (floor {c['floor']['seconds']} s / {run['seconds']} s)",
        ),
        (
            "cold memory",
            f"peak RSS JVM {mem['driverJvmMb']} MB, live heap {mem['driverLiveHeapMb']} MB",
        ),
        (
            "resume after kill at half",
            f"{resume['resumedSeconds']} s = {resume['resumedVsUninterrupted']} of a run"
            f" ({resume['slicesDoneWhenKilled']} slices done), tables equal"
            f" {resume['tablesEqual']}, events {resume['eventsDelivered']}",
        ),
    ]


def table(f: dict[str, Any]) -> str:
    """The headline figures, one line each."""
    b, bl, bf, r = f["batch"], f["baseline"], f["backfill"], f["ratios"]
    warm = b["warm"]
    peaks = {k: v for k, v in f["memory"]["backfill"].items() if k != "driverLiveHeapMb"}
    memory = " / ".join(f"{v} MB" for v in peaks.values())
    live = {k: m.get("driverLiveHeapMb") for k, m in f["memory"].items()}
    rows = [
        ("data", f"{f['data']['enrolments']} enrolments, {f['data']['consumption']} rows"),
        ("baseline (per request)", f"{bl['requests']} in {bl['seconds']} s"),
        (
            "batch function, warm",
            f"{b['requests']} in {warm['seconds']} s, {r['batchVsBaseline']}x",
        ),
        ("Spark jobs per batch", f"{warm['sparkJobs']}"),
        (
            "batch by size (warm)",
            ", ".join(
                f"{size}: {row['warmSeconds']} s"
                for size, row in sorted(f["batchSizes"].items(), key=lambda kv: int(kv[0]))
            ),
        ),
        *_stream_rows(f),
        ("backfill", f"{bf['enrolmentsPerSecond']} enrolments/s, {r['backfillVsBaseline']}x"),
        ("backfill rows/s", f"{bf['consumptionRowsPerSecond']} consumption rows/s"),
        (
            "efficiency floor/job",
            f"{bf['efficiency']} ({bf['floor']['seconds']} / {bf['seconds']} s)",
        ),
        ("re-run, unchanged", f"{bf['rerunSeconds']} s, {bf['rerunRowsWritten']} rows written"),
        ("peak RSS JVM/Py/workers", memory),
        ("driver live heap", " / ".join(f"{k} {v} MB" for k, v in live.items())),
        *_cold_rows(f.get("backfillCold")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def bench_config() -> tuple[JobConfig, list[str], Path]:
    """The job's config on the local stack, in a keyspace and Redis database of the benchmarks'
    own, with a fresh work folder (checkpoint, outboxes); also its overrides, for a stream."""
    workdir = Path(PROJECT_ROOT / ".stack" / "bench" / uuid.uuid4().hex[:8])
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = [
        *stack_overrides(KEYSPACE),
        f"redis.database.relationCache.id={REDIS_DB}",
        f"stream.checkpoint.location={workdir}/checkpoint",
        f"backfill.outbox.location={workdir}/backfill-outbox",
        f"backfill.staging.location={workdir}/backfill-staging",
        "service.search.basePath=http://127.0.0.1:9/search",
    ]
    return load_config(env=f"bench{uuid.uuid4().hex[:8]}", overrides=overrides), overrides, workdir


def bench_session(cfg: JobConfig, driver_memory: str) -> SparkSession:
    """A local Spark session on the machine's 2 cores, its UI on a free port (for job times)."""
    spark = build_spark_session(
        cfg,
        master="local[2]",
        app_name="enrolment-reconciliation-bench",
        extra_conf={
            "spark.ui.port": "0",
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": driver_memory,
        },
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "benchmarks"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--driver-memory", default="4g", help="the local driver's heap")
    parser.add_argument(
        "--no-stream", action="store_true", help="skip the stream instruments (latency, rate)"
    )
    parser.add_argument(
        "--stream-only",
        action="store_true",
        help="re-measure only the stream instruments (in-progress learners and the realistic "
        "mix) and update them in the preset's published JSON",
    )
    parser.add_argument(
        "--backfill-only",
        action="store_true",
        help="re-measure only the backfill instruments (in-process and cold) and update them in "
        "the preset's published JSON; the other figures stay as their last full run made them",
    )
    args = parser.parse_args()
    if args.backfill_only:
        remeasure_backfill(args)
        return
    if args.stream_only:
        remeasure_stream(args)
        return
    preset = PRESETS[args.preset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, overrides, workdir = bench_config()
    rng = random.Random(args.seed)
    figures: dict[str, Any] = {
        "preset": args.preset,
        "settings": asdict(preset),
        "machine": {
            "cpus": os.cpu_count(),
            "memoryGb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "memory": {},
    }
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(preset, args.seed)
    with timed(figures, "loadSeconds"):
        figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    keys = pick_requests(sample, preset.requests, rng)
    print(f"loaded {figures['data']} in {figures['loadSeconds']} s", flush=True)

    seconds = reconcile_one_by_one(cfg, keys["batch"])
    figures["baseline"] = {
        "requests": len(keys["batch"]),
        "seconds": round(seconds, 3),
        "requestsPerSecond": round(len(keys["batch"]) / seconds, 1),
    }
    print(f"baseline: {figures['baseline']}", flush=True)
    tune_for_micro_batches(spark)
    figures["batchSizes"] = {}
    with PeakMemory(os.getpid()) as memory:
        # smaller sizes first: the JIT and caches they warm up are what a long-running stream
        # has by the time it sees a batch of the preset's size, which is measured last
        for size in preset.batch_sizes:
            sized = measure_batch(spark, cfg, sample, keys["every"][:size], preset.batch_runs)
            figures["batchSizes"][size] = _size_row(sized)
            print(f"batch of {size}: {figures['batchSizes'][size]}", flush=True)
        figures["batch"] = measure_batch(spark, cfg, sample, keys["batch"], preset.batch_runs)
    figures["memory"]["batch"] = memory.peaks
    print(f"batch: {figures['batch']['warm']}", flush=True)
    figures["batchSizes"][len(keys["batch"])] = _size_row(figures["batch"])
    _backfill_figures(spark, cfg, overrides, sample, workdir, figures)
    spark.stop()

    if not args.no_stream:
        _stream_figures(cfg, overrides, preset, keys, workdir, figures, rng)
    baseline_rps = figures["baseline"]["requestsPerSecond"]
    figures["ratios"] = {
        "batchVsBaseline": round(
            figures["baseline"]["seconds"] / figures["batch"]["warm"]["seconds"], 2
        ),
        "backfillVsBaseline": round(figures["backfill"]["enrolmentsPerSecond"] / baseline_rps, 2),
    }
    if "stream" in figures:
        rate = figures["stream"]["throughput"]["sustainedRate"]
        figures["ratios"]["streamVsBaseline"] = round(rate / baseline_rps, 2)
    (out / f"{args.preset}.json").write_text(json.dumps(figures, indent=2) + "\n")
    if "stream" in figures:  # the chart's panels are mostly the stream's
        chart(figures, out / f"{args.preset}.png")
    cold_chart(figures, out / f"{args.preset}-backfill.png")
    print("\n" + table(figures))
    print(
        f"\nwritten into {out}: {args.preset}.json" + (" and .png" if "stream" in figures else "")
    )


def _stream_figures(
    cfg: JobConfig,
    overrides: list[str],
    preset: Preset,
    keys: dict[str, list],
    workdir: Path,
    figures: dict[str, Any],
    rng: random.Random,
) -> None:
    """The stream on in-progress learners only, then on the realistic mix (the headline)."""
    if preset.in_progress_stream:
        only = mixed_requests(keys["stream"], [], None, rng)
        figures["streamInProgressOnly"] = measure_stream(cfg, overrides, preset, only, workdir)
        figures["streamInProgressOnly"].pop("memory")
    mix = RequestMix()
    pool = mixed_requests(keys["stream"], keys["stuck"], mix, rng)
    figures["stream"] = measure_stream(cfg, overrides, preset, pool, workdir)
    figures["stream"]["mix"] = asdict(mix) | {"stuckLearners": len(keys["stuck"])}
    figures["memory"]["stream"] = figures["stream"].pop("memory")


def _backfill_figures(
    spark: SparkSession,
    cfg: JobConfig,
    overrides: list[str],
    sample: SampleData,
    workdir: Path,
    figures: dict[str, Any],
) -> None:
    """The in-process backfill (at the benchmark's settings) and the cold one, into ``figures``."""
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    # partitions of ~10-20 MB at medium, coalesced by AQE at small
    spark.conf.set("spark.sql.shuffle.partitions", "64")
    with PeakMemory(os.getpid()) as memory:
        figures["backfill"] = measure_backfill(spark, cfg, figures["data"]["consumption"])
    figures["memory"]["backfill"] = memory.peaks
    print(f"backfill: {figures['backfill']}", flush=True)
    # as an operator runs it: cold ./spark-submit.sh processes at Spark's defaults
    figures["backfillCold"] = measure_backfill_cold(spark, cfg, overrides, sample, workdir)


def remeasure_backfill(args: argparse.Namespace) -> None:
    """``--backfill-only``: load the preset's sample, measure the backfill, update its JSON."""
    out = Path(args.out)
    published = out / f"{args.preset}.json"
    figures = json.loads(published.read_text())
    cfg, overrides, workdir = bench_config()
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(PRESETS[args.preset], args.seed)
    figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    figures["backfillMeasuredAt"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _backfill_figures(spark, cfg, overrides, sample, workdir, figures)
    spark.stop()
    baseline_rps = figures["baseline"]["requestsPerSecond"]
    figures["ratios"]["backfillVsBaseline"] = round(
        figures["backfill"]["enrolmentsPerSecond"] / baseline_rps, 2
    )
    published.write_text(json.dumps(figures, indent=2) + "\n")
    cold_chart(figures, out / f"{args.preset}-backfill.png")
    print("\n" + table(figures))


def remeasure_stream(args: argparse.Namespace) -> None:
    """``--stream-only``: load the preset's sample, measure the stream, update its JSON."""
    out = Path(args.out)
    published = out / f"{args.preset}.json"
    figures = json.loads(published.read_text())
    preset = PRESETS[args.preset]
    cfg, overrides, workdir = bench_config()
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(preset, args.seed)
    figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    spark.stop()
    rng = random.Random(args.seed)
    keys = pick_requests(sample, preset.requests, rng)
    figures["streamMeasuredAt"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _stream_figures(cfg, overrides, preset, keys, workdir, figures, rng)
    rate = figures["stream"]["throughput"]["sustainedRate"]
    figures["ratios"]["streamVsBaseline"] = round(
        rate / figures["baseline"]["requestsPerSecond"], 2
    )
    published.write_text(json.dumps(figures, indent=2) + "\n")
    chart(figures, out / f"{args.preset}.png")
    print("\n" + table(figures))


if __name__ == "__main__":
    main()
