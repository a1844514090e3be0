"""Literal inputs for core tests: requests, consumption rows and relation-cache keys."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.core.progress import to_user_consumption, with_consumption_defaults
from enrolment_reconciliation.core.requests import to_sync_requests
from enrolment_reconciliation.io.relation_cache import (
    RelationFrames,
    RelationSnapshot,
    to_relation_frames,
)
from enrolment_reconciliation.schemas import (
    COLLECTION_STATUS_SCHEMA,
    CONSUMPTION_SCHEMA,
    ENROLMENT_SCHEMA,
    RAW_REQUEST_SCHEMA,
)

NOW = datetime(2026, 11, 21, 10, 30, 0, 123000, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NOW_NAIVE = NOW.replace(tzinfo=None)  # how Spark returns timestamps (session time zone UTC)


def sync_request(user: str, course: str, batch: str, action: str = "user-enrolment-sync") -> str:
    return json.dumps(
        {
            "eid": "BE_JOB_REQUEST",
            "ets": 1683556693275,
            "mid": "LP.1683556693275.a18caaec",
            "actor": {"type": "System", "id": "Course Batch Updater"},
            "object": {"type": "CourseBatchEnrolment", "id": f"{batch}_{user}"},
            "edata": {
                "action": action,
                "iteration": 1,
                "batchId": batch,
                "userId": user,
                "courseId": course,
            },
        }
    )


def raw_requests(spark: SparkSession, payloads: list[str | None]) -> DataFrame:
    rows = [
        (None if p is None else p.encode(), "sync", 0, offset) for offset, p in enumerate(payloads)
    ]
    return spark.createDataFrame(rows, RAW_REQUEST_SCHEMA)


def parsed_requests(spark: SparkSession, payloads: list[str | None]) -> DataFrame:
    return to_sync_requests(raw_requests(spark, payloads))


def consumption(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Rows (userid, courseid, batchid, contentid, status[, viewcount, completedcount])."""
    full = [tuple(r) + (None,) * (7 - len(r)) for r in rows]
    return spark.createDataFrame(full, CONSUMPTION_SCHEMA)


def user_consumption(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return to_user_consumption(with_consumption_defaults(consumption(spark, rows)))


def relation_frames(
    spark: SparkSession, keys: dict[str, set[str]], rows: list[tuple]
) -> RelationFrames:
    """Relation frames as the Redis reader would build them from these keys."""
    snapshot = RelationSnapshot(members={k: frozenset(v) for k, v in keys.items()})
    course_contents: dict[str, set[str]] = {}
    for r in rows:
        course_contents.setdefault(r[1], set()).add(r[3])
    return to_relation_frames(spark, snapshot, course_contents)


def enrolments(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, ENROLMENT_SCHEMA)


def collection_status(spark: SparkSession, statuses: dict[str, str | None]) -> DataFrame:
    return spark.createDataFrame(sorted(statuses.items()), COLLECTION_STATUS_SCHEMA)


def name_uuid(*parts: str) -> str:
    """The mid suffix the job derives: SHA-256 of the parts joined by '|', UUID-formatted."""
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
