"""Cassandra I/O: driver sessions, schema, connector direct joins, and the two writers.

Reads go through the Spark Cassandra Connector as **direct joins** of a micro-batch's keys
(never a scan). ``user_enrolments`` is written with the connector; ``user_activity_agg`` is
written with prepared ``m = m + ?`` UPDATEs from the executors, because a connector write of a
map column replaces the whole map and would destroy other jobs' keys (design.md §3.1).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent
from cassandra.policies import DCAwareRoundRobinPolicy
from cassandra.query import BatchStatement, BatchType
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.schemas import (
    CONSUMPTION_COLUMNS,
    ENROLMENT_COLUMNS,
    ENROLMENT_WRITE_COLUMNS,
)

if TYPE_CHECKING:
    from enrolment_reconciliation.config import JobConfig

SCHEMA_CQL = Path(__file__).resolve().parents[3] / "conf" / "cql" / "sunbird_courses.cql"
SIMPLE_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def connect(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    keyspace: str | None = None,
    connect_timeout: float = 10.0,
) -> tuple[Cluster, Session]:
    """Open a driver session (protocol v5, Cassandra 5.0); the caller shuts the cluster down."""
    auth = PlainTextAuthProvider(username, password) if username else None
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(), request_timeout=30)
    cluster = Cluster(
        [host],
        port=port,
        protocol_version=5,
        auth_provider=auth,
        connect_timeout=connect_timeout,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    return cluster, cluster.connect(keyspace)


def connect_from_config(cfg: JobConfig, *, keyspace: str | None = None) -> tuple[Cluster, Session]:
    """Driver session for the configured Cassandra, with credentials from the environment."""
    creds = cfg.credentials
    return connect(
        cfg.cassandra_host,
        cfg.cassandra_port,
        username=creds.cassandra_username,
        password=creds.cassandra_password,
        keyspace=keyspace,
    )


def schema_statements(keyspace: str, replication: str = SIMPLE_REPLICATION) -> list[str]:
    """The CQL statements of ``conf/cql/sunbird_courses.cql`` for ``keyspace``."""
    text = "\n".join(
        line for line in SCHEMA_CQL.read_text().splitlines() if not line.lstrip().startswith("--")
    )
    text = text.replace("{keyspace}", keyspace).replace("{replication}", replication)
    return [s.strip() for s in text.split(";") if s.strip()]


def apply_schema(session: Session, keyspace: str, replication: str = SIMPLE_REPLICATION) -> None:
    """Create the keyspace and the three tables if absent (idempotent)."""
    for statement in schema_statements(keyspace, replication):
        session.execute(statement, timeout=60)


# --- connector reads ------------------------------------------------------------------------
CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"


def read_table(spark: SparkSession, keyspace: str, table: str, *, direct_join: str = "auto"):
    """A connector DataFrame over one table; ``direct_join`` is the connector's
    ``directJoinSetting`` (on | off | auto) for joins against it."""
    return (
        spark.read.format(CASSANDRA_FORMAT)
        .options(keyspace=keyspace, table=table, directJoinSetting=direct_join)
        .load()
    )


def _join_keys(keys: DataFrame) -> DataFrame:
    """Enrolment keys renamed to the tables' column names (types already text = string)."""
    return keys.select(
        F.col("userId").alias("userid"),
        F.col("courseId").alias("courseid"),
        F.col("batchId").alias("batchid"),
    )


def read_consumption_for(spark: SparkSession, keys: DataFrame, cfg: JobConfig) -> DataFrame:
    """``user_content_consumption`` rows of the given enrolments by a connector direct join.

    The join restricts the partition key (userid) and the clustering prefix (courseid,
    batchid), so the connector issues one keyed query per enrolment, never a scan.
    """
    table = read_table(spark, cfg.keyspace, cfg.consumption_table, direct_join="on")
    return _join_keys(keys).join(
        table.select(*CONSUMPTION_COLUMNS), ["userid", "courseid", "batchid"], "inner"
    )


def read_enrolments_for(spark: SparkSession, keys: DataFrame, cfg: JobConfig) -> DataFrame:
    """Current ``user_enrolments`` rows (status, completedon) of the given enrolments."""
    table = read_table(spark, cfg.keyspace, cfg.enrolments_table, direct_join="on")
    return _join_keys(keys).join(
        table.select(*ENROLMENT_COLUMNS), ["userid", "courseid", "batchid"], "inner"
    )


# --- writers ----------------------------------------------------------------------------------
APPEND_AGGREGATES_CQL = (
    "UPDATE {keyspace}.{table} SET aggregates = aggregates + ?,"
    " agg_last_updated = agg_last_updated + ?"
    " WHERE activity_type = ? AND activity_id = ? AND user_id = ? AND context_id = ?"
)

# One driver session per executor Python worker (workers are reused across tasks).
_EXECUTOR_SESSIONS: dict[tuple, tuple[Cluster, Session]] = {}


@dataclass(frozen=True)
class AggregateWriteSettings:
    """Plain values the executors need to append aggregates (picklable, no secrets in repr)."""

    host: str
    port: int
    keyspace: str
    table: str
    batch_size: int
    concurrency: int
    retries: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: JobConfig) -> AggregateWriteSettings:
        return cls(
            host=cfg.cassandra_host,
            port=cfg.cassandra_port,
            keyspace=cfg.keyspace,
            table=cfg.activity_agg_table,
            batch_size=cfg.write_batch_size,
            concurrency=cfg.write_concurrency,
            retries=cfg.write_retries,
            username=cfg.credentials.cassandra_username,
            password=cfg.credentials.cassandra_password,
        )


def _executor_session(settings: AggregateWriteSettings) -> Session:
    key = (settings.host, settings.port, settings.username)
    if key not in _EXECUTOR_SESSIONS:
        _EXECUTOR_SESSIONS[key] = connect(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
        )
    return _EXECUTOR_SESSIONS[key][1]


def _append_partition(settings: AggregateWriteSettings, rows: Iterable) -> Iterator[int]:
    """Append one partition's aggregate rows as logged batches of ``batch_size`` UPDATEs,
    ``concurrency`` batches in flight; retried ``retries`` times. Yields the batch count."""
    session = _executor_session(settings)
    statement = session.prepare(
        APPEND_AGGREGATES_CQL.format(keyspace=settings.keyspace, table=settings.table)
    )
    batches: list[BatchStatement] = []
    current = BatchStatement(batch_type=BatchType.LOGGED)
    for row in rows:
        current.add(
            statement,
            (
                row.aggregates,
                row.agg_last_updated,
                row.activity_type,
                row.activity_id,
                row.user_id,
                row.context_id,
            ),
        )
        if len(current) >= settings.batch_size:
            batches.append(current)
            current = BatchStatement(batch_type=BatchType.LOGGED)
    if len(current):
        batches.append(current)
    pending = batches
    for attempt in range(settings.retries + 1):
        results = execute_concurrent(
            session,
            [(b, ()) for b in pending],
            concurrency=settings.concurrency,
            raise_on_first_error=False,
        )
        failed = [b for b, (ok, _) in zip(pending, results, strict=True) if not ok]
        if not failed:
            break
        if attempt == settings.retries:
            errors = [r for ok, r in results if not ok]
            raise RuntimeError(
                f"{len(failed)} user_activity_agg batches failed after "
                f"{settings.retries + 1} attempts: {errors[0]!r}"
            )
        time.sleep(min(2**attempt, 8))
        pending = failed
    yield len(batches)


def write_activity_aggregates(aggregates: DataFrame, cfg: JobConfig) -> int:
    """Append ``aggregates``/``agg_last_updated`` at the server (``m = m + ?``), from executors.

    Never a connector DataFrame write: that would replace the whole maps and destroy keys other
    jobs own (``score:*``, ``max_score:*``, ...). Returns the number of CQL batches executed
    (the original's ``db-update-count``).
    """
    settings = AggregateWriteSettings.from_config(cfg)
    return int(aggregates.rdd.mapPartitions(lambda rows: _append_partition(settings, rows)).sum())


def write_enrolment_updates(updates: DataFrame, cfg: JobConfig) -> None:
    """Write status, progress, contentstatus, completedon, datetime through the connector.

    ``ignoreNulls`` leaves a null ``completedon`` unset, so the column keeps its value.
    """
    (
        updates.select(*ENROLMENT_WRITE_COLUMNS)
        .write.format(CASSANDRA_FORMAT)
        .mode("append")
        .options(
            keyspace=cfg.keyspace,
            table=cfg.enrolments_table,
            **{
                "spark.cassandra.output.ignoreNulls": "true",
                "spark.cassandra.output.batch.size.rows": str(cfg.write_batch_size),
            },
        )
        .save()
    )
