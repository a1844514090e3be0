"""``write.max.per.second`` on the real stack: each writer keeps the bound over a write of a few
thousand rows (a slower pass is the noisy machine; a faster one is the defect)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from enrolment_reconciliation.io.cassandra import (
    apply_schema,
    connect_from_config,
    write_activity_aggregates,
    write_enrolment_updates,
)
from tests.helpers import stack_config

pytestmark = pytest.mark.integration
KEYSPACE, BOUND = "er_test_connectors", 1000


@pytest.fixture(scope="module")
def cfg():
    cfg = stack_config(f"write.max.per.second={BOUND}", keyspace=KEYSPACE)
    cluster, session = connect_from_config(cfg)
    apply_schema(session, KEYSPACE)
    for table in (cfg.activity_agg_table, cfg.enrolments_table):
        session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=60)
    cluster.shutdown()
    return cfg


def count_rows(cfg, table: str) -> int:
    cluster, session = connect_from_config(cfg, keyspace=KEYSPACE)
    try:
        return session.execute(f"SELECT COUNT(*) FROM {table}", timeout=60).one()[0]
    finally:
        cluster.shutdown()


def test_the_aggregate_writer_keeps_the_bound(spark, cfg):
    rows = 3000
    aggregates = spark.range(rows).select(
        F.lit("Course").alias("activity_type"),
        F.concat(F.lit("C"), F.col("id").cast("string")).alias("activity_id"),
        F.lit("u").alias("user_id"),
        F.lit("cb:b").alias("context_id"),
        F.create_map(F.lit("completedCount"), F.lit(1.0)).alias("aggregates"),
        F.create_map(F.lit("completedCount"), F.lit(datetime(2026, 1, 1))).alias(
            "agg_last_updated"
        ),
    )
    aggregates = aggregates.localCheckpoint()  # the rows exist before the clock starts
    started = time.monotonic()
    write_activity_aggregates(aggregates, cfg, rows=rows)
    rate = rows / (time.monotonic() - started)
    assert rate <= 1.2 * BOUND, f"{rate:.0f} rows/s against a bound of {BOUND}"
    assert count_rows(cfg, cfg.activity_agg_table) == rows


def test_the_enrolment_writer_keeps_the_bound(spark, cfg):
    rows = 2500
    updates = spark.range(rows).select(
        F.concat(F.lit("u"), F.col("id").cast("string")).alias("userid"),
        F.lit("C").alias("courseid"),
        F.lit("b").alias("batchid"),
        F.lit(1).alias("status"),
        F.lit(1).alias("progress"),
        F.create_map(F.lit("R1"), F.lit(2)).alias("contentstatus"),
        F.lit(None).cast("timestamp").alias("completedon"),
        F.lit(datetime(2026, 1, 1)).alias("datetime"),
    )
    updates = updates.localCheckpoint()
    started = time.monotonic()
    write_enrolment_updates(updates, cfg, rows=rows)
    rate = rows / (time.monotonic() - started)
    assert rate <= 1.2 * BOUND, f"{rate:.0f} rows/s against a bound of {BOUND}"
    assert count_rows(cfg, cfg.enrolments_table) == rows
