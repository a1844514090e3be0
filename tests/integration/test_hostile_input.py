"""The hostile corpus through the real stream: mixed into batches of valid requests, nothing
fails a micro-batch, every rejected message lands on the failed topic with its exact reason, and
the valid requests around them are applied exactly."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import (
    config_for,
    json_lines,
    messages_on,
    produce,
    run_job,
    seed,
    sync_request,
)
from tests.hostile_corpus import CORPUS, SKIPPED, VALID

pytestmark = pytest.mark.integration

GOOD = [
    sync_request("user001", "course001", "Batch1").encode(),
    sync_request("user002", "course001", "Batch1").encode(),
]


def test_the_hostile_corpus_never_fails_a_batch_and_each_message_gets_its_reason(cql, tmp_path):
    env = f"hostile{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    before = {
        tuple(r) for r in cql.execute("SELECT userid, courseid, batchid FROM user_enrolments")
    }
    # the valid requests sit at the start, middle and end, between the hostile ones
    messages: list[bytes | None] = [GOOD[0]]
    hostile_offsets = {}
    for i, hostile in enumerate(CORPUS):
        if i == len(CORPUS) // 2:
            messages.append(GOOD[1])
        hostile_offsets[len(messages)] = hostile
        messages.append(hostile.payload)
    messages.append(GOOD[0])
    produce(cfg, messages)

    result = run_job([*args, "--max-offsets-per-trigger", "16"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    batches = json_lines(result.stderr, "micro-batch")
    assert len(batches) >= 4  # the corpus really was spread over several micro-batches
    assert sum(b["counters"]["requests.total-events-count"] for b in batches) == len(messages)
    failed = {f["source"]["offset"]: f["reason"] for f in messages_on(cfg, cfg.kafka.failed_topic)}
    expected = {
        offset: h.expected
        for offset, h in hostile_offsets.items()
        if h.expected not in (VALID, SKIPPED)
    }
    assert failed == expected
    assert sum(b["counters"]["failed.failed-events-count"] for b in batches) == len(expected)
    assert sum(b["counters"]["requests.skipped-events-count"] for b in batches) == sum(
        h.expected == SKIPPED for h in CORPUS
    )
    # the valid requests were applied exactly; hostile ids created no row anywhere
    statuses = {
        r.userid: r.status
        for r in cql.execute(
            "SELECT userid, status FROM user_enrolments WHERE courseid='course001'"
            " AND batchid='Batch1' ALLOW FILTERING"
        )
    }
    assert statuses["user001"] == 2
    after = {tuple(r) for r in cql.execute("SELECT userid, courseid, batchid FROM user_enrolments")}
    assert after == before
    users = {r.user_id for r in cql.execute("SELECT user_id FROM user_activity_agg")}
    assert users <= {"user001", "user002"}
    certificates = messages_on(cfg, cfg.kafka.certissue_topic)
    assert [c["edata"]["userIds"] for c in certificates] == [["user001"]]
