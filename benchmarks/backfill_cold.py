"""The nightly backfill as an operator runs it: a cold ``./spark-submit.sh backfill`` process with
Spark's defaults (no memory flag: a 1 GiB local driver), on data loaded by the benchmarks.

Measured, each in a process of its own, each started when Cassandra compacts nothing (so it
does not pay for the compaction of what the one before it wrote), with where its CPU went
(``benchmarks.cpu``):

1. an uninterrupted run: seconds, the cold fixed cost (process start to the first slice's
   first read), slices, rows/s, peak RSS by role and the driver JVM's live heap after a full
   GC (sampled when the first, the middle and the last slice finish);
2. a re-run over the unchanged data;
3. the floor: a bare scan of the columns the backfill reads and a bare write of as many rows
   as it wrote, in a cold process too;
4. resume: the tables put back as loaded, a run SIGKILLed at half the uninterrupted run's
   length, then a run that resumes it: its seconds against the uninterrupted run's, the tables
   compared by digest with the uninterrupted run's, and the certificate and AUDIT events
   delivered (distinct mids) against the uninterrupted run's.

Used by ``benchmarks.run`` (``./dev.sh bench PRESET``); alone, after loading the preset's sample::

    python -m benchmarks.backfill_cold --preset medium
    python -m benchmarks.backfill_cold --preset medium --slices 12   # as many slices as large
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.backfill import measure_floor
from benchmarks.common import (
    KEYSPACE,
    PRESETS,
    PeakMemory,
    bench_config,
    bench_session,
    live_heap_mb,
    make_sample,
    pyplot,
    total_writes,
)
from benchmarks.cpu import CpuAccount
from devkit.paths import PROJECT_ROOT, SPARK_SUBMIT
from devkit.sample.data import SampleData
from devkit.sample.loader import load_sample_with_spark, restore_with_spark
from devkit.stack import expire_lease, log_events, messages_on, stack_overrides
from enrolment_reconciliation.io.cassandra import connect, read_table
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from enrolment_reconciliation.runtime.session import build_spark_session

# The JVM options spark-submit.sh gives a backfill (its throughput collector)
BACKFILL_JAVA_OPTIONS = "-XX:+UseParallelGC"


def _digest(df: DataFrame, columns: list[str]) -> dict[str, int]:
    hashable = [
        F.map_entries(c) if c in ("contentstatus", "aggregates") else F.col(c) for c in columns
    ]
    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*hashable)).alias("h")).first()
    return {"rows": int(row["n"]), "hash": int(row["h"] or 0)}


def table_digests(spark: SparkSession, cfg: JobConfig) -> dict[str, dict[str, int]]:
    """Order-free digests of what a backfill writes (times left out: they differ per run)."""
    enrolments = read_table(spark, cfg.cassandra.keyspace, cfg.cassandra.enrolments_table)
    aggregates = read_table(spark, cfg.cassandra.keyspace, cfg.cassandra.activity_agg_table).select(
        "activity_type",
        "activity_id",
        "user_id",
        "context_id",
        F.map_filter("aggregates", lambda k, _: k == "completedCount").alias("aggregates"),
    )
    return {
        "enrolments": _digest(
            enrolments, ["userid", "courseid", "batchid", "status", "progress", "contentstatus"]
        ),
        "aggregates": _digest(
            aggregates, ["activity_type", "activity_id", "user_id", "context_id", "aggregates"]
        ),
    }


def distinct_mids(cfg: JobConfig, topic: str) -> int:
    return len({event["mid"] for event in messages_on(cfg, topic, timeout_ms=600_000)})


def quiet_cassandra(cfg: JobConfig, *, timeout: float = 600.0) -> float:
    """Wait until Cassandra compacts nothing (``system_views.sstable_tasks`` empty, no pending
    compaction), so a measured run does not share the cores with the compaction of what the run
    before it (or the restore) wrote; returns the seconds waited."""
    began = time.monotonic()
    cluster, session = connect(cfg.cassandra)
    try:
        quiet = 0
        while quiet < 2 and time.monotonic() - began < timeout:
            tasks = list(session.execute("SELECT kind FROM system_views.sstable_tasks"))
            pool = session.execute(
                "SELECT active_tasks, pending_tasks FROM system_views.thread_pools"
                " WHERE name = 'CompactionExecutor'"
            ).one()
            busy = tasks or (pool is not None and pool.active_tasks + pool.pending_tasks > 0)
            quiet = 0 if busy else quiet + 1
            time.sleep(1.0)
    finally:
        cluster.shutdown()
    return round(time.monotonic() - began, 1)


class ColdRun:
    """One ``./spark-submit.sh backfill`` process: its JSON lines as they come, peak memory,
    the driver's live heap when some slices finish, and an optional SIGKILL after a delay."""

    def __init__(self, args: list[str], *, kill_after: float | None = None, heap_at=()) -> None:
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.live_heap: list[float] = []
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(SPARK_SUBMIT), "backfill", *args],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,  # the summary: read from --summary FILE
            stderr=subprocess.PIPE,  # the logs, read as they come
            text=True,
            start_new_session=True,
        )
        killer = None
        if kill_after is not None:

            def kill() -> None:
                os.killpg(proc.pid, signal.SIGKILL)

            killer = threading.Timer(kill_after, kill)
            killer.start()
        with PeakMemory(proc.pid) as memory, CpuAccount(proc.pid) as cpu:
            assert proc.stderr is not None
            for text in proc.stderr:
                events = log_events(text)
                if not events:
                    continue
                line = events[0]
                self.lines.append((time.monotonic() - started, line))
                if line.get("event") == "slice" and line["done"] in heap_at:
                    heap = live_heap_mb(proc.pid)
                    if heap is not None:
                        self.live_heap.append(heap)
            self.returncode = proc.wait()
            memory.peaks["driverLiveHeapMb"] = max(self.live_heap, default=None)
        if killer is not None:
            killer.cancel()
        self.seconds = round(time.monotonic() - started, 3)
        self.memory = memory.peaks
        self.cpu = cpu.figures

    def first(self, event: str) -> tuple[float, dict[str, Any]] | None:
        return next(((t, line) for t, line in self.lines if line.get("event") == event), None)


def _expected_slices(cfg: JobConfig, users: int) -> int:
    """The slices a run of ``cfg`` over ``users`` will make (as the backfill plans them)."""
    from enrolment_reconciliation.io.cassandra import estimated_table_bytes
    from enrolment_reconciliation.modes.backfill.plan import choose_slice_count

    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        estimated = estimated_table_bytes(
            session, cfg.cassandra.keyspace, cfg.cassandra.consumption_table
        )
    finally:
        cluster.shutdown()
    return choose_slice_count(cfg.backfill.slices, estimated, users).count


def cold_args(cfg: JobConfig, overrides: list[str], env: str, summary: Path) -> list[str]:
    sets = [a for o in overrides for a in ("--set", o)]
    return ["--env", env, *sets, "--summary", str(summary)]


def _run_figures(run: ColdRun, summary_file: Path) -> dict[str, Any]:
    if run.returncode != 0:
        raise RuntimeError(f"the backfill exited {run.returncode}: {run.lines[-3:]}")
    summary = json.loads(summary_file.read_text())
    first_slice = run.first("slice-start")
    # the run's first read of the data: the users pass (or the first slice, when it has none)
    first_read = next(
        (
            t
            for t, line in run.lines
            if line.get("event") == "phase-start"
            and line.get("phase") in ("slice-users", "stage-aggregates", "slices")
        ),
        None,
    )
    rows = summary["counters"].get("backfill.consumption-rows-scanned-count", 0)
    return {
        "seconds": run.seconds,
        "jobSeconds": summary["seconds"],
        "coldFixedSeconds": round(first_slice[0], 3) if first_slice else None,
        "startupSeconds": round(first_read, 3) if first_read is not None else None,
        "slices": summary["slices"],
        "phases": summary["phases"],
        "enrolmentsScanned": summary["summary"]["scanned"],
        "consumptionRows": rows,
        "rowsWritten": total_writes(summary["counters"]),
        "aggregatesWritten": summary["summary"]["aggregatesChanged"],
        "enrolmentsWritten": summary["summary"]["changed"],
        "newlyCompleted": summary["summary"]["newlyCompleted"],
        "consumptionRowsPerSecond": round(rows / run.seconds, 1),
        "memory": run.memory,
        "cpuSeconds": run.cpu,
    }


def measure_floor_cold(cfg: JobConfig, aggregates: int, enrolments: int) -> dict[str, Any]:
    """The floor (``benchmarks.backfill.measure_floor``) in a cold process at Spark's defaults."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.backfill_cold",
            "--floor",
            f"{aggregates},{enrolments}",
            "--keyspace",
            cfg.cassandra.keyspace,
            f"--java-options={BACKFILL_JAVA_OPTIONS}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_backfill_cold(
    spark: SparkSession, cfg: JobConfig, overrides: list[str], sample: SampleData, workdir: Path
) -> dict[str, Any]:
    """Every cold instrument; ``spark`` (the benchmark's session) only restores and compares."""
    figures: dict[str, Any] = {}
    restore_with_spark(spark, sample, cfg)
    env = f"cold{uuid.uuid4().hex[:6]}"
    first_summary = workdir / "cold-first.json"
    slices = _expected_slices(cfg, sample.users)
    quiet_cassandra(cfg)
    uninterrupted = ColdRun(
        cold_args(cfg, overrides, env, first_summary),
        heap_at={1, max(1, slices // 2), slices},  # a full GC each: a second or so in all
    )
    figures["run"] = _run_figures(uninterrupted, first_summary)
    print(f"cold run: {figures['run']}", flush=True)
    expected = table_digests(spark, cfg)
    events = {
        t: distinct_mids(cfg, t)
        for t in (f"{env}.issue.certificate.request", f"{env}.telemetry.raw")
    }
    rerun_summary = workdir / "cold-rerun.json"
    quiet_cassandra(cfg)
    rerun = ColdRun(cold_args(cfg, overrides, env, rerun_summary))
    figures["rerun"] = _run_figures(rerun, rerun_summary)
    print(f"cold re-run: {figures['rerun']}", flush=True)
    run = figures["run"]
    quiet_cassandra(cfg)
    figures["floor"] = measure_floor_cold(cfg, run["aggregatesWritten"], run["enrolmentsWritten"])
    figures["efficiency"] = round(figures["floor"]["seconds"] / figures["run"]["seconds"], 3)
    print(f"floor: {figures['floor']}", flush=True)

    restore_with_spark(spark, sample, cfg)
    env = f"resume{uuid.uuid4().hex[:6]}"
    kill_at = round(uninterrupted.seconds / 2, 1)
    quiet_cassandra(cfg)
    killed = ColdRun(cold_args(cfg, overrides, env, workdir / "killed.json"), kill_after=kill_at)
    done_before = [line for _, line in killed.lines if line.get("event") == "slice"]
    expire_lease(cfg)
    quiet_cassandra(cfg)
    resumed_summary = workdir / "resumed.json"
    resumed = ColdRun(cold_args(cfg, overrides, env, resumed_summary))
    resumed_figures = _run_figures(resumed, resumed_summary)
    delivered = {
        t.split(".", 1)[1]: distinct_mids(cfg, t)
        for t in (f"{env}.issue.certificate.request", f"{env}.telemetry.raw")
    }
    figures["resume"] = {
        "killedAfterSeconds": kill_at,
        "slicesDoneWhenKilled": len(done_before),
        "resumedSeconds": resumed.seconds,
        "resumedVsUninterrupted": round(resumed.seconds / uninterrupted.seconds, 3),
        "resumedFrom": json.loads(resumed_summary.read_text())["resumedFrom"],
        "slicesRun": resumed_figures["slices"] - len(done_before),
        "tablesEqual": table_digests(spark, cfg) == expected,
        "eventsDelivered": delivered,
        "eventsOfUninterrupted": {t.split(".", 1)[1]: n for t, n in events.items()},
    }
    print(f"resume: {figures['resume']}", flush=True)
    return figures


def chart(figures: dict[str, Any], target: Path) -> None:
    """Seconds of each cold instrument, the resumed run stacked on the killed one's; below,
    where the CPU of the run, the re-run and the floor went (when the run has its account)."""
    plt = pyplot()
    cold = figures["backfillCold"]
    with_cpu = all("cpuSeconds" in cold[k] for k in ("run", "rerun", "floor"))
    fig, axes = plt.subplots(2 if with_cpu else 1, 1, figsize=(9, 7.8 if with_cpu else 3.6))
    seconds_ax = axes[0] if with_cpu else axes
    _seconds_panel(seconds_ax, figures)
    if with_cpu:
        _cpu_panel(axes[1], cold)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def _seconds_panel(ax: Any, figures: dict[str, Any]) -> None:
    cold = figures["backfillCold"]
    run, resume = cold["run"], cold["resume"]
    names = ["uninterrupted", "re-run, unchanged", "floor (scan + write)", "killed + resumed"]
    ax.barh(
        names[:3],
        [run["seconds"], cold["rerun"]["seconds"], cold["floor"]["seconds"]],
        color=["#4c72b0", "#8da0cb", "#c0c0c0"],
    )
    ax.barh(names[3], resume["killedAfterSeconds"], color="#dd8452", label="killed at half")
    ax.barh(
        names[3],
        resume["resumedSeconds"],
        left=resume["killedAfterSeconds"],
        color="#55a868",
        label=f"resumed ({resume['resumedVsUninterrupted']} of a run)",
    )
    ax.invert_yaxis()
    ax.set_xlabel("seconds (cold ./spark-submit.sh backfill, 1 GiB driver)")
    ax.legend(loc="upper right", framealpha=0.9)
    data = figures["data"]
    ax.set_title(
        f"backfill of {data['consumption']:,} consumption rows in {run['slices']} slices,"
        f" preset {figures['preset']}"
    )


# the CPU account's parts, in the order they are stacked, with their colours
CPU_PARTS = [
    ("cassandra", "Cassandra", "#8c564b"),
    ("jvm.tasks", "Spark tasks", "#4c72b0"),
    ("jvm.jit", "JIT compilers", "#dd8452"),
    ("jvm.gc", "garbage collector", "#c44e52"),
    ("jvm.driverCalls", "driver (Python's calls)", "#8172b3"),
    ("jvm.cassandraDriverIo", "Cassandra driver I/O", "#937860"),
    ("jvm.other", "other JVM threads", "#da8bc3"),
    ("python+kafka", "Python, Kafka", "#55a868"),
    ("idle", "idle", "#e5e5e5"),
]


def _cpu_part(cpu: dict[str, Any], part: str) -> float:
    if part == "python+kafka":
        return float(cpu["python"] + cpu["kafka"])
    if part.startswith("jvm."):
        return float(cpu["jvm"][part[4:]])
    return float(cpu[part])


def _cpu_panel(ax: Any, cold: dict[str, Any]) -> None:
    rows = [("uninterrupted", cold["run"]), ("re-run", cold["rerun"]), ("floor", cold["floor"])]
    left = [0.0] * len(rows)
    for part, label, colour in CPU_PARTS:
        widths = [_cpu_part(r["cpuSeconds"], part) for _, r in rows]
        ax.barh([n for n, _ in rows], widths, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    cores = cold["run"]["cpuSeconds"]["cores"]
    ax.set_xlabel(f"CPU-seconds ({cores} cores: a run's wall seconds x {cores})")
    ax.set_title("where the CPU went (the floor: its two timed parts)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, ncol=5, frameon=False)


def _floor_main(written: str, keyspace: str, java_options: str) -> None:
    cfg = load_config(overrides=stack_overrides(keyspace))
    spark = build_spark_session(
        cfg,
        master="local[*]",
        app_name="enrolment-reconciliation-floor",
        # the JVM the backfill gets from spark-submit.sh: the floor measured on the same one
        extra_conf={"spark.driver.defaultJavaOptions": java_options} if java_options else None,
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        aggregates, enrolments = (int(n) for n in written.split(","))
        print(json.dumps(measure_floor(spark, cfg, aggregates, enrolments)))
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--floor", metavar="AGGREGATES,ENROLMENTS", help="(internal) the floor in this process"
    )
    parser.add_argument("--keyspace", default=KEYSPACE)
    parser.add_argument("--java-options", default="", help="(internal) the floor's JVM options")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chart", metavar="JSON", help="draw <preset>-backfill.png from a run")
    parser.add_argument(
        "--slices",
        type=int,
        default=0,
        metavar="N",
        help="every run in N slices (backfill.slices; default: the job's own count), e.g. a "
        "smaller preset in as many slices as a larger one's runs make",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait after the load: Cassandra refreshes its size estimates (which size the "
        "default slices) every 5 minutes, so a run right after a load sizes them by the "
        "table's previous contents",
    )
    args = parser.parse_args()
    if args.chart:
        source = Path(args.chart)
        chart(json.loads(source.read_text()), source.with_name(f"{source.stem}-backfill.png"))
        return
    if args.floor is not None:
        _floor_main(args.floor, args.keyspace, args.java_options)
        return
    _standalone(args.preset, args.seed, args.slices, args.settle)


def _standalone(preset: str, seed: int, slices: int, settle: float) -> None:
    """Alone: load the preset's sample (own config, 2 GiB session), then every cold instrument;
    prints the figures as JSON."""
    cfg, overrides, workdir = bench_config()
    if slices:
        overrides.append(f"backfill.slices={slices}")
        cfg = dataclasses.replace(cfg, backfill_slices=slices)
    sample = make_sample(PRESETS[preset], seed)
    spark = bench_session(cfg, "2g")
    try:
        data = load_sample_with_spark(spark, sample, cfg, truncate=True)  # the preset's rows
        time.sleep(settle)
        figures = measure_backfill_cold(spark, cfg, overrides, sample, workdir)
        settings = {"slices": slices} if slices else {}
        print(json.dumps({"preset": preset, **settings, "data": data, **figures}, indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
