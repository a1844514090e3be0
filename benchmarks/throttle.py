"""The write throttle (``write.max.per.second``) as measured: rows/s of each writer at N.

Each writer writes ``--seconds`` seconds' worth of rows at N = 500, 1,000 and 2,000 (and once
unbounded, for its own pace), on the local stack, in a keyspace of its own, in one Spark
session at the job's defaults; the rows exist before the clock starts (a local checkpoint), so
the figure is the writer's. Prints one line per measurement and writes
``docs/benchmarks/throttle.json``.

    ./dev.sh bench-throttle            # or: .venv/bin/python -m benchmarks.throttle
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from devkit.paths import BENCHMARK_FIGURES
from devkit.schema import apply_schema
from devkit.stack import stack_config
from enrolment_reconciliation.io.cassandra import (
    connect,
    write_activity_aggregates,
    write_enrolment_updates,
)
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.session import build_spark_session

KEYSPACE = "er_bench_throttle"
BOUNDS = (500, 1000, 2000)
WHEN = datetime(2026, 1, 1)


def aggregate_rows(spark: SparkSession, rows: int, run: int) -> DataFrame:
    return spark.range(rows).select(
        F.lit("Course").alias("activity_type"),
        F.concat(F.lit(f"C{run}-"), F.col("id").cast("string")).alias("activity_id"),
        F.lit("u").alias("user_id"),
        F.lit("cb:b").alias("context_id"),
        F.create_map(F.lit("completedCount"), F.lit(1.0)).alias("aggregates"),
        F.create_map(F.lit("completedCount"), F.lit(WHEN)).alias("agg_last_updated"),
    )


def enrolment_rows(spark: SparkSession, rows: int, run: int) -> DataFrame:
    return spark.range(rows).select(
        F.concat(F.lit(f"u{run}-"), F.col("id").cast("string")).alias("userid"),
        F.lit("C").alias("courseid"),
        F.lit("b").alias("batchid"),
        F.lit(1).alias("status"),
        F.lit(1).alias("progress"),
        F.create_map(F.lit("R1"), F.lit(2)).alias("contentstatus"),
        F.lit(None).cast("timestamp").alias("completedon"),
        F.lit(WHEN).alias("datetime"),
    )


WRITERS = {
    "aggregates": (aggregate_rows, write_activity_aggregates),
    "enrolments": (enrolment_rows, write_enrolment_updates),
}


def measure(spark: SparkSession, cfg: JobConfig, seconds: float) -> list[dict[str, Any]]:
    figures = []
    run = 0
    for bound in (0, *BOUNDS):
        bounded = cfg.with_overrides(max_writes_per_second=bound)
        rows = int(seconds * (bound or 5000))
        for name, (make, write) in WRITERS.items():
            run += 1
            frame = make(spark, rows, run).localCheckpoint()
            started = time.monotonic()
            write(frame, bounded, rows=rows)
            elapsed = time.monotonic() - started
            line = {
                "writer": name,
                "bound": bound or None,
                "rows": rows,
                "seconds": round(elapsed, 3),
                "rowsPerSecond": round(rows / elapsed, 1),
                "ofBound": round(rows / elapsed / bound, 3) if bound else None,
            }
            print(json.dumps(line), flush=True)
            figures.append(line)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="of rows per measurement")
    parser.add_argument("--out", default=str(BENCHMARK_FIGURES))
    args = parser.parse_args()
    cfg = stack_config(keyspace=KEYSPACE)
    cluster, session = connect(cfg.cassandra)
    try:
        apply_schema(session, KEYSPACE)
        for table in (cfg.cassandra.activity_agg_table, cfg.cassandra.enrolments_table):
            session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=120)
    finally:
        cluster.shutdown()
    spark = build_spark_session(
        cfg, master="local[*]", app_name="enrolment-reconciliation-throttle"
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        figures = {
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "secondsOfRows": args.seconds,
            "measurements": measure(spark, cfg, args.seconds),
        }
    finally:
        spark.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throttle.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
