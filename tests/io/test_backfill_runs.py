"""A sliced backfill's runs table: a stopped run resumes with the slices it finished, unless its
scope's newest run is finished or too old; scopes are told apart by a stable digest."""

from __future__ import annotations

import re
from collections import namedtuple
from datetime import UTC, datetime, timedelta

import pytest

from enrolment_reconciliation.io.backfill_runs import (
    HEADER,
    BackfillRun,
    RunRecords,
    new_run_id,
    scope_digest,
)


def stored(value):
    """A value as Cassandra gives it back: timestamps naive UTC in milliseconds, an empty map
    null."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return value or None
    return value


class FakeSession:
    """The runs table in memory, for the statements ``RunRecords`` prepares: INSERT and UPDATE
    upsert the named columns by primary key, SELECT returns a scope's rows in clustering order."""

    def __init__(self) -> None:
        self.rows: dict[tuple, dict] = {}  # (scope, run_id, slice) -> columns

    def prepare(self, cql: str) -> str:
        return cql

    def execute(self, statement: str, params=(), timeout=None):
        verb, values = statement.split()[0], [stored(v) for v in params]
        if verb == "INSERT":
            columns = re.search(r"\((.*?)\) VALUES", statement).group(1).split(", ")
            return self._upsert(dict(zip(columns, values, strict=True)))
        if verb == "UPDATE":  # SET a = ? ... WHERE scope = ? AND run_id = ? AND slice = ?
            columns = re.findall(r"(\w+) = \?", statement)
            return self._upsert(dict(zip(columns, values, strict=True)))
        if verb == "SELECT":  # ... WHERE scope = ?
            Row = namedtuple("Row", re.search(r"SELECT (.*) FROM", statement).group(1).split(", "))
            ordered = sorted((k, r) for k, r in self.rows.items() if k[0] == values[0])
            return [Row(*(r.get(c) for c in Row._fields)) for _, r in ordered]
        assert verb == "CREATE", statement
        return []

    def _upsert(self, row: dict) -> list:
        self.rows.setdefault((row["scope"], row["run_id"], row["slice"]), {}).update(row)
        return []

    def backdate(self, scope: str, run_id: str, hours: float) -> None:
        self.rows[(scope, run_id, HEADER)]["started_at"] -= timedelta(hours=hours)


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def records(session) -> RunRecords:
    return RunRecords(session, keyspace="ks", table="runs")


def test_a_new_run_has_every_slice_pending_and_records_what_it_reconciles(session, records):
    run = records.start("scope-a", slices=3, description={"courses": "all", "slices": 0})
    assert run.pending() == [0, 1, 2] and not run.resumed
    header = session.rows[("scope-a", run.run_id, HEADER)]
    assert header["slices"] == 3 and header["finished_at"] is None
    assert header["description"] == '{"courses": "all", "slices": 0}'


def test_a_stopped_run_resumes_with_its_finished_slices(records):
    run = records.start("scope-a", slices=3, description={})
    records.finish_slice(run, 1, {"enrolment.enrolment-update-count": 7})
    records.finish_slice(run, 2, {})
    assert run.pending() == [0]

    resumed = records.resumable("scope-a", max_age_hours=24)
    assert (resumed.run_id, resumed.slices, resumed.resumed) == (run.run_id, 3, True)
    assert resumed.finished == {1: {"enrolment.enrolment-update-count": 7}, 2: {}}
    assert resumed.pending() == [0]
    assert abs(resumed.started_at - run.started_at) < timedelta(milliseconds=1)
    assert resumed.started_at.tzinfo is UTC


def test_the_newest_unfinished_run_of_the_scope_is_resumed(records):
    older = records.start("scope-a", slices=2, description={}, run_id="20260101T000000-aaaaaa")
    newer = records.start("scope-a", slices=4, description={}, run_id="20260102T000000-bbbbbb")
    other = records.start("scope-b", slices=2, description={})
    records.finish_slice(older, 0, {"n": 1})
    records.finish_slice(newer, 3, {"n": 2})
    records.finish_slice(other, 1, {"n": 3})

    resumed = records.resumable("scope-a", max_age_hours=24)
    assert (resumed.run_id, resumed.slices) == (newer.run_id, 4)
    assert resumed.finished == {3: {"n": 2}}
    assert records.resumable("scope-c", max_age_hours=24) is None


def test_nothing_resumes_once_the_newest_run_is_finished(records):
    records.start("scope-a", slices=2, description={}, run_id="20260101T000000-aaaaaa")
    newer = records.start("scope-a", slices=1, description={}, run_id="20260102T000000-bbbbbb")
    records.finish_slice(newer, 0, {})
    assert records.resumable("scope-a", max_age_hours=24).run_id == newer.run_id
    records.finish_run(newer)
    # the older run never finished, yet the next run starts over
    assert records.resumable("scope-a", max_age_hours=24) is None


def test_a_run_older_than_the_resume_age_starts_over(session, records):
    run = records.start("scope-a", slices=2, description={})
    session.backdate("scope-a", run.run_id, hours=25)
    assert records.resumable("scope-a", max_age_hours=24) is None
    assert records.resumable("scope-a", max_age_hours=26).run_id == run.run_id


def test_run_ids_sort_by_start_time():
    first = new_run_id(datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC))
    second = new_run_id(datetime(2026, 12, 3, 0, 0, 0, tzinfo=UTC))
    assert first.startswith("20261202T235959-") and first < second
    assert new_run_id(datetime(2026, 12, 3, tzinfo=UTC)) != second  # a random tail


def test_the_scope_digest_is_stable_and_tells_scopes_apart():
    digest = scope_digest({"courses": ["do_1"], "slices": 4})
    assert re.fullmatch(r"[0-9a-f]{24}", digest)
    assert scope_digest({"slices": 4, "courses": ["do_1"]}) == digest  # key order
    assert scope_digest({"courses": ["do_2"], "slices": 4}) != digest
    assert scope_digest({"courses": ["do_1"], "slices": 8}) != digest


def test_pending_slices_are_those_not_finished():
    run = BackfillRun("s", "r", 4, datetime.now(UTC), finished={0: {}, 2: {"n": 1}})
    assert run.pending() == [1, 3]
