"""The original job's access pattern, as a per-request reconciler in plain Python.

Per sync request, as the Flink job does (docs/behaviour.md §2-§6): one consumption read, one Redis
call per relation-cache key, one logged batch of aggregate UPDATEs, one enrolment read, then the
enrolment UPDATE and, on completion, the certificate and AUDIT events. The benchmarks run it on
the same requests as the Spark job, in the same run, for a speedup ratio.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from cassandra.query import BatchStatement, BatchType
from kafka import KafkaProducer

from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.runtime.config import JobConfig


def measure_baseline(cfg: JobConfig, keys: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The baseline's figures: ``keys`` reconciled one by one, their seconds and rate."""
    seconds = reconcile_one_by_one(cfg, keys)
    return {
        "requests": len(keys),
        "seconds": round(seconds, 3),
        "requestsPerSecond": round(len(keys) / seconds, 1),
    }


def reconcile_one_by_one(cfg: JobConfig, keys: Iterable[tuple[str, str, str]]) -> float:
    """Reconcile each (user, course, batch) the original way; returns the seconds it took."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    client = redis_client(cfg.redis)
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, acks="all")
    read_consumption = session.prepare(
        f"SELECT contentid, status FROM {cfg.cassandra.consumption_table}"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    append = session.prepare(
        f"UPDATE {cfg.cassandra.activity_agg_table} SET aggregates = aggregates + ?,"
        " agg_last_updated = agg_last_updated + ? WHERE activity_type = 'Course'"
        " AND activity_id = ? AND user_id = ? AND context_id = ?"
    )
    read_enrolment = session.prepare(
        f"SELECT status FROM {cfg.cassandra.enrolments_table}"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    update_enrolment = session.prepare(
        f"UPDATE {cfg.cassandra.enrolments_table} SET status = ?, progress = ?, contentstatus = ?,"
        " completedon = ?, datetime = ? WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    started = time.perf_counter()
    try:
        for user, course, batch in keys:
            _reconcile(
                session,
                client,
                producer,
                cfg,
                (user, course, batch),
                (read_consumption, append, read_enrolment, update_enrolment),
            )
        producer.flush()
    finally:
        elapsed = time.perf_counter() - started
        producer.close()
        client.close()
        cluster.shutdown()
    return elapsed


def _members(client: redis.Redis, key: str) -> set[str]:
    return set(client.smembers(key))  # one round trip per key, as the original


def _reconcile(session, client, producer, cfg, key, statements) -> None:
    read_consumption, append, read_enrolment, update_enrolment = statements
    user, course, batch = key
    rows = list(session.execute(read_consumption, key))
    if not rows:
        return
    statuses = {r.contentid: 1 if r.status is None else r.status for r in rows}
    done = {c for c, s in statuses.items() if s == 2}
    leaves = _members(client, f"{course}:{course}:leafnodes")
    optional = _members(client, f"{course}:{course}:optionalnodes")
    if not leaves:
        return
    required = leaves - optional
    completed = len(required & done)
    now = datetime.now(UTC)
    units = set()
    for content in statuses:
        units |= _members(client, f"{course}:{content}:ancestors")
    batch_statement = BatchStatement(batch_type=BatchType.LOGGED)
    counts = {course: completed}
    for unit in sorted(units - {course}):
        unit_leaves = _members(client, f"{course}:{unit}:leafnodes")
        unit_optional = _members(client, f"{course}:{unit}:optionalnodes")
        counts[unit] = len((unit_leaves - unit_optional) & done)
    for activity, count in counts.items():
        batch_statement.add(
            append,
            (
                {"completedCount": float(count)},
                {"completedCount": now},
                activity,
                user,
                f"cb:{batch}",
            ),
        )
    session.execute(batch_statement)
    current = session.execute(read_enrolment, key).one()
    if current is None or current.status == 2:
        return
    complete = completed >= len(required)
    session.execute(
        update_enrolment,
        (2 if complete else 1, completed, statuses, now if complete else None, now, *key),
    )
    if complete:
        event = {
            "userId": user,
            "courseId": course,
            "batchId": batch,
            "ets": int(now.timestamp() * 1000),
        }
        producer.send(
            cfg.kafka.certissue_topic,
            json.dumps({"eid": "BE_JOB_REQUEST", "edata": event}).encode(),
        )
        producer.send(cfg.kafka.audit_topic, json.dumps({"eid": "AUDIT", "edata": event}).encode())
