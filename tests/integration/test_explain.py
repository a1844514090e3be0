"""``explain``: why a learner is not complete, from the same frames the job computes."""

from __future__ import annotations

import json

import pytest

from enrolment_reconciliation.cli import _parser
from enrolment_reconciliation.explain import explain_enrolment, render
from enrolment_reconciliation.io.cassandra import connect_from_config
from enrolment_reconciliation.io.relation_cache import redis_client
from tests.helpers import (
    as_cli_args,
    insert_consumption,
    insert_enrolments,
    put_keys,
    spark_submit,
    stack_config,
    stack_overrides,
)

pytestmark = pytest.mark.integration
KEYSPACE, REDIS_DB = "er_test_core", 7
KEYS = {
    "C:C:leafnodes": {"R1", "R2", "R3", "R4"},
    "C:C:optionalnodes": {"R4"},
    "C:U1:leafnodes": {"R1", "R2"},
    "C:U2:leafnodes": {"R3", "R4"},
    "C:U2:optionalnodes": {"R4"},
    "C:R1:ancestors": {"U1", "C"},
    "C:R2:ancestors": {"U1", "C"},
    "C:R3:ancestors": {"U2", "C"},
    "C:R4:ancestors": {"U2", "C"},
}


@pytest.fixture(scope="module")
def cfg():
    cfg = stack_config(f"redis.database.relationCache.id={REDIS_DB}", keyspace=KEYSPACE)
    cluster, session = connect_from_config(cfg, keyspace=KEYSPACE)
    for table in ("user_content_consumption", "user_enrolments", "user_activity_agg"):
        session.execute(f"TRUNCATE {table}", timeout=60)
    insert_consumption(
        session, [("u", "C", "b", "R1", 2), ("u", "C", "b", "R2", 2), ("u", "C", "b", "R3", 1)]
    )
    insert_enrolments(session, [("u", "C", "b", 1, None)])
    cluster.shutdown()
    client = redis_client(cfg)
    client.flushdb()
    put_keys(client, KEYS)
    client.close()
    return cfg


def test_explain_names_the_missing_and_the_optional_leaves_per_course_and_unit(spark, cfg):
    explanation = explain_enrolment(spark, cfg, "u", "C", "b")
    course = explanation["course"]
    assert (course["required"], course["completedRequired"], course["missing"]) == (
        ["R1", "R2", "R3"],
        ["R1", "R2"],
        ["R3"],
    )
    assert course["optionalLeftOut"] == ["R4"]
    assert (course["completedCount"], course["requiredCount"], course["complete"]) == (2, 3, False)
    units = {
        u["nodeId"]: (u["missing"], u["optionalLeftOut"], u["complete"])
        for u in explanation["units"]
    }
    assert units == {"U1": ([], [], True), "U2": (["R3"], ["R4"], False)}
    assert explanation["syncWouldWrite"]["enrolment"] == {
        "status": [1, 1],
        "progress": [None, 2],
        "completes": False,
        "changes": True,
    }
    assert explanation["syncWouldWrite"]["completedCount"] == {"C": 2.0, "U1": 2.0, "U2": 0.0}
    text = render(explanation)
    assert "course: 2 of 3 required leaves (not complete; optional leaves excluded)" in text
    assert "    missing:           R3" in text
    assert "    optional left out: R4" in text
    assert "a sync would set status 1 -> 1, progress None -> 2" in text
    # explain writes nothing
    cluster, session = connect_from_config(cfg, keyspace=KEYSPACE)
    assert session.execute("SELECT progress FROM user_enrolments").one().progress is None
    assert session.execute("SELECT COUNT(*) FROM user_activity_agg").one()[0] == 0
    cluster.shutdown()


def test_explain_on_the_command_line_prints_json_for_tools(cfg):
    args = ["--user", "u", "--course", "C", "--batch", "b", "--json"]
    overrides = [*stack_overrides(KEYSPACE), f"redis.database.relationCache.id={REDIS_DB}"]
    run = spark_submit("explain", [*args, *as_cli_args(overrides)])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    start = run.stdout.index('{\n  "enrolment"')
    printed, _ = json.JSONDecoder().raw_decode(run.stdout[start:])
    assert printed["course"]["missing"] == ["R3"]
    assert printed["route"] == "ok"


def test_help_documents_every_backfill_flag_and_the_exit_codes():
    text = _parser()._subparsers._group_actions[0].choices["backfill"].format_help()
    for flag in ("--courses", "--batches", "--users-file", "--dry-run", "--max-writes-per-second"):
        assert flag in text
    assert "3 another backfill holds the lease" in text
