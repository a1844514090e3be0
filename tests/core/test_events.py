"""AUDIT and certificate events as whole frames, with deterministic mids (docs/behaviour.md §6)."""

from __future__ import annotations

import json

from chispa import assert_df_equality
from pyspark.sql import functions as F

from enrolment_reconciliation.core.events import deterministic_uuid, to_completion_events
from enrolment_reconciliation.core.schemas import ENROLMENT_UPDATE_SCHEMA, EVENT_SCHEMA
from tests.helpers import NOW, NOW_MS, NOW_NAIVE, literal_frame, name_uuid


def test_deterministic_uuid_is_the_sha256_of_the_parts(spark):
    df = literal_frame(spark, [("u1", "c1")], "a string, b string")
    actual = df.select(deterministic_uuid(F.col("a"), F.col("b"), F.lit("k")).alias("id"))
    assert actual.first().id == name_uuid("u1", "c1", "k")


def test_only_newly_completed_enrolments_emit_one_audit_and_one_certificate_event(spark):
    updates = literal_frame(
        spark,
        [
            ("u1", "c1", "b1", 2, 3, {"R1": 2}, NOW_NAIVE, NOW_NAIVE, True),
            ("u2", "c1", "b1", 1, 1, {"R1": 2}, None, NOW_NAIVE, False),
            ("u3", "c1", "b1", 2, 3, {"R1": 2}, None, NOW_NAIVE, False),  # already completed
        ],
        ENROLMENT_UPDATE_SCHEMA,
    )
    events = to_completion_events(updates, NOW)
    cert = {
        "eid": "BE_JOB_REQUEST",
        "ets": NOW_MS,
        "mid": "LP." + name_uuid("u1", "c1", "b1", "issue-certificate"),
        "actor": {"id": "Course Certificate Generator", "type": "System"},
        "context": {"pdata": {"ver": "1.0", "id": "org.sunbird.platform"}},
        "object": {"id": "b1_c1", "type": "CourseCertificateGeneration"},
        "edata": {
            "userIds": ["u1"],
            "action": "issue-certificate",
            "iteration": 1,
            "trigger": "auto-issue",
            "batchId": "b1",
            "reIssue": False,
            "courseId": "c1",
        },
    }
    audit = {
        "actor": {"id": "u1", "type": "User"},
        "eid": "AUDIT",
        "edata": {"props": ["status", "completedon"], "type": "enrol-complete"},
        "ver": "3.0",
        "syncts": NOW_MS,
        "ets": NOW_MS,
        "context": {
            "channel": "in.sunbird",
            "env": "Course",
            "sid": name_uuid("u1", "c1", "b1", "enrol-complete:sid"),
            "did": name_uuid("u1", "c1", "b1", "enrol-complete:did"),
            "pdata": {
                "ver": "3.0",
                "id": "org.sunbird.learning.platform",
                "pid": "course-progress-updater",
            },
            "cdata": [{"type": "CourseBatch", "id": "b1"}, {"type": "Course", "id": "c1"}],
        },
        "mid": "LP.AUDIT." + name_uuid("u1", "c1", "b1", "enrol-complete"),
        "object": {"id": "u1", "type": "User", "rollup": {"l1": "c1"}},
        "tags": [],
    }
    # field order of the JSON follows the spec's shapes exactly
    expected = literal_frame(
        spark,
        [
            ("audit", audit["mid"], "u1", "c1", "b1", json.dumps(audit, separators=(",", ":"))),
            ("certificate", cert["mid"], "u1", "c1", "b1", json.dumps(cert, separators=(",", ":"))),
        ],
        EVENT_SCHEMA,
    )
    assert_df_equality(events, expected, ignore_row_order=True, ignore_nullable=True)
