"""The backfill as an instrument, in the benchmark's own process (its session, its warm JVM):
``run_backfill`` over every enrolment, then a second run over unchanged data, and the floor: a
bare connector scan of the same tables and columns the backfill reads (every value hashed, so
nothing is pruned) plus a bare write of as many rows as the backfill wrote, through its
writers; efficiency = floor / backfill.

``benchmarks.backfill_cold`` measures the floor again in a cold process, with ``measure_floor``.
"""

from __future__ import annotations

import os
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from benchmarks.common import timed, total_writes
from benchmarks.cpu import CpuAccount, summed
from enrolment_reconciliation.batch.materialise import drop_materialised
from enrolment_reconciliation.core.schemas import (
    CONSUMPTION_COLUMNS,
    CURRENT_AGGREGATES_SCHEMA,
    ENROLMENT_COLUMNS,
    ENROLMENT_WRITE_COLUMNS,
)
from enrolment_reconciliation.io.cassandra import (
    AGGREGATE_COLUMNS,
    APPENDED_MAPS,
    read_table,
    write_activity_aggregates,
    write_enrolment_updates,
)
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.runtime.config import JobConfig


def tune_for_backfill(spark: SparkSession) -> None:
    """The benchmark's settings for a backfill in its session (after the batch function's)."""
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    # partitions of ~10-20 MB at medium, coalesced by AQE at small
    spark.conf.set("spark.sql.shuffle.partitions", "64")


def measure_backfill(spark: SparkSession, cfg: JobConfig, rows: int) -> dict[str, Any]:
    """A backfill over every enrolment (``rows``: the consumption rows loaded), a re-run over
    the unchanged data, and the floor of the first run's reads and writes."""
    first = run_backfill(spark, cfg, BackfillOptions())
    second = run_backfill(spark, cfg, BackfillOptions())
    summary = first["summary"]
    floor = measure_floor(spark, cfg, summary["aggregatesChanged"], summary["changed"])
    return {
        "seconds": first["seconds"],
        "phases": first["phases"],
        "enrolmentsScanned": summary["scanned"],
        "consumptionRows": rows,
        "rowsWritten": total_writes(first["counters"]),
        "enrolmentsPerSecond": round(summary["scanned"] / first["seconds"], 1),
        "consumptionRowsPerSecond": round(rows / first["seconds"], 1),
        "rerunSeconds": second["seconds"],
        "rerunRowsWritten": total_writes(second["counters"]),
        "floor": floor,
        "efficiency": round(floor["seconds"] / first["seconds"], 3),
    }


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
        (cfg.cassandra.consumption_table, CONSUMPTION_COLUMNS),
        (cfg.cassandra.enrolments_table, ENROLMENT_COLUMNS),
        (cfg.cassandra.activity_agg_table, CURRENT_AGGREGATES_SCHEMA.fieldNames()),
    ]
    cpu: list[dict[str, Any]] = []
    with timed(floor, "scanSeconds"), CpuAccount(os.getpid()) as scan_cpu:
        scanned = 0
        for table, columns in tables:
            df = read_table(spark, cfg.cassandra.keyspace, table).select(*columns)
            hashable = [  # maps cannot be hashed; their entries can
                F.map_entries(f.name) if isinstance(f.dataType, MapType) else F.col(f.name)
                for f in df.schema.fields
            ]
            row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.hash(*hashable)).alias("h")).first()
            assert row is not None
            scanned += row["n"]
    held_aggregates = (
        read_table(spark, cfg.cassandra.keyspace, cfg.cassandra.activity_agg_table)
        .select(*AGGREGATE_COLUMNS, *APPENDED_MAPS)
        .limit(aggregates)
        .repartition(spark.sparkContext.defaultParallelism)  # as many tasks as the job's
        .localCheckpoint()
    )
    held_enrolments = (
        read_table(spark, cfg.cassandra.keyspace, cfg.cassandra.enrolments_table)
        .select(*ENROLMENT_WRITE_COLUMNS)
        .limit(enrolments)
        .repartition(spark.sparkContext.defaultParallelism)
        .localCheckpoint()
    )
    rows = (held_aggregates.count(), held_enrolments.count())
    cpu.append(scan_cpu.figures)
    with timed(floor, "writeSeconds"), CpuAccount(os.getpid()) as write_cpu:
        write_activity_aggregates(held_aggregates, cfg.cassandra, cfg.write, rows=rows[0])
        write_enrolment_updates(held_enrolments, cfg.cassandra, cfg.write, rows=rows[1])
    cpu.append(write_cpu.figures)
    for held in (held_aggregates, held_enrolments):  # not counted in the instrument's live heap
        drop_materialised(held)
    floor["rowsScanned"] = scanned
    floor["rowsWritten"] = sum(rows)
    floor["seconds"] = round(floor["scanSeconds"] + floor["writeSeconds"], 3)
    floor["cpuSeconds"] = summed(*cpu)  # where the CPU of the two timed parts went
    return floor
