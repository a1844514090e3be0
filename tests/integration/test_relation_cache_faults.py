"""Relation-cache faults through the real stream, handled per course (docs/design.md §3.2;
docs/behaviour.md §4.2, §7.8, §10.18):

- a course whose leafnodes key holds a Redis string: its requests go to the failed topic with a
  reason naming the key, the other courses in the same micro-batch are applied;
- ancestors naming a unit that has no leafnodes key: the unit's row counts 0, as in the original;
- stale keys of a deleted unit (never deleted by the publish pipeline): the spec's ER behaviour,
  a row for the stale unit when the learner consumed its content.

(An *empty* set cannot exist in Redis, which deletes a set with its last member: an empty
leafnodes key is an absent one, the search-service route tested in test_pipeline.)
"""

from __future__ import annotations

import uuid

import pytest

from enrolment_reconciliation.io.relation_cache import redis_client
from tests.helpers import (
    config_for,
    json_lines,
    messages_on,
    produce,
    run_job,
    seed,
    sync_request,
)

pytestmark = pytest.mark.integration

STRUCTURE = {
    "course003:course003:leafnodes": {"R1", "R2"},
    "course003:u1:leafnodes": {"R1"},  # u9 has no leafnodes key at all
    "course003:R1:ancestors": {"u1", "course003"},
    "course003:R2:ancestors": {"u9", "course003"},
    # R3 and its unit uold were removed from the course; their keys stay behind
    "course003:R3:ancestors": {"uold", "course003"},
    "course003:uold:leafnodes": {"R3"},
}


def test_relation_cache_faults_are_handled_per_course(cql, tmp_path):
    env = f"rcfault{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    client = redis_client(cfg.redis)
    client.set("course002:course002:leafnodes", "R1,R2")  # a string where a set belongs
    client.sadd("course002:R1:ancestors", "course002")
    for key, members in STRUCTURE.items():
        client.sadd(key, *members)
    client.close()
    consumption = cql.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status)"
        " VALUES (?, ?, ?, ?, 2)"
    )
    enrolment = cql.prepare(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, active)"
        " VALUES (?, ?, ?, 1, true)"
    )
    cql.execute(consumption, ("user003", "course002", "Batch2", "R1"))
    cql.execute(enrolment, ("user003", "course002", "Batch2"))
    for content in ("R1", "R2", "R3"):
        cql.execute(consumption, ("user004", "course003", "Batch3", content))
    cql.execute(enrolment, ("user004", "course003", "Batch3"))

    produce(
        cfg,
        [
            sync_request("user003", "course002", "Batch2").encode(),
            sync_request("user001", "course001", "Batch1").encode(),
            sync_request("user004", "course003", "Batch3").encode(),
        ],
    )
    result = run_job(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    failed = messages_on(cfg, cfg.kafka.failed_topic)
    assert [(f["reason"], f["userId"], f["courseId"]) for f in failed] == [
        (
            "relation cache key course002:course002:leafnodes holds a string, not a set",
            "user003",
            "course002",
        )
    ]
    statuses = {
        (r.userid, r.courseid): r.status
        for r in cql.execute("SELECT userid, courseid, status FROM user_enrolments")
    }
    assert statuses[("user003", "course002")] == 1  # untouched
    assert statuses[("user001", "course001")] == 2
    assert statuses[("user004", "course003")] == 2
    aggregates = {
        (r.user_id, r.activity_id): r.aggregates["completedCount"]
        for r in cql.execute("SELECT user_id, activity_id, aggregates FROM user_activity_agg")
    }
    assert {k: v for k, v in aggregates.items() if k[0] in ("user003", "user004")} == {
        ("user004", "course003"): 2.0,
        ("user004", "u1"): 1.0,
        ("user004", "u9"): 0.0,  # a unit without leafnodes counts 0
        ("user004", "uold"): 1.0,  # the stale unit, as the original computes it
    }
    counters = json_lines(result.stderr, "micro-batch")[0]["counters"]
    assert counters["failed.failed-events-count"] == 1
    certificates = messages_on(cfg, cfg.kafka.certissue_topic)
    assert sorted(c["edata"]["userIds"][0] for c in certificates) == ["user001", "user004"]
