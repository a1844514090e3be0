"""Cassandra I/O: driver sessions, schema, connector direct joins, and the two writers.

Reads go through the Spark Cassandra Connector as **direct joins** of a micro-batch's keys
(never a scan). ``user_enrolments`` is written with the connector; ``user_activity_agg`` is
written with prepared ``m = m + ?`` UPDATEs from the executors, because a connector write of a
map column replaces the whole map and would destroy other jobs' keys (design.md §3.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session
from cassandra.policies import DCAwareRoundRobinPolicy
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.schemas import CONSUMPTION_COLUMNS, ENROLMENT_COLUMNS

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
    cluster = Cluster(
        [host],
        port=port,
        protocol_version=5,
        auth_provider=auth,
        connect_timeout=connect_timeout,
        load_balancing_policy=DCAwareRoundRobinPolicy(),
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
