"""Load a generated sample into Cassandra and the Redis relation cache.

Cassandra rows go through prepared INSERTs run with ``execute_concurrent`` (about 64 requests in
flight), one lazy stream over both tables, so a large sample is generated once and never held in
memory. A user's rows of one table share the partition key ``userid``, so they are sent as
single-partition UNLOGGED batches of up to ``batch_rows`` INSERTs: on a small local node this
loads about six times faster than one request per row, and a single-partition batch costs the
server no more than the separate writes (no batch log, no multi-partition warning).
Relation-cache keys are written as the original relation-cache-updater writes them: ``DEL key``
then ``SADD key m1 m2 …`` (a SET, not a list), pipelined in chunks.

Example::

    cfg = load_config(overrides=["lms-cassandra.keyspace=er_bench"])
    load_sample(generate_sample(users=10_000), cfg, truncate=True)
    # {'courses': 5, 'users': 10000, 'enrolments': ..., 'consumption': ...,
    #  'relation_cache_keys': ...}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import redis
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    IntegerType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from devkit.sample.data import (
    ConsumptionRow,
    CourseBatchRow,
    EnrolmentRow,
    SampleData,
)
from devkit.schema import apply_schema
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client

if TYPE_CHECKING:
    from cassandra.cluster import Session
    from cassandra.query import PreparedStatement

    from enrolment_reconciliation.runtime.config import JobConfig

DEFAULT_CONCURRENCY = 64
# 20 rows of ~200 bytes stay under Cassandra's 5 KiB batch_size_warn_threshold.
DEFAULT_BATCH_ROWS = 20
REDIS_CHUNK_KEYS = 500


def _insert_cql(keyspace: str, table: str, columns: Iterable[str]) -> str:
    names = list(columns)
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {keyspace}.{table} ({', '.join(names)}) VALUES ({marks})"


def _partition_writes(
    insert: PreparedStatement, rows: Sequence[tuple[Any, ...]], batch_rows: int
) -> Iterator[tuple[PreparedStatement | BatchStatement, tuple[Any, ...] | None]]:
    # Row tuples are in the INSERT's column order, so they bind as they are.
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        if len(chunk) == 1:
            yield insert, chunk[0]
            continue
        batch = BatchStatement(BatchType.UNLOGGED)
        for row in chunk:
            batch.add(insert, row)
        yield batch, None


def _statements(
    sample: SampleData,
    enrolment_insert: PreparedStatement,
    consumption_insert: PreparedStatement,
    counts: dict[str, int],
    batch_rows: int,
) -> Iterator[tuple[PreparedStatement | BatchStatement, tuple[Any, ...] | None]]:
    for activity in sample.activities():
        counts["enrolments"] += len(activity.enrolments)
        counts["consumption"] += len(activity.consumption)
        yield from _partition_writes(enrolment_insert, activity.enrolments, batch_rows)
        yield from _partition_writes(consumption_insert, activity.consumption, batch_rows)


def write_sample_rows(
    session: Session,
    sample: SampleData,
    *,
    keyspace: str,
    enrolments_table: str,
    consumption_table: str,
    concurrency: int = DEFAULT_CONCURRENCY,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> dict[str, int]:
    """INSERT every enrolment and consumption row; returns ``{'enrolments': n, 'consumption': m}``.

    A user's rows of one table go in single-partition UNLOGGED batches of ``batch_rows``
    (``batch_rows=1``: one INSERT per row).

    Example: ``write_sample_rows(session, sample, keyspace="sunbird_courses",
    enrolments_table="user_enrolments", consumption_table="user_content_consumption")``
    """
    if concurrency < 1 or batch_rows < 1:
        raise ValueError(
            f"concurrency and batch_rows must be >= 1, got {concurrency}, {batch_rows}"
        )
    enrolment_insert = session.prepare(
        _insert_cql(keyspace, enrolments_table, EnrolmentRow._fields)
    )
    consumption_insert = session.prepare(
        _insert_cql(keyspace, consumption_table, ConsumptionRow._fields)
    )
    counts = {"enrolments": 0, "consumption": 0}
    results = execute_concurrent(
        session,
        _statements(sample, enrolment_insert, consumption_insert, counts, batch_rows),
        concurrency=concurrency,
        raise_on_first_error=True,
        results_generator=True,
    )
    for _ in results:  # drain; the first failure raises
        pass
    return counts


def write_relation_cache(
    client: redis.Redis,
    keys: Mapping[str, Iterable[str]],
    *,
    chunk_keys: int = REDIS_CHUNK_KEYS,
) -> int:
    """Write each key as a SET with ``DEL`` + ``SADD`` (as DataCache.createListWithRetry does).

    Keys with no members are skipped. Returns the number of keys written.
    Example: ``write_relation_cache(redis.Redis(db=10), {"C:C:leafnodes": {"R1", "R2"}})`` -> 1
    """
    written = 0
    pipe = client.pipeline(transaction=False)
    for key, members in keys.items():
        values = sorted(set(members))
        if not values:
            continue
        pipe.delete(key)
        pipe.sadd(key, *values)
        written += 1
        if written % chunk_keys == 0:
            pipe.execute()
    pipe.execute()
    return written


def write_course_batches(session: Session, sample: SampleData, *, keyspace: str, table: str) -> int:
    """INSERT the sample's ``course_batch`` rows (a few per course); returns how many."""
    insert = session.prepare(_insert_cql(keyspace, table, CourseBatchRow._fields))
    rows = list(sample.course_batches())
    execute_concurrent(session, [(insert, row) for row in rows], raise_on_first_error=True)
    return len(rows)


def _prepare_stores(
    session: Session, client: redis.Redis, cfg: JobConfig, sample: SampleData, *, truncate: bool
) -> None:
    """Apply the schema; with ``truncate``, empty the job's tables and relation-cache db; write
    the sample's batches."""
    apply_schema(session, cfg.cassandra.keyspace)
    if truncate:
        tables = (
            cfg.cassandra.consumption_table,
            cfg.cassandra.enrolments_table,
            cfg.cassandra.activity_agg_table,
            cfg.cassandra.course_batch_table,
        )
        for table in tables:
            session.execute(f"TRUNCATE {cfg.cassandra.keyspace}.{table}", timeout=300)
        client.flushdb()
    write_course_batches(
        session, sample, keyspace=cfg.cassandra.keyspace, table=cfg.cassandra.course_batch_table
    )


def load_sample(
    sample: SampleData,
    cfg: JobConfig,
    *,
    truncate: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> dict[str, int]:
    """Apply the schema, write the sample's rows and relation-cache keys; return the counts.

    ``truncate=True`` first empties the consumption, enrolment, activity-aggregate and batch
    tables of ``cfg.cassandra.keyspace`` and flushes Redis db ``cfg.redis.relation_cache_db``
    (only that db).

    Example::

        load_sample(generate_sample(seed=1), load_config(), truncate=True)
        # {'courses': 5, 'users': 50, 'enrolments': ..., 'consumption': ...,
        #  'relation_cache_keys': ...}
    """
    cluster, session = connect(cfg.cassandra)
    client = redis_client(cfg.redis)
    try:
        _prepare_stores(session, client, cfg, sample, truncate=truncate)
        rows = write_sample_rows(
            session,
            sample,
            keyspace=cfg.cassandra.keyspace,
            enrolments_table=cfg.cassandra.enrolments_table,
            consumption_table=cfg.cassandra.consumption_table,
            concurrency=concurrency,
            batch_rows=batch_rows,
        )
        keys = write_relation_cache(client, sample.relation_cache())
    finally:
        client.close()
        cluster.shutdown()
    return {
        "courses": len(sample.courses),
        "users": sample.users,
        **rows,
        "relation_cache_keys": keys,
    }


def _user_rows(sample: SampleData, table: str, indices: Iterable[Any]) -> Iterator[tuple]:
    for index in indices:
        activity = sample.user_activity(int(index[0]))
        yield from (activity.enrolments if table == "enrolments" else activity.consumption)


def load_sample_with_spark(
    spark: SparkSession, sample: SampleData, cfg: JobConfig, *, truncate: bool = False
) -> dict[str, int]:
    """Like :func:`load_sample`, for large samples: the executors generate the users' rows (each
    user from its own seed) and the connector writes them, so nothing passes through the
    driver. Returns the same counts.
    """
    cluster, session = connect(cfg.cassandra)
    client = redis_client(cfg.redis)
    try:
        _prepare_stores(session, client, cfg, sample, truncate=truncate)
        keys = write_relation_cache(client, sample.relation_cache())
    finally:
        client.close()
        cluster.shutdown()
    counts = _write_user_rows(spark, sample, cfg, ("enrolments", "consumption"))
    return {
        "courses": len(sample.courses),
        "users": sample.users,
        **counts,
        "relation_cache_keys": keys,
    }


def _write_user_rows(
    spark: SparkSession, sample: SampleData, cfg: JobConfig, names: tuple[str, ...]
) -> dict[str, int]:
    parts = max(spark.sparkContext.defaultParallelism * 4, sample.users // 2000)
    users = spark.range(sample.users, numPartitions=parts).rdd
    tables = {
        "enrolments": (cfg.cassandra.enrolments_table, EnrolmentRow),
        "consumption": (cfg.cassandra.consumption_table, ConsumptionRow),
    }
    counts = {}
    for name in names:
        table, row_type = tables[name]
        rows = users.mapPartitions(partial(_user_rows, sample, name))
        frame = spark.createDataFrame(rows, _schema(row_type)).persist()
        counts[name] = frame.count()
        frame.write.format("org.apache.spark.sql.cassandra").mode("append").options(
            keyspace=cfg.cassandra.keyspace, table=table
        ).save()
        frame.unpersist()
    return counts


def restore_with_spark(spark: SparkSession, sample: SampleData, cfg: JobConfig) -> int:
    """Put back what a backfill changes (``user_enrolments`` as loaded, ``user_activity_agg``
    empty), so the next run starts from the loaded state without reloading the consumption.
    Returns the enrolments written."""
    cluster, session = connect(cfg.cassandra)
    try:
        for table in (cfg.cassandra.enrolments_table, cfg.cassandra.activity_agg_table):
            session.execute(f"TRUNCATE {cfg.cassandra.keyspace}.{table}", timeout=300)
    finally:
        cluster.shutdown()
    return _write_user_rows(spark, sample, cfg, ("enrolments",))["enrolments"]


def _schema(row_type: type) -> StructType:
    """The Spark schema of a row type's Cassandra columns."""
    kinds = {
        "status": IntegerType(),
        "progress": IntegerType(),
        "viewcount": IntegerType(),
        "completedcount": IntegerType(),
        "active": BooleanType(),
        "contentstatus": MapType(StringType(), IntegerType()),
        "issued_certificates": ArrayType(MapType(StringType(), StringType())),
    }
    timestamps = {
        "enrolled_date",
        "completedon",
        "datetime",
        "last_access_time",
        "last_updated_time",
        "last_completed_time",
    }
    return StructType(
        [
            StructField(
                name,
                TimestampType() if name in timestamps else kinds.get(name, StringType()),
                True,
            )
            for name in row_type._fields  # type: ignore[attr-defined]
        ]
    )
