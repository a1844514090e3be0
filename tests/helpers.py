"""Helpers shared by the tests (and the benchmarks): literal inputs, the spec's fixture data,
the local stack's settings, and small clients for Cassandra, Redis and Kafka."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    MapType,
    StructType,
    _parse_datatype_string,
)

from devkit.paths import PROJECT_ROOT
from devkit.stack import log_events, messages_on, stack_overrides
from devkit.stack import stack_config as _stack_config
from devkit.stack import sync_request as _sync_request
from enrolment_reconciliation.core.progress import (
    to_user_consumption,
    with_consumption_defaults,
    with_enrolment_state,
)
from enrolment_reconciliation.core.requests import to_sync_requests
from enrolment_reconciliation.core.schemas import (
    CONSUMPTION_SCHEMA,
    COURSE_STRUCTURE_SCHEMA,
    ENROLMENT_SCHEMA,
    ENROLMENT_UPDATE_SCHEMA,
    RAW_REQUEST_SCHEMA,
)
from enrolment_reconciliation.core.structure import course_structure, parse_relation_key
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.runtime.config import JobConfig, load_config

ROOT = PROJECT_ROOT
TEST_KEYSPACE = "er_test"

NOW = datetime(2026, 11, 21, 10, 30, 0, 123000, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NOW_NAIVE = NOW.replace(tzinfo=None)  # how Spark returns timestamps (session time zone UTC)

# A course C with a unit U, an optional leaf L3 in both, and consumed contents L1 and L3.
UNIT_COURSE_KEYS = {
    "C:C:leafnodes": {"L1", "L2", "L3"},
    "C:C:optionalnodes": {"L3"},
    "C:U:leafnodes": {"L1", "L3"},
    "C:U:optionalnodes": {"L3"},
    "C:L1:ancestors": {"U", "C"},
    "C:L3:ancestors": {"U", "C"},
}


# --- the original job's fixtures (docs/behaviour.md §12.1)
# ------------------------------------------------- ER-3 / ER-9 / AAU: course001 of the original ER
# and AAU fixtures (CASE_2).
USER, COURSE, BATCH = "user001", "course001", "Batch1"
CASE_2 = {
    f"{COURSE}:{COURSE}:leafnodes": {"R1", "R2", "R3"},
    f"{COURSE}:unit1:leafnodes": {"R1", "R3"},
    f"{COURSE}:unit2:leafnodes": {"R2", "R3"},
    f"{COURSE}:R1:ancestors": {"unit1", COURSE},
    f"{COURSE}:R2:ancestors": {"unit2", COURSE},
    f"{COURSE}:R3:ancestors": {"unit1", "unit2", COURSE},
}
CASE_2_ROWS = [(USER, COURSE, BATCH, r, 2) for r in ("R1", "R2", "R3")]


# --- literal inputs -----------------------------------------------------------------------------
def _literal(value: Any, dtype: DataType) -> Column:
    if value is None:
        return F.lit(None).cast(dtype)
    if isinstance(dtype, StructType):
        values = value.values() if isinstance(value, dict) else value
        return F.struct(
            *[
                _literal(v, f.dataType).alias(f.name)
                for v, f in zip(values, dtype.fields, strict=True)
            ]
        )
    if isinstance(dtype, ArrayType):
        return F.array(*[_literal(v, dtype.elementType) for v in value]).cast(dtype)
    if isinstance(dtype, MapType):
        pairs = [
            _literal(x, t)
            for k, v in value.items()
            for x, t in ((k, dtype.keyType), (v, dtype.valueType))
        ]
        return F.create_map(*pairs).cast(dtype)
    return F.lit(value).cast(dtype)


def literal_frame(
    spark: SparkSession, rows: Iterable[tuple], schema: StructType | str
) -> DataFrame:
    """A DataFrame of literal rows built in the JVM (``spark.createDataFrame`` from a Python list
    starts a Python worker on every action: about 0.4 s each on this machine)."""
    if isinstance(schema, str):
        schema = _parse_datatype_string(schema)
    rows = list(rows)
    if len(rows) > 100:  # a literal per row is cheap to run but slow to plan
        return spark.createDataFrame(rows, schema)
    if not rows:
        return spark.range(0).select(
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields]
        )
    structs = [_literal(tuple(r), schema) for r in rows]
    return spark.range(1).select(F.inline(F.array(*structs)))


def sync_request(user: Any, course: Any, batch: Any, action: str = "user-enrolment-sync") -> str:
    return _sync_request(user, course, batch, action, ets=1683556693275)


def raw_requests(spark: SparkSession, payloads: list[str | None]) -> DataFrame:
    rows = [
        (None if p is None else p.encode(), "sync", 0, offset) for offset, p in enumerate(payloads)
    ]
    return literal_frame(spark, rows, RAW_REQUEST_SCHEMA)


def parsed_requests(spark: SparkSession, payloads: list[str | None]) -> DataFrame:
    return to_sync_requests(raw_requests(spark, payloads))


def consumption(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Rows (userid, courseid, batchid, contentid, status[, viewcount, completedcount])."""
    full = [tuple(r) + (None,) * (7 - len(r)) for r in rows]
    return literal_frame(spark, full, CONSUMPTION_SCHEMA)


def user_consumption(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return to_user_consumption(with_consumption_defaults(consumption(spark, rows)))


def enrolments(spark: SparkSession, rows: Iterable[tuple]) -> DataFrame:
    """Rows (userid, courseid, batchid, status, completedon[, progress, contentstatus])."""
    full = []
    for user, course, batch, status, completedon, *rest in rows:
        progress_ = rest[0] if rest else None
        contentstatus = rest[1] if len(rest) > 1 else None
        full.append((user, course, batch, status, progress_, contentstatus, completedon))
    return literal_frame(spark, full, ENROLMENT_SCHEMA)


def progress(
    spark: SparkSession, rows: list[tuple], enrolment_rows: Iterable[tuple] = ()
) -> DataFrame:
    """Per-enrolment inputs as the keyed reader builds them."""
    return with_enrolment_state(user_consumption(spark, rows), enrolments(spark, enrolment_rows))


def structure(
    spark: SparkSession,
    keys: Mapping[str, set[str]],
    statuses: Mapping[str, str | None] | None = None,
    *,
    courses: Iterable[str] = (),
    faults: Mapping[str, str] | None = None,
) -> DataFrame:
    """The structure frame the Redis reader would build from these keys."""
    members = {k: frozenset(v) for k, v in keys.items()}
    found = {p[0] for k in members if (p := parse_relation_key(k))}
    statuses = statuses or {}
    rows = [
        course_structure(c, members, faults=faults, collection_status=statuses.get(c)).to_row()
        for c in sorted(found | set(courses) | set(statuses))
    ]
    return literal_frame(spark, rows, COURSE_STRUCTURE_SCHEMA)


def expected_updates(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return literal_frame(spark, rows, ENROLMENT_UPDATE_SCHEMA)


def _sortable(df: DataFrame) -> DataFrame:
    """Maps cannot be ordered; compare contentstatus as its sorted entries."""
    return df.withColumn("contentstatus", F.array_sort(F.map_entries("contentstatus")))


def assert_updates(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(
        _sortable(actual), _sortable(expected), ignore_row_order=True, ignore_nullable=True
    )


def name_uuid(*parts: str) -> str:
    """The mid suffix the job derives: SHA-256 of the parts joined by '|', UUID-formatted."""
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


# --- the local stack -----------------------------------------------------------------------------
def stack_config(*overrides: str, keyspace: str = TEST_KEYSPACE) -> JobConfig:
    """The job's config pointed at the local stack and a test keyspace."""
    return _stack_config(*overrides, keyspace=keyspace)


def as_cli_args(overrides: Iterable[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def insert_consumption(cql, rows: list[tuple]) -> None:
    stmt = cql.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status,"
        " viewcount, completedcount) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    for r in rows:
        cql.execute(stmt, tuple(r) + (None,) * (7 - len(r)))


def insert_enrolments(cql, rows: list[tuple]) -> None:
    """Rows (userid, courseid, batchid, status, completedon)."""
    stmt = cql.prepare(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, completedon, active)"
        " VALUES (?, ?, ?, ?, ?, true)"
    )
    for r in rows:
        cql.execute(stmt, r)


def put_keys(client, keys: Mapping[str, set[str]]) -> None:
    for key, members in keys.items():
        client.delete(key)
        client.sadd(key, *members)


def produce(cfg: JobConfig, messages: list[bytes | None]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, acks="all")
    for m in messages:  # a tombstone (no value) needs a key
        producer.send(cfg.kafka.input_topic, m, key=b"tombstone" if m is None else None)
    producer.flush()
    producer.close()


FAULT_INJECTION = ROOT / "tests" / "fault_injection"  # its sitecustomize reads ER_FAULT_POINT


def with_fault_injection(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the fault injection on the job's ``PYTHONPATH`` when it names a fault point."""
    env = dict(env)
    if env.get("ER_FAULT_POINT"):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(FAULT_INJECTION), env.get("PYTHONPATH")) if p
        )
    return env


def spark_submit(mode: str, args: list[str], *, timeout: int = 600, **env: str):
    """Run ``./spark-submit.sh <mode> args`` and return the completed process (``ER_FAULT_POINT``
    in ``env``: killed at that milestone)."""
    return subprocess.run(
        [str(ROOT / "spark-submit.sh"), mode, *args],
        cwd=ROOT,
        env=with_fault_injection({**os.environ, **env}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(text: str, event: str) -> list[dict]:
    """The job's JSON log lines of one ``event`` (a run's standard error)."""
    return log_events(text, event)


# --- the stream's end-to-end tests ----------------------------------------------------------------
STREAM_KEYSPACE, STREAM_REDIS_DB = "er_test_stream", 14
SCORES = {"score:do_x": 7.0, "max_score:do_x": 10.0, "attempts_count:do_x": 2.0}


def config_for(env: str, tmp_path) -> tuple[JobConfig, list[str]]:
    """The stream tests' config (own env, checkpoint and Redis db) and the same as CLI args."""
    overrides = [
        *stack_overrides(STREAM_KEYSPACE),
        f"redis.database.relationCache.id={STREAM_REDIS_DB}",
        f"stream.checkpoint.location={tmp_path}/checkpoint",
        "service.search.basePath=http://127.0.0.1:9/search",
    ]
    cfg = load_config(env=env, overrides=overrides)
    return cfg, ["--env", env, *as_cli_args(overrides)]


def run_job(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """``./spark-submit.sh stream --trigger available-now`` with ``args``."""
    return spark_submit("stream", ["--trigger", "available-now", *args], **env)


def seed(cql, cfg: JobConfig) -> None:
    """CASE_2 (user001 completes course001) and a partial learner; user001 already has
    assessment scores in user_activity_agg that the job must keep."""
    for table in ("user_content_consumption", "user_enrolments", "user_activity_agg"):
        cql.execute(f"TRUNCATE {table}", timeout=60)
    client = redis_client(cfg.redis)
    client.flushdb()
    for key, members in CASE_2.items():
        client.sadd(key, *members)
    client.close()
    ins = cql.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    for user, content, status in [
        ("user001", "R1", 2),
        ("user001", "R2", 2),
        ("user001", "R3", 2),
        ("user002", "R1", 2),
        ("user002", "R2", 1),
    ]:
        cql.execute(ins, (user, "course001", "Batch1", content, status))
    enrol = cql.prepare(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, active)"
        " VALUES (?, ?, ?, ?, true)"
    )
    for user in ("user001", "user002"):
        cql.execute(enrol, (user, "course001", "Batch1", 1))
    cql.execute(
        "UPDATE user_activity_agg SET aggregates = aggregates + %s,"
        " agg_last_updated = agg_last_updated + %s"
        " WHERE activity_type='Course' AND activity_id='course001' AND user_id='user001'"
        " AND context_id='cb:Batch1'",
        (SCORES, {k: datetime(2026, 1, 1) for k in SCORES}),
    )


# --- comparing whole runs ---------------------------------------------------------------------
@dataclass
class Tables:
    enrolments: dict[tuple, tuple]
    aggregates: dict[tuple, dict]


def read_tables(cfg: JobConfig) -> Tables:
    """The job's two output tables, timestamps reduced to whether they are set."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        enrolments = {
            (r.userid, r.courseid, r.batchid): (
                r.status,
                r.progress,
                dict(r.contentstatus or {}),
                r.completedon is not None,
                r.active,
                r.enrolled_date,
            )
            for r in session.execute(
                "SELECT userid, courseid, batchid, status, progress, contentstatus, completedon,"
                " active, enrolled_date FROM user_enrolments"
            )
        }
        aggregates = {
            (r.activity_id, r.user_id, r.context_id): dict(r.aggregates or {})
            for r in session.execute(
                "SELECT activity_id, user_id, context_id, aggregates FROM user_activity_agg"
            )
        }
    finally:
        cluster.shutdown()
    return Tables(enrolments, aggregates)


def event_copies(cfg: JobConfig) -> dict[str, list[dict]]:
    """Certificate and AUDIT events by mid, every copy, without their timestamps (the batch
    time differs between runs, and between a copy and its resend)."""
    copies: dict[str, list[dict]] = {}
    for topic in (cfg.kafka.certissue_topic, cfg.kafka.audit_topic):
        for event in messages_on(cfg, topic):
            for stamp in ("ets", "syncts"):
                event.pop(stamp, None)
            copies.setdefault(event["mid"], []).append(event)
    return copies


def events_of(cfg: JobConfig) -> dict[str, dict]:
    """Certificate and AUDIT events by mid, without their timestamps (the last copy of each)."""
    return {mid: copies[-1] for mid, copies in event_copies(cfg).items()}


class KilledAtFaultPoint(BaseException):
    """The process dying at a fault point: nothing after it runs but the ``finally`` blocks,
    and what the run left on disk and in the tables is what the next run finds. (The cold
    benchmark instrument kills a real ``./spark-submit.sh backfill`` process with SIGKILL.)"""
