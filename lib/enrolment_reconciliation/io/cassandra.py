"""Cassandra I/O: driver sessions, schema, connector reads (keyed and scans), the two writers.

Reads go through the Spark Cassandra Connector: **direct joins** of a batch's keys for the
stream and ``sync`` (never a scan), and token-range **scans** with every filter the key layout
allows pushed down for the backfill. ``user_enrolments`` is written with the connector;
``user_activity_agg`` with prepared ``m = m + ?`` UPDATEs from the executors, because a
connector write of a map column replaces the whole map and would destroy other jobs' keys
(design.md §3.1). Both writers can be throttled (``write.max.per.second``).
"""

from __future__ import annotations

import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.schemas import (
    CONSUMPTION_COLUMNS,
    CURRENT_AGGREGATES_SCHEMA,
    ENROLMENT_COLUMNS,
    ENROLMENT_TABLE_KEY,
    ENROLMENT_WRITE_COLUMNS,
    to_table_key_names,
)

if TYPE_CHECKING:
    from enrolment_reconciliation.config import JobConfig

SCHEMA_CQL = Path(__file__).resolve().parents[3] / "conf" / "cql" / "sunbird_courses.cql"
SIMPLE_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
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

    @classmethod
    def from_config(cls, cfg: JobConfig) -> CassandraEndpoint:
        return cls(
            host=cfg.cassandra_host,
            port=cfg.cassandra_port,
            username=cfg.credentials.cassandra_username,
            password=cfg.credentials.cassandra_password,
            ssl_enabled=cfg.cassandra_ssl_enabled,
            ca_file=cfg.cassandra_ca_file,
            request_timeout=cfg.cassandra_read_timeout_ms / 1000,
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
            connect_timeout=10,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        return cluster, cluster.connect(keyspace)


def connect_from_config(cfg: JobConfig, *, keyspace: str | None = None) -> tuple[Cluster, Session]:
    """Driver session for the configured Cassandra, with credentials from the environment."""
    return CassandraEndpoint.from_config(cfg).connect(keyspace)


def schema_statements(keyspace: str, replication: str = SIMPLE_REPLICATION) -> list[str]:
    """The CQL statements of ``cql/sunbird_courses.cql`` for ``keyspace``."""
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


def enrolment_table(spark: SparkSession, cfg: JobConfig, *, direct_join: str = "on") -> DataFrame:
    """``user_enrolments`` with the columns the core reads (joins against it are direct joins)."""
    table = read_table(spark, cfg.keyspace, cfg.enrolments_table, direct_join=direct_join)
    return table.select(*ENROLMENT_COLUMNS)


def read_consumption_for(spark: SparkSession, keys: DataFrame, cfg: JobConfig) -> DataFrame:
    """``user_content_consumption`` rows of the given enrolments by a connector direct join.

    The join restricts the partition key (userid) and the clustering prefix (courseid,
    batchid), so the connector issues one keyed query per enrolment, never a scan.
    """
    table = read_table(spark, cfg.keyspace, cfg.consumption_table, direct_join="on")
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


def scan_by_enrolment(
    spark: SparkSession, cfg: JobConfig, table: str, columns: Sequence[str], filters: ScanFilters
) -> DataFrame:
    """A token-range scan of a table keyed ``(userid), courseid, batchid, ...`` with the filters.

    ``courseid IN`` is pushed to Cassandra (the first clustering column); ``batchid IN`` is
    pushed together with it, and filtered by Spark alone (a clustering column can only be
    restricted after the ones before it). Users are a direct join on the partition key: one
    keyed read per user, and no list of users on the driver.
    """
    df = read_table(spark, cfg.keyspace, table, direct_join="on").select(*columns)
    if filters.courses:
        df = df.where(F.col("courseid").isin(list(filters.courses)))
    if filters.batches:
        df = df.where(F.col("batchid").isin(list(filters.batches)))
    if filters.users is not None:
        df = filters.users.join(df, "userid", "inner")
    return df


def scan_enrolments(spark: SparkSession, cfg: JobConfig, filters: ScanFilters) -> DataFrame:
    """Every ``user_enrolments`` row in scope, with the columns the core reads."""
    return scan_by_enrolment(spark, cfg, cfg.enrolments_table, ENROLMENT_COLUMNS, filters)


def scan_consumption(spark: SparkSession, cfg: JobConfig, filters: ScanFilters) -> DataFrame:
    """Every ``user_content_consumption`` row in scope."""
    return scan_by_enrolment(spark, cfg, cfg.consumption_table, CONSUMPTION_COLUMNS, filters)


def current_aggregates(spark: SparkSession, cfg: JobConfig, filters: ScanFilters) -> DataFrame:
    """``user_activity_agg`` rows to compare with, as a relation the core joins against.

    Narrowed backfills compare by direct join (one keyed read per computed row); a full one
    scans the table once (``context_id IN`` pushed when batches are named) and joins by shuffle.
    """
    direct = "on" if filters.narrowed else "off"
    df = read_table(spark, cfg.keyspace, cfg.activity_agg_table, direct_join=direct)
    df = df.select(*CURRENT_AGGREGATES_SCHEMA.fieldNames())
    if filters.batches and not filters.narrowed:
        df = df.where(F.col("context_id").isin([f"cb:{b}" for b in filters.batches]))
    return df


# --- writers ----------------------------------------------------------------------------------
APPEND_AGGREGATES_CQL = (
    "UPDATE {keyspace}.{table} SET aggregates = aggregates + ?,"
    " agg_last_updated = agg_last_updated + ?"
    " WHERE activity_type = ? AND activity_id = ? AND user_id = ? AND context_id = ?"
)

# One driver session and prepared statement per executor Python worker (workers are reused
# across tasks and batches).
_EXECUTOR_SESSIONS: dict[CassandraEndpoint, tuple[Cluster, Session]] = {}
_PREPARED: dict[tuple[CassandraEndpoint, str], PreparedStatement] = {}


class RateLimiter:
    """On average at most ``rate`` units per second (a token bucket that may go into debt, so a
    batch larger than one second's worth still passes, and the next one waits)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate
        self._last = clock()

    def acquire(self, units: float) -> None:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= units
        if self._tokens < 0:
            self._sleep(-self._tokens / self._rate)


@dataclass(frozen=True)
class AggregateWriteSettings:
    """Plain values the executors need to append aggregates (picklable, no secrets in repr)."""

    endpoint: CassandraEndpoint
    keyspace: str
    table: str
    batch_size: int
    concurrency: int
    retries: int
    rows_per_second: float = 0.0  # per task; 0 = unbounded

    @classmethod
    def from_config(cls, cfg: JobConfig, *, tasks: int = 1) -> AggregateWriteSettings:
        return cls(
            endpoint=CassandraEndpoint.from_config(cfg),
            keyspace=cfg.keyspace,
            table=cfg.activity_agg_table,
            batch_size=cfg.write_batch_size,
            concurrency=cfg.write_concurrency,
            retries=cfg.write_retries,
            rows_per_second=cfg.max_writes_per_second / max(tasks, 1),
        )


def _executor_statement(settings: AggregateWriteSettings) -> tuple[Session, PreparedStatement]:
    if settings.endpoint not in _EXECUTOR_SESSIONS:
        _EXECUTOR_SESSIONS[settings.endpoint] = settings.endpoint.connect()
    session = _EXECUTOR_SESSIONS[settings.endpoint][1]
    cql = APPEND_AGGREGATES_CQL.format(keyspace=settings.keyspace, table=settings.table)
    if (settings.endpoint, cql) not in _PREPARED:
        _PREPARED[(settings.endpoint, cql)] = session.prepare(cql)
    return session, _PREPARED[(settings.endpoint, cql)]


def _batches(
    statement: PreparedStatement, rows: Iterable[Any], size: int
) -> Iterator[BatchStatement]:
    """Logged batches of ``size`` UPDATEs (course and unit rows together, as the original)."""
    current = BatchStatement(batch_type=BatchType.LOGGED)
    for row in rows:
        values = (
            row.aggregates,
            row.agg_last_updated,
            row.activity_type,
            row.activity_id,
            row.user_id,
            row.context_id,
        )
        current.add(statement, values)
        if len(current) >= size:
            yield current
            current = BatchStatement(batch_type=BatchType.LOGGED)
    if len(current):
        yield current


def _execute(
    session: Session,
    batches: Iterable[BatchStatement],
    concurrency: int,
    limiter: RateLimiter | None,
) -> tuple[int, list[tuple[BatchStatement, Exception]]]:
    """Run the batches with ``concurrency`` in flight; returns (count, failed with errors)."""
    in_flight: deque = deque()
    failed: list[tuple[BatchStatement, Exception]] = []
    count = 0

    def settle_oldest() -> None:
        batch, future = in_flight.popleft()
        try:
            future.result()
        except Exception as error:  # retried by the caller, then raised
            failed.append((batch, error))

    for batch in batches:
        if limiter:
            limiter.acquire(len(batch))
        if len(in_flight) >= concurrency:
            settle_oldest()
        in_flight.append((batch, session.execute_async(batch)))
        count += 1
    while in_flight:
        settle_oldest()
    return count, failed


def append_partition(settings: AggregateWriteSettings, rows: Iterable[Any]) -> Iterator[int]:
    """Append one partition's aggregate rows as logged batches of ``batch_size`` UPDATEs,
    ``concurrency`` in flight, at most ``rows_per_second``; each failed batch is retried
    ``retries`` times. Yields the number of batches executed."""
    session, statement = _executor_statement(settings)
    limiter = RateLimiter(settings.rows_per_second) if settings.rows_per_second > 0 else None
    count, failed = _execute(
        session, _batches(statement, rows, settings.batch_size), settings.concurrency, limiter
    )
    for attempt in range(settings.retries):
        if not failed:
            break
        time.sleep(min(2**attempt, 8))
        _, failed = _execute(session, [b for b, _ in failed], settings.concurrency, limiter)
    if failed:
        raise RuntimeError(
            f"{len(failed)} {settings.table} batches failed after {settings.retries + 1} "
            f"attempts: {failed[0][1]!r}"
        )
    yield count


def write_activity_aggregates(aggregates: DataFrame, cfg: JobConfig) -> int:
    """Append ``aggregates``/``agg_last_updated`` at the server (``m = m + ?``), from executors.

    Never a connector DataFrame write: that would replace the whole maps and destroy keys other
    jobs own (``score:*``, ``max_score:*``, ...). Returns the number of CQL batches executed
    (the original's ``db-update-count``).
    """
    tasks = aggregates.sparkSession.sparkContext.defaultParallelism
    settings = AggregateWriteSettings.from_config(cfg, tasks=tasks)
    return int(aggregates.rdd.mapPartitions(lambda rows: append_partition(settings, rows)).sum())


def enrolment_write_options(cfg: JobConfig, *, tasks: int = 1, row_bytes: float = 0) -> dict:
    """Connector options of the ``user_enrolments`` write.

    ``ignoreNulls`` leaves a null ``completedon`` unset, so the column keeps its value. The
    connector's throttle is in MB/s per task: ``write.max.per.second`` rows of ``row_bytes``
    are spread over the write's tasks.
    """
    options = {
        "keyspace": cfg.keyspace,
        "table": cfg.enrolments_table,
        "spark.cassandra.output.ignoreNulls": "true",
        "spark.cassandra.output.batch.size.rows": str(cfg.write_batch_size),
    }
    if cfg.max_writes_per_second > 0:
        per_task = cfg.max_writes_per_second * max(row_bytes, 64) / max(tasks, 1)
        options["spark.cassandra.output.throughputMBPerSec"] = f"{per_task / 1024 / 1024:.6f}"
    return options


def write_enrolment_updates(updates: DataFrame, cfg: JobConfig, *, row_bytes: float = 0) -> None:
    """Write status, progress, contentstatus, completedon, datetime through the connector."""
    rows = updates.select(*ENROLMENT_WRITE_COLUMNS)
    tasks = updates.sparkSession.sparkContext.defaultParallelism
    options = enrolment_write_options(cfg, tasks=tasks, row_bytes=row_bytes)
    rows.write.format(CASSANDRA_FORMAT).mode("append").options(**options).save()
