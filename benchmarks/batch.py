"""The batch function as an instrument: ``reconcile_batch`` + ``apply_batch`` on the baseline's
requests (read, reconcile, write, publish), and at the presets' ``batch_sizes`` on others first
(fixed against marginal cost).

Each size runs ``batch_runs`` times in one session, the enrolment rows restored before each run
so every run does the same writes: cold = the first run, warm = the median of the second half;
with the Spark jobs each run launched and each job's seconds (from the Spark UI's REST API).
``benchmarks.profile_batch`` drives the same runner under ``cProfile``.
"""

from __future__ import annotations

import cProfile
import json
import time
import urllib.request
import uuid
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession

from benchmarks.common import Preset, restore_enrolments, sample_enrolments
from devkit.sample.data import SampleData
from devkit.stack import sync_request
from enrolment_reconciliation.batch.apply import apply_batch
from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.schemas import RAW_REQUEST_SCHEMA
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.modes.stream import tune_for_micro_batches
from enrolment_reconciliation.runtime.config import JobConfig


class BatchRunner:
    """Runs the batch function on the same requests, again and again, in one Spark session."""

    def __init__(self, spark: SparkSession, cfg: JobConfig, keys: list[tuple]) -> None:
        self.spark, self.cfg = spark, cfg
        self.resources = BatchResources.from_config(cfg)
        self.outbox = Outbox(spark, cfg.locations.stream_checkpoint + "/bench-outbox")
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


def size_row(batch: dict[str, Any]) -> dict[str, Any]:
    """One line of the figures' ``batchSizes``: what ``measure_batch`` found at one size."""
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


def measure_batch_by_size(
    spark: SparkSession,
    cfg: JobConfig,
    sample: SampleData,
    preset: Preset,
    keys: dict[str, list],
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """The batch function at the micro-batch settings, at each of the preset's ``batch_sizes``
    then on the baseline's requests (``keys["batch"]``): one ``size_row`` per size, and the
    figures of that last one (the figures' ``batchSizes`` and ``batch``)."""
    tune_for_micro_batches(spark)
    sizes: dict[int, dict[str, Any]] = {}
    # smaller sizes first: the JIT and caches they warm up are what a long-running stream
    # has by the time it sees a batch of the preset's size, which is measured last
    for size in preset.batch_sizes:
        sized = measure_batch(spark, cfg, sample, keys["every"][:size], preset.batch_runs)
        sizes[size] = size_row(sized)
        print(f"batch of {size}: {sizes[size]}", flush=True)
    batch = measure_batch(spark, cfg, sample, keys["batch"], preset.batch_runs)
    sizes[len(keys["batch"])] = size_row(batch)
    return sizes, batch
