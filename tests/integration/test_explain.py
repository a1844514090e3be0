"""``explain``: why a learner is not complete, from the same frames the job computes."""

from __future__ import annotations

import json

import pytest

from enrolment_reconciliation.cli import _parser
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.modes.explain import explain_enrolment, render
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from tests.helpers import (
    as_cli_args,
    insert_consumption,
    insert_enrolments,
    put_keys,
    spark_submit,
    stack_config,
    stack_overrides,
)
from tests.search_stub import SearchStub

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
    cluster, session = connect(cfg.cassandra, keyspace=KEYSPACE)
    for table in ("user_content_consumption", "user_enrolments", "user_activity_agg"):
        session.execute(f"TRUNCATE {table}", timeout=60)
    insert_consumption(
        session,
        [
            ("u", "C", "b", "R1", 2),
            ("u", "C", "b", "R2", 2),
            ("u", "C", "b", "R3", 1),
            ("w", "D", "b", "R9", 2),  # course D has no relation-cache keys
        ],
    )
    insert_enrolments(session, [("u", "C", "b", 1, None), ("w", "D", "b", 1, None)])
    cluster.shutdown()
    client = redis_client(cfg.redis)
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
    cluster, session = connect(cfg.cassandra, keyspace=KEYSPACE)
    assert session.execute("SELECT progress FROM user_enrolments").one().progress is None
    assert session.execute("SELECT COUNT(*) FROM user_activity_agg").one()[0] == 0
    cluster.shutdown()


OVERRIDES = [*stack_overrides(KEYSPACE), f"redis.database.relationCache.id={REDIS_DB}"]


def test_explain_on_the_command_line_prints_json_for_tools(cfg):
    args = ["--user", "u", "--course", "C", "--batch", "b", "--json"]
    run = spark_submit("explain", [*args, *as_cli_args(OVERRIDES)])
    assert run.returncode == ExitCode.OK, run.stdout[-2000:] + run.stderr[-2000:]
    printed = json.loads(run.stdout)  # the result alone: the logs are on standard error
    assert printed["course"]["missing"] == ["R3"]
    assert printed["route"] == "ok"
    assert printed["found"] == {"enrolment": True, "consumption": True, "courseStructure": True}
    assert printed["missing"] == []
    assert "configuration:" in run.stderr


def test_what_is_not_there_is_said_plainly(spark, cfg):
    nobody = explain_enrolment(spark, cfg, "nobody", "C", "b")
    assert nobody["found"] == {"enrolment": False, "consumption": False, "courseStructure": None}
    assert nobody["missing"] == [
        "no user_enrolments row for user nobody, course C, batch b"
        " (is the learner enrolled in this batch?)",
        "no user_content_consumption rows for user nobody in course C, batch b:"
        " nothing to compute progress from",
    ]
    assert "  NOT FOUND: no user_enrolments row for user nobody" in render(nobody)
    with SearchStub({"D": "Live"}) as search:  # published, yet no leafnodes anywhere
        unstructured = explain_enrolment(
            spark, cfg.with_overrides(f"service.search.basePath={search.base_path}"), "w", "D", "b"
        )
    assert unstructured["found"] == {
        "enrolment": True,
        "consumption": True,
        "courseStructure": False,
    }
    assert unstructured["missing"] == [
        "course D has no structure: no leafnodes in the relation cache"
        " and none from the search service"
    ]


def test_sync_of_an_enrolment_that_is_not_there_says_so_with_its_exit_code(cfg):
    args = ["--user", "nobody", "--course", "C", "--batch", "b"]
    run = spark_submit("sync", [*args, *as_cli_args(OVERRIDES)])
    assert run.returncode == ExitCode.NOT_FOUND, run.stdout[-2000:] + run.stderr[-2000:]
    printed = json.loads(run.stdout)
    assert printed["found"]["enrolment"] is False and printed["changed"] is False
    assert len(printed["missing"]) == 2
    assert "not found: no user_enrolments row for user nobody, course C, batch b" in run.stderr


def test_help_documents_every_backfill_flag_and_the_exit_codes():
    text = _parser()._subparsers._group_actions[0].choices["backfill"].format_help()
    for flag in ("--courses", "--batches", "--users-file", "--dry-run", "--max-writes-per-second"):
        assert flag in text
    assert "3 another backfill holds the lease" in text
