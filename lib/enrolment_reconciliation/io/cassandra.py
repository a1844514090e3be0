"""Cassandra I/O: driver sessions, schema, connector reads (keyed and scans), the two writers.

Reads go through the Spark Cassandra Connector: **direct joins** of a batch's keys for the
stream and ``sync`` (never a scan), and token-range **scans** with every filter the key layout
allows pushed down for the backfill. Both tables are written from the executors' JVMs by the
connector's RDD API: ``user_activity_agg`` with its append behaviour (``m = m + ?``), because a
DataFrame write of a map column replaces the whole map and would destroy other jobs' keys
(docs/design.md §3.1), and ``user_enrolments`` the same way (a DataFrame write would re-plan a V2
write every batch). Both writers share one throttle (``write.max.per.second``).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.core.schemas import (
    ACTIVITY_AGG_KEY,
    CONSUMPTION_COLUMNS,
    COURSE_BATCH_COLUMNS,
    CURRENT_AGGREGATES_SCHEMA,
    ENROLMENT_COLUMNS,
    ENROLMENT_TABLE_KEY,
    ENROLMENT_WRITE_COLUMNS,
    REPAIR_ENROLMENT_COLUMNS,
    to_table_key_names,
)
from enrolment_reconciliation.io.throttle import paced_write
from enrolment_reconciliation.runtime.jvm import ConnectorRddApi, once_per_context

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import CassandraSettings, WriteSettings

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"


# --- driver sessions --------------------------------------------------------------------------
@dataclass(frozen=True)
class CassandraEndpoint:
    """How to reach Cassandra from a Python driver (picklable for executors; secrets masked)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_enabled: bool = False
    ca_file: str = ""
    request_timeout: float = 30.0
    connect_timeout: float = 10.0

    @classmethod
    def of(cls, cassandra: CassandraSettings) -> CassandraEndpoint:
        return cls(
            host=cassandra.host,
            port=cassandra.port,
            username=cassandra.username,
            password=cassandra.password,
            ssl_enabled=cassandra.ssl_enabled,
            ca_file=cassandra.ca_file,
            request_timeout=cassandra.read_timeout_ms / 1000,
        )

    def connect(self, keyspace: str | None = None) -> tuple[Cluster, Session]:
        """Open a session (protocol v5, Cassandra 5.0); the caller shuts the cluster down."""
        auth = PlainTextAuthProvider(self.username, self.password) if self.username else None
        context = None
        if self.ssl_enabled:
            context = ssl.create_default_context(cafile=self.ca_file or None)
        profile = ExecutionProfile(
            load_balancing_policy=DCAwareRoundRobinPolicy(), request_timeout=self.request_timeout
        )
        cluster = Cluster(
            self.host.split(","),
            port=self.port,
            protocol_version=5,
            auth_provider=auth,
            ssl_context=context,
            connect_timeout=self.connect_timeout,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        return cluster, cluster.connect(keyspace)


def connect(
    cassandra: CassandraSettings, *, keyspace: str | None = None
) -> tuple[Cluster, Session]:
    """Driver session for the configured Cassandra, with credentials from the environment; the
    caller shuts the cluster down."""
    return CassandraEndpoint.of(cassandra).connect(keyspace)


# --- connector reads ------------------------------------------------------------------------
_rdd_api = once_per_context(ConnectorRddApi)  # the connector's RDD API, looked up once


def read_table(
    spark: SparkSession, keyspace: str, table: str, *, direct_join: str = "auto"
) -> DataFrame:
    """A connector DataFrame over one table; ``direct_join`` is the connector's
    ``directJoinSetting`` (on | off | auto) for joins against it."""
    return (
        spark.read.format(CASSANDRA_FORMAT)
        .options(keyspace=keyspace, table=table, directJoinSetting=direct_join)
        .load()
    )


def enrolment_table(
    spark: SparkSession, cassandra: CassandraSettings, *, direct_join: str = "on"
) -> DataFrame:
    """``user_enrolments`` with the columns the core reads (joins against it are direct joins)."""
    table = read_table(
        spark, cassandra.keyspace, cassandra.enrolments_table, direct_join=direct_join
    )
    return table.select(*ENROLMENT_COLUMNS)


def read_consumption_for(
    spark: SparkSession, keys: DataFrame, cassandra: CassandraSettings
) -> DataFrame:
    """``user_content_consumption`` rows of the given enrolments by a connector direct join.

    The join restricts the partition key (userid) and the clustering prefix (courseid,
    batchid), so the connector issues one keyed query per enrolment, never a scan.
    """
    table = read_table(spark, cassandra.keyspace, cassandra.consumption_table, direct_join="on")
    return to_table_key_names(keys).join(
        table.select(*CONSUMPTION_COLUMNS), ENROLMENT_TABLE_KEY, "inner"
    )


@dataclass(frozen=True)
class ScanFilters:
    """What a backfill reconciles: all enrolments, or those of some courses, batches, users."""

    courses: tuple[str, ...] = ()
    batches: tuple[str, ...] = ()
    users: DataFrame | None = None  # one column `userid`, e.g. read from a file by Spark

    @property
    def narrowed(self) -> bool:
        return bool(self.courses or self.batches or self.users is not None)

    def restrict_courses_and_batches(self, df: DataFrame) -> DataFrame:
        """``df`` (with ``courseid``, ``batchid``) restricted to the named courses and batches;
        the connector pushes both ``IN`` filters down as far as the table's key allows."""
        if self.courses:
            df = df.where(F.col("courseid").isin(list(self.courses)))
        if self.batches:
            df = df.where(F.col("batchid").isin(list(self.batches)))
        return df


def scan_by_enrolment(
    spark: SparkSession,
    cassandra: CassandraSettings,
    table: str,
    columns: Sequence[str],
    filters: ScanFilters,
) -> DataFrame:
    """A token-range scan of a table keyed ``(userid), courseid, batchid, ...`` with the filters.

    ``courseid IN`` is pushed to Cassandra (the first clustering column); ``batchid IN`` is
    pushed together with it, and filtered by Spark alone (a clustering column can only be
    restricted after the ones before it). Users are a direct join on the partition key: one
    keyed read per user, and no list of users on the driver.
    """
    df = read_table(spark, cassandra.keyspace, table, direct_join="on").select(*columns)
    df = filters.restrict_courses_and_batches(df)
    if filters.users is not None:
        df = filters.users.join(df, "userid", "inner")
    return df


def scan_enrolments(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """Every ``user_enrolments`` row in scope, with the columns the core reads."""
    return scan_by_enrolment(
        spark, cassandra, cassandra.enrolments_table, ENROLMENT_COLUMNS, filters
    )


def scan_consumption(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """Every ``user_content_consumption`` row in scope."""
    return scan_by_enrolment(
        spark, cassandra, cassandra.consumption_table, CONSUMPTION_COLUMNS, filters
    )


def scan_course_batches(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """``course_batch`` rows in scope (``courseid IN`` pushed: the partition key), with their
    certificate templates; a catalogue of batches, small beside the enrolments."""
    table = read_table(spark, cassandra.keyspace, cassandra.course_batch_table)
    return filters.restrict_courses_and_batches(table.select(*COURSE_BATCH_COLUMNS))


def scan_enrolment_certificates(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """Every ``user_enrolments`` row in scope with its status and certificates (repair)."""
    return scan_by_enrolment(
        spark, cassandra, cassandra.enrolments_table, REPAIR_ENROLMENT_COLUMNS, filters
    )


def scan_enrolment_users(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """The distinct users with an enrolment in scope (``userid``), for slicing a backfill.

    A users file is taken as it is, without a scan. Every user (no filter): the first row of
    each ``user_enrolments`` partition (``PER PARTITION LIMIT 1``), half the rows of a scan of
    all of them and no shuffle. Courses or batches: a scan of the key columns with the filters
    pushed down as in every scan, then distinct users.
    """
    if filters.users is not None:
        return filters.users.select("userid").distinct()
    if not filters.narrowed:
        api = _rdd_api(spark)
        return api.partition_keys(spark, cassandra.keyspace, cassandra.enrolments_table, "userid")
    keys = scan_by_enrolment(
        spark, cassandra, cassandra.enrolments_table, ["userid", "courseid", "batchid"], filters
    )
    return keys.select("userid").distinct()


def estimated_table_bytes(session: Session, keyspace: str, table: str) -> float:
    """The table's size by Cassandra's own estimates (``system.size_estimates``, refreshed by
    each node every few minutes); 0 when it has none yet."""
    rows = session.execute(
        "SELECT mean_partition_size, partitions_count FROM system.size_estimates"
        " WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    )
    return float(sum(r.mean_partition_size * r.partitions_count for r in rows))


def current_aggregates(
    spark: SparkSession, cassandra: CassandraSettings, filters: ScanFilters
) -> DataFrame:
    """``user_activity_agg`` rows to compare with, as a relation the core joins against.

    Narrowed backfills (courses, batches or users named) compare by direct join (one keyed
    read per computed row); a full one scans the table once and joins by shuffle.
    """
    direct = "on" if filters.narrowed else "off"
    df = read_table(spark, cassandra.keyspace, cassandra.activity_agg_table, direct_join=direct)
    return df.select(*CURRENT_AGGREGATES_SCHEMA.fieldNames())


# --- writers ----------------------------------------------------------------------------------
AGGREGATE_COLUMNS = ["activity_type", "activity_id", "user_id", "context_id"]
APPENDED_MAPS = ["aggregates", "agg_last_updated"]


def write_options(write: WriteSettings) -> dict[str, str]:
    """Connector write settings shared by both writers.

    Batches of ``threshold.batch.write.size`` rows grouped by replica set, ``write.concurrency``
    batches in flight per task; ``ignoreNulls`` leaves a null column (``completedon``) as it is.
    ``write.max.per.second`` is kept by the driver (``io.throttle``), not by the connector.
    """
    return {
        "spark.cassandra.output.ignoreNulls": "true",
        "spark.cassandra.output.batch.size.rows": str(write.batch_size),
        "spark.cassandra.output.batch.grouping.key": "replica_set",
        "spark.cassandra.output.concurrent.writes": str(write.concurrency),
    }


class _Writers:
    """The connector's RDD API and the two writers' column selectors, built once per
    SparkContext (the selectors do not depend on a batch)."""

    def __init__(self, spark: SparkSession) -> None:
        self.api = _rdd_api(spark)
        self.appending_aggregates = self.api.columns(AGGREGATE_COLUMNS, APPENDED_MAPS)
        self.enrolment_updates = self.api.columns(ENROLMENT_WRITE_COLUMNS)


_writers = once_per_context(_Writers)


def write_activity_aggregates(
    aggregates: DataFrame, cassandra: CassandraSettings, write: WriteSettings, *, rows: int = 0
) -> None:
    """Append ``aggregates``/``agg_last_updated`` at the server (``m = m + ?``).

    Never a DataFrame write: that would replace the whole maps and destroy keys other jobs own
    (``score:*``, ``max_score:*``, ...). The connector's RDD API with its append behaviour writes
    ``UPDATE ... SET aggregates = aggregates + ?, agg_last_updated = agg_last_updated + ?`` in
    batches, from the executors' JVMs. ``rows`` (how many there are) paces the write when
    ``write.max.per.second`` is set.
    """
    writers = _writers(aggregates.sparkSession)
    paced_write(
        aggregates.select(*AGGREGATE_COLUMNS, *APPENDED_MAPS),
        ACTIVITY_AGG_KEY,
        rows=rows,
        per_second=write.max_per_second,
        write=lambda chunk: writers.api.save(
            chunk,
            cassandra.keyspace,
            cassandra.activity_agg_table,
            writers.appending_aggregates,
            write_options(write),
        ),
    )


def write_enrolment_updates(
    updates: DataFrame, cassandra: CassandraSettings, write: WriteSettings, *, rows: int = 0
) -> None:
    """Write status, progress, contentstatus, completedon, datetime through the connector.

    ``contentstatus`` is replaced (docs/behaviour.md §5.5); a null ``completedon`` is left as it
    is (``ignoreNulls``). ``rows`` paces the write as for the aggregates.
    """
    writers = _writers(updates.sparkSession)
    paced_write(
        updates.select(*ENROLMENT_WRITE_COLUMNS),
        ENROLMENT_TABLE_KEY,
        rows=rows,
        per_second=write.max_per_second,
        write=lambda chunk: writers.api.save(
            chunk,
            cassandra.keyspace,
            cassandra.enrolments_table,
            writers.enrolment_updates,
            write_options(write),
        ),
    )
