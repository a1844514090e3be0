"""The streaming job end to end: `./spark-submit.sh stream --trigger available-now` on the real
stack, then the exact rows in Cassandra and the exact messages on the topics."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from enrolment_reconciliation.batch.milestones import AFTER_ENROLMENT_WRITE
from enrolment_reconciliation.core.schemas import FAILED_PAYLOAD_MAX_CHARS
from tests.fault_injection.sitecustomize import FAULT_POINT_ENV
from tests.helpers import (
    SCORES,
    config_for,
    json_lines,
    messages_on,
    name_uuid,
    produce,
    run_job,
    seed,
    sync_request,
)

pytestmark = pytest.mark.integration


LONG_ID = "u" * 200_000  # past Cassandra's 65,535-byte key limit: a poison pill before
BAD = [
    b"definitely not json",
    json.dumps({"edata": {"action": "user-enrolment-sync", "userId": 1}}).encode(),
    sync_request(LONG_ID, "course001", "Batch1").encode(),
]


@pytest.fixture(scope="module")
def streamed(cql, tmp_path_factory):
    """One available-now run over valid, duplicate, skipped and bad messages."""
    env = f"t{uuid.uuid4().hex[:10]}"
    cfg, args = config_for(env, tmp_path_factory.mktemp("stream"))
    seed(cql, cfg)
    produce(
        cfg,
        [
            sync_request("user001", "course001", "Batch1").encode(),
            sync_request("user002", "course001", "Batch1").encode(),
            sync_request("user001", "course001", "Batch1").encode(),  # duplicate
            sync_request("user001", "course001", "Batch1", action="other").encode(),
            *BAD,
        ],
    )
    started = int(time.time() * 1000)
    result = run_job(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cfg, result, started


def test_stream_writes_the_exact_aggregate_rows_and_keeps_foreign_map_keys(streamed, cql):
    rows = {
        (r.activity_id, r.user_id, r.context_id): dict(r.aggregates)
        for r in cql.execute("SELECT * FROM user_activity_agg")
    }
    assert rows == {
        ("course001", "user001", "cb:Batch1"): {"completedCount": 3.0, **SCORES},
        ("unit1", "user001", "cb:Batch1"): {"completedCount": 2.0},
        ("unit2", "user001", "cb:Batch1"): {"completedCount": 2.0},
        ("course001", "user002", "cb:Batch1"): {"completedCount": 1.0},
        ("unit1", "user002", "cb:Batch1"): {"completedCount": 1.0},
        ("unit2", "user002", "cb:Batch1"): {"completedCount": 0.0},
    }
    updated = cql.execute(
        "SELECT agg_last_updated FROM user_activity_agg WHERE activity_type='Course'"
        " AND activity_id='course001' AND user_id='user001'"
    ).one()
    assert set(updated.agg_last_updated) == {"completedCount", *SCORES}


def test_stream_writes_the_exact_enrolment_rows(streamed, cql):
    _, _, started = streamed
    rows = {
        r.userid: r
        for r in cql.execute(
            "SELECT userid, status, progress, contentstatus, completedon, datetime"
            " FROM user_enrolments"
        )
    }
    assert {u: (r.status, r.progress, dict(r.contentstatus)) for u, r in rows.items()} == {
        "user001": (2, 3, {"R1": 2, "R2": 2, "R3": 2}),
        "user002": (1, 1, {"R1": 2, "R2": 1}),
    }
    assert rows["user002"].completedon is None
    completed_ms = rows["user001"].completedon.timestamp() * 1000
    assert completed_ms >= started - 1000


def test_stream_publishes_exactly_one_audit_and_one_certificate_event(streamed):
    cfg, _, started = streamed
    certs = messages_on(cfg, cfg.kafka.certissue_topic)
    audits = messages_on(cfg, cfg.kafka.audit_topic)
    assert len(certs) == 1 and len(audits) == 1
    cert, audit = certs[0], audits[0]
    assert cert["ets"] >= started - 1000
    assert cert == {
        "eid": "BE_JOB_REQUEST",
        "ets": cert["ets"],
        "mid": "LP." + name_uuid("user001", "course001", "Batch1", "issue-certificate"),
        "actor": {"id": "Course Certificate Generator", "type": "System"},
        "context": {"pdata": {"ver": "1.0", "id": "org.sunbird.platform"}},
        "object": {"id": "Batch1_course001", "type": "CourseCertificateGeneration"},
        "edata": {
            "userIds": ["user001"],
            "action": "issue-certificate",
            "iteration": 1,
            "trigger": "auto-issue",
            "batchId": "Batch1",
            "reIssue": False,
            "courseId": "course001",
        },
    }
    assert audit == {
        "actor": {"id": "user001", "type": "User"},
        "eid": "AUDIT",
        "edata": {"props": ["status", "completedon"], "type": "enrol-complete"},
        "ver": "3.0",
        "syncts": cert["ets"],
        "ets": cert["ets"],
        "context": {
            "channel": "in.sunbird",
            "env": "Course",
            "sid": name_uuid("user001", "course001", "Batch1", "enrol-complete:sid"),
            "did": name_uuid("user001", "course001", "Batch1", "enrol-complete:did"),
            "pdata": {
                "ver": "3.0",
                "id": "org.sunbird.learning.platform",
                "pid": "course-progress-updater",
            },
            "cdata": [
                {"type": "CourseBatch", "id": "Batch1"},
                {"type": "Course", "id": "course001"},
            ],
        },
        "mid": "LP.AUDIT." + name_uuid("user001", "course001", "Batch1", "enrol-complete"),
        "object": {"id": "user001", "type": "User", "rollup": {"l1": "course001"}},
        "tags": [],
    }


def test_bad_messages_go_to_the_failed_topic_while_valid_ones_are_applied(streamed, cql):
    cfg, result, _ = streamed
    failed = messages_on(cfg, cfg.kafka.failed_topic)
    assert [(f["reason"], f["payload"]) for f in failed] == [
        ("malformed JSON", BAD[0].decode()),
        (
            "edata.userId is not a string; edata.courseId is missing or empty;"
            " edata.batchId is missing or empty",
            BAD[1].decode(),
        ),
        (
            "edata.userId is 200000 bytes long; ids are limited to 1024 bytes",
            BAD[2].decode()[:FAILED_PAYLOAD_MAX_CHARS],
        ),
    ]
    assert all(f["source"]["topic"] == cfg.kafka.input_topic for f in failed)
    status = cql.execute("SELECT status FROM user_enrolments WHERE userid='user001'").one()
    assert status.status == 2
    # off a terminal every line of a run's standard error, the job's and Spark's, is one JSON
    # object (time, level, logger, event, ...); standard output holds only a result (none here)
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "event"} <= set(r) for r in records)
    assert {r["logger"] for r in records if r["event"] == "spark-log"}  # Spark's own lines too
    assert result.stdout == ""
    # one JSON log line per micro-batch with the counters
    lines = json_lines(result.stderr, "micro-batch")
    assert [line["counters"]["requests.total-events-count"] for line in lines] == [7]
    assert lines[0]["counters"]["requests.skipped-events-count"] == 1
    assert lines[0]["counters"]["failed.failed-events-count"] == 3
    # every second of the micro-batch is in a phase, and each trigger says what Spark spent
    # outside foreachBatch
    phases = lines[0]["phases"]
    named = {"read-plan", "read", "structure", "plan", "reconcile", "publish", "release", "other"}
    assert named <= set(phases)
    assert abs(sum(phases.values()) - lines[0]["seconds"]) <= 0.01 + 0.001 * len(phases)
    triggers = {t["batchId"]: t for t in json_lines(result.stderr, "trigger")}
    batch = triggers[lines[0]["batchId"]]
    assert batch["partsMs"]["addBatch"] >= lines[0]["seconds"] * 1000 * 0.9
    assert batch["outsideBatchMs"] == batch["triggerMs"] - batch["partsMs"]["addBatch"] >= 0


def test_crash_between_status_write_and_publish_loses_no_certificate(cql, tmp_path):
    env = f"crash{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    produce(cfg, [sync_request("user001", "course001", "Batch1").encode()])

    crashed = run_job(args, **{FAULT_POINT_ENV: AFTER_ENROLMENT_WRITE})
    assert crashed.returncode != 0
    status = cql.execute("SELECT status FROM user_enrolments WHERE userid='user001'").one()
    assert status.status == 2  # the status write happened ...
    assert messages_on(cfg, cfg.kafka.certissue_topic) == []  # ... the publish did not

    restarted = run_job(args)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    certs = messages_on(cfg, cfg.kafka.certissue_topic)
    audits = messages_on(cfg, cfg.kafka.audit_topic)
    key = ("user001", "course001", "Batch1")
    assert [c["mid"] for c in certs] == ["LP." + name_uuid(*key, "issue-certificate")]
    assert [a["mid"] for a in audits] == ["LP.AUDIT." + name_uuid(*key, "enrol-complete")]
    assert json_lines(restarted.stderr, "outbox-recovered")
