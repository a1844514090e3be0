"""What the benchmark instruments share: the presets, the sample and the requests picked from
it, the benchmarks' config and Spark session on the local stack, timing and memory probes, and
small helpers for the figures and charts.

Imports nothing else of ``benchmarks``: every instrument imports it, and it none of them.
"""

from __future__ import annotations

import itertools
import random
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from pyspark.sql import SparkSession

from devkit.paths import STACK_DIR
from devkit.sample.data import SampleData, generate_sample
from devkit.stack import stack_overrides, sync_request
from enrolment_reconciliation.core.counters import Counter, Counts
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from enrolment_reconciliation.runtime.session import build_spark_session

KEYSPACE, REDIS_DB = "er_bench", 15


# --- presets -----------------------------------------------------------------------------------
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


# --- the local stack ---------------------------------------------------------------------------
def bench_config() -> tuple[JobConfig, list[str], Path]:
    """The job's config on the local stack, in a keyspace and Redis database of the benchmarks'
    own, with a fresh work folder (checkpoint, outboxes); also its overrides, for a stream."""
    workdir = STACK_DIR / "bench" / uuid.uuid4().hex[:8]
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


def sample_enrolments(sample: SampleData, keys: list[tuple]) -> list[Any]:
    """The sample's enrolment rows of ``keys`` (one pass over the sample: at ``large`` a pass
    generates 74,000 users' activity, so it is made once per set of keys)."""
    wanted = set(keys)
    return [e for e in sample.enrolments() if (e.userid, e.courseid, e.batchid) in wanted]


def restore_enrolments(cfg: JobConfig, rows: list[Any]) -> None:
    """Put the sample's enrolment rows back (so two runs over the same requests do the same)."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    insert = session.prepare(
        f"UPDATE {cfg.cassandra.enrolments_table} SET status = ?, progress = ?, contentstatus = ?,"
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


# --- requests ----------------------------------------------------------------------------------
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


# --- measuring ---------------------------------------------------------------------------------
@contextmanager
def timed(into: dict[str, Any], key: str) -> Iterator[None]:
    """``into[key]``: the seconds the block took (3 decimals)."""
    started = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - started, 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def total_writes(counts: Counts) -> int:
    """Rows a run wrote, from its counters (0 for a run over unchanged data)."""
    return counts.get(Counter.AGGREGATE_ROWS, 0) + counts.get(Counter.ENROLMENT_UPDATES, 0)


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


# --- charts ------------------------------------------------------------------------------------
def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only: no display where the benchmarks run);
    imported on first use, so an instrument that draws nothing does not pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
