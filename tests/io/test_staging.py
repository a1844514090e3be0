"""A sliced run's staged copies: its users written once by slice, each slice reading its own;
the table's aggregates staged by slice with only the count compared; other runs' copies and a
finished run's deleted, another scope's left alone."""

from __future__ import annotations

import pytest

from enrolment_reconciliation.core.schemas import COMPLETED_COUNT, CURRENT_AGGREGATES_SCHEMA
from enrolment_reconciliation.core.slices import slice_of
from enrolment_reconciliation.io import staging
from enrolment_reconciliation.io.cassandra import ScanFilters
from enrolment_reconciliation.io.staging import AGGREGATES, USERS, RunStaging
from enrolment_reconciliation.runtime.config import load_config

SLICES = 4
USER_IDS = [f"user-{i}" for i in range(40)]


@pytest.fixture(scope="module")
def cassandra():
    return load_config().cassandra


def run(spark, cassandra, tmp_path, scope="scope-a", run_id="run-1") -> RunStaging:
    location = str(tmp_path / "staging")
    return RunStaging(spark, cassandra, location, scope=scope, run_id=run_id, slices=SLICES)


def expected_slices(spark, users: list[str], column: str = "userid") -> dict[str, int]:
    frame = spark.createDataFrame([(u,) for u in users], f"{column} string")
    return {r[0]: r.s for r in frame.select(column, slice_of(SLICES, column).alias("s")).collect()}


def test_each_user_is_staged_in_exactly_the_slice_of_its_hash(spark, cassandra, tmp_path):
    staged = run(spark, cassandra, tmp_path)
    assert not staged.has_users()
    staged.stage_users(spark.createDataFrame([(u,) for u in USER_IDS], "userid string"))
    assert staged.has_users() and staged.is_whole(USERS) and not staged.is_whole(AGGREGATES)

    by_slice = {i: [r.userid for r in staged.users(i).collect()] for i in range(SLICES)}
    assert all(staged.users(i).columns == ["userid"] for i in range(SLICES))
    everyone = [u for users in by_slice.values() for u in users]
    assert sorted(everyone) == sorted(USER_IDS)  # each user once
    wanted = expected_slices(spark, USER_IDS)
    assert {u: i for i, users in by_slice.items() for u in users} == wanted
    assert len(set(wanted.values())) > 1  # the slices are not all one
    assert staged.user_count() == len(USER_IDS)


def test_a_resumed_run_reads_the_copy_its_first_attempt_wrote(spark, cassandra, tmp_path):
    run(spark, cassandra, tmp_path).stage_users(
        spark.createDataFrame([("a",), ("b",)], "userid string")
    )
    resumed = run(spark, cassandra, tmp_path)
    assert resumed.has_users() and resumed.user_count() == 2


def test_only_the_other_runs_of_the_scope_are_dropped(spark, cassandra, tmp_path):
    users = spark.createDataFrame([("a",)], "userid string")
    abandoned = run(spark, cassandra, tmp_path, run_id="run-1")
    current = run(spark, cassandra, tmp_path, run_id="run-2")
    other_scope = run(spark, cassandra, tmp_path, scope="scope-b", run_id="run-1")
    for staged in (abandoned, current, other_scope):
        staged.stage_users(users)

    current.drop_other_runs()
    assert not abandoned.has_users()
    assert current.has_users() and other_scope.has_users()
    assert sorted(p.name for p in (tmp_path / "staging" / "scope-a").iterdir()) == ["run-2"]

    current.drop_run()
    assert not current.has_users() and other_scope.has_users()
    assert not (tmp_path / "staging" / "scope-a" / "run-2").exists()


def test_aggregates_are_staged_by_slice_with_only_the_completed_count(
    spark, cassandra, tmp_path, monkeypatch
):
    table = spark.createDataFrame(
        [
            ("Course", "do_c", user, "cb:batch-1", {COMPLETED_COUNT: float(n), "score:x": 9.0})
            for n, user in enumerate(USER_IDS[:12])
        ],
        CURRENT_AGGREGATES_SCHEMA,
    )
    scans = []

    def current_aggregates(spark_, cassandra_, filters):
        scans.append(filters)
        return table

    monkeypatch.setattr(staging, "current_aggregates", current_aggregates)
    staged = run(spark, cassandra, tmp_path)
    filters = ScanFilters()
    assert staged.stage_aggregates(filters)
    assert staged.is_whole(AGGREGATES) and scans == [filters]

    wanted = expected_slices(spark, USER_IDS[:12], "user_id")
    seen = {}
    for i in range(SLICES):
        for r in staged.aggregates(i).collect():
            assert list(r.asDict()) == CURRENT_AGGREGATES_SCHEMA.fieldNames()
            seen[r.user_id] = (i, r.activity_type, r.activity_id, r.context_id, r.aggregates)
    assert seen == {
        user: (wanted[user], "Course", "do_c", "cb:batch-1", {COMPLETED_COUNT: float(n)})
        for n, user in enumerate(USER_IDS[:12])
    }

    # a whole copy is there: a resumed run does not scan again
    assert not run(spark, cassandra, tmp_path).stage_aggregates(filters)
    assert len(scans) == 1
