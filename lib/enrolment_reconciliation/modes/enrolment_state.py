"""An enrolment's state as a person asks about it: its rows now, what of it was found.

Light on purpose (no Spark): ``sync --via-stream`` reads the state and publishes the request
with these functions and starts no JVM; ``sync`` and ``explain`` report with the same ones.
"""

from __future__ import annotations

import json
from typing import Any

from cassandra.cluster import Session

from enrolment_reconciliation.core.counters import Counter, Counts
from enrolment_reconciliation.core.requests import sync_request_event
from enrolment_reconciliation.core.schemas import CONTEXT_PREFIX, COURSE_ACTIVITY_TYPE
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import JobConfig


def enrolment_state(cfg: JobConfig, user: str, course: str, batch: str) -> dict[str, Any]:
    """The enrolment row and the user's course aggregates, as they are in Cassandra now."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        return read_enrolment_state(session, cfg, user, course, batch)
    finally:
        cluster.shutdown()


def read_enrolment_state(
    session: Session, cfg: JobConfig, user: str, course: str, batch: str
) -> dict[str, Any]:
    """:func:`enrolment_state` through an open session (a caller that polls keeps one)."""
    row = session.execute(
        f"SELECT status, progress, completedon, contentstatus FROM {cfg.cassandra.keyspace}"
        f".{cfg.cassandra.enrolments_table} WHERE userid = %s AND courseid = %s AND batchid = %s",
        (user, course, batch),
    ).one()
    enrolment = None
    if row:
        enrolment = {
            "status": row.status,
            "progress": row.progress,
            "completedon": row.completedon.isoformat() if row.completedon else None,
            "contentstatus": dict(row.contentstatus or {}),
        }
    agg = session.execute(
        f"SELECT aggregates FROM {cfg.cassandra.keyspace}.{cfg.cassandra.activity_agg_table}"
        " WHERE activity_type = %s AND activity_id = %s AND user_id = %s AND context_id = %s",
        (COURSE_ACTIVITY_TYPE, course, user, CONTEXT_PREFIX + batch),
    ).one()
    return {
        "enrolment": enrolment,
        "courseAggregates": dict(agg.aggregates or {}) if agg else None,
    }


def sync_request_payload(user: str, course: str, batch: str) -> bytes:
    """One sync request as the platform publishes it, as a Kafka value."""
    return json.dumps(sync_request_event(user, course, batch)).encode()


def missing_parts(user: str, course: str, batch: str, found: dict[str, bool | None]) -> list[str]:
    """What of an enrolment is not there, in words a person can act on (empty: all of it is).

    ``found`` is :func:`found_parts`' answer; a part it does not name, or names as None, was
    not looked up (no structure is looked up without consumption to compute from).
    """
    missing = []
    if found.get("enrolment") is False:
        missing.append(
            f"no user_enrolments row for user {user}, course {course}, batch {batch}"
            " (is the learner enrolled in this batch?)"
        )
    if found.get("consumption") is False:
        missing.append(
            f"no user_content_consumption rows for user {user} in course {course}, batch {batch}:"
            " nothing to compute progress from"
        )
    if found.get("courseStructure") is False:
        missing.append(
            f"course {course} has no structure: no leafnodes in the relation cache"
            " and none from the search service"
        )
    return missing


def found_parts(counters: Counts, before: dict[str, Any]) -> dict[str, bool | None]:
    """Which parts of the enrolment a sync found, from its counters and the row it read."""
    consumption = counters.get(Counter.ENROLMENTS_WITH_CONSUMPTION, 0) > 0
    return {
        "enrolment": before["enrolment"] is not None,
        "consumption": consumption,
        "courseStructure": (counters.get(Counter.MISSING_STRUCTURE, 0) == 0)
        if consumption
        else None,
    }
