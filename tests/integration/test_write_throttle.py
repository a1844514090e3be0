"""``write.max.per.second`` on the real stack: each writer keeps the bound over a write of a few
thousand rows (a slower pass is the noisy machine; a faster one is the defect)."""

from __future__ import annotations

import time

import pytest

from benchmarks.throttle import aggregate_rows, enrolment_rows
from devkit.schema import apply_schema
from enrolment_reconciliation.io.cassandra import (
    connect,
    write_activity_aggregates,
    write_enrolment_updates,
)
from tests.helpers import stack_config

pytestmark = pytest.mark.integration
KEYSPACE, BOUND = "er_test_connectors", 1000


@pytest.fixture(scope="module")
def cfg():
    cfg = stack_config(f"write.max.per.second={BOUND}", keyspace=KEYSPACE)
    cluster, session = connect(cfg.cassandra)
    apply_schema(session, KEYSPACE)
    for table in (cfg.cassandra.activity_agg_table, cfg.cassandra.enrolments_table):
        session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=60)
    cluster.shutdown()
    return cfg


def count_rows(cfg, table: str) -> int:
    cluster, session = connect(cfg.cassandra, keyspace=KEYSPACE)
    try:
        return session.execute(f"SELECT COUNT(*) FROM {table}", timeout=60).one()[0]
    finally:
        cluster.shutdown()


def test_the_aggregate_writer_keeps_the_bound(spark, cfg):
    rows = 3000
    aggregates = aggregate_rows(spark, rows, run=0)
    aggregates = aggregates.localCheckpoint()  # the rows exist before the clock starts
    started = time.monotonic()
    write_activity_aggregates(aggregates, cfg.cassandra, cfg.write, rows=rows)
    rate = rows / (time.monotonic() - started)
    assert rate <= 1.2 * BOUND, f"{rate:.0f} rows/s against a bound of {BOUND}"
    assert count_rows(cfg, cfg.cassandra.activity_agg_table) == rows


def test_the_enrolment_writer_keeps_the_bound(spark, cfg):
    rows = 2500
    updates = enrolment_rows(spark, rows, run=0)
    updates = updates.localCheckpoint()
    started = time.monotonic()
    write_enrolment_updates(updates, cfg.cassandra, cfg.write, rows=rows)
    rate = rows / (time.monotonic() - started)
    assert rate <= 1.2 * BOUND, f"{rate:.0f} rows/s against a bound of {BOUND}"
    assert count_rows(cfg, cfg.cassandra.enrolments_table) == rows
